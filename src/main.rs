//! The binary: parse flags, set up logging, build, serve until Ctrl-C or SIGTERM.

use clap::Parser;
use recording_events::config::{Cli, Settings};
use recording_events::startup::Application;
use recording_events::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Cli::parse().into_serve_args();
    telemetry::init("info");
    let app = Application::build(Settings::from_args(args)).await?;
    app.run_until_stopped(shutdown_signal()).await
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
