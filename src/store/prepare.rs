//! Preparing statements, each with the settings its kind needs: one place,
//! so that the claim and sequence statements cannot drift apart.

use scylla::client::session::Session;
use scylla::errors::PrepareError;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};

use super::lwt;
use crate::domain::KeyspaceName;

/// A prepared statement and the name metrics, logs and fault plans know it
/// by, kept together so that a statement is never counted under another's.
pub(super) struct NamedStatement {
    pub name: &'static str,
    pub prepared: PreparedStatement,
}

/// What a statement does, which decides how it must run.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// A lightweight transaction (see `lwt::conditional`).
    Conditional,
    /// A linearizable read (see `lwt::serial_read`).
    SerialRead,
    /// A read at the configured consistency: it sees every committed write,
    /// and may be retried or run speculatively.
    Read,
}

/// Prepares statements on one session, at the configured consistencies.
pub(super) struct Preparer<'a> {
    pub session: &'a Session,
    pub keyspace: &'a KeyspaceName,
    pub consistency: Consistency,
    pub serial_consistency: SerialConsistency,
}

impl Preparer<'_> {
    /// A table's name, qualified by the keyspace: prepared statements must
    /// not depend on a session-wide `USE`, which Cassandra warns is
    /// ambiguous.
    pub fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.keyspace)
    }

    /// Prepares `cql`, set up to run as `kind` under `name`.
    pub async fn prepare(
        &self,
        kind: Kind,
        name: &'static str,
        cql: &str,
    ) -> Result<NamedStatement, PrepareError> {
        let mut prepared = self.session.prepare(cql).await?;
        let prepared = match kind {
            Kind::Conditional => {
                lwt::conditional(prepared, self.consistency, self.serial_consistency)
            }
            Kind::SerialRead => lwt::serial_read(prepared, self.serial_consistency),
            Kind::Read => {
                prepared.set_consistency(self.consistency);
                prepared.set_is_idempotent(true);
                prepared
            }
        };
        Ok(NamedStatement { name, prepared })
    }
}

/// Declares the prepared statements on one table: a struct with one
/// `NamedStatement` per statement, and its `prepare`, which sets each up
/// for its kind. Each line reads `field: Kind name => "CQL"`; in the CQL,
/// `{table}` stands for the keyspace-qualified table, and constants in
/// scope may be spliced in by name.
macro_rules! prepared_statements {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident on $table:literal {
            $($field:ident: $kind:ident $statement:path => $cql:literal,)+
        }
    ) => {
        $(#[$attr])*
        $vis struct $name {
            $($field: $crate::store::prepare::NamedStatement,)+
        }

        impl $name {
            $vis async fn prepare(
                with: &$crate::store::prepare::Preparer<'_>,
            ) -> Result<Self, scylla::errors::PrepareError> {
                let table = with.table($table);
                Ok(Self {
                    $($field: with
                        .prepare(
                            $crate::store::prepare::Kind::$kind,
                            $statement,
                            &format!($cql, table = table),
                        )
                        .await?,)+
                })
            }
        }
    };
}
pub(super) use prepared_statements;
