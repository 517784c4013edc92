//! `coachfit import`: history from elsewhere, written as the reports the app would have
//! sent, so it folds, deduplicates and streams like any other (README: Importing history).

pub mod apple_health;
pub mod legacy;
pub mod sink;
