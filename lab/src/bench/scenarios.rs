//! The operations the benchmark times: raw driver statements (the baseline
//! with no service in the way) and dedupd's HTTP API.

use std::sync::Arc;
use std::time::Duration;

use dedupd_client::{BatchClaim, ClaimAnswer, ClaimOptions, Client, Error, RetryBudget};
use scylla::client::session::Session;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError, WriteType};
use scylla::policies::retry::FallthroughRetryPolicy;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::Row;
use uuid::Uuid;

use super::load::{OpResult, Operation, on_keys};
use dedupd::domain::KeyspaceName;

/// The tables the raw-driver scenarios write: a key-value table like the
/// claims table, and one with a clustering column for conditional batches.
pub const BENCH_TABLES: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS {ks}.bench_kv (k text PRIMARY KEY, v uuid) \
     WITH gc_grace_seconds = 10800",
    "CREATE TABLE IF NOT EXISTS {ks}.bench_rows (p text, c int, v uuid, PRIMARY KEY (p, c)) \
     WITH gc_grace_seconds = 10800",
];

/// A short name for a driver error, for the report.
pub fn error_kind(error: &ExecutionError) -> String {
    match error {
        ExecutionError::RequestTimeout(_) => "client_timeout".into(),
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => match db {
            DbError::WriteTimeout {
                write_type: WriteType::Cas,
                ..
            } => "cas_timeout".into(),
            DbError::WriteTimeout { .. } => "write_timeout".into(),
            DbError::ReadTimeout { .. } => "read_timeout".into(),
            DbError::Unavailable { .. } => "unavailable".into(),
            DbError::Overloaded => "overloaded".into(),
            other => format!("db:{other:?}").chars().take(40).collect(),
        },
        other => format!("{other}").chars().take(40).collect(),
    }
}

fn applied(result: scylla::response::query_result::QueryResult) -> Option<bool> {
    let rows = result.into_rows_result().ok()?;
    let row = rows.maybe_first_row::<Row>().ok()??;
    match row.columns.first() {
        Some(Some(scylla::value::CqlValue::Boolean(applied))) => Some(*applied),
        _ => None,
    }
}

/// Prepared statements on the bench tables.
pub struct RawDriver {
    session: Arc<Session>,
    plain: PreparedStatement,
    lwt: PreparedStatement,
    row_lwt: PreparedStatement,
    claim_lwt: PreparedStatement,
}

impl RawDriver {
    pub async fn prepare(
        session: Arc<Session>,
        keyspace: &KeyspaceName,
        serial: SerialConsistency,
    ) -> anyhow::Result<Self> {
        let ks = keyspace.as_str();
        let mut plain = session
            .prepare(format!(
                "INSERT INTO {ks}.bench_kv (k, v) VALUES (?, ?) USING TTL 3600"
            ))
            .await?;
        plain.set_consistency(Consistency::LocalQuorum);
        let lwt_setup = |mut statement: PreparedStatement| {
            // Exactly as the service sets its LWTs, so that the comparison
            // is one of statement kinds, not of driver settings.
            statement.set_consistency(Consistency::LocalQuorum);
            statement.set_serial_consistency(Some(serial));
            statement.set_retry_policy(Some(Arc::new(FallthroughRetryPolicy)));
            statement.set_is_idempotent(false);
            statement
        };
        let lwt = lwt_setup(
            session
                .prepare(format!(
                    "INSERT INTO {ks}.bench_kv (k, v) VALUES (?, ?) IF NOT EXISTS USING TTL 3600"
                ))
                .await?,
        );
        let row_lwt = lwt_setup(
            session
                .prepare(format!(
                    "INSERT INTO {ks}.bench_rows (p, c, v) VALUES (?, ?, ?) IF NOT EXISTS USING TTL 3600"
                ))
                .await?,
        );
        // The row a claim of a new key writes, in the service's own table,
        // with the columns it binds (the absent ones unset): the baseline
        // for what the HTTP service adds on top of its one LWT.
        let claim_lwt = lwt_setup(
            session
                .prepare(format!(
                    "INSERT INTO {ks}.claims (namespace, key, owner, state, claimant, window, \
                     claimed_at, expires_at, lease_expires_at) \
                     VALUES (?, ?, ?, 'in_progress', ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL 3600"
                ))
                .await?,
        );
        Ok(Self {
            session,
            plain,
            lwt,
            row_lwt,
            claim_lwt,
        })
    }

    /// `INSERT … USING TTL`: no guarantee, the floor.
    pub fn plain_insert(self: &Arc<Self>, prefix: String) -> Operation {
        on_keys(self.clone(), numbered(prefix), |driver, key| async move {
            driver
                .session
                .execute_unpaged(&driver.plain, (key, Uuid::new_v4()))
                .await
                .map(|_| ())
                .map_err(|error| error_kind(&error))
        })
    }

    async fn insert_if_not_exists(&self, key: String) -> Result<bool, String> {
        let result = self
            .session
            .execute_unpaged(&self.lwt, (key, Uuid::new_v4()))
            .await
            .map_err(|error| error_kind(&error))?;
        applied(result).ok_or_else(|| "no [applied]".to_owned())
    }

    /// Applied or not, an answer: where refusals are expected.
    async fn answered(self: Arc<Self>, key: String) -> OpResult {
        self.insert_if_not_exists(key).await.map(|_| ())
    }

    /// `INSERT … IF NOT EXISTS USING TTL` on a new key: the same LWT a
    /// claim makes. Not applied would mean a key clash: an error here.
    pub fn lwt_insert(self: &Arc<Self>, prefix: String) -> Operation {
        on_keys(self.clone(), numbered(prefix), |driver, key| async move {
            match driver.insert_if_not_exists(key).await? {
                true => Ok(()),
                false => Err("not_applied".into()),
            }
        })
    }

    /// The LWT a claim of a new key makes, on the claims table, through the
    /// raw driver: `http_claim` minus the service.
    pub fn claim_row_lwt(self: &Arc<Self>, namespace: String, prefix: String) -> Operation {
        let namespace = Arc::new(namespace);
        on_keys(self.clone(), numbered(prefix), move |driver, key| {
            let namespace = namespace.clone();
            async move {
                let now = chrono::Utc::now();
                // The client's claimant when its caller names none.
                let claimant = format!("dc-{}", Uuid::new_v4().simple());
                let values = (
                    namespace.as_str(),
                    key,
                    Uuid::new_v4(),
                    claimant,
                    Uuid::new_v4(),
                    now,
                    now + chrono::Duration::hours(1),
                    now + chrono::Duration::seconds(30),
                );
                let result = driver
                    .session
                    .execute_unpaged(&driver.claim_lwt, values)
                    .await
                    .map_err(|error| error_kind(&error))?;
                match applied(result) {
                    Some(true) => Ok(()),
                    Some(false) => Err("not_applied".into()),
                    None => Err("no [applied]".into()),
                }
            }
        })
    }

    /// The same LWT on one key for every call: all callers contend for one
    /// Paxos instance. Applied or not, an answer is a success.
    pub fn lwt_same_key(self: &Arc<Self>, key: String) -> Operation {
        on_keys(self.clone(), move |_| key.clone(), Self::answered)
    }

    /// One conditional batch of `rows` rows in one partition: one Paxos round.
    pub fn conditional_batch(self: &Arc<Self>, prefix: String, rows: usize) -> Operation {
        on_keys(
            self.clone(),
            numbered(prefix),
            move |driver, partition| async move {
                let mut batch = Batch::new(BatchType::Unlogged);
                let mut values = Vec::with_capacity(rows);
                for row in 0..rows {
                    batch.append_statement(driver.row_lwt.clone());
                    values.push((partition.clone(), row as i32, Uuid::new_v4()));
                }
                batch.set_serial_consistency(driver.row_lwt.get_serial_consistency());
                batch.set_consistency(Consistency::LocalQuorum);
                batch.set_retry_policy(Some(Arc::new(FallthroughRetryPolicy)));
                let result = driver
                    .session
                    .batch(&batch, values)
                    .await
                    .map_err(|error| error_kind(&error))?;
                match applied(result) {
                    Some(true) => Ok(()),
                    _ => Err("not_applied".into()),
                }
            },
        )
    }

    /// `rows` separate LWTs on separate partitions, sent at once: what the
    /// batch API does, because conditional batches cannot span partitions.
    pub fn separate_lwts(self: &Arc<Self>, prefix: String, rows: usize) -> Operation {
        on_keys(
            self.clone(),
            numbered(prefix),
            move |driver, key| async move {
                let inserts = (0..rows).map(|row| {
                    let driver = driver.clone();
                    let key = format!("{key}-{row}");
                    async move { driver.insert_if_not_exists(key).await }
                });
                for result in futures::future::join_all(inserts).await {
                    if !result? {
                        return Err("not_applied".into());
                    }
                }
                Ok(())
            },
        )
    }

    /// What a conditional batch across two partitions gets: shown, not hidden.
    pub async fn cross_partition_batch_error(&self) -> String {
        let mut batch = Batch::new(BatchType::Unlogged);
        batch.append_statement(self.row_lwt.clone());
        batch.append_statement(self.row_lwt.clone());
        batch.set_serial_consistency(self.row_lwt.get_serial_consistency());
        let values = (
            ("cross-a".to_owned(), 0_i32, Uuid::new_v4()),
            ("cross-b".to_owned(), 0_i32, Uuid::new_v4()),
        );
        match self.session.batch(&batch, values).await {
            Ok(_) => {
                "accepted (unexpected: the database allowed a cross-partition conditional batch)"
                    .into()
            }
            Err(error) => error.to_string(),
        }
    }

    /// Loads `keys` with an LWT each, so that later LWTs on them are refused.
    pub async fn preload(&self, keys: &[String]) -> anyhow::Result<()> {
        for chunk in keys.chunks(64) {
            let inserts = chunk
                .iter()
                .map(|key| self.insert_if_not_exists(key.clone()));
            for result in futures::future::join_all(inserts).await {
                result.map_err(|kind| anyhow::anyhow!("preload failed: {kind}"))?;
            }
        }
        Ok(())
    }

    /// A duplicate-heavy stream, one bare LWT per message: 9 in 10 messages
    /// are redeliveries of `preloaded` keys, 1 in 10 is new.
    pub fn dup_heavy_bare(
        self: &Arc<Self>,
        preloaded: Arc<Vec<String>>,
        prefix: String,
    ) -> Operation {
        on_keys(
            self.clone(),
            move |index| dup_heavy_key(&preloaded, &prefix, index),
            Self::answered,
        )
    }
}

/// Keys `{prefix}-0`, `{prefix}-1`, …: a new one for every operation.
fn numbered(prefix: String) -> impl Fn(u64) -> String + Send + Sync + 'static {
    move |index| format!("{prefix}-{index}")
}

/// 9 in 10 indexes pick a preloaded key (spread over all of them), 1 in 10
/// a new one. Deterministic, so both sides of the comparison see the same
/// stream.
pub fn dup_heavy_key(preloaded: &[String], prefix: &str, index: u64) -> String {
    if index.is_multiple_of(10) {
        return format!("{prefix}-new-{index}");
    }
    let spread = (index.wrapping_mul(7919) % preloaded.len() as u64) as usize;
    preloaded[spread].clone()
}

/// dedupd's HTTP API through its Rust client, as a service would call it:
/// one client (one connection pool) shared by every worker, the options of
/// each stream built once, no retries (the bench counts what happened).
#[derive(Clone)]
pub struct HttpApi {
    client: Client,
}

/// A short name for a client error, for the report.
pub fn http_error_kind(error: &Error) -> String {
    match (error, error.status()) {
        (_, Some(status)) => format!("http_{status}"),
        (Error::Timeout { .. }, None) => "timeout".into(),
        (Error::Transport { .. }, None) => "transport".into(),
        (other, None) => other.to_string().chars().take(40).collect(),
    }
}

impl HttpApi {
    pub fn new(base: String) -> Self {
        let client = Client::builder(base)
            // The closed loops keep many connections in use at once.
            .pool_max_idle_per_host(256)
            .retry_budget(RetryBudget::none())
            // A stalled answer is measured, not cut short.
            .request_timeout(Duration::from_secs(120))
            .build()
            .expect("a dedupd client for the bench");
        Self { client }
    }

    /// Claims of new keys with `options`; anything but acquired is an error.
    pub fn claim_new(&self, namespace: String, prefix: String, options: ClaimOptions) -> Operation {
        self.claims(namespace, numbered(prefix), options, &[201])
    }

    /// The duplicate-heavy stream through dedupd: acquired and duplicate are
    /// answers.
    pub fn dup_heavy(
        &self,
        namespace: String,
        preloaded: Arc<Vec<String>>,
        prefix: String,
    ) -> Operation {
        self.claims(
            namespace,
            move |index| dup_heavy_key(&preloaded, &prefix, index),
            ClaimOptions::new().complete(true),
            &[201, 409],
        )
    }

    /// Redeliveries of completed keys, in turn: every answer is a duplicate.
    pub fn redeliveries(&self, namespace: String, completed: Arc<Vec<String>>) -> Operation {
        self.claims(
            namespace,
            move |index| completed[(index % completed.len() as u64) as usize].clone(),
            ClaimOptions::new().complete(true),
            &[409],
        )
    }

    /// A claim of `key_of(index)` with `options`; an answer whose status
    /// is not in `answers` is an error.
    fn claims(
        &self,
        namespace: String,
        key_of: impl Fn(u64) -> String + Send + Sync + 'static,
        options: ClaimOptions,
        answers: &'static [u16],
    ) -> Operation {
        // No claimant of our own: the client gives each call a fresh one,
        // as a service using it would. One fixed claimant for every call
        // would make a redelivery of a one-shot marker within its re-entry
        // time the same caller's retry (201), not a duplicate.
        let shared = Arc::new((self.client.clone(), namespace, options));
        on_keys(shared, key_of, move |shared, key| async move {
            let (client, namespace, options) = &*shared;
            let status = match client.claim(namespace, &key, options).await {
                Ok(ClaimAnswer::Acquired(_)) => 201,
                Ok(ClaimAnswer::Duplicate(_)) => 409,
                Err(error) => return Err(http_error_kind(&error)),
            };
            match status {
                status if answers.contains(&status) => Ok(()),
                status => Err(format!("http_{status}")),
            }
        })
    }

    /// Completes `keys` through the batch API, so their claims exist.
    pub async fn preload(&self, namespace: &str, keys: &[String]) -> anyhow::Result<()> {
        let options = ClaimOptions::new().complete(true);
        for chunk in keys.chunks(500) {
            let claims: Vec<BatchClaim> = chunk
                .iter()
                .map(|key| BatchClaim::new(key.as_str()))
                .collect();
            let results = self
                .client
                .claim_batch(namespace, &claims, &options)
                .await
                .map_err(|error| anyhow::anyhow!("preloading claims failed: {error}"))?;
            for result in results {
                if let Err(error) = result.answer {
                    anyhow::bail!("preloading claim {:?} failed: {error}", result.key);
                }
            }
        }
        Ok(())
    }
}
