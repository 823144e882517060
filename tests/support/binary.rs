//! The chat2api binary as a child process, for the tests of flags, signals
//! and the official SDKs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

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
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("CHAT2API_CONFIG")
        .env_remove("OPENAI_API_KEY")
        .env_remove("DEEPSEEK_API_KEY")
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
