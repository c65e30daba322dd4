//! Running the real service: the `dedupd` binary the lab measures and
//! attacks, found beside `dedupd-lab` or named with `--dedupd-bin`, and a
//! `dedupd serve` process the benchmark and the soak drive.
//!
//! The benchmark measures a separate process, as production runs one: its
//! CPU and memory are then its own (read from /proc/<pid>), and it competes
//! with the load generator for cores the way a real client and server do.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use dedupd_client::{Client, Readiness, RetryBudget};
use tokio::process::{Child, Command};

use crate::process::{self, Pid};
use dedupd::domain::KeyspaceName;

/// Which dedupd binary to run.
#[derive(Debug, Clone, Args)]
pub struct DedupdBin {
    /// The dedupd binary to run. Unset: `dedupd` beside this binary, as
    /// cargo builds them.
    #[arg(long = "dedupd-bin", value_name = "PATH")]
    pub path: Option<PathBuf>,
}

impl DedupdBin {
    /// The binary, which must exist.
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        let binary = match &self.path {
            Some(binary) => binary.clone(),
            None => std::env::current_exe()?.with_file_name("dedupd"),
        };
        anyhow::ensure!(
            binary.is_file(),
            "no dedupd binary at {}: build it (cargo build --release -p dedupd) or name it \
             with --dedupd-bin",
            binary.display()
        );
        Ok(binary)
    }
}

/// A free loopback port (bound and released: another process could take
/// it in between, which on a quiet test machine does not happen).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A `dedupd serve` (or `dedupd proxy`) process on a free loopback port.
pub struct ServerProcess {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    pid: u32,
    child: Child,
    /// For its probes: one attempt each, bounded.
    client: Client,
}

impl ServerProcess {
    /// Starts `binary serve` over `nodes` and waits (bounded) until it is
    /// ready. Its environment is this one without any `DEDUPD_*` variable:
    /// what it runs with is what the flags here say, nothing inherited.
    pub async fn spawn(
        binary: &Path,
        nodes: &[String],
        keyspace: &KeyspaceName,
        max_in_flight: usize,
    ) -> anyhow::Result<Self> {
        Self::spawn_with(binary, nodes, keyspace, max_in_flight, &[]).await
    }

    /// As `spawn`, with `extra_args` after the flags `spawn` passes (a
    /// sweep's own settings, such as `--completed-cache-mib`).
    pub async fn spawn_with(
        binary: &Path,
        nodes: &[String],
        keyspace: &KeyspaceName,
        max_in_flight: usize,
        extra_args: &[String],
    ) -> anyhow::Result<Self> {
        Self::start(
            binary,
            "serve",
            "",
            nodes,
            keyspace,
            max_in_flight,
            extra_args,
        )
        .await
    }

    /// A `dedupd proxy` process in front of `upstream`: the same flags as
    /// `spawn`; its probes are under `/_dedupd`.
    pub async fn spawn_proxy(
        binary: &Path,
        nodes: &[String],
        keyspace: &KeyspaceName,
        max_in_flight: usize,
        upstream: &str,
    ) -> anyhow::Result<Self> {
        let upstream = ["--upstream".to_owned(), upstream.to_owned()];
        Self::start(
            binary,
            "proxy",
            "/_dedupd",
            nodes,
            keyspace,
            max_in_flight,
            &upstream,
        )
        .await
    }

    async fn start(
        binary: &Path,
        subcommand: &str,
        probes: &str,
        nodes: &[String],
        keyspace: &KeyspaceName,
        max_in_flight: usize,
        extra_args: &[String],
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("dedupd-lab-{subcommand}-{port}.log"));
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot write {}", log.display()))?;
        let mut command = Command::new(binary);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("DEDUPD_") {
                command.env_remove(name);
            }
        }
        let child = command
            .arg(subcommand)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--cql-nodes", &nodes.join(",")])
            .args(["--keyspace", keyspace.as_str()])
            .args(["--max-in-flight", &max_in_flight.to_string()])
            .args(extra_args)
            .env("DEDUPD_SHUTDOWN_DELAY_SECS", "0")
            .env("RUST_LOG", "warn,scylla=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} {subcommand}", binary.display()))?;
        let pid = child.id().context("dedupd exited at once")?;
        let base = format!("http://127.0.0.1:{port}");
        let client = Client::builder(format!("{base}{probes}"))
            .retry_budget(RetryBudget::none())
            .request_timeout(Duration::from_secs(5))
            .build()?;
        let mut server = Self {
            base,
            pid,
            child,
            client,
        };
        let client = &server.client;
        process::wait_ready(&mut server.child, 300, move || async move {
            client
                .readiness()
                .await
                .is_ok_and(|readiness| readiness == Readiness::Ready)
        })
        .await
        .with_context(|| {
            format!(
                "dedupd {subcommand} did not get ready; see {}",
                log.display()
            )
        })?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// CPU time the server has used so far.
    pub fn cpu_time(&self) -> Duration {
        process::cpu_time(Pid::Of(self.pid))
    }

    pub fn rss_mib(&self) -> f64 {
        process::rss_mib(Pid::Of(self.pid))
    }

    /// Resident memory in KiB, as /proc counts it.
    pub fn rss_kib(&self) -> u64 {
        process::rss_kib(Pid::Of(self.pid))
    }

    /// Its `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self.client.metrics_text().await?)
    }

    /// Stops it the way Kubernetes does (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(mut self) {
        let terminated = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await
            .is_ok_and(|status| status.success());
        if terminated
            && tokio::time::timeout(Duration::from_secs(10), self.child.wait())
                .await
                .is_ok()
        {
            return;
        }
        let _ = self.child.kill().await;
    }
}
