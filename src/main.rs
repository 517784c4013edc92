use clap::Parser;

// The service allocates per row and per item (sqlx rows, protobuf, JSON); glibc's malloc
// spent a third of rebuild's time freeing them (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    without_transparent_huge_pages();
    coachfit::cli::run(coachfit::config::Cli::parse()).await
}

/// mimalloc asks for transparent huge pages for its arena, then returns freed parts of it
/// to the kernel: each 2 MiB page touched again is zeroed whole. Without them, a rebuild's
/// system time fell by a quarter (BENCHMARKS.md).
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag on this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
