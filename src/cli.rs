//! Command-line flags (docs/wire.md §1), parsed with lexopt.
//!
//! This module only turns arguments into a [`CliAction`]; it reads no
//! environment and no files. `CHAT2API_CONFIG` is read by
//! [`Config::load`](crate::config::Config::load), and `main` decides what to
//! print and which exit code to use.

use crate::config::Config;
use std::ffi::OsString;
use std::path::PathBuf;

/// Flags that shape a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cli {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--host H`: overrides `host` of the file.
    pub host: Option<String>,
    /// `--port N`: overrides `port` of the file.
    pub port: Option<u16>,
    /// `--check-config`: validate, print the routing table, exit.
    pub check_config: bool,
    /// `--access-log text|json|off`: overrides `accessLog` of the file.
    pub access_log: Option<crate::config::AccessLog>,
    /// `--management-port N`: overrides `management.port` of the file.
    pub management_port: Option<u16>,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliAction {
    /// Serve (or check the config) with these flags.
    Run(Cli),
    /// Print this help text to stdout and exit 0.
    Help(String),
    /// Print this version line to stdout and exit 0.
    Version(String),
}

/// Usage text for `--help`. The vendor variables must match
/// `config::vendors::VENDORS` (a test checks).
pub const HELP: &str = "\
chat2api - an OpenAI-compatible API gateway

Usage: chat2api [OPTIONS]

Options:
      --config FILE   JSON config file (default: $CHAT2API_CONFIG, else the
                      built-in default)
      --host HOST     proxy listen address; overrides \"host\" of the file
      --port PORT     proxy listen port (0 = any free port); overrides \"port\"
      --management-port PORT
                      management listener port (status page, start/stop,
                      statistics, metrics; default 8081, on 127.0.0.1)
      --access-log FORMAT
                      one line per request on stderr: text (default), json
                      or off; overrides \"accessLog\" of the file
      --check-config  validate the config, print the routing table and exit
                      (status 0 when valid, 1 when not)
  -h, --help          print this help and exit
  -V, --version       print the version and exit

Environment:
  CHAT2API_CONFIG     config file to use when --config is not given
  ${VAR}              any string in the config file may refer to a variable
  With no config file, a built-in mock provider serves mock-echo (and
  DeepSeek-V3.2 while DEEPSEEK_API_KEY is unset), and each of these variables
  that is set adds that vendor as a provider:
    OPENAI_API_KEY  DEEPSEEK_API_KEY  GROQ_API_KEY  MISTRAL_API_KEY
    TOGETHER_API_KEY  OPENROUTER_API_KEY  XAI_API_KEY  MOONSHOT_API_KEY
    SILICONFLOW_API_KEY  FIREWORKS_API_KEY  ANTHROPIC_API_KEY (Messages API)

Signals:
  SIGINT, SIGTERM     stop accepting, let requests finish (drain), exit 0
  SIGHUP              restart: re-read the config file
";

/// Parse the arguments (without argv\[0\]). The error is a one-line message
/// for stderr; `main` should add a pointer to `--help`.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<CliAction, String> {
    use lexopt::prelude::*;

    let mut cli = Cli::default();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("config") => cli.config = Some(PathBuf::from(value(&mut parser, "--config")?)),
            Long("host") => {
                let host = value(&mut parser, "--host")?
                    .into_string()
                    .map_err(|_| "--host: the value is not valid UTF-8".to_owned())?;
                cli.host = Some(host);
            }
            Long("port") => cli.port = Some(port(&mut parser, "--port")?),
            Long("management-port") => {
                cli.management_port = Some(port(&mut parser, "--management-port")?)
            }
            Long("access-log") => {
                let raw = value(&mut parser, "--access-log")?;
                cli.access_log = Some(match raw.to_str() {
                    Some("text") => crate::config::AccessLog::Text,
                    Some("json") => crate::config::AccessLog::Json,
                    Some("off") => crate::config::AccessLog::Off,
                    _ => return Err(format!("--access-log: {raw:?} is not text, json or off")),
                });
            }
            Long("check-config") => cli.check_config = true,
            Long("help") | Short('h') => return Ok(CliAction::Help(HELP.to_owned())),
            Long("version") | Short('V') => {
                return Ok(CliAction::Version(format!(
                    "chat2api {}",
                    env!("CARGO_PKG_VERSION")
                )))
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(CliAction::Run(cli))
}

/// A port number for `flag`.
fn port(parser: &mut lexopt::Parser, flag: &str) -> Result<u16, String> {
    let raw = value(parser, flag)?;
    raw.to_str()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("{flag}: {raw:?} is not a port number (0-65535)"))
}

/// The value of option `flag`, with an error that names the flag.
fn value(parser: &mut lexopt::Parser, flag: &str) -> Result<OsString, String> {
    parser.value().map_err(|_| format!("{flag} needs a value"))
}

impl Cli {
    /// Apply `--host` / `--port` on top of the file (flags win).
    pub fn apply(&self, cfg: &mut Config) {
        if let Some(host) = &self.host {
            cfg.host = crate::config::unbracket(host).to_owned();
        }
        if let Some(port) = self.port {
            cfg.port = port;
        }
        if let Some(port) = self.management_port {
            cfg.management.port = port;
        }
        if let Some(format) = self.access_log {
            cfg.access_log = format;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::vendors::VENDORS;

    fn parse(args: &[&str]) -> Result<CliAction, String> {
        parse_args(args.iter().map(OsString::from))
    }

    fn run(args: &[&str]) -> Cli {
        match parse(args) {
            Ok(CliAction::Run(cli)) => cli,
            other => panic!("{args:?} -> {other:?}"),
        }
    }

    #[test]
    fn no_flags() {
        assert_eq!(run(&[]), Cli::default());
    }

    #[test]
    fn every_flag() {
        let cli = run(&[
            "--config",
            "a.json",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--check-config",
            "--management-port",
            "9",
            "--access-log",
            "json",
        ]);
        assert_eq!(
            cli,
            Cli {
                config: Some(PathBuf::from("a.json")),
                host: Some("0.0.0.0".to_owned()),
                port: Some(0),
                check_config: true,
                access_log: Some(crate::config::AccessLog::Json),
                management_port: Some(9),
            }
        );
        assert!(parse(&["--access-log", "loud"]).is_err());
    }

    #[test]
    fn equals_form_and_last_wins() {
        let cli = run(&[
            "--config=a.json",
            "--port=1",
            "--port",
            "65535",
            "--host=::1",
        ]);
        assert_eq!(cli.config, Some(PathBuf::from("a.json")));
        assert_eq!(cli.port, Some(65535));
        assert_eq!(cli.host.as_deref(), Some("::1"));
    }

    #[test]
    fn help_and_version() {
        for flag in ["--help", "-h"] {
            assert_eq!(parse(&[flag]), Ok(CliAction::Help(HELP.to_owned())));
        }
        for flag in ["--version", "-V"] {
            let Ok(CliAction::Version(v)) = parse(&[flag]) else {
                panic!("{flag}");
            };
            assert_eq!(v, format!("chat2api {}", env!("CARGO_PKG_VERSION")));
        }
    }

    #[test]
    fn unknown_flags_and_arguments() {
        let err = parse(&["--bogus"]).expect_err("unknown flag");
        assert!(err.contains("--bogus"), "{err}");
        let err = parse(&["-x"]).expect_err("unknown short flag");
        assert!(err.contains("-x"), "{err}");
        let err = parse(&["serve"]).expect_err("stray argument");
        assert!(err.contains("serve"), "{err}");
        assert!(parse(&["--check-config=yes"]).is_err());
    }

    #[test]
    fn bad_port() {
        for bad in ["65536", "-1", "+80", "http", "", "8080x"] {
            let err = parse(&["--port", bad]).expect_err(bad);
            assert!(err.starts_with("--port"), "{err}");
        }
    }

    #[test]
    fn missing_values() {
        for flag in ["--config", "--host", "--port"] {
            let err = parse(&[flag]).expect_err(flag);
            assert_eq!(err, format!("{flag} needs a value"));
        }
    }

    #[test]
    fn apply_overrides_the_file() {
        let mut cfg = Config::builtin(&|_| None);
        run(&[]).apply(&mut cfg);
        assert_eq!((cfg.host.as_str(), cfg.port), ("127.0.0.1", 8080));
        run(&["--host", "[::1]", "--port", "0"]).apply(&mut cfg);
        assert_eq!((cfg.host.as_str(), cfg.port), ("::1", 0));
        cfg.validate().expect("still valid");
    }

    #[test]
    fn help_lists_every_flag_and_vendor_variable() {
        for needle in [
            "--config",
            "--host",
            "--port",
            "--check-config",
            "--help",
            "--version",
            "CHAT2API_CONFIG",
        ] {
            assert!(HELP.contains(needle), "{needle}");
        }
        for v in VENDORS {
            assert!(HELP.contains(v.env_var), "{}", v.env_var);
        }
    }
}
