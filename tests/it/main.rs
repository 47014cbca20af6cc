//! lull's integration tests: real Redis, real PostgreSQL, real HTTP, a local fake
//! Graph API. One binary, so the crate links once.

mod cluster;
mod fake_graph;
mod faults;
mod helpers;
mod policy;
mod process;
mod redis_server;
mod scripts;
mod whatsapp_flow;
