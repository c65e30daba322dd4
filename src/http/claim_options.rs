//! The options a single claim and a batch share on the way in: one parse,
//! so a key means the same thing with the same options either way.

use super::error::{ApiError, ApiResult};
use crate::claims::ClaimRequest;
use crate::domain::{
    ClaimKey, Claimant, Fingerprint, Namespace, ParseError, Principal, Retention, RetentionPolicy,
};

/// What the body says about how to claim, validated.
#[derive(Debug, Clone)]
pub struct ClaimOptions {
    pub retention: Retention,
    pub complete: bool,
    pub claimant: Option<Claimant>,
}

/// The raw options, as a body carries them.
pub struct RawOptions<'a> {
    pub ttl_secs: Option<u64>,
    pub lease_secs: Option<u64>,
    pub complete: Option<bool>,
    pub claimant: Option<&'a str>,
}

/// A single claim's body and a batch's name their options alike; one
/// reading of those fields serves both, so the two cannot drift apart.
/// Each body's module invokes it, so this module needs neither body.
macro_rules! raw_options_from {
    ($($body:ty),*) => {$(
        impl<'a> From<&'a $body> for RawOptions<'a> {
            fn from(body: &'a $body) -> Self {
                RawOptions {
                    ttl_secs: body.ttl_secs,
                    lease_secs: body.lease_secs,
                    complete: body.complete,
                    claimant: body.claimant.as_deref(),
                }
            }
        }
    )*};
}

pub(crate) use raw_options_from;

impl ClaimOptions {
    pub fn parse(
        policy: &RetentionPolicy,
        principal: Option<&Principal>,
        raw: RawOptions<'_>,
    ) -> ApiResult<Self> {
        let complete = raw.complete.unwrap_or(false);
        Ok(Self {
            retention: Retention::parse(policy, raw.ttl_secs, raw.lease_secs, complete)
                .map_err(ApiError::invalid_request)?,
            complete,
            claimant: raw
                .claimant
                .map(|claimant| Claimant::parse(principal, claimant))
                .transpose()
                .map_err(ApiError::invalid_request)?,
        })
    }

    /// The claim of `key` with these options.
    pub fn request(
        &self,
        namespace: Namespace,
        key: ClaimKey,
        fingerprint: Option<Fingerprint>,
    ) -> ClaimRequest {
        ClaimRequest {
            namespace,
            key,
            retention: self.retention,
            complete: self.complete,
            fingerprint,
            claimant: self.claimant.clone(),
        }
    }
}

/// A fingerprint, if one was sent.
pub fn fingerprint(raw: Option<&str>) -> Result<Option<Fingerprint>, ParseError> {
    raw.map(Fingerprint::parse).transpose()
}
