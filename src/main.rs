use clap::Parser;

// The service allocates per row and per item (sqlx rows, protobuf, JSON); glibc's malloc
// spent a third of rebuild's time freeing them (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    coachfit::cli::without_transparent_huge_pages();
    coachfit::cli::run(coachfit::config::Cli::parse()).await
}
