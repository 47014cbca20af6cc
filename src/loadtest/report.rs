//! What both load tests print: a summary as an aligned table or one JSON object,
//! latency percentiles, violations with a few examples each, and a progress line on
//! stderr about once a second while they run.

use serde::Serialize;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How many examples a violation line names; the count says how many there were.
const EXAMPLES: usize = 5;

/// Percentiles of a set of durations, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

impl Latency {
    /// The percentiles of `samples` (nearest rank); all zero when there are none.
    pub fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let rank = |q: f64| {
            let i = (q * samples.len() as f64).ceil() as usize;
            millis(samples[i.clamp(1, samples.len()) - 1])
        };
        Self {
            p50: rank(0.50),
            p99: rank(0.99),
            max: millis(samples[samples.len() - 1]),
        }
    }

    fn cell(&self) -> String {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.p50, self.p99, self.max
        )
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Whether a run kept every promise it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No violation.
    Pass,
    /// At least one violation.
    Fail,
}

impl Verdict {
    /// Pass when `violations` is empty.
    pub fn of(violations: &[String]) -> Self {
        if violations.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }
}

/// A value in a summary table.
pub enum Cell {
    /// A count.
    Count(u64),
    /// A rate or size, printed with no decimals.
    Number(f64),
    /// Percentiles.
    Latency(Latency),
    /// Anything else.
    Text(String),
}

/// A load test's typed report, as the CLI prints it.
pub trait Summary: Serialize {
    /// The table's heading.
    fn title(&self) -> &'static str;
    /// Label and value of each table row, in order.
    fn rows(&self) -> Vec<(&'static str, Cell)>;
    /// What went wrong; empty on a pass.
    fn violations(&self) -> &[String];
}

/// The summary as an aligned table (violations listed under it), or as one JSON line.
pub fn render(summary: &impl Summary, json: bool) -> String {
    if json {
        // Serializing plain structs of numbers and strings cannot fail.
        return serde_json::to_string(summary).unwrap_or_default();
    }
    let rows: Vec<(&str, String)> = summary
        .rows()
        .into_iter()
        .map(|(label, cell)| {
            let text = match cell {
                Cell::Count(n) => n.to_string(),
                Cell::Number(x) => format!("{x:.0}"),
                Cell::Latency(l) => l.cell(),
                Cell::Text(t) => t,
            };
            (label, text)
        })
        .collect();
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let mut out = format!("{}\n", summary.title());
    for (label, value) in rows {
        out.push_str(&format!("  {label:<width$}  {value}\n"));
    }
    let violations = summary.violations();
    let verdict = match Verdict::of(violations) {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
    };
    out.push_str(&format!("  {:<width$}  {verdict}\n", "verdict"));
    if !violations.is_empty() {
        out.push_str("violations:\n");
        for violation in violations {
            out.push_str(&format!("  - {violation}\n"));
        }
    }
    out
}

/// Adds a violation line when `count` is not zero: "`count` `what` (e.g. a, b, ...)".
pub fn violation(violations: &mut Vec<String>, count: u64, what: &str, examples: &[String]) {
    if count == 0 {
        return;
    }
    let mut line = format!("{count} {what}");
    if !examples.is_empty() {
        let shown: Vec<&str> = examples.iter().take(EXAMPLES).map(String::as_str).collect();
        line.push_str(&format!(" (e.g. {})", shown.join("; ")));
    }
    violations.push(line);
}

/// Keeps at most a few examples of one kind of violation.
#[derive(Debug, Clone, Default)]
pub struct Examples(Vec<String>);

impl Examples {
    /// Remembers `example` unless enough are kept already.
    pub fn note(&mut self, example: impl FnOnce() -> String) {
        if self.0.len() < EXAMPLES {
            self.0.push(example());
        }
    }

    /// Merges another set, keeping the limit.
    pub fn extend(&mut self, other: Examples) {
        for example in other.0 {
            self.note(|| example);
        }
    }

    /// The examples kept.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// A line on stderr about once a second until dropped.
pub struct Progress {
    task: JoinHandle<()>,
}

impl Progress {
    /// Prints `"{label} {elapsed}s: {line(elapsed)}"` every second; `line` may keep
    /// state (the previous count, for a rate over the last second).
    pub fn start(
        label: &'static str,
        mut line: impl FnMut(Duration) -> String + Send + 'static,
    ) -> Self {
        let start = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            // The first tick is immediate: nothing has happened yet.
            tick.tick().await;
            loop {
                tick.tick().await;
                let elapsed = start.elapsed();
                eprintln!("{label} {:>4.0}s: {}", elapsed.as_secs_f64(), line(elapsed));
            }
        });
        Self { task }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `count / elapsed`, or 0 before any time has passed.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(samples);
        assert_eq!((l.p50, l.p99, l.max), (50.0, 99.0, 100.0));
        assert_eq!(Latency::of(Vec::new()), Latency::default());
        assert_eq!(Latency::of(vec![Duration::from_millis(7)]).p99, 7.0);
    }

    #[test]
    fn a_violation_names_its_count_and_a_few_examples() {
        let mut violations = Vec::new();
        violation(&mut violations, 0, "lost", &[]);
        assert!(violations.is_empty());
        let mut examples = Examples::default();
        for i in 0..10 {
            examples.note(|| format!("c{i}"));
        }
        violation(&mut violations, 10, "bursts lost", examples.as_slice());
        assert_eq!(violations, ["10 bursts lost (e.g. c0; c1; c2; c3; c4)"]);
        assert_eq!(Verdict::of(&violations), Verdict::Fail);
    }
}
