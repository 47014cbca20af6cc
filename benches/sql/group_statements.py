#!/usr/bin/env python3
"""Grouped statements by group size: this checkout's commit-to-send and sent-record
statements against the same statements at another revision (default a859e12, before
they were made linear in the group).

Reproduce (PostgreSQL on localhost, psql and git on the PATH; about a minute):

    python3 benches/sql/group_statements.py [OLD_REV]

It creates the database `lull_group_statements` (dropped at the end), applies the
migrations, stores 100,000 inbound messages, then runs each statement through
`EXPLAIN (ANALYZE, TIMING OFF)` with custom plans, on fresh rows, for groups of 100,
500 and 2,000 batches, three rounds, old and new in turns, and prints the execution
times (ms).
"""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
OLD = sys.argv[1] if len(sys.argv) > 1 else "a859e12"
DB = "lull_group_statements"
PSQL = ["psql", "-qX", "-U", "postgres", "-h", "127.0.0.1", "-v", "ON_ERROR_STOP=1"]
SIZES = (100, 500, 2000)


def statement(source: str, opening: str) -> str:
    """The SQL text of the Rust string literal that opens with `opening`."""
    start = source.index('"' + opening) + 1
    return source[start:source.index('"', start)]


def statements(source: str) -> tuple[str, str]:
    return statement(source, "WITH input AS"), statement(source, "WITH parts AS")


def psql(db: str, sql: str) -> str:
    done = subprocess.run(PSQL + ["-d", db], input=sql, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"psql failed: {done.stderr.strip()}")
    return done.stdout


new_source = (ROOT / "src/store/batches.rs").read_text()
old_source = subprocess.run(
    ["git", "-C", str(ROOT), "show", f"{OLD}:src/store/batches.rs"], capture_output=True, text=True, check=True
).stdout
(old_commit, old_record), (new_commit, new_record) = statements(old_source), statements(new_source)


def json_type(record: str) -> str:
    """The sent record takes each batch's platform ids as JSON ($11) since ed9f9ce."""
    return ",text[]" if "$11" in record else ""


psql("postgres", f"DROP DATABASE IF EXISTS {DB}; CREATE DATABASE {DB};")
try:
    migrations = "".join(p.read_text() for p in sorted((ROOT / "migrations").glob("*.sql")))
    psql(DB, migrations)
    psql(DB, """INSERT INTO conversation_messages (channel, account_id, contact_id, external_message_id,
                    direction, message_type, text, answerable, platform_timestamp, webhook_payload)
                SELECT 'whatsapp', 'PHONE', '1556' || g, 'wamid.' || g, 'in', 'text', 'where is my order?',
                       true, now(), '{"id": 1}' FROM generate_series(1, 100000) g;
                VACUUM ANALYZE;""")

    commit_types = "text[],text[],text[],bigint[],text[],text[],text[],int[],int[],timestamptz[],timestamptz[],timestamptz[]"
    record_types = "text[],text[],text[],int[],text[],text[],text[],timestamptz[],text[],int[]"
    script = ["SET plan_cache_mode = force_custom_plan;",
              f"PREPARE old_commit({commit_types}) AS {old_commit};",
              f"PREPARE new_commit({commit_types}) AS {new_commit};",
              f"PREPARE old_record({record_types}{json_type(old_record)}) AS {old_record};",
              f"PREPARE new_record({record_types}{json_type(new_record)}) AS {new_record};"]
    first = 1
    for round_ in range(3):
        for size in SIZES:
            for version in ("old", "new"):
                tag = f"{version}{round_}x{size}"
                script.append(f"""SELECT array_agg('{tag}_' || g) b, array_agg('reply ' || g) t,
                    array_agg('{{' || g || '}}') m, array_agg(g::bigint) f, array_agg('whatsapp'::text) c,
                    array_agg('PHONE'::text) a, array_agg('1556' || g) ct, array_agg(1) cl, array_agg(0) su,
                    array_agg(now()) ff, array_agg(now()) d, array_agg(now()) at
                    FROM generate_series({first}, {first + size - 1}) g \\gset""")
                first += size
                script.append(f"\\echo commit {version} {size}")
                script.append(f"EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) EXECUTE {version}_commit("
                              ":'b',:'t',:'m',:'f',:'c',:'a',:'ct',:'cl',:'su',:'ff',:'d',:'at');")
                json = ",:'j'" if json_type(old_record if version == "old" else new_record) else ""
                script.append(f"""SELECT array_agg(id) b, array_agg('wamid.out.' || id) e, array_agg('reply'::text) t,
                    array_agg(0) n, array_agg(channel) c, array_agg(account_id) a, array_agg(contact_id) ct,
                    array_agg(now()) ts, array_agg(1) att, array_agg('["wamid.out.' || id || '"]') j
                    FROM reply_batches WHERE id LIKE '{tag}\\_%' \\gset""")
                script.append(f"\\echo record {version} {size}")
                script.append(f"EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) EXECUTE {version}_record("
                              f":'b',:'e',:'t',:'n',:'c',:'a',:'ct',:'ts',:'b',:'att'{json});")
    out = psql(DB, "\n".join(script) + "\n")
finally:
    psql("postgres", f"DROP DATABASE IF EXISTS {DB};")

times: dict[tuple[str, str, int], list[str]] = {}
label = None
for line in out.splitlines():
    if m := re.match(r"(commit|record) (old|new) (\d+)", line):
        label = (m[1], m[2], int(m[3]))
    elif (m := re.search(r"Execution Time: ([\d.]+) ms", line)) and label:
        times.setdefault(label, []).append(m[1])
print(f"grouped statements, {OLD} (old) against this checkout (new), execution ms over 3 rounds")
print(f"  {'statement':<10} {'group':>6}  {'old':<28} new")
for kind in ("commit", "record"):
    for size in SIZES:
        old, new = times.get((kind, "old", size), []), times.get((kind, "new", size), [])
        print(f"  {kind:<10} {size:>6}  {', '.join(old):<28} {', '.join(new)}")
