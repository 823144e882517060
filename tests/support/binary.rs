//! The chat2api binary as a child process, for the tests of flags, signals
//! and the official SDKs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_chat2api");

/// A running binary; killed (if still running) when dropped.
pub struct Running {
    pub child: Child,
    /// The address of its first stderr line, `... listening on http://ADDR`.
    pub addr: String,
    /// Its later stderr lines, as they come.
    pub stderr: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the binary with `args`, without the environment variables that
/// would change its default config, and wait until it listens.
pub fn spawn(args: &[&str]) -> Running {
    let mut command = Command::new(BIN);
    command.args(args);
    spawn_command(command)
}

/// [`spawn`] with the open-file limit, soft and hard, set to `nofile`.
pub fn spawn_with_nofile(nofile: u32, args: &[&str]) -> Running {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args);
    spawn_command(command)
}

fn spawn_command(mut command: Command) -> Running {
    let mut child = command
        .env_remove("CHAT2API_CONFIG")
        .env_remove("OPENAI_API_KEY")
        .env_remove("DEEPSEEK_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let addr = first
        .split("http://")
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .trim()
        .to_owned();
    // Keep draining stderr so that the child never blocks on it.
    let (tx, stderr) = mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Running {
        child,
        addr,
        stderr,
    }
}

/// A new file in the temp dir, unique to this call: tests run on threads
/// of one process, and two of them writing a file of the same name at once
/// would start a gateway with the other's config (a front gateway sent to
/// another test's back one, already stopped: "Connection refused").
pub fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("chat2api-test-{}-{n}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Send `sig` (as `kill` takes it, e.g. `-HUP`) to the child.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Wait for the child to exit, failing the test after `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < limit, "did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The next stderr line containing `needle`, within `limit`.
pub fn stderr_line(run: &Running, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match run.stderr.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => panic!("no stderr line with {needle:?} within {limit:?}"),
        }
    }
}
