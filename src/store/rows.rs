//! Decoding claim rows, and refused LWTs on them, by column name (see
//! `lwt` for the two databases' answer shapes).

use chrono::{DateTime, Utc};
use scylla::value::CqlValue;

use super::lwt::NamedColumns;
use crate::domain::{ClaimRecord, ClaimState, ClaimToken, Refusal, RowView, StoredResult};

/// The columns of a claim row, each absent when null or not returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimColumns {
    pub token: Option<ClaimToken>,
    pub state: Option<String>,
    pub fingerprint: Option<String>,
    pub claimant: Option<String>,
    pub window: Option<uuid::Uuid>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub result: Option<String>,
}

impl ClaimColumns {
    /// Reads the claim columns present, ignoring any others.
    pub fn from_named(named: &NamedColumns) -> Self {
        let mut columns = ClaimColumns::default();
        for (name, value) in named {
            let Some(value) = value else { continue };
            match name.as_str() {
                "owner" => columns.token = as_uuid(value).map(ClaimToken),
                "state" => columns.state = as_text(value),
                "fingerprint" => columns.fingerprint = as_text(value),
                "claimant" => columns.claimant = as_text(value),
                "window" => columns.window = as_uuid(value),
                "claimed_at" => columns.claimed_at = as_time(value),
                "expires_at" => columns.expires_at = as_time(value),
                "lease_expires_at" => columns.lease_expires_at = as_time(value),
                "completed_at" => columns.completed_at = as_time(value),
                "result" => columns.result = as_text(value),
                _ => {}
            }
        }
        columns
    }

    fn is_empty(&self) -> bool {
        *self == ClaimColumns::default()
    }

    /// Classifies a complete row (from a read or a refused INSERT).
    pub fn into_view(self, now: DateTime<Utc>) -> RowView {
        if self.is_empty() {
            return RowView::Absent;
        }
        let state = self.state.as_deref().and_then(ClaimState::parse);
        let (Some(token), Some(state), Some(window), Some(claimed_at), Some(expires_at)) = (
            self.token,
            state,
            self.window,
            self.claimed_at,
            self.expires_at,
        ) else {
            return RowView::Remnant { token: self.token };
        };
        if expires_at <= now {
            return RowView::Remnant { token: Some(token) };
        }
        RowView::Live(ClaimRecord {
            token,
            state,
            fingerprint: self.fingerprint,
            claimant: self.claimant,
            window,
            claimed_at,
            expires_at,
            lease_expires_at: self.lease_expires_at,
            completed_at: self.completed_at,
            result: self.result.map(StoredResult::from_stored),
        })
    }
}

/// What a refused `INSERT … IF NOT EXISTS` on a claim row reported: the
/// existing row, classified as of `now`.
pub fn refused_insert(named: &NamedColumns, now: DateTime<Utc>) -> Refusal {
    Refusal::Exists(match ClaimColumns::from_named(named).into_view(now) {
        // The INSERT saw a row, so one exists: with no cells at all it
        // is a row marker that outlived them, a remnant to replace on a
        // null owner.
        RowView::Absent => RowView::Remnant { token: None },
        view => view,
    })
}

/// What a refused `UPDATE`/`DELETE … IF owner = ? …` on a claim row
/// reported: the owner and state the Paxos round saw, from the conditioned
/// columns (Cassandra) or every column (ScyllaDB). No clock is involved.
pub fn refused_update(named: &NamedColumns) -> Refusal {
    let columns = ClaimColumns::from_named(named);
    Refusal::Held {
        owner: columns.token,
        state: columns.state.as_deref().and_then(ClaimState::parse),
    }
}

fn as_uuid(value: &CqlValue) -> Option<uuid::Uuid> {
    match value {
        CqlValue::Uuid(uuid) => Some(*uuid),
        CqlValue::Timeuuid(timeuuid) => Some((*timeuuid).into()),
        _ => None,
    }
}

fn as_text(value: &CqlValue) -> Option<String> {
    match value {
        CqlValue::Text(text) | CqlValue::Ascii(text) => Some(text.clone()),
        _ => None,
    }
}

fn as_time(value: &CqlValue) -> Option<DateTime<Utc>> {
    match value {
        CqlValue::Timestamp(timestamp) => DateTime::from_timestamp_millis(timestamp.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{now_millis, secs};

    fn text(value: &str) -> Option<CqlValue> {
        Some(CqlValue::Text(value.into()))
    }

    fn time(at: DateTime<Utc>) -> Option<CqlValue> {
        Some(CqlValue::Timestamp(scylla::value::CqlTimestamp(
            at.timestamp_millis(),
        )))
    }

    /// Every claim column, as ScyllaDB sends them (and Cassandra for a
    /// refused INSERT).
    fn whole_row(owner: ClaimToken, now: DateTime<Utc>) -> NamedColumns {
        [
            ("owner", Some(CqlValue::Uuid(owner.0))),
            ("state", text("in_progress")),
            ("fingerprint", None),
            ("claimant", text("worker-1")),
            ("window", Some(CqlValue::Uuid(owner.0))),
            ("claimed_at", time(now)),
            ("expires_at", time(now + secs(60))),
            ("lease_expires_at", time(now + secs(30))),
            ("completed_at", None),
            ("result", None),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    #[test]
    fn a_refused_update_reports_owner_and_state_in_both_shapes() {
        let now = now_millis();
        let owner = ClaimToken::generate();
        // Cassandra: only the conditioned columns.
        let cassandra: NamedColumns = vec![
            ("owner".into(), Some(CqlValue::Uuid(owner.0))),
            ("state".into(), text("completed")),
            ("lease_expires_at".into(), None),
        ];
        let held = Refusal::Held {
            owner: Some(owner),
            state: Some(ClaimState::Completed),
        };
        assert_eq!(refused_update(&cassandra), held);
        // ScyllaDB: every column.
        let mut scylla = whole_row(owner, now);
        scylla[1].1 = text("completed");
        assert_eq!(refused_update(&scylla), held);
        // A refused delete of a row that is gone: no owner.
        let gone: NamedColumns = vec![("owner".into(), None), ("state".into(), None)];
        assert_eq!(
            refused_update(&gone),
            Refusal::Held {
                owner: None,
                state: None
            }
        );
    }

    #[test]
    fn a_refused_insert_reports_the_row_it_found() {
        let now = now_millis();
        let owner = ClaimToken::generate();
        let Refusal::Exists(RowView::Live(record)) = refused_insert(&whole_row(owner, now), now)
        else {
            panic!("a live row")
        };
        assert_eq!(record.token, owner);
        assert_eq!(record.claimant.as_deref(), Some("worker-1"));
        // A row marker whose cells are gone: a remnant with no owner.
        let marker: NamedColumns = whole_row(owner, now)
            .into_iter()
            .map(|(name, _)| (name, None))
            .collect();
        assert_eq!(
            refused_insert(&marker, now),
            Refusal::Exists(RowView::Remnant { token: None })
        );
    }

    fn full(now: DateTime<Utc>) -> ClaimColumns {
        ClaimColumns {
            token: Some(ClaimToken::generate()),
            state: Some("in_progress".into()),
            window: Some(uuid::Uuid::new_v4()),
            claimed_at: Some(now),
            expires_at: Some(now + secs(60)),
            lease_expires_at: Some(now + secs(30)),
            ..ClaimColumns::default()
        }
    }

    #[test]
    fn a_full_row_inside_its_window_is_live() {
        let now = now_millis();
        assert!(matches!(full(now).into_view(now), RowView::Live(_)));
    }

    #[test]
    fn no_columns_is_absent() {
        assert_eq!(
            ClaimColumns::default().into_view(now_millis()),
            RowView::Absent
        );
    }

    #[test]
    fn an_expired_or_partial_row_is_a_remnant_keeping_its_token() {
        let now = now_millis();
        let columns = full(now);
        let token = columns.token;
        assert_eq!(
            columns.clone().into_view(now + secs(60)),
            RowView::Remnant { token }
        );
        let without_state = ClaimColumns {
            state: None,
            ..columns.clone()
        };
        assert_eq!(without_state.into_view(now), RowView::Remnant { token });
        let only_result = ClaimColumns {
            result: Some("1".into()),
            ..ClaimColumns::default()
        };
        assert_eq!(only_result.into_view(now), RowView::Remnant { token: None });
    }

    #[test]
    fn an_unknown_state_is_not_trusted() {
        let now = now_millis();
        let columns = ClaimColumns {
            state: Some("weird".into()),
            ..full(now)
        };
        assert!(matches!(columns.into_view(now), RowView::Remnant { .. }));
    }
}
