//! `dedupd migrate`: creates the keyspace and applies the numbered CQL files
//! in `cql/`, each once, recording what it applied.
//!
//! The files are compiled into the binary, so the image that serves is the
//! image that migrates, and a Kubernetes Job needs nothing but the binary.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::Utc;
use scylla::client::session::Session;
use scylla::errors::{ExecutionError, SchemaAgreementError, UseKeyspaceError};
use sha2::{Digest, Sha256};

use crate::domain::KeyspaceName;

/// One CQL file.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub cql: &'static str,
}

/// Every migration, in order. A test checks that this list matches `cql/`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_schema_migrations.cql",
        cql: include_str!("../../cql/0001_schema_migrations.cql"),
    },
    Migration {
        version: 2,
        name: "0002_claims.cql",
        cql: include_str!("../../cql/0002_claims.cql"),
    },
    Migration {
        version: 3,
        name: "0003_sequences.cql",
        cql: include_str!("../../cql/0003_sequences.cql"),
    },
];

/// The keyspace's replication, always `NetworkTopologyStrategy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// The same factor in every datacenter (`'replication_factor': n`).
    Everywhere(u8),
    /// A factor per named datacenter.
    PerDatacenter(BTreeMap<String, u8>),
}

impl std::str::FromStr for Replication {
    type Err = String;

    /// `3` means 3 replicas in every datacenter; `dc1:3,dc2:3` names them.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        if let Ok(factor) = raw.parse::<u8>() {
            if factor == 0 {
                return Err("replication factor must be at least 1".into());
            }
            return Ok(Replication::Everywhere(factor));
        }
        let mut per_dc = BTreeMap::new();
        for part in raw.split(',') {
            let (dc, factor) = part
                .split_once(':')
                .ok_or_else(|| format!("expected `n` or `dc:n,dc:n`, got {raw:?}"))?;
            let dc = dc.trim();
            let valid_dc = !dc.is_empty()
                && dc
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
            if !valid_dc {
                return Err(format!("invalid datacenter name {dc:?}"));
            }
            let factor: u8 = factor
                .trim()
                .parse()
                .map_err(|_| format!("invalid replication factor in {part:?}"))?;
            if factor == 0 {
                return Err(format!("replication factor must be at least 1 in {part:?}"));
            }
            per_dc.insert(dc.to_owned(), factor);
        }
        Ok(Replication::PerDatacenter(per_dc))
    }
}

impl Replication {
    fn to_cql(&self) -> String {
        let mut map = String::from("{'class': 'NetworkTopologyStrategy'");
        match self {
            Replication::Everywhere(factor) => {
                let _ = write!(map, ", 'replication_factor': {factor}");
            }
            Replication::PerDatacenter(per_dc) => {
                for (dc, factor) in per_dc {
                    let _ = write!(map, ", '{dc}': {factor}");
                }
            }
        }
        map.push('}');
        map
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration statement failed: {statement}: {source}")]
    Statement {
        statement: String,
        #[source]
        source: ExecutionError,
    },
    #[error("the cluster did not agree on the schema: {0}; check that every node is up")]
    SchemaAgreement(#[from] SchemaAgreementError),
    #[error("could not use keyspace {keyspace}: {source}")]
    Keyspace {
        keyspace: String,
        #[source]
        source: UseKeyspaceError,
    },
    #[error(
        "{name} was applied with checksum {recorded} but the file now has {current}; \
         applied migrations must not change: add a new numbered file instead"
    )]
    ChecksumMismatch {
        name: &'static str,
        recorded: String,
        current: String,
    },
}

/// What a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<&'static str>,
    pub already_applied: Vec<&'static str>,
}

pub fn checksum(cql: &str) -> String {
    let digest = Sha256::digest(cql.as_bytes());
    digest.iter().fold(String::new(), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// Splits a CQL file into statements: `--` comments dropped, split on `;`.
/// The files hold DDL only, with no `;` or `--` inside string literals.
pub fn statements(cql: &str) -> Vec<String> {
    let without_comments: String = cql
        .lines()
        .map(|line| match line.find("--") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(|statement| statement.trim().to_owned())
        .filter(|statement| !statement.is_empty())
        .collect()
}

async fn run(session: &Session, statement: &str) -> Result<(), MigrateError> {
    session
        .query_unpaged(statement, ())
        .await
        .map_err(|source| MigrateError::Statement {
            statement: statement.chars().take(120).collect(),
            source,
        })?;
    Ok(())
}

/// Whether the cluster is ScyllaDB: only its nodes announce shards.
fn is_scylla(session: &Session) -> bool {
    session
        .get_cluster_state()
        .get_nodes_info()
        .iter()
        .any(|node| node.sharder().is_some())
}

/// Creates `keyspace` if needed and applies every migration not yet
/// recorded. Safe to run again: it applies nothing twice.
pub async fn migrate(
    session: &Session,
    keyspace: &KeyspaceName,
    replication: &Replication,
) -> Result<MigrationReport, MigrateError> {
    let create = format!(
        "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {} AND durable_writes = true",
        replication.to_cql()
    );
    if is_scylla(session) {
        // ScyllaDB makes new keyspaces tablet-based by default, and LWT on
        // tablets arrived only in 2025.4: ask for vnodes. A ScyllaDB older
        // than tablets refuses the option, and then needs none.
        let without_tablets = format!("{create} AND tablets = {{'enabled': false}}");
        match run(session, &without_tablets).await {
            Ok(()) => {}
            // Only a refusal of the statement itself (an unknown option)
            // means "a ScyllaDB without tablets"; anything else is an error.
            Err(MigrateError::Statement { source, .. })
                if crate::store::classify(&source) == crate::store::FailureKind::Rejected =>
            {
                run(session, &create).await?;
            }
            Err(error) => return Err(error),
        }
    } else {
        run(session, &create).await?;
    }
    session.await_schema_agreement().await?;
    // The CQL files name their tables without a keyspace; DDL is sent
    // unprepared, so a session-wide USE is unambiguous here.
    session
        .use_keyspace(keyspace.as_str(), true)
        .await
        .map_err(|source| MigrateError::Keyspace {
            keyspace: keyspace.to_string(),
            source,
        })?;

    let recorded = recorded_checksums(session, keyspace).await;
    let mut report = MigrationReport::default();
    for migration in MIGRATIONS {
        let current = checksum(migration.cql);
        if let Some(recorded) = recorded.get(&migration.version) {
            if *recorded != current {
                return Err(MigrateError::ChecksumMismatch {
                    name: migration.name,
                    recorded: recorded.clone(),
                    current,
                });
            }
            report.already_applied.push(migration.name);
            continue;
        }
        for statement in statements(migration.cql) {
            run(session, &statement).await?;
        }
        session.await_schema_agreement().await?;
        session
            .query_unpaged(
                format!(
                    "INSERT INTO {keyspace}.schema_migrations (version, name, checksum, applied_at) \
                     VALUES (?, ?, ?, ?)"
                ),
                (migration.version, migration.name, &current, Utc::now()),
            )
            .await
            .map_err(|source| MigrateError::Statement {
                statement: "INSERT INTO schema_migrations".into(),
                source,
            })?;
        tracing::info!(migration = migration.name, keyspace = %keyspace, "migration applied");
        report.applied.push(migration.name);
    }
    Ok(report)
}

/// The checksums recorded so far; empty when the record table does not
/// exist yet (a fresh keyspace).
async fn recorded_checksums(session: &Session, keyspace: &KeyspaceName) -> BTreeMap<i32, String> {
    let Ok(result) = session
        .query_unpaged(
            format!("SELECT version, checksum FROM {keyspace}.schema_migrations"),
            (),
        )
        .await
    else {
        return BTreeMap::new();
    };
    let Ok(rows) = result.into_rows_result() else {
        return BTreeMap::new();
    };
    let Ok(iter) = rows.rows::<(i32, Option<String>)>() else {
        return BTreeMap::new();
    };
    iter.filter_map(Result::ok)
        .filter_map(|(version, checksum)| Some((version, checksum?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_cql_is_listed_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/cql");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".cql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(files, listed);
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version as usize, index + 1);
            assert!(
                migration
                    .name
                    .starts_with(&format!("{:04}_", migration.version))
            );
        }
    }

    #[test]
    fn statements_drop_comments_and_split() {
        let cql = "-- a comment; with a semicolon\nCREATE TABLE a (x int PRIMARY KEY); -- trailing\n\nCREATE TABLE b (y int PRIMARY KEY)\n  WITH comment = 'b';\n";
        assert_eq!(
            statements(cql),
            vec![
                "CREATE TABLE a (x int PRIMARY KEY)".to_owned(),
                "CREATE TABLE b (y int PRIMARY KEY)\n  WITH comment = 'b'".to_owned()
            ]
        );
    }

    #[test]
    fn every_migration_is_idempotent_ddl() {
        for migration in MIGRATIONS {
            for statement in statements(migration.cql) {
                assert!(
                    statement.contains("IF NOT EXISTS"),
                    "{}: every statement must be idempotent: {statement}",
                    migration.name
                );
            }
        }
    }

    #[test]
    fn replication_parses_both_forms() {
        assert_eq!("3".parse(), Ok(Replication::Everywhere(3)));
        assert_eq!(
            Replication::Everywhere(1).to_cql(),
            "{'class': 'NetworkTopologyStrategy', 'replication_factor': 1}"
        );
        let per_dc: Replication = "dc1:3, dc2:2".parse().unwrap();
        assert_eq!(
            per_dc.to_cql(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
        assert!("0".parse::<Replication>().is_err());
        assert!("dc1".parse::<Replication>().is_err());
        assert!("dc'1:3".parse::<Replication>().is_err());
    }
}
