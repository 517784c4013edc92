//! What a benchmark run stands on (besides a `ScratchDatabase`): the real server as a child
//! process on loopback, and accounts minted straight in the store.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

/// `coachfit serve` as a child process, on a free loopback port.
pub struct ChildServer {
    child: Child,
    pub addr: String,
}

impl ChildServer {
    pub fn start(database_url: &str, admin_token: &str) -> anyhow::Result<ChildServer> {
        let exe: PathBuf = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0", "--heartbeat-secs", "1"])
            // The fan-out's dashboards all use one coach's token; every other limit stays
            // at its default.
            .args(["--streams-per-token", "100000"])
            .env("COACHFIT_DATABASE_URL", database_url)
            .env("COACHFIT_ADMIN_TOKEN", admin_token)
            .env("RUST_LOG", "info")
            .env_remove("COACHFIT_LOG_FORMAT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting coachfit serve")?;
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let addr = loop {
            let Some(line) = lines.next() else { bail!("coachfit serve exited before listening") };
            if let Some(rest) = line?.split("addr=").nth(1) {
                break rest.split_whitespace().next().unwrap_or_default().to_string();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(ChildServer { child, addr })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGTERM, then wait for the graceful exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        for _ in 0..100 {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill()?;
        Ok(())
    }
}

impl Drop for ChildServer {
    /// A run that fails midway must not leave its server behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Resident memory of a process in MiB, from /proc.
pub fn resident_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
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
