//! Batch claims: `POST /v1/namespaces/{ns}/claims`, many keys in one
//! request, one answer per key.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::answers::{ClaimAnswer, Duplicate, Lease, State, present};
use crate::client::{
    Answer, Call, Client, check_namespace, json_body, new_claimant, parse, protocol, refusal,
};
use crate::encode::encode_segment;
use crate::error::Error;
use crate::options::{ClaimOptions, ClaimTerms};

/// The most keys one batch may hold.
pub const MAX_BATCH_KEYS: usize = 1000;

/// One key of a batch claim, with its own fingerprint if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchClaim {
    pub key: String,
    pub fingerprint: Option<String>,
}

impl BatchClaim {
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            fingerprint: None,
        }
    }

    /// This key's payload hash (≤ 128 bytes), as
    /// [`ClaimOptions::fingerprint`] is for a single claim.
    pub fn fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.fingerprint = Some(fingerprint.into());
        self
    }
}

impl From<&str> for BatchClaim {
    fn from(key: &str) -> Self {
        Self::new(key)
    }
}

impl From<String> for BatchClaim {
    fn from(key: String) -> Self {
        Self::new(key)
    }
}

/// One key's answer in a batch: what a single claim of it would have
/// answered, as [`Client::claim`] hands it on (a per-key 503 is
/// [`Error::Unavailable`], a fingerprint mismatch
/// [`Error::FingerprintMismatch`], any other refusal [`Error::Problem`]).
#[derive(Debug)]
pub struct BatchResult {
    pub key: String,
    pub answer: Result<ClaimAnswer, Error>,
}

#[derive(Serialize)]
struct BatchBody<'a> {
    claims: Vec<BatchItem<'a>>,
    #[serde(flatten)]
    terms: ClaimTerms,
    claimant: &'a str,
}

#[derive(Serialize)]
struct BatchItem<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<&'a str>,
}

#[derive(Deserialize)]
struct BatchAnswer {
    results: Vec<ResultBody>,
}

#[derive(Deserialize)]
struct ResultBody {
    key: String,
    status: u16,
    outcome: String,
    token: Option<String>,
    state: Option<State>,
    expires_at: Option<DateTime<Utc>>,
    lease_expires_at: Option<DateTime<Utc>>,
    takeover: Option<bool>,
    completed_at: Option<DateTime<Utc>>,
    holder: Option<String>,
    #[serde(default, deserialize_with = "present")]
    result: Option<serde_json::Value>,
    retry_after_secs: Option<u64>,
    #[serde(rename = "type")]
    problem_type: Option<String>,
    detail: Option<String>,
}

impl Client {
    /// Claims every key of `claims` in `namespace` in one request (1 to
    /// [`MAX_BATCH_KEYS`] keys, each at most once). Not atomic: each key is
    /// its own claim, and its answer stands on its own, in request order.
    ///
    /// `options` applies to every key (ttl, lease, complete, claimant, and
    /// the fingerprint of keys that carry none); `wait` is not taken by
    /// batches and is refused. As for a single claim, the batch carries
    /// `options.claimant` or a fresh random one, which every retry of the
    /// whole request (a 503 for the batch, a lost answer) reuses. Keys
    /// answered 503 inside the batch are not retried: claim them again.
    pub async fn claim_batch(
        &self,
        namespace: &str,
        claims: &[BatchClaim],
        options: &ClaimOptions,
    ) -> Result<Vec<BatchResult>, Error> {
        check_namespace(namespace)?;
        if claims.is_empty() || claims.len() > MAX_BATCH_KEYS {
            return Err(Error::Invalid {
                what: "batch",
                detail: format!(
                    "a batch holds 1 to {MAX_BATCH_KEYS} claims, got {}",
                    claims.len()
                ),
            });
        }
        if !options.wait.is_zero() {
            return Err(Error::Invalid {
                what: "batch options",
                detail: "a batch claim does not wait: set no wait".into(),
            });
        }
        let claimant = match &options.claimant {
            Some(claimant) => claimant.clone(),
            None => new_claimant(),
        };
        let body = BatchBody {
            claims: claims
                .iter()
                .map(|claim| BatchItem {
                    key: &claim.key,
                    fingerprint: claim
                        .fingerprint
                        .as_deref()
                        .or(options.fingerprint.as_deref()),
                })
                .collect(),
            terms: options.terms(),
            claimant: &claimant,
        };
        let call = Call::Batch {
            namespace,
            keys: claims.len(),
        };
        let path = format!("/v1/namespaces/{}/claims", encode_segment(namespace));
        let answer = self
            .call(
                &call,
                Method::POST,
                &path,
                Some(json_body(&body)?),
                Duration::ZERO,
            )
            .await?;
        if answer.status != StatusCode::OK {
            return Err(refusal(&call, &answer));
        }
        let body: BatchAnswer = parse(&call, &answer)?;
        let in_order = body.results.len() == claims.len()
            && body
                .results
                .iter()
                .zip(claims)
                .all(|(result, claim)| result.key == claim.key);
        if !in_order {
            return Err(protocol(
                &call,
                &answer,
                "results that are not one per key in request order",
            ));
        }
        Ok(body
            .results
            .into_iter()
            .map(|result| {
                let key = result.key.clone();
                let answer = item_answer(namespace, &claimant, &answer, result);
                BatchResult { key, answer }
            })
            .collect())
    }
}

/// One key's result as a single claim's answer or error.
fn item_answer(
    namespace: &str,
    claimant: &str,
    batch: &Answer,
    result: ResultBody,
) -> Result<ClaimAnswer, Error> {
    let call = Call::Key {
        action: "claim (in a batch)",
        namespace,
        key: &result.key,
    };
    let malformed = |what: &str| Error::Protocol {
        call: call.to_string(),
        status: result.status,
        detail: format!("{what} (in a batch answered {})", batch.status),
    };
    let detail = result.detail.clone().unwrap_or_default();
    match result.status {
        201 => {
            let (Some(token), Some(expires_at)) = (result.token.clone(), result.expires_at) else {
                return Err(malformed("an acquired key without its token or expiry"));
            };
            Ok(ClaimAnswer::Acquired(Lease {
                token,
                claimant: claimant.to_owned(),
                expires_at,
                lease_expires_at: result.lease_expires_at,
                takeover: result.takeover.unwrap_or(false),
            }))
        }
        409 => match (result.outcome.as_str(), result.state) {
            ("duplicate", Some(state)) => Ok(ClaimAnswer::Duplicate(Duplicate {
                state,
                result: result.result,
                expires_at: result.expires_at,
                completed_at: result.completed_at,
                lease_expires_at: result.lease_expires_at,
                retry_after: result.retry_after_secs.map(Duration::from_secs),
                holder: result.holder,
            })),
            _ => Err(malformed("a 409 that is not a duplicate")),
        },
        422 => Err(Error::FingerprintMismatch { detail }),
        503 => Err(Error::Unavailable {
            call: call.to_string(),
            status: 503,
            retry_after: result.retry_after_secs.map(Duration::from_secs),
            retry_after_header: result.retry_after_secs.is_some(),
            problem_type: result.problem_type.unwrap_or_default(),
            detail,
        }),
        status => Err(Error::Problem {
            call: call.to_string(),
            status,
            problem_type: result.problem_type.unwrap_or_default(),
            title: result.outcome,
            detail,
        }),
    }
}
