//! The operator's commands: they act on the same Redis and PostgreSQL as the
//! service, with no running server needed, and print text or `--json`.

use crate::cli::ConversationArgs;
use anyhow::Context;
use lull::app::App;
use lull::forget::{forget, sweep_claimed_batch};
use lull::message::Conversation;

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
