//! The binary: parse flags, set up logging, build, serve until Ctrl-C or SIGTERM (or run
//! `backup` or `migrate` and exit).

use std::process::ExitCode;

use clap::Parser;
use recording_events::config::{Cli, Command, Settings};
use recording_events::startup::Application;
use recording_events::telemetry;

/// mimalloc: each request allocates and frees many small buffers across threads (hyper,
/// h2, JSON, the hand-off to the writer); glibc's allocator spent ~7% of the service's CPU
/// on them under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The error and its causes on one line, never the backtrace that
            // anyhow's `Debug` form adds when RUST_BACKTRACE is set (as it often is, for
            // panics): a refused flag or a full disk is not a bug to trace, and forty
            // frames would bury the line that says what to fix.
            eprintln!("Error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, "a: b: c", leaving out a cause whose text the line already
/// ends with (some errors repeat their source in their own message).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if line.ends_with(&cause) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&cause);
    }
    line
}

async fn run() -> anyhow::Result<()> {
    let args = match Cli::parse().into_command() {
        Command::Serve(args) => *args,
        Command::Backup(args) => {
            print!("{}", recording_events::backup::run(&args)?);
            return Ok(());
        }
        Command::Migrate(args) => {
            telemetry::init("info", args.log_format);
            print!("{}", recording_events::migrate::run(&args).await?);
            return Ok(());
        }
    };
    telemetry::init("info", args.log_format);
    raise_descriptor_limit();
    let stops = stop_signals()?;
    let app = Application::build(Settings::from_args(args)).await?;
    app.run_until_stopped(stops).await
}

/// Every connection is a descriptor, and a burst of callbacks over a thousand connections
/// needs more than the common soft limit of 1,024: the soft limit is raised to the hard
/// one, as Go's runtime does for its servers. Past it, accepting waits (and says so).
fn raise_descriptor_limit() {
    let before = rlimit::Resource::NOFILE.get().map(|(soft, _)| soft);
    match (before, rlimit::increase_nofile_limit(u64::MAX)) {
        (Ok(before), Ok(now)) if now > before => {
            tracing::info!("open files: up to {now} (soft limit raised from {before})");
        }
        (_, Ok(now)) => tracing::info!("open files: up to {now}"),
        (_, Err(e)) => tracing::warn!(error = %e, "open files: cannot raise the soft limit"),
    }
}

/// One item per Ctrl-C or SIGTERM: the first stops the service, a second ends
/// `--shutdown-delay` early. The handlers are installed here, before serving: a SIGTERM
/// sent as soon as the addresses are printed stops the service gracefully rather than
/// killing it.
fn stop_signals() -> anyhow::Result<impl futures_util::Stream<Item = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate())?;
    let interrupt = signal(SignalKind::interrupt())?;
    Ok(futures_util::stream::unfold(
        (terminate, interrupt),
        |(mut terminate, mut interrupt)| async move {
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
            Some(((), (terminate, interrupt)))
        },
    ))
}
