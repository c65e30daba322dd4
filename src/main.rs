use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use dedupd::startup::{AppConfig, Application, shutdown_signal};
use dedupd::store::connect_session;
use dedupd::store::faults::FaultPlan;
use dedupd::store::migrate::migrate;

mod admin_command;
mod cli;

use cli::{Cli, Command, MigrateArgs};

/// The binary's allocator. Each request allocates and frees a few dozen
/// small buffers (headers, the path's decoded keys, the JSON answer) across
/// tokio's worker threads; mimalloc's per-thread free lists make that about
/// 13 % cheaper than glibc's malloc. The library (and so the tests' in-process
/// servers) keeps the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            dedupd::telemetry::init(args.cql.log_format);
            serve(args.app_config()?).await
        }
        Command::Proxy(args) => {
            dedupd::telemetry::init(args.serve.cql.log_format);
            serve(args.app_config()?).await
        }
        Command::Migrate(args) => {
            dedupd::telemetry::init(args.cql.log_format);
            run_migrate(&args).await
        }
        Command::HashToken => {
            let mut token = String::new();
            std::io::stdin().read_line(&mut token)?;
            let token = token.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(!token.is_empty(), "give the token on stdin");
            println!("{}", dedupd::http::auth::hash_token(token));
            Ok(())
        }
        Command::Admin(args) => admin_command::run(&args).await,
    }
}

/// Binds, serves until SIGTERM, drains: `serve` and `proxy` alike.
async fn serve(config: AppConfig) -> anyhow::Result<()> {
    let listen = config.listen;
    let faults = FaultPlan::from_env().map_err(anyhow::Error::msg)?;
    let application = Application::build_with_faults(config, Arc::new(faults))
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    application.run_until_stopped(shutdown_signal()).await
}

async fn run_migrate(args: &MigrateArgs) -> anyhow::Result<()> {
    let keyspace = args.cql.keyspace()?;
    let settings = args.cql.settings()?;
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    // A migration Job may start before the database answers: wait, bounded.
    let session = loop {
        match connect_session(&settings).await {
            Ok(session) => break session,
            Err(error) if Instant::now() < deadline => {
                tracing::warn!(error = %error, "database not reachable yet, retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(error) => return Err(error).context("giving up on the database"),
        }
    };
    let report = migrate(&session, &keyspace, &args.replication).await?;
    tracing::info!(
        keyspace = %keyspace,
        applied = ?report.applied,
        already_applied = ?report.already_applied,
        "migrations done"
    );
    Ok(())
}
