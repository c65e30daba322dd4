use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use dedupd::config::{Cli, Command, MigrateArgs};
use dedupd::startup::{AppConfig, Application, shutdown_signal};
use dedupd::store::connect_session;
use dedupd::store::migrate::migrate;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            dedupd::telemetry::init(args.cql.log_format);
            let config = AppConfig::from_args(&args)?;
            let application = Application::build(config)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            application.run_until_stopped(shutdown_signal()).await
        }
        Command::Migrate(args) => {
            dedupd::telemetry::init(args.cql.log_format);
            run_migrate(&args).await
        }
    }
}

async fn run_migrate(args: &MigrateArgs) -> anyhow::Result<()> {
    let keyspace = args.cql.keyspace()?;
    let settings = args.cql.settings();
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
