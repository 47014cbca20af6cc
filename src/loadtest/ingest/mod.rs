//! `lull loadtest ingest`: signed WhatsApp webhooks against lull, its replies caught
//! by a fake Graph API ([`FakePlatform`]), and every burst checked end to end.
//!
//! Every conversation (a contact of its own, unique to this run) sends its bursts
//! one after the other: a burst's webhooks in typing order, each text unique in the
//! conversation, then a wait until a reply quotes every one of them (lull's built-in
//! responder quotes the batch it answers, see [`super::bursts`]), up to the settle
//! time. Every Nth webhook is POSTed a second time, as Meta does when it missed the
//! 200: lull must report it as a duplicate and not answer it again. A webhook
//! refused with a 5xx or not delivered is redelivered with backoff ([`post`]). After
//! the last burst the fake is watched a while longer for replies that should not
//! come. Each message's first POST and its answer as stored are timed, so a burst
//! split where its messages reached lull more than a window apart is told from one
//! lull split ([`super::split`]). With `--chaos` the load runs against the command's
//! own lull children while faults are injected ([`super::chaos`]).

mod post;
mod tally;

pub use tally::IngestReport;

use super::bursts::answers_all;
use super::chaos::{ChaosReport, Cluster, FaultRecord};
use super::report::{Examples, Progress};
use super::retry::Backoff;
use super::split::MessageTimes;
use super::webhook::whatsapp_text;
use super::{IngestArgs, LoadtestError, at_least_one, duration};
use crate::fake_platform::FakePlatform;
use post::{Delivered, Poster};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Runs the load against `args.url`; lull must send its replies to `graph`.
pub async fn run(args: &IngestArgs, graph: &FakePlatform) -> Result<IngestReport, LoadtestError> {
    let url = args.url.clone();
    run_against(args, graph, vec![url], None).await
}

/// Runs the load against the lull instances at `urls` (base URLs), each
/// conversation on one of them in turn; with `chaos`, injects its faults meanwhile.
pub async fn run_against(
    args: &IngestArgs,
    graph: &FakePlatform,
    urls: Vec<String>,
    mut chaos: Option<&mut Cluster>,
) -> Result<IngestReport, LoadtestError> {
    at_least_one("conversations", args.conversations.into())?;
    at_least_one("bursts", args.bursts.into())?;
    at_least_one("burst-size", args.burst_size.into())?;
    at_least_one("concurrency", args.concurrency as u64)?;
    at_least_one("instances", urls.len() as u64)?;
    let settle = duration("settle-seconds", args.settle_seconds)?;
    // The chaos run's children have a window of their own, whatever the flag says.
    let window = match chaos.as_deref() {
        Some(cluster) => cluster.window,
        None => duration("window-seconds", args.window_seconds)?,
    };
    let mut webhook_urls = Vec::with_capacity(urls.len());
    for base in urls {
        let url = format!("{}/api/whatsapp/webhook", base.trim_end_matches('/'));
        url::Url::parse(&url).map_err(|error| LoadtestError::Invalid {
            flag: "url",
            reason: error.to_string(),
        })?;
        webhook_urls.push(url);
    }
    // reqwest is built without a default TLS provider (as the app is).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(settle.max(Duration::from_secs(10)))
        .build()?;
    let backoff = Backoff::new(&args.retry);
    let shared = Arc::new(Shared {
        poster: Poster::new(client, webhook_urls, args.app_secret.clone(), backoff),
        phone_number_id: args.phone_number_id.clone(),
        run: rand::random::<u32>() % 10_000_000,
        bursts: args.bursts,
        burst_size: args.burst_size,
        duplicate_every: args.duplicate_every,
        settle,
        window,
        posts: Semaphore::new(args.concurrency),
        first_posts: AtomicU64::new(0),
    });

    let start = Instant::now();
    let replies_before = graph.accepted_replies();
    let progress = progress(shared.clone(), graph.clone(), u64::from(args.conversations));
    let tasks: Vec<_> = (0..args.conversations)
        .map(|index| tokio::spawn(conversation(shared.clone(), graph.clone(), index)))
        .collect();
    let load = async {
        let mut outcomes = Vec::with_capacity(tasks.len());
        for task in tasks {
            // A conversation task only panics on a bug; the report then misses it.
            if let Ok(outcome) = task.await {
                outcomes.push(outcome);
            }
        }
        outcomes
    };
    let (outcomes, faults) = match chaos.as_deref_mut() {
        Some(cluster) => {
            let done = CancellationToken::new();
            let load = async {
                let outcomes = load.await;
                done.cancel();
                outcomes
            };
            tokio::join!(load, cluster.inject(&args.chaos, &done))
        }
        None => (load.await, Vec::new()),
    };
    let p99 = tally::tally(args, &shared, &outcomes, graph, start)
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
    let mut report = tally::tally(args, &shared, &outcomes, graph, start);
    if let Some(cluster) = chaos {
        let bursts = tally::burst_times(&outcomes, graph);
        let records: Vec<FaultRecord> = faults
            .iter()
            .map(|f| FaultRecord::of(f, start, &bursts))
            .collect();
        let replies = graph.accepted_replies() - replies_before;
        let commands = cluster.redis_commands().await.unwrap_or_else(|error| {
            report
                .violations
                .push(format!("Redis command counts: {error}"));
            Default::default()
        });
        let failed = records.iter().filter(|r| r.error.is_some()).count() as u64;
        super::report::violation(
            &mut report.violations,
            failed,
            "faults could not be injected or undone",
            &[],
        );
        report.chaos = Some(ChaosReport::new(
            cluster,
            urls_len(&shared),
            records,
            &commands,
            replies,
        ));
        report.verdict = super::report::Verdict::of(&report.violations);
    }
    Ok(report)
}

fn urls_len(shared: &Shared) -> u32 {
    u32::try_from(shared.poster.instances()).unwrap_or(u32::MAX)
}

/// What every conversation task shares.
struct Shared {
    poster: Poster,
    phone_number_id: String,
    /// Makes this run's contacts and message ids unique on a lull that has seen others.
    run: u32,
    bursts: u32,
    burst_size: u32,
    duplicate_every: u64,
    settle: Duration,
    /// lull's batch window: a split at a longer gap is not a violation.
    window: Duration,
    /// Bounds the POSTs in flight: a burst holds one slot.
    posts: Semaphore,
    /// First POSTs so far, to pick every Nth for a retry.
    first_posts: AtomicU64,
}

/// What one conversation sent and saw.
struct Outcome {
    contact: String,
    /// Per burst, the texts of its messages in typing order.
    texts: Vec<Vec<String>>,
    /// Per burst, when its first webhook was POSTed.
    burst_starts: Vec<Instant>,
    /// Per burst, when its last webhook was answered 200.
    burst_ends: Vec<Option<Instant>>,
    /// Per burst, when each of its messages was first POSTed and stored.
    message_times: Vec<Vec<MessageTimes>>,
    latencies: Vec<Duration>,
    /// Between two messages of a burst being answered as stored.
    gaps: Vec<Duration>,
    last_answer: Option<Instant>,
    errors: u64,
    error_examples: Examples,
    /// Webhooks given up after redeliveries (also counted in `errors`).
    gave_up: u64,
    duplicates_sent: u64,
    duplicates_reported: u64,
    duplicates_missed: Examples,
}

impl Shared {
    /// A WhatsApp-like number, unique to this run and conversation.
    fn contact(&self, index: u32) -> String {
        format!("99{:07}{index:07}", self.run)
    }

    /// Whether the webhook just POSTed is one the platform "retries".
    fn retry_this_one(&self) -> bool {
        let n = self.first_posts.fetch_add(1, Ordering::Relaxed) + 1;
        self.duplicate_every > 0 && n % self.duplicate_every == 0
    }
}

/// The text of a message: unique within its conversation, and free of the quote
/// marks the built-in responder puts around it.
pub fn message_text(burst: u32, message: u32) -> String {
    format!("load test: message {} of burst {}", message + 1, burst + 1)
}

async fn conversation(shared: Arc<Shared>, graph: FakePlatform, index: u32) -> Outcome {
    let mut outcome = Outcome {
        contact: shared.contact(index),
        texts: Vec::new(),
        burst_starts: Vec::new(),
        burst_ends: Vec::new(),
        message_times: Vec::new(),
        latencies: Vec::new(),
        gaps: Vec::new(),
        last_answer: None,
        errors: 0,
        error_examples: Examples::default(),
        gave_up: 0,
        duplicates_sent: 0,
        duplicates_reported: 0,
        duplicates_missed: Examples::default(),
    };
    for burst in 0..shared.bursts {
        let texts: Vec<String> = (0..shared.burst_size)
            .map(|m| message_text(burst, m))
            .collect();
        let end = send_burst(&shared, &mut outcome, index, burst).await;
        outcome.burst_ends.push(end);
        let nth = usize::try_from(burst).unwrap_or(usize::MAX) + 1;
        graph
            .wait_for_deliveries(&outcome.contact, shared.settle, |replies| {
                answers_all(replies, &texts, nth)
            })
            .await;
        outcome.texts.push(texts);
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
    outcome.burst_starts.push(Instant::now());
    let lane = index as usize;
    let mut end = None;
    let mut times = Vec::with_capacity(shared.burst_size as usize);
    for message in 0..shared.burst_size {
        let wamid = format!("wamid.loadtest{}.{index}.{burst}.{message}", shared.run);
        let text = message_text(burst, message);
        let now = crate::time::now_ms() / 1000;
        let body = whatsapp_text(
            &shared.phone_number_id,
            &outcome.contact,
            &wamid,
            now,
            &text,
        );
        let mut timed = MessageTimes {
            posted: Instant::now(),
            stored: None,
        };
        match shared.poster.deliver(lane, &body).await {
            Delivered::Accepted {
                answer,
                latency,
                retries,
            } => {
                outcome.latencies.push(latency);
                // After a redelivery, an earlier attempt may have stored it: then
                // lull rightly reports a duplicate.
                let stored = answer["stored"].as_u64().unwrap_or(0) >= 1
                    || (retries > 0 && answer["duplicates"].as_u64().unwrap_or(0) >= 1);
                if stored {
                    let now = Instant::now();
                    if let Some(previous) = end {
                        outcome.gaps.push(now - previous);
                    }
                    end = Some(now);
                    timed.stored = Some(now);
                } else {
                    outcome.error(|| format!("{wamid}: new, but answered {answer}"));
                }
            }
            Delivered::Refused { reason, .. } => outcome.error(|| format!("{wamid}: {reason}")),
            Delivered::GaveUp { reason, retries } => {
                outcome.gave_up += 1;
                outcome.error(|| format!("{wamid}: given up after {retries} retries: {reason}"));
            }
        }
        times.push(timed);
        if shared.retry_this_one() {
            outcome.duplicates_sent += 1;
            match shared.poster.deliver(lane, &body).await {
                Delivered::Accepted {
                    answer, latency, ..
                } => {
                    outcome.latencies.push(latency);
                    if answer["duplicates"].as_u64().unwrap_or(0) >= 1 {
                        outcome.duplicates_reported += 1;
                    } else {
                        outcome
                            .duplicates_missed
                            .note(|| format!("{wamid}: answered {answer}"));
                    }
                }
                Delivered::Refused { reason, .. } => {
                    outcome.error(|| format!("{wamid} (retry): {reason}"))
                }
                Delivered::GaveUp { reason, .. } => {
                    outcome.gave_up += 1;
                    outcome.error(|| format!("{wamid} (retry): given up: {reason}"));
                }
            }
        }
        outcome.last_answer = Some(Instant::now());
    }
    outcome.message_times.push(times);
    end
}

impl Outcome {
    fn error(&mut self, example: impl FnOnce() -> String) {
        self.errors += 1;
        self.error_examples.note(example);
    }
}

/// About once a second: webhooks sent (and their rate over the last second), replies.
fn progress(shared: Arc<Shared>, graph: FakePlatform, conversations: u64) -> Progress {
    let bursts = conversations * u64::from(shared.bursts);
    let mut last = 0;
    Progress::start("ingest", move |_| {
        let sent = shared.poster.sent.load(Ordering::Relaxed);
        let rate = sent - last;
        last = sent;
        format!(
            "{sent} webhooks sent ({rate}/s), {} retried, {} replies for {bursts} bursts",
            shared.poster.retries.load(Ordering::Relaxed),
            graph.accepted_replies()
        )
    })
}
