use anyhow::Context;
use clap::Parser;
use lull::app::App;
use lull::config::{Cli, Command};
use lull::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.config.log_format);
    let config = cli.config;
    let command = cli.command.unwrap_or(Command::Serve);
    let bind = format!("{}:{}", config.host, config.port);
    let app = App::build(config).await.context("starting lull")?;
    let listener = match command {
        Command::Migrate => {
            tracing::info!("migrations applied");
            return Ok(());
        }
        Command::Worker => None,
        Command::Serve => Some(
            tokio::net::TcpListener::bind(&bind)
                .await
                .with_context(|| format!("binding {bind} (HOST, PORT)"))?,
        ),
    };
    app.run(listener, shutdown_signal()).await?;
    Ok(())
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
