//! The one error type of the client's calls. Each message says what
//! happened and what the caller may do about it; none carries the bearer
//! token.

use std::time::Duration;

/// Why a call did not get the answer it asked for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 503 (or 502/504 from a proxy): the server could not decide, or is
    /// overloaded. Reported once the retries are spent or disabled.
    #[error(
        "dedupd could not decide {call} (HTTP {status}, {problem_type}: {detail}); the claim is not decided, \
         it is not a duplicate: retry with the same claimant (or token){}",
        retry_hint(*retry_after)
    )]
    Unavailable {
        call: String,
        status: u16,
        /// `Retry-After` in whole seconds, when it came and was readable.
        retry_after: Option<Duration>,
        /// Whether the answer carried a `Retry-After` header at all (even
        /// one `retry_after` could not read).
        retry_after_header: bool,
        problem_type: String,
        detail: String,
    },

    /// No answer: the connection failed, or closed before the answer.
    #[error(
        "no answer from dedupd to {call}: {}; the call may or may not have taken effect: \
         retry with the same claimant (a claim) or the same token (complete, release, extend)",
        chain(source)
    )]
    Transport {
        call: String,
        #[source]
        source: reqwest::Error,
    },

    /// No answer within the request timeout.
    #[error(
        "dedupd did not answer {call} within {after:?}; the call may have taken effect: retry with \
         the same claimant (or token), or raise the client's request_timeout"
    )]
    Timeout { call: String, after: Duration },

    /// The retry budget ran out; `last` is the last attempt's error.
    #[error(
        "gave up on {call} after {attempts} attempts over {elapsed:?}; the outcome is unknown: retry \
         later with the same claimant (Lease::claimant / ClaimOptions::claimant) or token, or raise \
         the client's retry_budget. Last attempt: {last}"
    )]
    BudgetExhausted {
        call: String,
        attempts: u32,
        elapsed: Duration,
        last: Box<Error>,
    },

    /// 422: the key was claimed before with another fingerprint.
    #[error(
        "the key was claimed before with a different fingerprint ({detail}): the message id was reused \
         for another payload; retrying will not help: check how the producer assigns ids"
    )]
    FingerprintMismatch { detail: String },

    /// 409 `not_owner` from complete, release or extend.
    #[error(
        "refused: {detail}; do not retry with this token: whoever holds the claim now decides its \
         outcome, and a new claim of the key tells you what it is"
    )]
    NotOwner { detail: String },

    /// 409 `already_completed` from release or extend.
    #[error(
        "refused: {detail}; there is nothing left to release or extend: claim the key to read its \
         stored result"
    )]
    AlreadyCompleted { detail: String },

    /// 404 from complete, release or extend: no live claim for the key.
    #[error(
        "not found: {detail}; claim the key again (and redo the work under the new lease) before \
         completing or extending"
    )]
    NotFound { detail: String },

    /// Any other 4xx (and 500): the request must change; never retried.
    #[error(
        "dedupd refused {call}: HTTP {status} {title} ({problem_type}): {detail}; not retried: fix the \
         request{}",
        auth_hint(*status)
    )]
    Problem {
        call: String,
        status: u16,
        problem_type: String,
        title: String,
        detail: String,
    },

    /// An answer this client does not understand.
    #[error(
        "unexpected answer from dedupd to {call}: HTTP {status}: {detail}; is the base URL a dedupd \
         of a compatible version?"
    )]
    Protocol {
        call: String,
        status: u16,
        detail: String,
    },

    /// The arguments or the client's configuration cannot make a request.
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

/// An error and its causes, `a: b: c`.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn retry_hint(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(after) => format!(" after {after:?}"),
        None => String::new(),
    }
}

fn auth_hint(status: u16) -> &'static str {
    match status {
        401 => " (check the client's bearer token)",
        403 => " (the bearer token may not use this namespace)",
        _ => "",
    }
}

impl Error {
    /// Whether retrying the same call (same claimant, same token) may
    /// succeed: unavailable, transport, timeout, or a spent budget of those.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { .. } | Error::Transport { .. } | Error::Timeout { .. } => true,
            Error::BudgetExhausted { last, .. } => last.is_retryable(),
            _ => false,
        }
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Unavailable { retry_after, .. } => *retry_after,
            Error::BudgetExhausted { last, .. } => last.retry_after(),
            _ => None,
        }
    }

    /// Whether the answer that caused it carried a `Retry-After` header
    /// (readable or not): dedupd sends one with every 503.
    pub fn has_retry_after(&self) -> bool {
        match self {
            Error::Unavailable {
                retry_after_header, ..
            } => *retry_after_header,
            Error::BudgetExhausted { last, .. } => last.has_retry_after(),
            _ => false,
        }
    }

    /// Whether no answer came at all (a transport failure or a timeout):
    /// the call may or may not have taken effect.
    pub fn is_no_answer(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Timeout { .. } => true,
            Error::BudgetExhausted { last, .. } => last.is_no_answer(),
            _ => false,
        }
    }

    /// The HTTP status of the answer that caused it, when one came.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Unavailable { status, .. }
            | Error::Problem { status, .. }
            | Error::Protocol { status, .. } => Some(*status),
            Error::FingerprintMismatch { .. } => Some(422),
            Error::NotOwner { .. } | Error::AlreadyCompleted { .. } => Some(409),
            Error::NotFound { .. } => Some(404),
            Error::BudgetExhausted { last, .. } => last.status(),
            _ => None,
        }
    }
}
