//! What CoachFit Sync's tests and its benchmark stand on, kept out of the service: a
//! database of their own (`scratch`), the real server as a child process (`child`), a
//! generated Apple Health export with the days it should show (`health_export`), and a
//! generated CoachFit web-app database with what its import should make of it (`legacy_db`).

pub mod child;
pub mod health_export;
pub mod legacy_db;
pub mod scratch;

pub use child::ChildServer;
pub use scratch::{test_postgres_server, ScratchDatabase};
