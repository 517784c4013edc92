//! What CoachFit Sync's tests and its benchmark stand on, kept out of the service: a
//! database of their own (`scratch`) and the real server as a child process (`child`).

pub mod child;
pub mod scratch;

pub use child::ChildServer;
pub use scratch::{test_postgres_server, ScratchDatabase};
