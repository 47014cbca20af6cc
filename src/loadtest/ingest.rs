//! `lull loadtest ingest`: signed WhatsApp webhooks against a running lull, its
//! replies caught by a fake Graph API ([`FakePlatform`]), and the outcome checked end to end.
//!
//! Every conversation (a contact of its own, unique to this run) sends its bursts
//! one after the other: a burst's webhooks in typing order, then a wait for that
//! burst's reply, up to the settle time. Every Nth webhook is POSTed a second time,
//! as Meta does when it missed the 200: lull must report it as a duplicate and not
//! answer it again. After the last burst the fake is watched a while longer for
//! replies that should not come.

use super::report::{self, Cell, Examples, Latency, Progress, Summary, Verdict};
use super::webhook::{sign, whatsapp_text};
use super::{IngestArgs, LoadtestError, at_least_one, duration};
use crate::channel::meta::SIGNATURE_HEADER;
use crate::channel::transport::chain;
use crate::config::Secret;
use crate::fake_platform::FakePlatform;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The outcome of `lull loadtest ingest`.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    /// Conversations driven.
    pub conversations: u32,
    /// Bursts per conversation.
    pub bursts_per_conversation: u32,
    /// Messages per burst.
    pub burst_size: u32,
    /// Webhook POSTs, retries included.
    pub webhooks_sent: u64,
    /// POSTs per second, from the first POST to the last answer.
    pub webhooks_per_second: f64,
    /// POST → answer.
    pub webhook_latency_ms: Latency,
    /// Between two messages of a burst being stored: lull's window must be longer
    /// for a burst to get one reply.
    pub burst_gap_ms: Latency,
    /// Webhooks POSTed a second time, as a platform retry.
    pub duplicates_sent: u64,
    /// Of those, answered 200 with `duplicates` ≥ 1.
    pub duplicates_reported: u64,
    /// Bursts sent (each should get one reply).
    pub bursts: u64,
    /// Replies the fake Graph API received for this run's conversations.
    pub replies: u64,
    /// Last webhook of a burst answered → its reply received.
    pub reply_latency_ms: Latency,
    /// Bursts without a reply.
    pub lost: u64,
    /// Conversations with more replies than bursts.
    pub answered_twice: u64,
    /// Webhooks not answered 200 (or a fresh message not reported stored).
    pub errors: u64,
    /// Requests lull sent that the Graph API would refuse.
    pub graph_rejected: u64,
    /// Replies to recipients this run did not write as (another client's, or an
    /// earlier run's backlog); not a violation.
    pub stray_replies: u64,
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
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
        vec![
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
                "duplicates sent/reported",
                Cell::Text(format!(
                    "{} / {}",
                    self.duplicates_sent, self.duplicates_reported
                )),
            ),
            ("bursts", Cell::Count(self.bursts)),
            ("replies", Cell::Count(self.replies)),
            (
                "burst → reply latency",
                Cell::Latency(self.reply_latency_ms),
            ),
            ("lost", Cell::Count(self.lost)),
            ("answered twice", Cell::Count(self.answered_twice)),
            ("errors", Cell::Count(self.errors)),
            ("refused by Graph API", Cell::Count(self.graph_rejected)),
            ("stray replies", Cell::Count(self.stray_replies)),
            ("seconds", Cell::Text(format!("{:.1}", self.seconds))),
        ]
    }

    fn violations(&self) -> &[String] {
        &self.violations
    }
}

/// Runs the load against `args.url`; lull must send its replies to `graph`.
pub async fn run(args: &IngestArgs, graph: &FakePlatform) -> Result<IngestReport, LoadtestError> {
    at_least_one("conversations", args.conversations.into())?;
    at_least_one("bursts", args.bursts.into())?;
    at_least_one("burst-size", args.burst_size.into())?;
    at_least_one("concurrency", args.concurrency as u64)?;
    let settle = duration("settle-seconds", args.settle_seconds)?;
    let webhook_url = format!("{}/api/whatsapp/webhook", args.url.trim_end_matches('/'));
    url::Url::parse(&webhook_url).map_err(|error| LoadtestError::Invalid {
        flag: "url",
        reason: error.to_string(),
    })?;
    // reqwest is built without a default TLS provider (as the app is).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(settle.max(Duration::from_secs(10)))
        .build()?;
    let shared = Arc::new(Shared {
        client,
        url: webhook_url,
        secret: args.app_secret.clone(),
        phone_number_id: args.phone_number_id.clone(),
        run: rand::random::<u32>() % 10_000_000,
        bursts: args.bursts,
        burst_size: args.burst_size,
        duplicate_every: args.duplicate_every,
        settle,
        posts: Semaphore::new(args.concurrency),
        sent: AtomicU64::new(0),
        first_posts: AtomicU64::new(0),
    });

    let start = Instant::now();
    let progress = progress(shared.clone(), graph.clone(), u64::from(args.conversations));
    let tasks: Vec<_> = (0..args.conversations)
        .map(|index| tokio::spawn(conversation(shared.clone(), graph.clone(), index)))
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        // A conversation task only panics on a bug; the report then misses it.
        if let Ok(outcome) = task.await {
            outcomes.push(outcome);
        }
    }
    let p99 = tally(args, &shared, &outcomes, graph, start)
        .reply_latency_ms
        .p99;
    // Watch for replies that should not come: twice the slowest reply lull gave,
    // time enough for a wrong second batch, never more than the settle time.
    let watch = if p99 > 0.0 {
        Duration::from_secs_f64(p99 * 2.0 / 1000.0).min(settle)
    } else {
        settle
    };
    tokio::time::sleep(watch).await;
    drop(progress);
    Ok(tally(args, &shared, &outcomes, graph, start))
}

/// What every conversation task shares.
struct Shared {
    client: reqwest::Client,
    url: String,
    secret: Option<Secret>,
    phone_number_id: String,
    /// Makes this run's contacts and message ids unique on a lull that has seen others.
    run: u32,
    bursts: u32,
    burst_size: u32,
    duplicate_every: u64,
    settle: Duration,
    /// Bounds the POSTs in flight: a burst holds one slot.
    posts: Semaphore,
    sent: AtomicU64,
    /// First POSTs so far, to pick every Nth for a retry.
    first_posts: AtomicU64,
}

/// What one conversation saw.
struct Outcome {
    contact: String,
    /// Per burst, when its last webhook was answered 200.
    burst_ends: Vec<Option<Instant>>,
    latencies: Vec<Duration>,
    /// Between two messages of a burst being answered as stored.
    gaps: Vec<Duration>,
    last_answer: Option<Instant>,
    errors: u64,
    error_examples: Examples,
    duplicates_sent: u64,
    duplicates_reported: u64,
    duplicates_missed: Examples,
}

impl Shared {
    /// A WhatsApp-like number, unique to this run and conversation.
    fn contact(&self, index: u32) -> String {
        format!("99{:07}{index:07}", self.run)
    }

    /// POSTs one webhook body; lull's JSON answer when it said 200.
    async fn post(&self, body: &[u8]) -> (Duration, Result<Value, String>) {
        let mut request = self
            .client
            .post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, sign(secret, body));
        }
        let start = Instant::now();
        let answer = async {
            let response = request
                .body(body.to_vec())
                .send()
                .await
                .map_err(|e| chain(&e))?;
            let status = response.status();
            let text = response.text().await.map_err(|e| chain(&e))?;
            if status != reqwest::StatusCode::OK {
                return Err(format!("answered {status}: {text}"));
            }
            serde_json::from_str(&text).map_err(|_| format!("answered 200 with {text}"))
        }
        .await;
        self.sent.fetch_add(1, Ordering::Relaxed);
        (start.elapsed(), answer)
    }

    /// Whether the webhook just POSTed is one the platform "retries".
    fn retry_this_one(&self) -> bool {
        let n = self.first_posts.fetch_add(1, Ordering::Relaxed) + 1;
        self.duplicate_every > 0 && n % self.duplicate_every == 0
    }
}

async fn conversation(shared: Arc<Shared>, graph: FakePlatform, index: u32) -> Outcome {
    let mut outcome = Outcome {
        contact: shared.contact(index),
        burst_ends: Vec::new(),
        latencies: Vec::new(),
        gaps: Vec::new(),
        last_answer: None,
        errors: 0,
        error_examples: Examples::default(),
        duplicates_sent: 0,
        duplicates_reported: 0,
        duplicates_missed: Examples::default(),
    };
    for burst in 0..shared.bursts {
        let end = send_burst(&shared, &mut outcome, index, burst).await;
        outcome.burst_ends.push(end);
        let replies = usize::try_from(burst).unwrap_or(usize::MAX) + 1;
        graph
            .wait_for_reply(&outcome.contact, replies, shared.settle)
            .await;
    }
    outcome
}

/// POSTs one burst's webhooks in typing order (and the chosen ones again); returns
/// when its last webhook was answered as stored.
async fn send_burst(
    shared: &Shared,
    outcome: &mut Outcome,
    index: u32,
    burst: u32,
) -> Option<Instant> {
    // One slot for the whole burst: were each POST to queue for a slot on its own,
    // the gaps between a burst's messages would outgrow lull's window under load,
    // and lull would rightly answer the burst in two replies. The semaphore is
    // never closed, so acquiring cannot fail.
    let _slot = shared.posts.acquire().await;
    let mut end = None;
    for message in 0..shared.burst_size {
        let wamid = format!("wamid.loadtest{}.{index}.{burst}.{message}", shared.run);
        let text = format!("load test: message {} of burst {}", message + 1, burst + 1);
        let now = crate::time::now_ms() / 1000;
        let body = whatsapp_text(
            &shared.phone_number_id,
            &outcome.contact,
            &wamid,
            now,
            &text,
        );
        let (latency, answer) = shared.post(&body).await;
        outcome.latencies.push(latency);
        match answer {
            Ok(answer) if answer["stored"].as_u64().unwrap_or(0) >= 1 => {
                let now = Instant::now();
                if let Some(previous) = end {
                    outcome.gaps.push(now - previous);
                }
                end = Some(now);
            }
            Ok(answer) => outcome.error(|| format!("{wamid}: new, but answered {answer}")),
            Err(error) => outcome.error(|| format!("{wamid}: {error}")),
        }
        if shared.retry_this_one() {
            outcome.duplicates_sent += 1;
            let (latency, answer) = shared.post(&body).await;
            outcome.latencies.push(latency);
            match answer {
                Ok(answer) if answer["duplicates"].as_u64().unwrap_or(0) >= 1 => {
                    outcome.duplicates_reported += 1;
                }
                Ok(answer) => outcome
                    .duplicates_missed
                    .note(|| format!("{wamid}: answered {answer}")),
                Err(error) => outcome.error(|| format!("{wamid} (retry): {error}")),
            }
        }
        outcome.last_answer = Some(Instant::now());
    }
    end
}

impl Outcome {
    fn error(&mut self, example: impl FnOnce() -> String) {
        self.errors += 1;
        self.error_examples.note(example);
    }
}

/// The report from what the conversations saw and what the fake received so far.
fn tally(
    args: &IngestArgs,
    shared: &Shared,
    outcomes: &[Outcome],
    graph: &FakePlatform,
    start: Instant,
) -> IngestReport {
    let mut received = graph.reply_times();
    let bursts_each = args.bursts as usize;
    let mut webhook_latencies = Vec::new();
    let mut gaps = Vec::new();
    let mut reply_latencies = Vec::new();
    let (mut replies, mut lost, mut twice, mut errors) = (0, 0, 0, 0);
    let (mut duplicates_sent, mut duplicates_reported) = (0, 0);
    let (mut lost_examples, mut twice_examples) = (Examples::default(), Examples::default());
    let (mut error_examples, mut missed_examples) = (Examples::default(), Examples::default());
    let mut last_answer = start;
    for o in outcomes {
        let times = received.remove(&o.contact).unwrap_or_default();
        replies += times.len() as u64;
        if times.len() < bursts_each {
            lost += (bursts_each - times.len()) as u64;
            lost_examples
                .note(|| format!("{}: {} of {bursts_each} replies", o.contact, times.len()));
        }
        if times.len() > bursts_each {
            twice += 1;
            // A gap longer than lull's window splits a burst in two, rightly.
            let longest_gap = o.gaps.iter().max().copied().unwrap_or_default();
            twice_examples.note(|| {
                format!(
                    "{}: {} replies to {bursts_each} bursts, longest gap {} ms",
                    o.contact,
                    times.len(),
                    longest_gap.as_millis()
                )
            });
        }
        // The nth reply answers the nth burst: bursts wait for each other's replies.
        for (end, reply) in o.burst_ends.iter().zip(&times) {
            if let Some(end) = end {
                reply_latencies.push(reply.saturating_duration_since(*end));
            }
        }
        webhook_latencies.extend_from_slice(&o.latencies);
        gaps.extend_from_slice(&o.gaps);
        last_answer = last_answer.max(o.last_answer.unwrap_or(start));
        errors += o.errors;
        error_examples.extend(o.error_examples.clone());
        missed_examples.extend(o.duplicates_missed.clone());
        duplicates_sent += o.duplicates_sent;
        duplicates_reported += o.duplicates_reported;
    }
    let missed = duplicates_sent - duplicates_reported;
    let stray_replies = received.values().map(|t| t.len() as u64).sum();
    let graph_rejected = graph.refused_requests();
    let mut violations = Vec::new();
    report::violation(
        &mut violations,
        lost,
        "bursts got no reply",
        lost_examples.as_slice(),
    );
    report::violation(
        &mut violations,
        twice,
        "conversations were answered more than once per burst",
        twice_examples.as_slice(),
    );
    report::violation(
        &mut violations,
        errors,
        "webhooks were not answered 200 as stored",
        error_examples.as_slice(),
    );
    report::violation(
        &mut violations,
        missed,
        "retried webhooks were not reported as duplicates",
        missed_examples.as_slice(),
    );
    report::violation(
        &mut violations,
        graph_rejected,
        "requests from lull were refused by the fake Graph API",
        &[],
    );
    let webhooks_sent = shared.sent.load(Ordering::Relaxed);
    IngestReport {
        conversations: args.conversations,
        bursts_per_conversation: args.bursts,
        burst_size: args.burst_size,
        webhooks_sent,
        webhooks_per_second: report::per_second(webhooks_sent, last_answer - start),
        webhook_latency_ms: Latency::of(webhook_latencies),
        burst_gap_ms: Latency::of(gaps),
        duplicates_sent,
        duplicates_reported,
        bursts: u64::from(args.conversations) * u64::from(args.bursts),
        replies,
        reply_latency_ms: Latency::of(reply_latencies),
        lost,
        answered_twice: twice,
        errors,
        graph_rejected,
        stray_replies,
        seconds: start.elapsed().as_secs_f64(),
        verdict: Verdict::of(&violations),
        violations,
    }
}

/// About once a second: webhooks sent (and their rate over the last second), replies.
fn progress(shared: Arc<Shared>, graph: FakePlatform, conversations: u64) -> Progress {
    let bursts = conversations * u64::from(shared.bursts);
    let mut last = 0;
    Progress::start("ingest", move |_| {
        let sent = shared.sent.load(Ordering::Relaxed);
        let rate = sent - last;
        last = sent;
        format!(
            "{sent} webhooks sent ({rate}/s), {} of {bursts} replies",
            graph.accepted_replies()
        )
    })
}
