//! Code generated from `proto/coachfit/v1` by build.rs.

#![allow(clippy::all, missing_docs)]

mod entry_update;

pub use entry_update::EntryUpdate;

pub mod v1 {
    tonic::include_proto!("coachfit.v1");
    /// Written by hand; see `entry_update`.
    pub use super::EntryUpdate;
}

/// The encoded descriptors of every CoachFit service, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("coachfit_descriptor");
