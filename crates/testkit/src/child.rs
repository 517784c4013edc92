//! `coachfit serve` as a child process, found by the address it logs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};

/// A running server child, the address it listens on, and its log lines as they come. It
/// is killed when dropped, so a test or run that fails midway leaves nothing behind.
pub struct ChildServer {
    child: Child,
    pub addr: String,
    pub log: mpsc::Receiver<String>,
}

impl ChildServer {
    /// Starts `command` (a `coachfit serve`, perhaps under a wrapper such as `prlimit`) and
    /// waits until it logs the address it listens on (`addr=…`). Its log is read on a
    /// thread of its own, so the server never blocks on a full pipe.
    pub fn start(mut command: Command) -> anyhow::Result<ChildServer> {
        let mut child =
            command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().context("starting coachfit serve")?;
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let mut server = ChildServer { child, addr: String::new(), log: mpsc::channel().1 };
        server.addr = loop {
            let Some(line) = lines.next() else { bail!("coachfit serve exited before listening") };
            if let Some(rest) = line?.split("addr=").nth(1) {
                break rest.split_whitespace().next().unwrap_or_default().to_string();
            }
        };
        let (sender, log) = mpsc::channel();
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|line| drop(sender.send(line))));
        server.log = log;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends SIGTERM: the server drains and exits.
    pub fn terminate(&self) -> anyhow::Result<()> {
        let sent = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status()?;
        anyhow::ensure!(sent.success(), "kill -TERM failed");
        Ok(())
    }

    /// Waits for the child to exit.
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait()
    }

    /// SIGTERM, then up to ten seconds for the graceful exit, then SIGKILL.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.terminate()?;
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
