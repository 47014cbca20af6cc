//! lull's integration tests: real Redis, real PostgreSQL, real HTTP, local fakes of
//! the Graph, Bot and Instagram APIs and of two LLM APIs. One binary, so the crate
//! links once.

mod claim_loop;
mod cluster;
mod fake_platforms;
mod faults;
mod group_commit;
mod helpers;
mod ingest_group;
mod instagram_flow;
mod llm;
mod loadtest;
mod operations;
mod pg_proxy;
mod policy;
mod process;
mod reconcile;
mod redis_server;
mod resume;
mod scripts;
mod telegram_flow;
mod whatsapp_flow;
