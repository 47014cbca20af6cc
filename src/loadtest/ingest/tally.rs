//! The report of `lull loadtest ingest`: what the conversations sent against what
//! the fake Graph API accepted, burst by burst.

use super::{Outcome, Shared};
use crate::fake_platform::FakePlatform;
use crate::loadtest::IngestArgs;
use crate::loadtest::bursts::attribute;
use crate::loadtest::chaos::ChaosReport;
use crate::loadtest::report::{self, Cell, Examples, Latency, Summary, Verdict};
use crate::loadtest::split::{Split, classify};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The outcome of `lull loadtest ingest`.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    /// Conversations driven.
    pub conversations: u32,
    /// Bursts per conversation.
    pub bursts_per_conversation: u32,
    /// Messages per burst.
    pub burst_size: u32,
    /// Webhook POSTs, redeliveries and duplicates included.
    pub webhooks_sent: u64,
    /// POSTs per second, from the first POST to the last answer.
    pub webhooks_per_second: f64,
    /// POST → answer, of the POSTs answered 200.
    pub webhook_latency_ms: Latency,
    /// Between two messages of a burst being stored: lull's window must be longer
    /// for a burst to get one reply.
    pub burst_gap_ms: Latency,
    /// Redeliveries of webhooks refused with a 5xx or not delivered.
    pub webhook_retries: u64,
    /// Webhooks still refused when the retry time ran out.
    pub webhooks_given_up: u64,
    /// Webhooks POSTed a second time, as a platform retry.
    pub duplicates_sent: u64,
    /// Of those, answered 200 with `duplicates` ≥ 1.
    pub duplicates_reported: u64,
    /// Bursts sent.
    pub bursts: u64,
    /// Bursts answered once and whole: every message by one reply, once, in order.
    pub bursts_passed: u64,
    /// Bursts with a message no reply answered.
    pub lost_bursts: u64,
    /// Bursts whose messages were answered by two or more replies, split where the
    /// next message reached lull within the window: a violation.
    pub split_bursts: u64,
    /// Bursts answered by two or more replies, split only where the next message
    /// was stored more than the window after the previous one was POSTed (a pause,
    /// a slow redelivery): lull kept its contract, not a violation.
    pub split_at_long_gaps: u64,
    /// The batch window those splits were judged by, seconds (`--window-seconds`,
    /// or the chaos children's).
    pub window_seconds: f64,
    /// Bursts with a message answered before an earlier message of the
    /// conversation was.
    pub later_part_first: u64,
    /// Bursts with a message answered more than once (a reply, or part of one,
    /// sent again).
    pub resent_bursts: u64,
    /// Messages answered more than once.
    pub messages_answered_twice: u64,
    /// Replies the fake Graph API accepted for this run's conversations.
    pub replies: u64,
    /// Of those, replies that quote none of their conversation's messages (the
    /// target's responder is not the built-in one, or a fallback reply).
    pub unattributed_replies: u64,
    /// Last webhook of a burst answered → its last message answered.
    pub reply_latency_ms: Latency,
    /// Webhooks not stored: refused, given up, or a fresh message not reported stored.
    pub errors: u64,
    /// Requests lull sent that the Graph API would refuse.
    pub graph_rejected: u64,
    /// Replies to recipients this run did not write as (another client's, or an
    /// earlier run's backlog); not a violation.
    pub stray_replies: u64,
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
    /// With `--chaos`: the faults injected and the Redis cost.
    pub chaos: Option<ChaosReport>,
    /// What went wrong.
    pub violations: Vec<String>,
    /// Pass when there is no violation.
    pub verdict: Verdict,
}

impl Summary for IngestReport {
    fn title(&self) -> &'static str {
        "lull loadtest ingest"
    }

    fn rows(&self) -> Vec<(&'static str, Cell)> {
        let mut rows = vec![
            (
                "conversations",
                Cell::Text(format!(
                    "{} × {} bursts × {} messages",
                    self.conversations, self.bursts_per_conversation, self.burst_size
                )),
            ),
            ("webhooks sent", Cell::Count(self.webhooks_sent)),
            ("webhooks/s", Cell::Number(self.webhooks_per_second)),
            ("webhook latency", Cell::Latency(self.webhook_latency_ms)),
            ("gap within a burst", Cell::Latency(self.burst_gap_ms)),
            (
                "retried/given up",
                Cell::Text(format!(
                    "{} / {}",
                    self.webhook_retries, self.webhooks_given_up
                )),
            ),
            (
                "duplicates sent/reported",
                Cell::Text(format!(
                    "{} / {}",
                    self.duplicates_sent, self.duplicates_reported
                )),
            ),
            ("bursts", Cell::Count(self.bursts)),
            ("answered once, whole", Cell::Count(self.bursts_passed)),
            ("lost", Cell::Count(self.lost_bursts)),
            ("split", Cell::Count(self.split_bursts)),
            (
                "split at a gap longer than the window",
                Cell::Count(self.split_at_long_gaps),
            ),
            ("window", Cell::Text(format!("{} s", self.window_seconds))),
            ("later part first", Cell::Count(self.later_part_first)),
            ("resent", Cell::Count(self.resent_bursts)),
            ("replies", Cell::Count(self.replies)),
            (
                "unattributed replies",
                Cell::Count(self.unattributed_replies),
            ),
            (
                "burst → reply latency",
                Cell::Latency(self.reply_latency_ms),
            ),
            ("errors", Cell::Count(self.errors)),
            ("refused by Graph API", Cell::Count(self.graph_rejected)),
            ("stray replies", Cell::Count(self.stray_replies)),
            ("seconds", Cell::Text(format!("{:.1}", self.seconds))),
        ];
        if let Some(chaos) = &self.chaos {
            rows.push(("instances", Cell::Count(chaos.instances.into())));
            rows.push((
                "Redis commands/reply",
                Cell::Text(format!(
                    "{:.1} ({} commands)",
                    chaos.redis_commands_per_reply, chaos.redis_commands
                )),
            ));
            let top: Vec<String> = chaos
                .top_commands_per_reply
                .iter()
                .map(|(command, n)| format!("{command} {n:.1}"))
                .collect();
            rows.push(("top commands/reply", Cell::Text(top.join(", "))));
            if !chaos.child_env.is_empty() {
                rows.push(("child env", Cell::Text(chaos.child_env.join(" "))));
            }
            for fault in &chaos.faults {
                rows.push(("fault", Cell::Text(fault.line())));
            }
            rows.push(("logs", Cell::Text(chaos.logs.clone())));
        }
        rows
    }

    fn violations(&self) -> &[String] {
        &self.violations
    }
}

/// Per-burst counts and a few examples of each violation.
#[derive(Default)]
struct Bursts {
    passed: u64,
    lost: u64,
    split: u64,
    split_at_long_gaps: u64,
    later_first: u64,
    resent: u64,
    answered_twice: u64,
    unattributed: u64,
    lost_examples: Examples,
    split_examples: Examples,
    later_examples: Examples,
    resent_examples: Examples,
    unattributed_examples: Examples,
}

/// The report from what the conversations saw and what the fake received so far.
pub(super) fn tally(
    args: &IngestArgs,
    shared: &Shared,
    outcomes: &[Outcome],
    graph: &FakePlatform,
    start: Instant,
) -> IngestReport {
    let mut received = graph.deliveries();
    let mut webhook_latencies = Vec::new();
    let mut gaps = Vec::new();
    let mut reply_latencies = Vec::new();
    let (mut replies, mut errors, mut gave_up) = (0, 0, 0);
    let (mut duplicates_sent, mut duplicates_reported) = (0, 0);
    let (mut error_examples, mut missed_examples) = (Examples::default(), Examples::default());
    let mut b = Bursts::default();
    let mut last_answer = start;
    for o in outcomes {
        let delivered = received.remove(&o.contact).unwrap_or_default();
        replies += delivered.len() as u64;
        let attribution = attribute(&o.texts, &delivered);
        if attribution.unattributed > 0 {
            b.unattributed += attribution.unattributed as u64;
            let n = attribution.unattributed;
            b.unattributed_examples
                .note(|| format!("{}: {n} replies quote none of its messages", o.contact));
        }
        for (i, burst) in attribution.bursts.iter().enumerate() {
            let name = || format!("{} burst {}", o.contact, i + 1);
            if burst.passed() {
                b.passed += 1;
            }
            if !burst.unanswered.is_empty() {
                b.lost += 1;
                let positions = positions(&burst.unanswered);
                b.lost_examples
                    .note(|| format!("{}: message {positions} never answered", name()));
            }
            let times = o
                .message_times
                .get(i)
                .map(Vec::as_slice)
                .unwrap_or_default();
            match classify(&burst.first_replies, times, shared.window) {
                Split::Whole => {}
                Split::AtLongGaps => b.split_at_long_gaps += 1,
                Split::Violation(boundary) => {
                    b.split += 1;
                    b.split_examples.note(|| {
                        format!(
                            "{}: answered by {} replies, {}",
                            name(),
                            burst.first_answers,
                            boundary.line()
                        )
                    });
                }
            }
            if let Some((m, reply, (eb, em), earlier_reply)) = burst.later_first {
                b.later_first += 1;
                b.later_examples.note(|| {
                    format!(
                        "{}: message {} answered by reply {reply}, before burst {} message {} \
                         (reply {earlier_reply})",
                        name(),
                        m + 1,
                        eb + 1,
                        em + 1
                    )
                });
            }
            if !burst.answered_again.is_empty() {
                b.resent += 1;
                b.answered_twice += burst.answered_again.len() as u64;
                let (m, times) = burst.answered_again[0];
                b.resent_examples
                    .note(|| format!("{}: message {} answered {times} times", name(), m + 1));
            }
            if let (Some(end), Some(answered)) =
                (o.burst_ends.get(i).copied().flatten(), burst.answered_at)
            {
                reply_latencies.push(answered.saturating_duration_since(end));
            }
        }
        webhook_latencies.extend_from_slice(&o.latencies);
        gaps.extend_from_slice(&o.gaps);
        last_answer = last_answer.max(o.last_answer.unwrap_or(start));
        errors += o.errors;
        gave_up += o.gave_up;
        error_examples.extend(o.error_examples.clone());
        missed_examples.extend(o.duplicates_missed.clone());
        duplicates_sent += o.duplicates_sent;
        duplicates_reported += o.duplicates_reported;
    }
    let missed = duplicates_sent - duplicates_reported;
    let stray_replies = received.values().map(|d| d.len() as u64).sum();
    let graph_rejected = graph.refused_requests();
    let mut violations = Vec::new();
    for (count, what, examples) in [
        (
            b.lost,
            "bursts lost: a message never answered",
            &b.lost_examples,
        ),
        (
            b.split,
            "bursts split: answered by two or more replies at a gap within the window",
            &b.split_examples,
        ),
        (
            b.later_first,
            "bursts answered later part first",
            &b.later_examples,
        ),
        (
            b.resent,
            "bursts resent: a message answered twice",
            &b.resent_examples,
        ),
        (
            b.unattributed,
            "replies quote no message (is the target's RESPONDER builtin?)",
            &b.unattributed_examples,
        ),
        (errors, "webhooks were not stored", &error_examples),
        (
            missed,
            "retried webhooks were not reported as duplicates",
            &missed_examples,
        ),
        (
            graph_rejected,
            "requests from lull were refused by the fake Graph API",
            &Examples::default(),
        ),
    ] {
        report::violation(&mut violations, count, what, examples.as_slice());
    }
    let webhooks_sent = shared.poster.sent.load(Ordering::Relaxed);
    IngestReport {
        conversations: args.conversations,
        bursts_per_conversation: args.bursts,
        burst_size: args.burst_size,
        webhooks_sent,
        webhooks_per_second: report::per_second(webhooks_sent, last_answer - start),
        webhook_latency_ms: Latency::of(webhook_latencies),
        burst_gap_ms: Latency::of(gaps),
        webhook_retries: shared.poster.retries.load(Ordering::Relaxed),
        webhooks_given_up: gave_up,
        duplicates_sent,
        duplicates_reported,
        bursts: u64::from(args.conversations) * u64::from(args.bursts),
        bursts_passed: b.passed,
        lost_bursts: b.lost,
        split_bursts: b.split,
        split_at_long_gaps: b.split_at_long_gaps,
        window_seconds: shared.window.as_secs_f64(),
        later_part_first: b.later_first,
        resent_bursts: b.resent,
        messages_answered_twice: b.answered_twice,
        replies,
        unattributed_replies: b.unattributed,
        reply_latency_ms: Latency::of(reply_latencies),
        errors,
        graph_rejected,
        stray_replies,
        seconds: start.elapsed().as_secs_f64(),
        chaos: None,
        verdict: Verdict::of(&violations),
        violations,
    }
}

/// Every burst's (first webhook POSTed, every message answered) times.
pub(super) fn burst_times(
    outcomes: &[Outcome],
    graph: &FakePlatform,
) -> Vec<(Instant, Option<Instant>)> {
    let received = graph.deliveries();
    let mut times = Vec::new();
    for o in outcomes {
        let delivered = received
            .get(&o.contact)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let attribution = attribute(&o.texts, delivered);
        let answered = attribution.bursts.iter().map(|b| b.answered_at);
        times.extend(o.burst_starts.iter().copied().zip(answered));
    }
    times
}

/// 0-based positions as a 1-based list: `2, 3`.
fn positions(list: &[usize]) -> String {
    let shown: Vec<String> = list.iter().map(|p| (p + 1).to_string()).collect();
    shown.join(", ")
}
