//! Disk, rows and tombstones over a run of short-TTL claims, and whether
//! the TTL gives the space back.
//!
//! Claims with a short TTL go through a `dedupd serve` into the claims
//! table of a lab keyspace whose `gc_grace_seconds` is lowered to match.
//! Every `--sample-secs` one node is flushed (so that what it holds is on
//! disk, where tablestats counts it) and its `nodetool tablestats` for the
//! claims table and the Paxos state tables is read, with the live rows a
//! CQL count still sees. Writes stop; samples go on until the TTL and the
//! grace have passed; then a major compaction, and the figures after.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use super::{Report, Setup, round};
use crate::bench::load::open_loop;
use crate::bench::scenarios::HttpApi;
use crate::cql::query_text;
use crate::dedupd_process::ServerProcess;

/// The Paxos state tables of Cassandra 5.0 (v1 and v2 both keep their
/// state in `system.paxos`; v2 adds the repair history).
pub const PAXOS_TABLES: [&str; 2] = ["system.paxos", "system.paxos_repair_history"];

#[derive(Debug, Clone, Args)]
#[command(mut_arg("keyspace", |keyspace| keyspace.default_value("dedupd_scale_ttl")))]
pub struct StorageArgs {
    #[command(flatten)]
    pub setup: Setup,
    /// The claims' TTL.
    #[arg(long, default_value_t = 60)]
    pub ttl_secs: u64,
    /// gc_grace_seconds set on the lab keyspace's claims table.
    #[arg(long, default_value_t = 60)]
    pub gc_grace_secs: u64,
    /// Claims per second while writing.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// How long claims are written.
    #[arg(long, default_value_t = 60)]
    pub write_secs: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 15)]
    pub sample_secs: u64,
    /// The node whose figures are read (the script's node number).
    #[arg(long, default_value_t = 1)]
    pub node: u32,
}

/// One table's figures on one node, from `nodetool tablestats -F json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableStats {
    pub table: String,
    pub space_used_live: u64,
    pub space_used_total: u64,
    pub sstable_count: u64,
    pub partitions_estimate: u64,
    pub droppable_tombstone_ratio: f64,
    pub memtable_cells: u64,
    pub memtable_bytes: u64,
}

/// A figure as nodetool prints it (a number, or a number in a string);
/// NaN (no sstables yet) and anything else count as 0.
fn number(value: &serde_json::Value) -> f64 {
    let figure = match value {
        serde_json::Value::Number(number) => number.as_f64().unwrap_or(0.0),
        serde_json::Value::String(text) => text.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    };
    if figure.is_finite() { figure } else { 0.0 }
}

/// The tables named `keyspace.table` in `nodetool tablestats -F json`.
pub fn parse_tablestats(json: &str, tables: &[String]) -> anyhow::Result<Vec<TableStats>> {
    let parsed: serde_json::Value = serde_json::from_str(json).context("tablestats JSON")?;
    let mut found = Vec::new();
    for name in tables {
        let (keyspace, table) = name.split_once('.').context("a keyspace.table name")?;
        let Some(stats) = parsed
            .get(keyspace)
            .and_then(|k| k.get("tables")?.get(table))
        else {
            continue;
        };
        let field = |key: &str| stats.get(key).map(number).unwrap_or(0.0);
        found.push(TableStats {
            table: name.clone(),
            space_used_live: field("space_used_live") as u64,
            space_used_total: field("space_used_total") as u64,
            sstable_count: field("sstable_count") as u64,
            partitions_estimate: field("number_of_partitions_estimate") as u64,
            droppable_tombstone_ratio: round(field("droppable_tombstone_ratio"), 4),
            memtable_cells: field("memtable_cell_count") as u64,
            memtable_bytes: field("memtable_data_size") as u64,
        });
    }
    Ok(found)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub at_secs: f64,
    pub phase: String,
    pub claims_written: u64,
    /// Rows of this run a CQL count still returns (expired ones are not).
    pub live_rows: Option<u64>,
    pub tables: Vec<TableStats>,
}

/// The figures of a storage sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Storage {
    pub ttl_secs: u64,
    pub gc_grace_secs: u64,
    pub paxos_state_purging: String,
    pub rate_per_s: f64,
    pub write_secs: u64,
    pub node: u32,
    /// When writes ended, when the last claim's TTL and grace had passed,
    /// and when the major compaction ran (seconds from the first write).
    pub writes_end_secs: f64,
    pub purgeable_secs: f64,
    pub compaction_secs: f64,
    pub samples: Vec<Sample>,
}

pub type StorageReport = Report<Storage>;

struct Nodetool<'a> {
    script: &'a Path,
    node: u32,
}

impl Nodetool<'_> {
    async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(self.script)
            .args(["nodetool", "--node", &self.node.to_string()])
            .args(args)
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.script.display()))?;
        anyhow::ensure!(
            output.status.success(),
            "nodetool {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    async fn flush(&self, table: &str) -> anyhow::Result<()> {
        let (keyspace, table) = table.split_once('.').context("keyspace.table")?;
        self.run(&["flush", keyspace, table]).await.map(drop)
    }

    async fn compact(&self, table: &str) -> anyhow::Result<()> {
        let (keyspace, table) = table.split_once('.').context("keyspace.table")?;
        self.run(&["compact", keyspace, table]).await.map(drop)
    }

    async fn tablestats(&self, tables: &[String]) -> anyhow::Result<Vec<TableStats>> {
        let mut args = vec!["tablestats", "-F", "json"];
        args.extend(tables.iter().map(String::as_str));
        parse_tablestats(&self.run(&args).await?, tables)
    }
}

async fn count_rows(
    session: &scylla::client::session::Session,
    keyspace: &str,
    namespace: &str,
) -> Option<u64> {
    // The run's own partitions only, by token range scan filtered on the
    // namespace: small tables, a few thousand rows.
    let cql = format!("SELECT count(*) FROM {keyspace}.claims WHERE namespace = ? ALLOW FILTERING");
    let mut statement = scylla::statement::unprepared::Statement::new(cql);
    statement.set_request_timeout(Some(Duration::from_secs(30)));
    let result = session.query_unpaged(statement, (namespace,)).await.ok()?;
    let rows = result.into_rows_result().ok()?;
    let (count,) = rows.maybe_first_row::<(i64,)>().ok()??;
    u64::try_from(count).ok()
}

pub async fn run(args: StorageArgs) -> anyhow::Result<()> {
    let prepared = super::prepare(&args.setup).await?;
    let target = &args.setup.target;
    let keyspace = target.keyspace.name.as_str();
    // Only the lab keyspace's table, which the guard let through.
    prepared
        .session
        .query_unpaged(
            format!(
                "ALTER TABLE {keyspace}.claims WITH gc_grace_seconds = {}",
                args.gc_grace_secs
            ),
            (),
        )
        .await?;
    prepared.session.await_schema_agreement().await?;
    let paxos_state_purging = query_text(
        &prepared.session,
        "SELECT value FROM system_views.settings WHERE name = 'paxos_state_purging'",
    )
    .await;
    let nodetool = Nodetool {
        script: &target.local_cassandra,
        node: args.node,
    };
    let tables: Vec<String> = std::iter::once(format!("{keyspace}.claims"))
        .chain(PAXOS_TABLES.iter().map(|table| (*table).to_owned()))
        .collect();
    let binary = target.dedupd.resolve()?;
    let server =
        ServerProcess::spawn(&binary, &prepared.nodes, &target.keyspace.name, 4096).await?;
    let namespace = format!("scale-{}-ttl", prepared.run_id);
    let claims = HttpApi::new(server.base.clone()).claim_new(
        namespace.clone(),
        format!("ttl-{}", prepared.run_id),
        dedupd_client::ClaimOptions::new()
            .ttl(std::time::Duration::from_secs(args.ttl_secs))
            .complete(true),
    );

    let mut samples = Vec::new();
    let first_write = Instant::now();
    let sample = |phase: &'static str, written: u64| {
        let (nodetool, tables, session, namespace) =
            (&nodetool, &tables, &prepared.session, &namespace);
        async move {
            for table in tables {
                nodetool.flush(table).await?;
            }
            let stats = nodetool.tablestats(tables).await?;
            let live_rows = count_rows(session, keyspace, namespace).await;
            let sample = Sample {
                at_secs: round(first_write.elapsed().as_secs_f64(), 1),
                phase: phase.to_owned(),
                claims_written: written,
                live_rows,
                tables: stats,
            };
            let claims_table = &sample.tables.first().cloned().unwrap_or_default();
            let paxos = sample
                .tables
                .iter()
                .find(|stats| stats.table == "system.paxos")
                .cloned()
                .unwrap_or_default();
            eprintln!(
                "{:>6.1} s {phase:<17} written {written:>6} live rows {live_rows:?}: claims {} KiB live \
                 ({} sstables, droppable {:.2}), paxos {} KiB ({} sstables, droppable {:.2})",
                sample.at_secs,
                claims_table.space_used_live / 1024,
                claims_table.sstable_count,
                claims_table.droppable_tombstone_ratio,
                paxos.space_used_live / 1024,
                paxos.sstable_count,
                paxos.droppable_tombstone_ratio,
            );
            anyhow::Ok(sample)
        }
    };
    samples.push(sample("before", 0).await?);

    let mut written = 0;
    let slices = args.write_secs.div_ceil(args.sample_secs).max(1);
    for _ in 0..slices {
        let count = (args.rate * args.sample_secs as f64).round() as u64;
        let measured = open_loop(&claims, written, count, args.rate, 4096).await;
        anyhow::ensure!(
            measured.errors == 0,
            "claims failed: {:?}",
            measured.error_kinds
        );
        written += count;
        samples.push(sample("writing", written).await?);
    }
    let writes_end = first_write.elapsed();
    server.stop().await;
    // The last claim's cells expire at its TTL and become purgeable
    // gc_grace later; a few seconds more for clocks and rounding.
    let purgeable = writes_end + Duration::from_secs(args.ttl_secs + args.gc_grace_secs + 5);
    while first_write.elapsed() < purgeable {
        let next = (first_write.elapsed() + Duration::from_secs(args.sample_secs)).min(purgeable);
        tokio::time::sleep(next.saturating_sub(first_write.elapsed())).await;
        samples.push(sample("waiting", written).await?);
    }
    let compaction = first_write.elapsed();
    for table in &tables {
        nodetool.compact(table).await?;
    }
    samples.push(sample("after_compaction", written).await?);

    let figures = Storage {
        ttl_secs: args.ttl_secs,
        gc_grace_secs: args.gc_grace_secs,
        paxos_state_purging,
        rate_per_s: args.rate,
        write_secs: args.write_secs,
        node: args.node,
        writes_end_secs: round(writes_end.as_secs_f64(), 1),
        purgeable_secs: round(purgeable.as_secs_f64(), 1),
        compaction_secs: round(compaction.as_secs_f64(), 1),
        samples,
    };
    let name = prepared.sized("storage");
    prepared.write_report(&args.setup.out.out, "storage", &name, figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tablestats_json_is_read_by_table() {
        let json = r#"{
          "total_number_of_tables": 2,
          "lab": {"tables": {"claims": {
              "space_used_live": "4096", "space_used_total": 8192, "sstable_count": 2,
              "number_of_partitions_estimate": 120, "droppable_tombstone_ratio": 0.5,
              "memtable_cell_count": 7, "memtable_data_size": "700"}}},
          "system": {"tables": {"paxos": {"space_used_live": 100, "sstable_count": 1,
              "droppable_tombstone_ratio": "NaN"}}}
        }"#;
        let tables = [
            "lab.claims".to_owned(),
            "system.paxos".to_owned(),
            "system.absent".to_owned(),
        ];
        let stats = parse_tablestats(json, &tables).unwrap();
        assert_eq!(stats.len(), 2);
        assert_eq!(
            stats[0],
            TableStats {
                table: "lab.claims".into(),
                space_used_live: 4096,
                space_used_total: 8192,
                sstable_count: 2,
                partitions_estimate: 120,
                droppable_tombstone_ratio: 0.5,
                memtable_cells: 7,
                memtable_bytes: 700,
            }
        );
        assert_eq!(stats[1].space_used_live, 100);
        assert_eq!(stats[1].space_used_total, 0);
        assert!(parse_tablestats("not json", &tables).is_err());
    }
}
