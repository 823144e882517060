//! The `chat2api` binary: flags, config, runtime and signals. Everything it
//! serves lives in the library.

use std::process::ExitCode;
use std::sync::Arc;

use chat2api::cli::{self, CliAction};
use chat2api::config::Config;
use chat2api::gateway::Gateway;
use chat2api::server::Listener;
use chat2api::stats::Stats;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match cli::parse_args(std::env::args_os().skip(1)) {
        Ok(CliAction::Run(cli)) => cli,
        Ok(CliAction::Help(text)) | Ok(CliAction::Version(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("chat2api: {e}\n\n{}", cli::HELP);
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
        print!("{}", config.routing_table());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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

fn load(cli: &cli::Cli) -> Result<Config, String> {
    let mut config = Config::load(cli.config.as_deref()).map_err(|e| e.to_string())?;
    cli.apply(&mut config);
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// Serve until SIGINT or SIGTERM; SIGHUP re-reads the config and restarts
/// the listener (SPEC §1).
async fn run(cli: cli::Cli, config: Config) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let stats = Arc::new(Stats::new());
    let drain = config.limits.drain_timeout;
    let gateway = Arc::new(Gateway::new(config, stats.clone())?);
    let mut listener = Listener::start(gateway)
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    eprintln!(
        "chat2api {} listening on http://{}",
        env!("CARGO_PKG_VERSION"),
        listener.local_addr()
    );
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => {
                let config = match load(&cli) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("chat2api: restart refused, keeping the running config: {e}");
                        continue;
                    }
                };
                let gateway = match Gateway::new(config, stats.clone()) {
                    Ok(g) => Arc::new(g),
                    Err(e) => {
                        eprintln!("chat2api: restart refused, keeping the running config: {e}");
                        continue;
                    }
                };
                let mut old = listener;
                old.close().await;
                listener = match Listener::start(gateway).await {
                    Ok(l) => l,
                    Err(e) => return Err(format!("restart: cannot listen: {e}")),
                };
                eprintln!("chat2api restarted on http://{}", listener.local_addr());
                tokio::spawn(async move { old.drain(drain).await });
            }
        }
    }
    eprintln!(
        "chat2api: shutting down, draining for up to {} s",
        drain.as_secs()
    );
    let left = listener.stop(drain).await;
    stats.proxy_stopped();
    if left > 0 {
        eprintln!("chat2api: {left} connection(s) still open at the drain deadline");
    }
    Ok(())
}
