//! What a benchmark run stands on besides a `ScratchDatabase`: the real server as a child
//! process on loopback, and a description of the machine.

use std::path::Path;
use std::process::Command;

/// `coachfit serve` (the binary at `coachfit`) on a free loopback port, for `ChildServer`.
pub fn serve(coachfit: &Path, database_url: &str, admin_token: &str) -> Command {
    let mut command = Command::new(coachfit);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--heartbeat-secs", "1"])
        // The fan-out's dashboards all use one coach's token; every other limit stays at
        // its default.
        .args(["--streams-per-token", "100000"])
        .env("COACHFIT_DATABASE_URL", database_url)
        .env("COACHFIT_ADMIN_TOKEN", admin_token)
        .env("RUST_LOG", "info")
        .env_remove("COACHFIT_LOG_FORMAT");
    command
}

/// Cores and memory of this machine, for the report.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<f64>().ok()))
        .map(|kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown memory".into());
    format!("{cores} cores, {memory}")
}
