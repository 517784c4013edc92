//! The behavioural suite: every test drives a real server on 127.0.0.1:0 over gRPC.
//! Each scenario is written once and run against every backend by `each_backend!`.

mod common;
mod database;

mod access_log;
mod admin;
mod auth;
mod cli;
mod column_types;
mod concurrency;
mod crash;
mod crowd;
mod entries;
mod hostile;
mod hostile_bytes;
mod import;
mod ingest;
mod legacy_import;
mod limits;
mod matrix;
mod metrics;
mod pairing;
mod priority;
mod privacy;
mod reflection;
mod roster;
mod scale_out;
mod stream;
mod tls;
mod upgrade;
mod web;
mod workouts;
