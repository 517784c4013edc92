//! The `coachfit.v1` messages and services: generated from `proto/coachfit/v1` by build.rs,
//! except `EntryUpdate` (`entry_update`, written by hand).

mod entry_update;

pub use entry_update::EntryUpdate;

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("coachfit.v1");
    /// Written by hand; see `entry_update`.
    pub use super::EntryUpdate;
}

/// The encoded descriptors of every CoachFit service, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("coachfit_descriptor");
