//! lull's integration tests: real Redis, real PostgreSQL, real HTTP, a local fake
//! Graph API. One binary, so the crate links once.

mod fake_graph;
mod helpers;
mod whatsapp_flow;
mod redis_server;
