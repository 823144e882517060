//! Coding agents from npm that the tests drive through chat2api
//! (`tests/agents/package.json`, versions pinned). As with the SDKs, a test
//! never skips for want of one: a missing install is made on first use, as
//! `.ci/run` does, and a failed install fails the test with the reason.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use super::sdk::{run, ROOT};

static INSTALL: Mutex<()> = Mutex::new(());

/// The `node_modules/.bin` program `bin` of `tests/agents`, installed
/// (`npm ci`) on first use.
pub fn agent(bin: &str) -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(ROOT).join("tests/agents");
    let path = dir.join("node_modules/.bin").join(bin);
    if !path.exists() {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir));
    }
    assert!(path.exists(), "{} did not install", path.display());
    path
}
