//! The keyspace a lab tool writes, and the guard that keeps it from writing
//! someone else's.
//!
//! The bench, the soak and the checker create tables, truncate nothing, but
//! flood a keyspace with claims and (for the checker) kill the dedupd
//! processes that serve it. Pointed at a production cluster by mistake,
//! `migrate` alone would alter a live schema. So a lab tool marks each
//! keyspace it creates with a `lab_marker` table and refuses one that
//! exists without the mark, unless `--allow-existing-keyspace` says the
//! operator meant it.

use clap::Args;
use scylla::client::session::Session;

use dedupd::domain::KeyspaceName;
use dedupd::store::migrate::{Replication, migrate};

/// The flags every lab tool takes for the keyspace it writes. The name is
/// checked as the flags are read, before anything connects or starts.
#[derive(Debug, Clone, Args)]
pub struct KeyspaceArgs {
    /// The keyspace the tool creates and writes (never the service's).
    #[arg(
        id = "keyspace",
        long = "keyspace",
        value_name = "KEYSPACE",
        default_value = "dedupd_bench",
        value_parser = KeyspaceName::parse
    )]
    pub name: KeyspaceName,
    /// Write into a keyspace that no lab tool created.
    #[arg(long = "allow-existing-keyspace")]
    pub allow_existing: bool,
}

/// What `prepare` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No such keyspace: the lab creates it.
    Absent,
    /// A keyspace a lab tool created earlier.
    Marked,
    /// A keyspace the lab did not create.
    Foreign,
}

/// Whether a lab tool may write `found`.
pub fn may_write(found: Found, allow_existing: bool) -> Result<(), String> {
    match found {
        Found::Absent | Found::Marked => Ok(()),
        Found::Foreign if allow_existing => Ok(()),
        Found::Foreign => Err(
            "the keyspace exists and no lab tool created it (it has no lab_marker table); \
             name another with --keyspace, or pass --allow-existing-keyspace if writing \
             load into it is what you mean"
                .into(),
        ),
    }
}

async fn inspect(session: &Session, keyspace: &KeyspaceName) -> anyhow::Result<Found> {
    let tables = schema_names(
        session,
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
        keyspace,
    )
    .await?;
    if tables.iter().any(|table| table == "lab_marker") {
        return Ok(Found::Marked);
    }
    if !tables.is_empty() {
        return Ok(Found::Foreign);
    }
    // No tables: the keyspace may still exist, empty.
    let keyspaces = schema_names(
        session,
        "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
        keyspace,
    )
    .await?;
    Ok(if keyspaces.is_empty() {
        Found::Absent
    } else {
        Found::Foreign
    })
}

/// The names a schema query (one text column, bound to the keyspace) lists.
async fn schema_names(
    session: &Session,
    cql: &str,
    keyspace: &KeyspaceName,
) -> anyhow::Result<Vec<String>> {
    let rows = session
        .query_unpaged(cql, (keyspace.as_str(),))
        .await?
        .into_rows_result()?;
    let names = rows
        .rows::<(String,)>()?
        .map(|row| row.map(|(name,)| name))
        .collect::<Result<_, _>>()?;
    Ok(names)
}

/// Checks the guard, applies the service's migrations and marks the
/// keyspace as the lab's.
pub async fn prepare(
    session: &Session,
    keyspace: &KeyspaceArgs,
    replication: &Replication,
) -> anyhow::Result<()> {
    let KeyspaceArgs {
        name,
        allow_existing,
    } = keyspace;
    let found = inspect(session, name).await?;
    may_write(found, *allow_existing)
        .map_err(|refusal| anyhow::anyhow!("keyspace {}: {refusal}", name.as_str()))?;
    migrate(session, name, replication).await?;
    session
        .query_unpaged(
            format!(
                "CREATE TABLE IF NOT EXISTS {}.lab_marker (tool text PRIMARY KEY) \
                 WITH comment = 'created by dedupd-lab: load and faults are written here'",
                name.as_str()
            ),
            (),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_foreign_keyspace_needs_the_flag() {
        assert!(may_write(Found::Absent, false).is_ok());
        assert!(may_write(Found::Marked, false).is_ok());
        assert!(may_write(Found::Foreign, false).is_err());
        assert!(may_write(Found::Foreign, true).is_ok());
    }
}
