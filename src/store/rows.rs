//! Decoding claim rows and LWT results by column name.
//!
//! Cassandra answers an applied LWT with `[applied]` alone and a refused one
//! with `[applied]` plus the existing row (only the conditioned columns for
//! an UPDATE … IF); ScyllaDB always sends `[applied]` plus the row. Decoding
//! by name instead of as a fixed tuple reads both.

use chrono::{DateTime, Utc};
use scylla::response::query_result::QueryRowsResult;
use scylla::value::{CqlValue, Row};

use crate::domain::{ClaimRecord, ClaimState, ClaimToken, StoredResult};

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

/// What a read (or a refused LWT) found in a claim's partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowView {
    /// No row: the key was never claimed, was released, or fully expired.
    Absent,
    /// A claim inside its retention window.
    Live(ClaimRecord),
    /// A row past `expires_at`, or missing cells, that TTL has not removed
    /// yet. Cells written by different statements can expire a second apart
    /// (TTLs are whole seconds, clocks differ), so a row near its end may
    /// linger half-present. It counts as absent, but `INSERT … IF NOT
    /// EXISTS` still sees it, so it is replaced with `UPDATE … IF owner = ?`
    /// on the token it holds (possibly null).
    Remnant { token: Option<ClaimToken> },
}

impl RowView {
    pub fn token(&self) -> Option<ClaimToken> {
        match self {
            RowView::Absent => None,
            RowView::Live(record) => Some(record.token),
            RowView::Remnant { token } => *token,
        }
    }
}

impl ClaimColumns {
    /// Reads the claim columns present in `row`, ignoring any others.
    pub fn from_row(rows: &QueryRowsResult, row: &Row) -> Self {
        let mut columns = ClaimColumns::default();
        for (spec, value) in rows.column_specs().iter().zip(row.columns.iter()) {
            let Some(value) = value else { continue };
            match spec.name() {
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

/// Reads `[applied]` from the first column of an LWT result.
pub fn applied_flag(row: &Row) -> Option<bool> {
    match row.columns.first() {
        Some(Some(CqlValue::Boolean(applied))) => Some(*applied),
        _ => None,
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
