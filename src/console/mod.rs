//! The console: what an operator sees of a conversation and the actions they take
//! on it, shared by the admin API (`/admin/api/`) and the command line (`lull
//! inspect`, `lull flush`, ...). Every action is recorded in `console_actions` with
//! who took it (see [`crate::store::NewAction`]).

mod actions;
mod error;
mod handoff;
mod range;
mod view;

pub use actions::{ActionOutcome, drop_collecting, flush, pause, resume, retry};
pub use error::ConsoleError;
pub use range::{parse_since, stats_range};
pub use view::{ConversationView, Mode, inspect, modes_of};
