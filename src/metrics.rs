//! Prometheus metrics: counters and histograms kept in the app (no global
//! recorder), rendered in the text exposition format at `/metrics`. The
//! responder's health rides along: the worker reports it, `/readyz` shows it, and
//! both already share this value.

use crate::responder::ResponderHealth;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds of histogram buckets, seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric lull exports, with its help text.
const HELP: &[(&str, &str, &str)] = &[
    (
        "lull_webhook_requests_total",
        "counter",
        "Webhook requests by channel and HTTP status.",
    ),
    (
        "lull_messages_stored_total",
        "counter",
        "Inbound messages stored (new rows).",
    ),
    (
        "lull_messages_duplicate_total",
        "counter",
        "Inbound messages ignored as platform retries.",
    ),
    (
        "lull_redis_errors_total",
        "counter",
        "Redis calls that failed (messages stay in PostgreSQL).",
    ),
    (
        "lull_batches_claimed_total",
        "counter",
        "Batches claimed by this process.",
    ),
    (
        "lull_batches_resumed_total",
        "counter",
        "Claims that resumed a crashed or handed-back batch.",
    ),
    (
        "lull_batches_superseded_total",
        "counter",
        "Unsent replies dropped because new messages arrived.",
    ),
    (
        "lull_batches_handed_back_total",
        "counter",
        "Batches given back on shutdown.",
    ),
    (
        "lull_replies_sent_total",
        "counter",
        "Replies sent (or logged in dry-run).",
    ),
    (
        "lull_deliveries_failed_total",
        "counter",
        "Replies the platform took, then reported undelivered (WhatsApp's failed status).",
    ),
    (
        "lull_replies_failed_total",
        "counter",
        "Replies that failed for good.",
    ),
    (
        "lull_batches_expired_total",
        "counter",
        "Batches closed unanswered: past the channel's reply window.",
    ),
    (
        "lull_send_retries_total",
        "counter",
        "Send attempts retried after a retryable error.",
    ),
    (
        "lull_batches_restored_total",
        "counter",
        "Batches owning messages (being sent, or generated again) when Redis lost its data, put back to be resumed.",
    ),
    (
        "lull_batches_behind_total",
        "counter",
        "Batches put back unsent behind an older batch of their conversation, unfinished when Redis lost its data, so that replies go out in order.",
    ),
    (
        "lull_messages_reconciled_total",
        "counter",
        "Stored messages Redis had lost, batched again.",
    ),
    (
        "lull_db_group_statements_total",
        "counter",
        "Grouped PostgreSQL writes run, by kind (inbound, opening, sending, sent).",
    ),
    (
        "lull_db_group_requests_total",
        "counter",
        "Requests carried by grouped writes, by kind: divided by the statements, the group size.",
    ),
    (
        "lull_db_group_refused_total",
        "counter",
        "Grouped writes PostgreSQL refused, each request then written alone, by kind.",
    ),
    (
        "lull_responder_errors_total",
        "counter",
        "Responder requests that failed, by responder and kind (unavailable, outage, failed).",
    ),
    (
        "lull_responder_tokens_total",
        "counter",
        "Tokens the responder reported, by model and kind (prompt, completion).",
    ),
    (
        "lull_fallback_replies_total",
        "counter",
        "FALLBACK_REPLY sent for a batch that failed for good.",
    ),
    (
        "lull_handoffs_requested_total",
        "counter",
        "Replies whose responder asked to hand the conversation to a human.",
    ),
    (
        "lull_handoffs_total",
        "counter",
        "Conversations paused for a human agent, by channel and trigger.",
    ),
    (
        "lull_resumes_total",
        "counter",
        "Paused conversations given back to the bot, by channel and trigger.",
    ),
    (
        "lull_conversations_paused",
        "gauge",
        "Conversations a human agent has now (as last counted from PostgreSQL).",
    ),
    (
        "lull_claim_lag_seconds",
        "histogram",
        "From a batch's due time to its claim.",
    ),
    (
        "lull_reply_seconds",
        "histogram",
        "From claim to reply sent.",
    ),
    (
        "lull_generation_seconds",
        "histogram",
        "Time the responder took to write a batch's reply, retries included.",
    ),
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// The process's metrics.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    histograms: Mutex<BTreeMap<&'static str, Histogram>>,
    responder: ResponderHealth,
    gauges: Mutex<BTreeMap<&'static str, i64>>,
}

/// `{k="v",...}`, values escaped as the exposition format asks (backslash, quote,
/// line feed). Built into one string: every counter increment builds its key.
fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        out.push_str(key);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    if !out.is_empty() {
        out.push('}');
    }
    out
}

impl Metrics {
    /// Whether the responder is failing as a whole (`/readyz`).
    pub fn responder_health(&self) -> &ResponderHealth {
        &self.responder
    }

    /// Adds one to a counter.
    pub fn inc(&self, name: &'static str, label_pairs: &[(&str, &str)]) {
        self.add(name, label_pairs, 1);
    }

    /// Adds `n` to a counter.
    pub fn add(&self, name: &'static str, label_pairs: &[(&str, &str)], n: u64) {
        let key = (name, labels(label_pairs));
        if let Ok(mut counters) = self.counters.lock() {
            *counters.entry(key).or_default() += n;
        }
    }

    /// Records one observation, seconds.
    pub fn observe(&self, name: &'static str, seconds: f64) {
        if let Ok(mut histograms) = self.histograms.lock() {
            let h = histograms.entry(name).or_default();
            for (slot, bound) in h.counts.iter_mut().zip(BUCKETS) {
                if seconds <= bound {
                    *slot += 1;
                }
            }
            h.sum += seconds;
            h.count += 1;
        }
    }

    /// Sets a gauge.
    pub fn set_gauge(&self, name: &'static str, value: i64) {
        if let Ok(mut gauges) = self.gauges.lock() {
            gauges.insert(name, value);
        }
    }

    /// A gauge's value (tests, admin); 0 when never set.
    pub fn gauge(&self, name: &'static str) -> i64 {
        self.gauges
            .lock()
            .map(|g| g.get(name).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// A counter's value (tests, admin).
    pub fn counter(&self, name: &'static str, label_pairs: &[(&str, &str)]) -> u64 {
        self.counters
            .lock()
            .map(|c| c.get(&(name, labels(label_pairs))).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = self.counters.lock().map(|c| c.clone()).unwrap_or_default();
        let gauges = self.gauges.lock().map(|g| g.clone()).unwrap_or_default();
        let histograms = self.histograms.lock();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            if *kind == "gauge" {
                let _ = writeln!(out, "{name} {}", gauges.get(name).copied().unwrap_or(0));
            } else if *kind == "counter" {
                for ((n, l), v) in counters.iter().filter(|((n, _), _)| n == name) {
                    let _ = writeln!(out, "{n}{l} {v}");
                }
            } else if let Ok(h) = histograms.as_ref() {
                let empty = Histogram::default();
                let h = h.get(name).unwrap_or(&empty);
                for (count, bound) in h.counts.iter().zip(BUCKETS) {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
                }
                let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", h.sum, h.count);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_their_labels() {
        let m = Metrics::default();
        m.inc("lull_messages_stored_total", &[("channel", "whatsapp")]);
        m.inc("lull_messages_stored_total", &[("channel", "whatsapp")]);
        assert!(
            m.render()
                .contains("lull_messages_stored_total{channel=\"whatsapp\"} 2\n")
        );
    }

    #[test]
    fn label_values_are_escaped_as_the_exposition_format_asks() {
        assert_eq!(
            labels(&[("channel", "whatsapp"), ("reason", "a \"b\"\\c\nd")]),
            "{channel=\"whatsapp\",reason=\"a \\\"b\\\"\\\\c\\nd\"}"
        );
        assert_eq!(labels(&[]), "");
    }

    #[test]
    fn histograms_count_each_observation_in_every_bucket_above_it() {
        let m = Metrics::default();
        m.observe("lull_claim_lag_seconds", 0.003);
        let text = m.render();
        assert!(text.contains("lull_claim_lag_seconds_bucket{le=\"0.002\"} 0\n"));
        assert!(text.contains("lull_claim_lag_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("lull_claim_lag_seconds_count 1\n"));
    }
}
