//! CoachFit Sync: an event-sourced health-data ingestion service over gRPC.
//!
//! Imports flow one way: `api` → `domain`, `store`. `domain` does no I/O.

pub mod accounts;
pub mod api;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod export;
pub mod feed;
pub mod import;
pub mod metrics;
pub mod proto;
pub mod server;
pub mod store;
