mod cli;
mod operate;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command};
use lull::app::App;
use lull::http::Serves;
use lull::http::probe::{healthz_url, probe};
use lull::loadtest::LoadtestCommand;
use lull::telemetry;
use std::time::Duration;

/// The process's allocator: glibc's malloc spent about a third of the claim
/// loop's CPU under load (see benches/drain.rs); mimalloc keeps per-thread heaps.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long `lull healthcheck` waits for an answer (within Docker's 3 s).
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Loadtest(args)) = cli.command {
        // Before App::build: a load generator needs no database and runs no migrations.
        telemetry::init_stderr(cli.config.log_format);
        raise_open_files();
        return loadtest(args.command).await;
    }
    if let Some(Command::Scripts(args)) = &cli.command {
        // Before App::build: the scripts are embedded, no store is needed.
        println!("{}", operate::run_scripts(args.json)?);
        return Ok(());
    }
    if let Some(Command::Healthcheck) = cli.command {
        let url = healthz_url(&cli.config.host, cli.config.port);
        return Ok(probe(&url, HEALTHCHECK_TIMEOUT).await?);
    }
    // An operator command's stdout is its output: its logs go to stderr.
    let operator = matches!(
        cli.command,
        Some(
            Command::Forget(_)
                | Command::Inspect(_)
                | Command::Stats(_)
                | Command::Pause(_)
                | Command::Resume(_)
                | Command::Flush(_)
        )
    );
    let _log = if operator {
        telemetry::init_stderr(cli.config.log_format);
        None
    } else {
        Some(telemetry::init(cli.config.log_format).context("starting the log thread")?)
    };
    // Before any socket: the default MAX_CONNECTIONS is derived from the raised limit.
    raise_open_files();
    let settings = cli.config.parse_settings().context("starting lull")?;
    let command = cli.command.unwrap_or(Command::Serve);
    let bind = format!("{}:{}", settings.http.host, settings.http.port);
    let app = App::build(settings).await.context("starting lull")?;
    let serves = match command {
        Command::Migrate => {
            tracing::info!("migrations applied");
            return Ok(());
        }
        Command::Forget(args) => return finish(operate::run_forget(&app, &args).await?),
        Command::Inspect(args) => return finish(operate::run_inspect(&app, &args).await?),
        Command::Stats(args) => return finish(operate::run_stats(&app, &args).await?),
        Command::Pause(args) => return finish(operate::run_pause(&app, &args).await?),
        Command::Resume(args) => return finish(operate::run_resume(&app, &args).await?),
        Command::Flush(args) => return finish(operate::run_flush(&app, &args).await?),
        Command::Worker => Serves::Probes,
        Command::Loadtest(_) | Command::Healthcheck | Command::Scripts(_) => {
            unreachable!("returned above")
        }
        Command::Serve => Serves::Everything,
    };
    let listener = lull::http::bind(&bind)
        .await
        .with_context(|| format!("binding {bind} (HOST, PORT)"))?;
    app.run(listener, serves, shutdown_signal()).await?;
    Ok(())
}

/// Prints an operator command's output; exits 1 when it found nothing to act on.
fn finish(outcome: operate::Outcome) -> anyhow::Result<()> {
    println!("{}", outcome.output);
    if !outcome.found {
        std::process::exit(1);
    }
    Ok(())
}

/// Runs a load test and prints its summary; a violation fails the process.
async fn loadtest(command: LoadtestCommand) -> anyhow::Result<()> {
    let json = command.json();
    let report = lull::loadtest::run(command).await.context("load test")?;
    println!("{}", report.render(json));
    let violations = report.violations().len();
    anyhow::ensure!(
        violations == 0,
        "load test failed: {violations} violation(s)"
    );
    Ok(())
}

/// Raises the soft open-files limit to the hard one (both logged); a failure only
/// leaves the limit as found, so it is a warning.
fn raise_open_files() {
    if let Err(error) = lull::fd_limit::raise_open_files() {
        tracing::warn!(%error, "keeping the open-files limit as found");
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
