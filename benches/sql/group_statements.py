#!/usr/bin/env python3
"""Grouped statements by group size: this checkout's inbound insert, commit-to-send and
sent-record statements on its own schema, against another revision's statements on that
revision's schema (default a859e12, before the commit and record statements were made
linear in the group).

Reproduce (PostgreSQL on localhost, psql and git on the PATH; a minute or two):

    python3 benches/sql/group_statements.py [OLD_REV] [--icu-locale en-US]

For each revision it creates a database (`lull_group_statements_old` and `_new`, dropped
at the end), with `--icu-locale` as that database's default collation (a stand-in for
the en_US.utf8 of PostgreSQL's Docker image; without it, the server's default), applies
the revision's migrations and stores 100,000 inbound messages. Then it runs each
statement through `EXPLAIN (ANALYZE, TIMING OFF)` with custom plans, on fresh rows, for
groups of 100, 500 and 2,000, three rounds, old and new in turns, and prints the
execution times (ms).
"""

import argparse
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
DB = "lull_group_statements"
PSQL = ["psql", "-qX", "-U", "postgres", "-h", "127.0.0.1", "-v", "ON_ERROR_STOP=1"]
SIZES = (100, 500, 2000)
KINDS = ("insert", "commit", "record")

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("old", nargs="?", default="a859e12", help="the revision to compare with")
parser.add_argument("--icu-locale", help="the databases' default collation, e.g. en-US")
args = parser.parse_args()


def read(rev: str | None, path: str) -> str:
    """A file of this checkout (rev None) or of another revision."""
    if rev is None:
        return (ROOT / path).read_text()
    return subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"],
                          capture_output=True, text=True, check=True).stdout


def migrations(rev: str | None) -> str:
    if rev is None:
        names = [str(p.relative_to(ROOT)) for p in (ROOT / "migrations").glob("*.sql")]
    else:
        names = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", rev, "migrations/"],
                               capture_output=True, text=True, check=True).stdout.split()
    return "".join(read(rev, name) for name in sorted(names) if name.endswith(".sql"))


def statement(source: str, opening: str) -> str:
    """The SQL text of the Rust string literal that opens with `opening`."""
    start = source.index('"' + opening) + 1
    return source[start:source.index('"', start)]


def psql(db: str, sql: str) -> str:
    done = subprocess.run(PSQL + ["-d", db], input=sql, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"psql failed: {done.stderr.strip()}")
    return done.stdout


INSERT_TYPES = "text[],text[],text[],text[],text[],text[],bool[],timestamptz[],jsonb[]"
# The commit statement's parameters by name: the flat id list `f` ($4) went with the
# older-message lookup (issue 19), and the reply's messages `rm` came last in 0040.
COMMIT_TYPES = {"b": "text[]", "t": "text[]", "m": "text[]", "f": "bigint[]", "c": "text[]",
                "a": "text[]", "ct": "text[]", "cl": "int[]", "su": "int[]", "ff": "timestamptz[]",
                "d": "timestamptz[]", "at": "timestamptz[]", "rm": "text[]"}
RECORD_TYPES = "text[],text[],text[],int[],text[],text[],text[],timestamptz[],text[],int[]"


class Version:
    """One revision: its statements, prepared in each session on its own database."""

    def __init__(self, name: str, rev: str | None):
        self.db = f"{DB}_{name}"
        batches = read(rev, "src/store/batches.rs")
        self.insert = statement(read(rev, "src/store/messages.rs"), "INSERT INTO conversation_messages")
        # The contact's name ($10) came with the bot protocol (issue 18).
        self.names = "$10" in self.insert
        self.commit = statement(batches, "WITH input AS")
        params = max(int(n) for n in re.findall(r"\$(\d+)", self.commit))
        self.commit_args = ["b", "t", "m"] + (["f"] if "ANY($4)" in self.commit else []) + \
            ["c", "a", "ct", "cl", "su", "ff", "d", "at"]
        self.commit_args += ["rm"] * (params - len(self.commit_args))
        self.record = statement(batches, "WITH parts AS")
        # The sent record takes each batch's platform ids as JSON ($11) since ed9f9ce.
        self.json = "$11" in self.record
        self.schema = migrations(rev)

    def create(self) -> None:
        locale = f" LOCALE_PROVIDER icu ICU_LOCALE '{args.icu_locale}' TEMPLATE template0" if args.icu_locale else ""
        psql("postgres", f"DROP DATABASE IF EXISTS {self.db}; CREATE DATABASE {self.db}{locale};")
        psql(self.db, self.schema)
        psql(self.db, """INSERT INTO conversation_messages (channel, account_id, contact_id, external_message_id,
                        direction, message_type, text, answerable, platform_timestamp, webhook_payload)
                    SELECT 'whatsapp', 'PHONE', '1556' || g, 'wamid.' || g, 'in', 'text', 'where is my order?',
                           true, now(), '{"id": 1}' FROM generate_series(1, 100000) g;
                    VACUUM ANALYZE;""")

    def run(self, tag: str, first: int, size: int) -> dict[str, str]:
        """Each statement once on a group of `size` fresh rows; execution ms by kind."""
        json_type, json_arg = (",text", ",:'j'") if self.json else ("", "")
        last = first + size - 1
        # lull's sessions run with JIT off (src/store/mod.rs, session_options):
        # compiling a large group's plan cost more than running it.
        script = f"""SET plan_cache_mode = force_custom_plan; SET jit = off;
            PREPARE s_insert({INSERT_TYPES}{",text[]" if self.names else ""}) AS {self.insert};
            PREPARE s_commit({",".join(COMMIT_TYPES[a] for a in self.commit_args)}) AS {self.commit};
            PREPARE s_record({RECORD_TYPES}{json_type}) AS {self.record};
            SELECT array_agg('whatsapp'::text) c, array_agg('PHONE'::text) a, array_agg('1556' || g) ct,
                array_agg('wamid.{tag}.' || g) e, array_agg('text'::text) k, array_agg('hello'::text) t,
                array_agg(true) ans, array_agg(now()) ts, array_agg('{{"id": 1}}'::jsonb) p,
                array_agg(NULL::text) nm
                FROM generate_series({first}, {last}) g \\gset
            \\echo insert
            EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) EXECUTE s_insert(:'c',:'a',:'ct',:'e',:'k',:'t',:'ans',:'ts',:'p'{",:'nm'" if self.names else ""});
            SELECT array_agg('{tag}_' || g) b, array_agg('reply ' || g) t,
                array_agg('{{' || g || '}}') m, array_agg(g::bigint) f, array_agg('whatsapp'::text) c,
                array_agg('PHONE'::text) a, array_agg('1556' || g) ct, array_agg(1) cl, array_agg(0) su,
                array_agg(now()) ff, array_agg(now() - interval '1 minute') d, array_agg(now()) at,
                array_agg(NULL::text) rm
                FROM generate_series({first}, {last}) g \\gset
            \\echo commit
            EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) EXECUTE s_commit({",".join(f":'{a}'" for a in self.commit_args)});
            SELECT array_agg(id) b, array_agg('wamid.out.' || id) e, array_agg('reply'::text) t,
                array_agg(0) n, array_agg(channel) c, array_agg(account_id) a, array_agg(contact_id) ct,
                array_agg(now()) ts, array_agg(1) att, array_agg('["wamid.out.' || id || '"]') j
                FROM reply_batches WHERE id LIKE '{tag}\\_%' \\gset
            \\echo record
            EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) EXECUTE s_record(:'b',:'e',:'t',:'n',:'c',:'a',:'ct',:'ts',:'b',:'att'{json_arg});
            """
        times, kind = {}, None
        for line in psql(self.db, script).splitlines():
            if line in KINDS:
                kind = line
            elif (m := re.search(r"Execution Time: ([\d.]+) ms", line)) and kind:
                times[kind] = m[1]
        return times


versions = {"old": Version("old", args.old), "new": Version("new", None)}
times: dict[tuple[str, str, int], list[str]] = {}
try:
    for version in versions.values():
        version.create()
    first = 1
    for round_ in range(3):
        for size in SIZES:
            for name, version in versions.items():
                for kind, ms in version.run(f"{name}{round_}x{size}", first, size).items():
                    times.setdefault((kind, name, size), []).append(ms)
            first += size
finally:
    for version in versions.values():
        psql("postgres", f"DROP DATABASE IF EXISTS {version.db};")

collation = f"ICU {args.icu_locale}" if args.icu_locale else "the server's default"
print(f"grouped statements, {args.old} (old) against this checkout (new), each on its own schema,")
print(f"databases collated by {collation}; execution ms over 3 rounds")
print(f"  {'statement':<10} {'group':>6}  {'old':<28} new")
for kind in KINDS:
    for size in SIZES:
        old, new = times.get((kind, "old", size), []), times.get((kind, "new", size), [])
        print(f"  {kind:<10} {size:>6}  {', '.join(old):<28} {', '.join(new)}")
