//! What the lab tools need of a CQL session before they start: one that
//! waits for a database still coming up, and a single text value read
//! from it (versions, settings) for their reports.

use std::time::Duration;

use scylla::client::session::Session;

use dedupd::store::{CqlSettings, connect_session};

/// A session, retried once a second for up to a minute: a cluster the
/// local-cluster script has just started takes a while to answer.
pub async fn wait_for_cql(settings: &CqlSettings) -> anyhow::Result<Session> {
    let mut last_error = None;
    for _ in 0..60 {
        match connect_session(settings).await {
            Ok(session) => return Ok(session),
            Err(error) => last_error = Some(error),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(anyhow::anyhow!(
        "the database did not answer: {last_error:?}"
    ))
}

/// The first text column of the first row `cql` returns, or "unknown".
pub async fn query_text(session: &Session, cql: &str) -> String {
    let Ok(result) = session.query_unpaged(cql, ()).await else {
        return "unknown".into();
    };
    result
        .into_rows_result()
        .ok()
        .and_then(|rows| rows.maybe_first_row::<(Option<String>,)>().ok().flatten())
        .and_then(|(value,)| value)
        .unwrap_or_else(|| "unknown".into())
}
