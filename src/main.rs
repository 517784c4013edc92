use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    coachfit::cli::run(coachfit::config::Cli::parse()).await
}
