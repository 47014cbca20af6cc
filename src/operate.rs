//! The operator's commands: they act on the same Redis and PostgreSQL as the
//! service, with no running server needed, and print text or `--json`.

use crate::cli::{ConversationArgs, PauseArgs, StatsArgs};
use anyhow::Context;
use lull::app::App;
use lull::batch::scripts::Scripts;
use lull::console::{self, ConsoleError, ConversationView};
use lull::forget::{forget, sweep_claimed_batch};
use lull::handoff::{PauseRequest, Trigger};
use lull::message::Conversation;
use lull::store::Stats;

/// A command's outcome: what to print, and whether it found what it was asked for
/// (the process exits 1 when not).
pub struct Outcome {
    /// The text or JSON to print.
    pub output: String,
    /// Whether the conversation (or batch) named was found.
    pub found: bool,
}

/// The conversation the arguments name, or an error that says the expected shape.
fn conversation(args: &ConversationArgs) -> anyhow::Result<Conversation> {
    Conversation::parse(&args.conversation).with_context(|| {
        format!(
            "{:?} is not a conversation: expected <channel>:<account>:<contact>, \
             e.g. whatsapp:<phone_number_id>:<wa_id>",
            args.conversation
        )
    })
}

/// `lull forget <conversation>`: erases it, then waits out a worker that may
/// still write its claimed batch back (the process does not outlive the command).
pub async fn run_forget(app: &App, args: &ConversationArgs) -> anyhow::Result<Outcome> {
    let conversation = conversation(args)?;
    let mut report = forget(app.store(), app.redis_batches(), &conversation).await?;
    if let Some(batch) = report.claimed_batch.take() {
        let lease = app.settings().batch.lease;
        report.rows += sweep_claimed_batch(app.store(), &conversation, &batch, lease).await?;
    }
    let found = report.found();
    let output = if args.json {
        serde_json::to_string_pretty(&report)?
    } else if found {
        format!(
            "forgot {conversation}: {} messages, {} reply batches, {} Redis keys",
            report.rows.messages, report.rows.reply_batches, report.redis_keys
        )
    } else {
        format!("nothing stored for {conversation}")
    };
    Ok(Outcome { output, found })
}

/// Who the command line acts as, in the audit: `cli:<user>`.
fn actor() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME"));
    format!("cli:{}", user.unwrap_or_else(|_| "unknown".into()))
}

/// A console result as a command's outcome: a refusal (unknown, not applicable,
/// a bad request) is printed and exits 1; a store failure is an error.
fn console_outcome<T: serde::Serialize>(
    json: bool,
    result: Result<T, ConsoleError>,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<Outcome> {
    match result {
        Ok(value) => Ok(Outcome {
            output: if json {
                serde_json::to_string_pretty(&value)?
            } else {
                text(&value)
            },
            found: true,
        }),
        Err(error @ (ConsoleError::Store(_) | ConsoleError::Redis(_))) => Err(error.into()),
        Err(error) => Ok(Outcome {
            output: if json {
                serde_json::json!({ "error": error.to_string() }).to_string()
            } else {
                error.to_string()
            },
            found: false,
        }),
    }
}

/// Unix ms as an RFC 3339 time, for text output.
fn at(ms: i64) -> String {
    lull::time::UnixMs(ms)
        .timestamp()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `lull inspect <conversation>`: the console's view of one conversation.
pub async fn run_inspect(app: &App, args: &ConversationArgs) -> anyhow::Result<Outcome> {
    let conversation = conversation(args)?;
    let view = console::inspect(app.store(), app.redis_batches(), &conversation).await;
    console_outcome(args.json, view, render_view)
}

fn render_view(view: &ConversationView) -> String {
    let r = &view.redis;
    let mut out = format!("{}  mode: {:?}\n\nRedis:\n", view.conversation, view.mode);
    let opt = |v: Option<i64>| v.map_or("-".to_owned(), at);
    out += &format!(
        "  collecting {} (deadline {}), in flight {}, locked {}{}\n  agenda {}, batch {}, claims {}, history {} entries\n  ttl ms: {:?}\n",
        r.collecting.len(),
        opt(r.deadline_ms),
        r.in_flight.len(),
        r.locked,
        r.lock_ttl_ms
            .map_or(String::new(), |t| format!(" ({t} ms left)")),
        opt(r.agenda_ms),
        r.batch_id.as_deref().unwrap_or("-"),
        r.claims.map_or("-".into(), |c| c.to_string()),
        r.history_len,
        r.ttl_ms,
    );
    out += "\nTranscript:\n";
    for line in &view.transcript {
        out += &format!(
            "  {} {:<7} {:<8} {}  [{}]\n",
            line.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            line.author,
            line.kind,
            line.text,
            line.batch_id.as_deref().unwrap_or("unanswered"),
        );
    }
    out += "\nReplies:\n";
    for reply in &view.replies {
        out += &format!(
            "  {} {:<10} {} messages, {} attempts{}\n",
            reply.id,
            reply.status.as_str(),
            reply.message_ids.len(),
            reply.attempts,
            reply
                .error_message
                .as_deref()
                .map_or(String::new(), |e| format!(", error: {e}")),
        );
    }
    out
}

/// `lull stats`: the console's stats over a range.
pub async fn run_stats(app: &App, args: &StatsArgs) -> anyhow::Result<Outcome> {
    let range = console::stats_range(
        args.since.as_deref(),
        args.from.as_deref(),
        args.to.as_deref(),
        chrono::Utc::now(),
    );
    let stats = match range {
        Ok((from, to)) => Ok(app.store().stats(from, to).await?),
        Err(error) => Err(error),
    };
    console_outcome(args.json, stats, render_stats)
}

fn render_stats(stats: &Stats) -> String {
    let mut out = format!("{} … {}\n", stats.from.to_rfc3339(), stats.to.to_rfc3339());
    out += "channel      in    out  saved  wait p50  wait p95  failed  handoffs\n";
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.0} ms", v));
    for c in stats.channels.iter().chain([&stats.total]) {
        out += &format!(
            "{:<10} {:>5} {:>6} {:>6} {:>9} {:>9} {:>7} {:>9}\n",
            c.channel,
            c.messages_in,
            c.replies_out,
            c.replies_saved,
            ms(c.wait_p50_ms),
            ms(c.wait_p95_ms),
            c.failures,
            c.handoffs
        );
    }
    for f in &stats.failures {
        out += &format!("failed: {} {} × {}\n", f.channel, f.reason, f.count);
    }
    out
}

/// `lull pause <conversation> [--minutes N]`.
pub async fn run_pause(app: &App, args: &PauseArgs) -> anyhow::Result<Outcome> {
    let conversation = conversation(&args.target)?;
    let request = PauseRequest {
        by: actor(),
        minutes: args.minutes,
        reason: args.reason.clone(),
        trigger: Trigger::Operator,
    };
    let (store, redis, handoff) = (app.store(), app.redis_batches(), &app.handoff());
    let done = console::pause(store, redis, handoff, &conversation, request).await;
    console_outcome(args.target.json, done, |o| o.detail.clone())
}

/// `lull resume <conversation>`.
pub async fn run_resume(app: &App, args: &ConversationArgs) -> anyhow::Result<Outcome> {
    let conversation = conversation(args)?;
    let (store, redis, handoff) = (app.store(), app.redis_batches(), &app.handoff());
    let done = console::resume(store, redis, handoff, &conversation, &actor()).await;
    console_outcome(args.json, done, |o| o.detail.clone())
}

/// `lull flush <conversation>`.
pub async fn run_flush(app: &App, args: &ConversationArgs) -> anyhow::Result<Outcome> {
    let conversation = conversation(args)?;
    let done = console::flush(app.store(), app.redis_batches(), &conversation, &actor()).await;
    console_outcome(args.json, done, |o| {
        format!("{}: {}", o.conversation, o.detail)
    })
}

/// One script, as `lull scripts` shows it.
#[derive(serde::Serialize)]
struct ScriptInfo {
    name: &'static str,
    sha1: String,
    path: String,
    header: Vec<String>,
}

/// `lull scripts`: each Lua script's name, SHA1 (as EVALSHA and `redis-cli SCRIPT
/// LOAD` give it), path and KEYS/ARGV lines.
pub fn run_scripts(json: bool) -> anyhow::Result<String> {
    let scripts = Scripts::new();
    let infos: Vec<ScriptInfo> = scripts
        .all()
        .iter()
        .map(|s| ScriptInfo {
            name: s.name,
            sha1: s.script.sha1().to_string(),
            path: format!("lua/{}", s.name),
            header: s
                .source
                .split("]]")
                .next()
                .unwrap_or_default()
                .lines()
                .map(str::trim_end)
                .filter(|l| {
                    l.trim_start().starts_with("KEYS[") || l.trim_start().starts_with("ARGV[")
                })
                .map(str::to_owned)
                .collect(),
        })
        .collect();
    if json {
        return Ok(serde_json::to_string_pretty(&infos)?);
    }
    let mut out = String::new();
    for info in &infos {
        out += &format!("{}  {}  {}\n", info.name, info.sha1, info.path);
        for line in &info.header {
            out += &format!("    {line}\n");
        }
        out += "\n";
    }
    out += "Run one by hand: redis-cli EVALSHA <sha1> <numkeys> KEYS... ARGV...\n";
    Ok(out)
}
