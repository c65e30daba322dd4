//! PostgreSQL as users run it for idempotency keys: a table with the key
//! as its primary key, and a claim that is one `INSERT … ON CONFLICT DO
//! NOTHING RETURNING token` (no row back: a duplicate). A private server
//! (`initdb` into a temporary directory, `pg_ctl start` on a free loopback
//! port) with Debian's defaults: `synchronous_commit = on`, `fsync = on`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::process::Command;
use tokio_postgres::{Client, NoTls, Statement};
use uuid::Uuid;

use super::Claimed;
use super::pool::Pool;
use crate::dedupd_process::free_port;
use crate::process::{on_cpus, on_path, private_dir};

const TABLE: &str = "CREATE TABLE IF NOT EXISTS idempotency (\
     ns text NOT NULL, key text NOT NULL, token uuid NOT NULL, \
     expires_at timestamptz NOT NULL, PRIMARY KEY (ns, key))";

/// The claim: the row of a new key, nothing for an existing one.
const CLAIM: &str = "INSERT INTO idempotency (ns, key, token, expires_at) \
     VALUES ($1, $2, $3, now() + make_interval(secs => $4)) \
     ON CONFLICT DO NOTHING RETURNING token";

/// The directory of `initdb` and `pg_ctl`: `pg_config --bindir`, else the
/// newest /usr/lib/postgresql/*/bin (Debian's layout), else `initdb`'s own
/// on the PATH.
pub fn bindir() -> Result<PathBuf, String> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(output) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_tools(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            let dir = entry.path().join("bin");
            has_tools(&dir).then_some((version, dir))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    on_path("initdb")
        .and_then(|initdb| std::fs::canonicalize(initdb).ok())
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
        .filter(|dir| has_tools(dir))
        .ok_or_else(|| {
            "no PostgreSQL server binaries (initdb, pg_ctl): install Debian's postgresql".into()
        })
}

/// The effective user id, from /proc/self/status (`Uid: real effective …`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    effective_uid_in(&status)
}

fn effective_uid_in(status: &str) -> Option<u32> {
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// A private PostgreSQL server; stopped (`pg_ctl stop -m fast`) by
/// [`PostgresServer::stop`] or, at the latest, when dropped, and its
/// directory removed.
pub struct PostgresServer {
    bindir: PathBuf,
    dir: PathBuf,
    pub port: u16,
    pub postmaster_pid: u32,
    /// initdb refuses to run as root: as root, the server runs as this
    /// user (Debian's package creates `postgres`).
    run_as: Option<&'static str>,
    running: bool,
}

impl PostgresServer {
    /// `initdb`, then `pg_ctl start` (its processes on `cpus` when given).
    pub async fn start(bindir: &Path, cpus: Option<&str>) -> anyhow::Result<Self> {
        let run_as = (effective_uid() == Some(0)).then_some("postgres");
        let dir = private_dir("postgres")?;
        let port = free_port()?;
        let mut server = Self {
            bindir: bindir.to_owned(),
            dir,
            port,
            postmaster_pid: 0,
            run_as,
            running: false,
        };
        if let Some(user) = run_as {
            let chowned = Command::new("chown")
                .args([user, &server.dir.to_string_lossy()])
                .status()
                .await
                .context("cannot run chown")?;
            anyhow::ensure!(
                chowned.success(),
                "running as root, the server runs as `{user}`, which chown could not give {} \
                 (does the user exist? Debian's postgresql package creates it)",
                server.dir.display()
            );
        }
        let data = server.dir.join("data");
        let log = server.dir.join("postgres.log");
        // --no-sync: initdb's own files are not flushed (they are
        // throwaway); the server itself runs with fsync on.
        let initdb = Command::from(server.tool(None, "initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .output()
            .await
            .context("cannot run initdb")?;
        anyhow::ensure!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr).trim()
        );
        let options = format!(
            "-k {} -p {port} -c listen_addresses=127.0.0.1",
            server.dir.display()
        );
        let started = Command::from(server.tool(cpus, "pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()
            .await
            .context("cannot run pg_ctl")?;
        server.running = true;
        anyhow::ensure!(
            started.status.success(),
            "pg_ctl start failed: {}; see {}",
            String::from_utf8_lossy(&started.stdout).trim(),
            log.display()
        );
        let pid_file = std::fs::read_to_string(data.join("postmaster.pid"))
            .context("no postmaster.pid after pg_ctl start")?;
        server.postmaster_pid = pid_file
            .lines()
            .next()
            .and_then(|pid| pid.trim().parse().ok())
            .context("postmaster.pid holds no pid")?;
        Ok(server)
    }

    /// `tool` from the server's bindir, as the server's user, on `cpus`.
    fn tool(&self, cpus: Option<&str>, tool: &str) -> std::process::Command {
        let path = self.bindir.join(tool);
        match self.run_as {
            Some(user) => {
                let mut command = on_cpus(cpus, Path::new("runuser"));
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => on_cpus(cpus, &path),
        }
    }

    fn stop_args(&self) -> Vec<String> {
        vec![
            "-D".into(),
            self.dir.join("data").to_string_lossy().into_owned(),
            "-m".into(),
            "fast".into(),
            "-w".into(),
            "-t".into(),
            "30".into(),
            "stop".into(),
        ]
    }

    /// `pg_ctl stop -m fast`: open connections are closed, nothing kept.
    pub async fn stop(mut self) {
        if self.running {
            let args = self.stop_args();
            let _ = Command::from(self.tool(None, "pg_ctl"))
                .args(args)
                .output()
                .await;
            self.running = false;
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.running {
            // Blocking, on an error path only: the async stop did not run.
            let _ = self.tool(None, "pg_ctl").args(self.stop_args()).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A short name for a client error, for the report.
fn error_kind(error: &tokio_postgres::Error) -> String {
    match error.code() {
        Some(code) => format!("pg:{}", code.code()),
        None => format!("pg:{error}").chars().take(40).collect(),
    }
}

/// Claims on a PostgreSQL, a fixed pool of connections with the claim
/// prepared on each.
pub struct PostgresClaims {
    pool: Pool<(Client, Statement)>,
}

impl PostgresClaims {
    /// `connections` connections; with `synchronous_commit` false, each
    /// sets `synchronous_commit = off` for its session.
    pub async fn connect(
        port: u16,
        connections: usize,
        synchronous_commit: bool,
    ) -> anyhow::Result<Arc<Self>> {
        let mut pool = Vec::with_capacity(connections);
        for _ in 0..connections {
            let client = connect(port).await?;
            if !synchronous_commit {
                client.batch_execute("SET synchronous_commit = off").await?;
            }
            let statement = client.prepare(CLAIM).await?;
            pool.push((client, statement));
        }
        Ok(Arc::new(Self {
            pool: Pool::new(pool),
        }))
    }

    pub async fn claim(
        &self,
        namespace: &str,
        key: &str,
        ttl_secs: f64,
    ) -> Result<Claimed, String> {
        let lease = self.pool.lease().await;
        let (client, claim) = &*lease;
        let token = Uuid::new_v4();
        let row = client
            .query_opt(claim, &[&namespace, &key, &token, &ttl_secs])
            .await
            .map_err(|error| error_kind(&error))?;
        Ok(match row {
            Some(_) => Claimed::Acquired,
            None => Claimed::Duplicate,
        })
    }
}

/// One session, as the bench's user, over loopback TCP (as the other
/// systems are reached), its connection driven by a task of its own.
pub async fn connect(port: u16) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname("postgres")
        .application_name("dedupd-lab")
        .connect_timeout(Duration::from_secs(10))
        .connect(NoTls)
        .await
        .context("cannot connect to the private PostgreSQL")?;
    tokio::spawn(connection);
    Ok(client)
}

/// Creates the idempotency table and claims `keys` in `namespace`.
pub async fn prepare(client: &Client, namespace: &str, keys: &[String]) -> anyhow::Result<()> {
    client.batch_execute(TABLE).await?;
    client
        .execute(
            "INSERT INTO idempotency (ns, key, token, expires_at) \
             SELECT $1, k, gen_random_uuid(), now() + interval '1 hour' FROM unnest($2::text[]) AS k \
             ON CONFLICT DO NOTHING",
            &[&namespace, &keys],
        )
        .await
        .context("cannot preload the idempotency table")?;
    Ok(())
}

/// A setting as the server reports it (`SHOW`).
pub async fn show(client: &Client, name: &str) -> String {
    match client.query_one(&format!("SHOW {name}"), &[]).await {
        Ok(row) => row
            .try_get::<_, String>(0)
            .unwrap_or_else(|_| "unknown".into()),
        Err(_) => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_uid_is_the_second_of_four() {
        let status = "Name:\tdedupd-lab\nUid:\t1000\t0\t0\t0\nGid:\t100\t100\t100\t100\n";
        assert_eq!(effective_uid_in(status), Some(0));
        assert_eq!(effective_uid_in("Name:\tx\n"), None);
        assert!(effective_uid().is_some());
    }
}
