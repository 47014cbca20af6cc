//! CPU time by process, read from /proc, so a benchmark can say what one reply or
//! one webhook costs. On a shared machine throughput drifts with the neighbours'
//! load (15-50 % from one hour to the next here); CPU time per unit of work drifts
//! far less, so it is what two versions of the code are compared by.
//!
//! Counted: this process (lull with the benchmark's client and fake Graph API), every
//! `postgres` process and every `redis-server` process on the machine (the benchmarks
//! run against PostgreSQL and Redis on localhost; elsewhere those columns read 0),
//! and the machine's idle time.

use std::time::Duration;

/// Linux reports process times in USER_HZ, fixed at 100 per second for user space.
const TICKS_PER_SECOND: u64 = 100;

/// CPU time used so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    own: u64,
    postgres: u64,
    redis: u64,
    idle: u64,
}

impl Cpu {
    /// Reads the counters now.
    pub fn now() -> Self {
        let mut cpu = Cpu {
            own: ticks("/proc/self/stat").unwrap_or(0),
            idle: idle_ticks().unwrap_or(0),
            ..Cpu::default()
        };
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return cpu;
        };
        for entry in dir.flatten() {
            let path = entry.path();
            let counter = match std::fs::read_to_string(path.join("comm")).as_deref() {
                Ok("postgres\n") => &mut cpu.postgres,
                Ok("redis-server\n") => &mut cpu.redis,
                _ => continue,
            };
            // A process may exit between the listing and the read: it counts as 0.
            *counter += ticks(path.join("stat")).unwrap_or(0);
        }
        cpu
    }

    /// The CPU time used since `earlier`, per process kind.
    pub fn since(&self, earlier: &Cpu) -> Used {
        let d = |now: u64, then: u64| {
            Duration::from_millis(now.saturating_sub(then) * 1000 / TICKS_PER_SECOND)
        };
        Used {
            own: d(self.own, earlier.own),
            postgres: d(self.postgres, earlier.postgres),
            redis: d(self.redis, earlier.redis),
            idle: d(self.idle, earlier.idle),
        }
    }
}

/// CPU time used over a span of the benchmark.
#[derive(Debug, Clone, Copy)]
pub struct Used {
    /// This process: lull, the benchmark's load and the fake Graph API.
    pub own: Duration,
    /// Every PostgreSQL process.
    pub postgres: Duration,
    /// Every Redis process.
    pub redis: Duration,
    /// The machine's idle time, summed over its cores.
    pub idle: Duration,
}

impl Used {
    /// Prints one table row per process kind: CPU microseconds per unit of work.
    pub fn print_per(&self, units: u64, unit: &str) {
        let per = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1e6 / units.max(1) as f64);
        let total = self.own + self.postgres + self.redis;
        super::row(&format!("CPU µs/{unit}: lull + bench"), per(self.own));
        super::row(&format!("CPU µs/{unit}: postgres"), per(self.postgres));
        super::row(&format!("CPU µs/{unit}: redis"), per(self.redis));
        super::row(&format!("CPU µs/{unit}: all three"), per(total));
        super::row(
            "machine idle (core-s)",
            format!("{:.1}", self.idle.as_secs_f64()),
        );
    }
}

/// utime + stime of one process, in ticks (fields 14 and 15 of its stat line, counted
/// after the command name, which may hold spaces and ends with the last ')').
fn ticks(stat: impl AsRef<std::path::Path>) -> Option<u64> {
    let line = std::fs::read_to_string(stat).ok()?;
    let mut fields = line[line.rfind(')')? + 2..].split(' ');
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The machine's idle + iowait time over all cores, in ticks (first line of /proc/stat).
fn idle_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut fields = stat.lines().next()?.split_whitespace().skip(1);
    let idle: u64 = fields.nth(3)?.parse().ok()?;
    let iowait: u64 = fields.next()?.parse().ok()?;
    Some(idle + iowait)
}
