//! lull: answer a burst of chat messages with one reply.
//!
//! # Layout
//!
//! The flow of docs/design.md, module by module:
//!
//! - [`config`]: every setting, read once from flags and the environment and checked once
//!   into [`config::Settings`].
//! - [`http`]: the hyper listener: webhook verification, routing, admin, health, metrics.
//! - [`channel`]: per platform, parse a webhook into [`message::InboundMessage`]s, send replies.
//! - [`ingest`]: a parsed message goes to PostgreSQL first, then to its Redis batch.
//! - [`store`]: PostgreSQL: idempotent insert, history, reply batches, reconcile query.
//! - [`batch`]: the Redis side: key layout and one typed wrapper per Lua script in `lua/`.
//! - [`claim_loop`]: the claim loop: claims due conversations and runs [`worker`] on each.
//! - [`worker`]: one claimed batch: context, responder, send with retries, ack.
//! - [`responder`]: history + batch → a reply: built-in, OpenAI-compatible, Anthropic
//!   or a team's own bot (RESPONDER=http, signed requests).
//! - [`reconcile`]: finds stored messages Redis lost and batches them again.
//! - [`handoff`]: a conversation paused for a human agent (echoes, operators, keywords,
//!   the responder) and given back to the bot (operators, idle time).
//! - [`fd_limit`]: at start, the soft open-files limit is raised to the hard one; the
//!   listener's MAX_CONNECTIONS default is derived from it.
//! - [`retention`]: erases texts and payloads older than RETENTION_DAYS; [`forget`]
//!   erases one person's conversation on request.
//! - [`console`]: the operator's view of a conversation and actions on it, for `/admin` and
//!   the CLI.
//! - [`app`]: builds all of the above from the [`config::Settings`] and runs it until shutdown.
//! - [`loadtest`]: `lull loadtest`: load generators that check the promises above under
//!   load, end to end (webhooks → replies) and on the Lua scripts alone (claims).
//! - [`fake_platform`]: a recording fake of the platform APIs, for the load test and the tests.

pub mod app;
pub mod batch;
pub mod channel;
pub mod claim_loop;
pub mod config;
pub mod console;
pub mod constant_time;
pub mod fake_platform;
pub mod fd_limit;
pub mod forget;
pub mod handoff;
pub mod http;
pub mod ingest;
pub mod loadtest;
pub mod log_writer;
pub mod message;
pub mod metrics;
pub mod reconcile;
pub mod responder;
pub mod retention;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod worker;
