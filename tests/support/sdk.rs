//! The official OpenAI SDKs, found where `.ci/run` installs them: a
//! virtualenv in `.venv` and `tests/sdk/node_modules`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub fn required() -> bool {
    std::env::var("CHAT2API_REQUIRE_SDK").is_ok_and(|v| v == "1")
}

pub fn python() -> Option<PathBuf> {
    let venv = Path::new(ROOT).join(".venv/bin/python");
    let py = std::env::var_os("CHAT2API_PYTHON")
        .map(PathBuf::from)
        .unwrap_or(venv);
    let ok = Command::new(&py)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(py);
    }
    assert!(
        !required(),
        "the openai Python SDK is not installed at {}",
        py.display()
    );
    eprintln!("skipped: no Python with the openai SDK (run .ci/run once)");
    None
}

pub fn node() -> Option<PathBuf> {
    let modules = Path::new(ROOT).join("tests/sdk/node_modules/openai");
    if modules.exists() && Command::new("node").arg("--version").output().is_ok() {
        return Some(PathBuf::from("node"));
    }
    assert!(
        !required(),
        "the openai JavaScript SDK is not installed in tests/sdk"
    );
    eprintln!("skipped: no node_modules/openai in tests/sdk (run .ci/run once)");
    None
}

pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
