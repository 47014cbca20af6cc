//! lull's integration tests: real Redis, real PostgreSQL, real HTTP, local fakes of
//! the Graph, Bot and Instagram APIs and of two LLM APIs. One binary, so the crate
//! links once.

mod bad_input;
mod behind;
mod bot;
mod breaker;
mod claim_loop;
mod cli;
mod cluster;
mod connections;
mod console;
mod console_browser;
mod console_scripts;
mod console_stats;
mod fake_platforms;
mod faults;
mod group_commit;
mod handoff;
mod helpers;
mod ingest_group;
mod instagram_flow;
mod llm;
mod loadtest;
mod loadtest_chaos;
mod loadtest_verdicts;
mod older_unowned;
mod operations;
mod ordering;
mod pg_proxy;
mod policy;
mod privacy;
mod process;
mod reconcile;
mod redis_server;
mod responder_failures;
mod resume;
mod rich_replies;
mod safe_defaults;
mod scripts;
mod telegram_flow;
mod whatsapp_flow;
