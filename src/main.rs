//! The `chat2api` binary: flags, config, runtime and signals. Everything it
//! serves lives in the library.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chat2api::cli::{self, CliAction};
use chat2api::config::Config;
use chat2api::management::control::{authority, Loader, ProxyControl};
use chat2api::management::Management;
use chat2api::server::Listener;
use chat2api::stats::Stats;

/// At exit, how long a management call in flight may take to finish.
const MANAGEMENT_DRAIN: Duration = Duration::from_secs(1);
/// The management listener is small: one worker thread.
const MANAGEMENT_WORKERS: usize = 1;

/// mimalloc, unless built with `--features system-alloc` (for heap
/// profilers such as valgrind's DHAT, which see only the C allocator;
/// `bench/allocs.sh`).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often freed memory is handed back to the OS (see `return_memory`).
const MEMORY_RETURN_INTERVAL: Duration = Duration::from_secs(5);

/// mimalloc keeps the pages of freed blocks for reuse and returns them to
/// the OS (purges) only later, and only when the thread that freed them
/// calls into it again: after a burst of large bodies, an idle gateway
/// would hold that memory for good. A thread of its own asks mimalloc every
/// few seconds to purge what is due, process-wide (its arenas, where large
/// and huge blocks live).
fn return_memory() {
    let spawned = std::thread::Builder::new()
        .name("chat2api-memory".into())
        .spawn(|| loop {
            std::thread::sleep(MEMORY_RETURN_INTERVAL);
            // SAFETY: mi_collect takes no pointers and may be called from
            // any thread at any time (mimalloc.h: "Eagerly free memory").
            unsafe { libmimalloc_sys::mi_collect(true) };
        });
    if let Err(e) = spawned {
        eprintln!("chat2api: warning: memory is not returned to the OS after bursts: {e}");
    }
}

fn main() -> ExitCode {
    let cli = match cli::parse_args(std::env::args_os().skip(1)) {
        Ok(CliAction::Run(cli)) => cli,
        Ok(CliAction::Help(text)) | Ok(CliAction::Version(text)) => {
            print_out(&format!("{text}\n"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("chat2api: {e}\nTry 'chat2api --help' for the options.");
            return ExitCode::from(2);
        }
    };
    let config = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chat2api: {e}");
            return ExitCode::from(1);
        }
    };
    if cli.check_config {
        print_out(&config.routing_table());
        return ExitCode::SUCCESS;
    }
    // Every client connection, and every upstream connection of a proxied
    // stream, is a file descriptor: take the hard limit rather than a soft
    // limit (often 1024) far below `maxConnections`, as nginx's
    // `worker_rlimit_nofile` and Go's runtime do.
    return_memory();
    chat2api::stats::access::set_format(config.access_log);
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("chat2api: cannot raise the open-file limit: {e}");
    }
    // The proxy's workers bring their own runtimes (`server`): this one
    // only waits for signals and runs the quick actions they trigger.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat2api: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat2api: {e}");
            ExitCode::from(1)
        }
    }
}

/// Writes `text` to stdout. A reader that stopped reading (`chat2api --help
/// | head`) is no error: what it did not read it did not want, and the
/// process must not panic on it (as `print!` does on `EPIPE`).
fn print_out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// A bind error that says which flag moves the listener elsewhere.
fn with_port_hint(message: String, flag: &str) -> String {
    if message.contains("in use") {
        format!("{message}; choose another port with {flag}")
    } else {
        message
    }
}

/// Whether `host` only listens on this machine.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn load(cli: &cli::Cli) -> Result<Config, String> {
    let mut config = Config::load(cli.config.as_deref()).map_err(|e| e.to_string())?;
    cli.apply(&mut config);
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// Serve until SIGINT or SIGTERM; SIGHUP re-reads the config and restarts
/// the listener (docs/wire.md §1). The management listener, when enabled, lives as
/// long as the process: the proxy may be stopped and started under it.
async fn run(cli: cli::Cli, config: Config) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: a signal sent as soon as the address is printed must
    // find them installed, or it would kill the process outright.
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let stats = Arc::new(Stats::new());
    let loader: Loader = Box::new(move || load(&cli));
    let open_to_all = !config.auth_enabled() && !is_loopback(&config.host);
    let settings = config.management.clone();
    let mut limits = config.limits.clone();
    limits.drain_timeout = MANAGEMENT_DRAIN;
    let control = Arc::new(ProxyControl::new(config, stats, loader));
    control
        .start()
        .await
        .map_err(|e| with_port_hint(e.to_string(), "--port"))?;
    let status = control.status().await;
    // Tests and scripts read this first line for the address.
    eprintln!(
        "chat2api {} listening on http://{}",
        env!("CARGO_PKG_VERSION"),
        authority(&status.host, status.port)
    );
    if open_to_all {
        eprintln!(
            "chat2api: warning: listening on {} with no client keys: anyone who can reach it may use your providers' keys (set \"apiKeys\")",
            status.host
        );
    }
    let management = if settings.enabled {
        let service = Arc::new(Management::new(control.clone(), settings.secret, limits));
        match Listener::start(service, &settings.host, settings.port, MANAGEMENT_WORKERS).await {
            Ok(l) => {
                let addr = authority(&settings.host, l.local_addr().port());
                eprintln!("chat2api management on http://{addr}");
                Some(l)
            }
            // The proxy is what users came for: serve it anyway.
            Err(e) => {
                let addr = authority(&settings.host, settings.port);
                let message =
                    with_port_hint(format!("cannot listen on {addr}: {e}"), "--management-port");
                eprintln!("chat2api: warning: no management listener: {message}");
                None
            }
        }
    } else {
        None
    };
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => match control.restart().await {
                Ok(()) => {
                    let status = control.status().await;
                    eprintln!("chat2api restarted on http://{}", authority(&status.host, status.port));
                }
                Err(e) => eprintln!("chat2api: restart failed: {e}"),
            },
        }
    }
    let drain = control.drain_timeout().await;
    eprintln!(
        "chat2api: shutting down, draining for up to {} s",
        drain.as_secs()
    );
    // The management listener answers (status, statistics) until the
    // proxy's drain is over (docs/wire.md §6).
    let left = control.shutdown().await;
    if left > 0 {
        eprintln!("chat2api: {left} connection(s) were still open at the drain deadline");
    }
    if let Some(management) = management {
        management.stop().await;
    }
    Ok(())
}
