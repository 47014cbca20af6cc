//! The Lua scripts of `lua/`, embedded at build time and called with EVALSHA.
//!
//! fred's `evalsha_with_reload` loads a script again when the server answers
//! NOSCRIPT (after a restart, a failover or SCRIPT FLUSH), so nothing here keeps
//! track of what the server has cached.

use fred::types::scripts::Script;
use include_dir::{Dir, include_dir};

static LUA: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/lua");

/// One embedded script and the argument counts its header documents.
#[derive(Debug, Clone)]
pub struct LuaScript {
    /// File name, for errors and logs.
    pub name: &'static str,
    /// The source, as `redis-cli --eval` runs it.
    pub source: &'static str,
    /// The fred handle (source + SHA1).
    pub script: Script,
}

/// Every script lull runs.
#[derive(Debug, Clone)]
pub struct Scripts {
    /// append.lua
    pub append: LuaScript,
    /// hydrate.lua
    pub hydrate: LuaScript,
    /// claim.lua
    pub claim: LuaScript,
    /// extend.lua
    pub extend: LuaScript,
    /// requeue.lua
    pub requeue: LuaScript,
    /// ack.lua
    pub ack: LuaScript,
    /// restore.lua
    pub restore: LuaScript,
    /// behind.lua
    pub behind: LuaScript,
    /// forget.lua
    pub forget: LuaScript,
    /// flush.lua
    pub flush: LuaScript,
    /// drop_batch.lua
    pub drop_batch: LuaScript,
    /// pause.lua
    pub pause: LuaScript,
    /// resume.lua
    pub resume: LuaScript,
}

fn load(name: &'static str) -> LuaScript {
    // The files are embedded by include_dir!: a missing one is a build mistake,
    // caught by the unit test below before anything ships.
    let source = LUA
        .get_file(name)
        .and_then(|f| f.contents_utf8())
        .unwrap_or_else(|| panic!("lua/{name} is not embedded"));
    LuaScript {
        name,
        source,
        script: Script::from_lua(source),
    }
}

impl Scripts {
    /// Loads every embedded script.
    pub fn new() -> Self {
        Self {
            append: load("append.lua"),
            hydrate: load("hydrate.lua"),
            claim: load("claim.lua"),
            extend: load("extend.lua"),
            requeue: load("requeue.lua"),
            ack: load("ack.lua"),
            restore: load("restore.lua"),
            behind: load("behind.lua"),
            forget: load("forget.lua"),
            flush: load("flush.lua"),
            drop_batch: load("drop_batch.lua"),
            pause: load("pause.lua"),
            resume: load("resume.lua"),
        }
    }

    /// All scripts, for SCRIPT LOAD at start.
    pub fn all(&self) -> [&LuaScript; 13] {
        [
            &self.append,
            &self.hydrate,
            &self.claim,
            &self.extend,
            &self.requeue,
            &self.ack,
            &self.restore,
            &self.behind,
            &self.forget,
            &self.flush,
            &self.drop_batch,
            &self.pause,
            &self.resume,
        ]
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}

impl LuaScript {
    /// The highest `KEYS[i]` and `ARGV[i]` the header documents (`ARGV[3..]` counts as 3).
    pub fn documented_arity(&self) -> (usize, usize) {
        let header = self.source.split("]]").next().unwrap_or_default();
        let mut keys = 0;
        let mut argv = 0;
        for line in header.lines() {
            let line = line.trim_start();
            for (prefix, slot) in [("KEYS[", &mut keys), ("ARGV[", &mut argv)] {
                if let Some(rest) = line.strip_prefix(prefix) {
                    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                    if let Ok(n) = digits.parse::<usize>() {
                        *slot = (*slot).max(n);
                    }
                }
            }
        }
        (keys, argv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lua_file_is_a_known_script() {
        let scripts = Scripts::new();
        let known: Vec<&str> = scripts.all().iter().map(|s| s.name).collect();
        for file in LUA.files() {
            let name = file.path().to_str().unwrap();
            assert!(
                known.contains(&name),
                "lua/{name} is not wired into Scripts"
            );
        }
    }

    #[test]
    fn every_script_opens_with_a_header_naming_keys_argv_and_reply() {
        for script in Scripts::new().all() {
            assert!(
                script.source.starts_with("--[["),
                "{} has no header",
                script.name
            );
            let header = script.source.split("]]").next().unwrap();
            for word in ["KEYS[1]", "ARGV[1]", "Reply"] {
                assert!(header.contains(word), "{} header lacks {word}", script.name);
            }
        }
    }

    #[test]
    fn no_script_reads_the_clock() {
        for script in Scripts::new().all() {
            assert!(
                !script.source.contains("'TIME'"),
                "{} calls TIME",
                script.name
            );
        }
    }
}
