//! Generates the gRPC code and the reflection descriptor set from `proto/`.
//! protoc comes from `protoc-bin-vendored`, so a fresh machine needs nothing installed.
//! Also rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the files it
//! saw, and would not notice a new one.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=migrations");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let include = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/coachfit/v1/common.proto",
        "proto/coachfit/v1/ingest.proto",
        "proto/coachfit/v1/entry.proto",
        "proto/coachfit/v1/pairing.proto",
        "proto/coachfit/v1/admin.proto",
        "proto/coachfit/v1/roster.proto",
        "proto/coachfit/v1/privacy.proto",
    ];
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("coachfit_descriptor.bin"))
        // Hand-written, so a stream can send an entry encoded once (src/proto/entry_update.rs).
        .extern_path(".coachfit.v1.EntryUpdate", "crate::proto::EntryUpdate")
        .compile_protos(&protos.map(PathBuf::from), &[PathBuf::from("proto"), include])?;
    Ok(())
}
