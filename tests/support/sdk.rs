//! The official OpenAI SDKs the tests drive: the Python one in a virtualenv
//! at `.venv`, the JavaScript one in `tests/sdk/node_modules`.
//!
//! A test never skips for want of an SDK (a test that did not run must not
//! report `ok`): a missing one is installed from PyPI or npm on first use,
//! as `.ci/run` does, and a failed install fails the test with the reason.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The official Python SDKs, pinned (as in `.ci/run`).
pub const PYTHON_SDKS: [&str; 4] = [
    "openai==3.63.0",
    "anthropic==2.17.0",
    "openai-agents==0.24.0",
    "langchain-openai==1.8.1",
];

/// Installs run one at a time within a test binary (tests run on threads;
/// cargo runs test binaries one after another).
static INSTALL: Mutex<()> = Mutex::new(());

/// A Python with the `openai`, `anthropic`, `openai-agents` and
/// `langchain-openai` packages: `CHAT2API_PYTHON`,
/// or the project's `.venv`, created and filled on first use.
pub fn python() -> PathBuf {
    if let Some(py) = std::env::var_os("CHAT2API_PYTHON") {
        return PathBuf::from(py);
    }
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let venv = Path::new(ROOT).join(".venv");
    let py = venv.join("bin/python");
    if has_openai(&py) {
        return py;
    }
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    let pip = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--disable-pip-version-check"])
        .args(PYTHON_SDKS)
        .output();
    if !pip.as_ref().is_ok_and(|o| o.status.success()) {
        // No half-made venv for the next run to mistake for a good one.
        let _ = std::fs::remove_dir_all(&venv);
        panic!("cannot install the openai Python SDK from PyPI: {pip:?}");
    }
    assert!(has_openai(&py), "the openai Python SDK did not install");
    py
}

fn has_openai(py: &Path) -> bool {
    Command::new(py)
        .args(["-c", "import openai, anthropic, agents, langchain_openai"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `node`, with `tests/sdk/node_modules` installed (`npm ci`) on first use.
pub fn node() -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(ROOT).join("tests/sdk");
    if !dir.join("node_modules/openai").exists()
        || !dir.join("node_modules/@anthropic-ai/sdk").exists()
    {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir));
    }
    PathBuf::from("node")
}

pub fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} could not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
