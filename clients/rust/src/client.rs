//! The client, its builder, and the retry discipline every call shares.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use tokio::time::Instant;

use crate::answers::{
    AcquiredBody, ClaimAnswer, ClaimView, Duplicate, DuplicateBody, Lease, ProblemBody,
    RefusalBody, Transition,
};
use crate::encode::encode_segment;
use crate::error::Error;
use crate::options::{ClaimOptions, whole_secs};

/// How long one call may keep retrying: at most `max_attempts` attempts in
/// all, and no retry that would start after `max_elapsed` from the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudget {
    pub max_attempts: u32,
    pub max_elapsed: Duration,
}

impl RetryBudget {
    pub fn new(max_attempts: u32, max_elapsed: Duration) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            max_elapsed,
        }
    }

    /// One attempt, no retry: errors come back as they happened.
    pub fn none() -> Self {
        Self::new(1, Duration::ZERO)
    }
}

impl Default for RetryBudget {
    /// 8 attempts within 20 s.
    fn default() -> Self {
        Self::new(8, Duration::from_secs(20))
    }
}

/// The bearer token, kept out of every `Debug` and `Display`.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Builds a [`Client`]; see [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    bearer_token: Option<Secret>,
    request_timeout: Duration,
    connect_timeout: Duration,
    retry_budget: RetryBudget,
    max_retry_delay: Duration,
    pool_max_idle_per_host: Option<usize>,
}

impl ClientBuilder {
    /// The bearer token to send (`Authorization: Bearer …`), marked
    /// sensitive; it never appears in `Debug` output or error messages.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(Secret(token.into()));
        self
    }

    /// How long one attempt may wait for its answer, on top of the claim's
    /// own `wait`. Default 10 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long dialling may take. Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a call keeps retrying 503s and transport failures. Default
    /// [`RetryBudget::default`]; [`RetryBudget::none`] turns retries off.
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.retry_budget = budget;
        self
    }

    /// The longest pause between two attempts, whatever `Retry-After` says.
    /// Default 5 s.
    pub fn max_retry_delay(mut self, delay: Duration) -> Self {
        self.max_retry_delay = delay;
        self
    }

    /// How many idle connections to keep per host. Default: reqwest's (no
    /// limit); a process with many concurrent callers may want to bound it,
    /// or to keep that many so that none is dialled anew under load.
    pub fn pool_max_idle_per_host(mut self, connections: usize) -> Self {
        self.pool_max_idle_per_host = Some(connections);
        self
    }

    pub fn build(self) -> Result<Client, Error> {
        let invalid_url = |detail: String| Error::Invalid {
            what: "base URL",
            detail,
        };
        let url = Url::parse(&self.base_url).map_err(|error| invalid_url(error.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid_url(format!(
                "scheme {:?}: use http or https",
                url.scheme()
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid_url("it may not have a query or fragment".into()));
        }
        let mut headers = HeaderMap::new();
        if let Some(Secret(token)) = &self.bearer_token {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Error::Invalid {
                    what: "bearer token",
                    detail: "it has characters a header cannot carry".into(),
                })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let mut http = reqwest::Client::builder();
        if let Some(connections) = self.pool_max_idle_per_host {
            http = http.pool_max_idle_per_host(connections);
        }
        let http = http
            .default_headers(headers)
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .user_agent(concat!("dedupd-client-rust/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| Error::Invalid {
                what: "HTTP client",
                detail: error.without_url().to_string(),
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base: self.base_url.trim_end_matches('/').to_owned(),
                authenticated: self.bearer_token.is_some(),
                request_timeout: self.request_timeout,
                retry_budget: self.retry_budget,
                max_retry_delay: self.max_retry_delay,
            }),
        })
    }
}

/// A dedupd client: cheap to clone (clones share one connection pool).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    authenticated: bool,
    request_timeout: Duration,
    retry_budget: RetryBudget,
    max_retry_delay: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base)
            .field(
                "bearer_token",
                &self.inner.authenticated.then_some("[redacted]"),
            )
            .field("request_timeout", &self.inner.request_timeout)
            .field("retry_budget", &self.inner.retry_budget)
            .field("max_retry_delay", &self.inner.max_retry_delay)
            .finish()
    }
}

/// One answer, read to its end.
pub(crate) struct Answer {
    pub status: StatusCode,
    /// `Retry-After` in whole seconds, when it came and was readable.
    pub retry_after: Option<Duration>,
    /// Whether a `Retry-After` header came at all.
    pub retry_after_header: bool,
    pub body: Bytes,
}

/// What a call was, for its error messages: formatted only when an error
/// needs it, so that a call that succeeds allocates no description.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call<'a> {
    /// `action` of `key` in `namespace`.
    Key {
        action: &'static str,
        namespace: &'a str,
        key: &'a str,
    },
    /// An offer of `seq` to `stream`.
    Offer {
        namespace: &'a str,
        stream: &'a str,
        seq: u64,
    },
    /// A batch claim of `keys` keys.
    Batch { namespace: &'a str, keys: usize },
    /// A read of a service endpoint (`/readyz`, `/metrics`).
    Read(&'static str),
}

impl fmt::Display for Call<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Key {
                action,
                namespace,
                key,
            } => write!(f, "{action} of {key:?} in {namespace}"),
            Call::Offer {
                namespace,
                stream,
                seq,
            } => write!(f, "offer of {seq} to stream {stream:?} in {namespace}"),
            Call::Batch { namespace, keys } => {
                write!(f, "batch claim of {keys} keys in {namespace}")
            }
            Call::Read(path) => write!(f, "GET {path}"),
        }
    }
}

/// A request body, serialized once for every attempt.
pub(crate) fn json_body(body: &impl Serialize) -> Result<Bytes, Error> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|error| Error::Invalid {
            what: "request body",
            detail: error.to_string(),
        })
}

/// A fresh claimant for a logical claim the caller gave none.
pub(crate) fn new_claimant() -> String {
    format!("dc-{}", uuid::Uuid::new_v4().simple())
}

impl Client {
    /// A builder for a client of the dedupd at `base_url`
    /// (`http://host:port`, or with a path prefix behind a proxy).
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            bearer_token: None,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry_budget: RetryBudget::default(),
            max_retry_delay: Duration::from_secs(5),
            pool_max_idle_per_host: None,
        }
    }

    pub(crate) fn max_retry_delay(&self) -> Duration {
        self.inner.max_retry_delay
    }

    fn claim_path(namespace: &str, key: &str) -> String {
        format!(
            "/v1/namespaces/{}/claims/{}",
            encode_segment(namespace),
            encode_segment(key)
        )
    }

    /// Claims `key` in `namespace`. The claim carries `options.claimant`, or
    /// a fresh random claimant, and every retry reuses it.
    ///
    /// Answers [`ClaimAnswer::Acquired`] or [`ClaimAnswer::Duplicate`]; a
    /// fingerprint mismatch is [`Error::FingerprintMismatch`].
    pub async fn claim(
        &self,
        namespace: &str,
        key: &str,
        options: &ClaimOptions,
    ) -> Result<ClaimAnswer, Error> {
        let claimant = match &options.claimant {
            Some(claimant) => claimant.clone(),
            None => new_claimant(),
        };
        self.claim_as(namespace, key, options, claimant, options.wait)
            .await
    }

    pub(crate) async fn claim_as(
        &self,
        namespace: &str,
        key: &str,
        options: &ClaimOptions,
        claimant: String,
        wait: Duration,
    ) -> Result<ClaimAnswer, Error> {
        check_segments(namespace, key)?;
        let path = Self::claim_path(namespace, key);
        let body = options.body(&claimant, wait);
        let extra = if wait.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_secs(whole_secs(wait))
        };
        let call = Call::Key {
            action: "claim",
            namespace,
            key,
        };
        let answer = self
            .call(&call, Method::POST, &path, Some(json_body(&body)?), extra)
            .await?;
        match answer.status {
            StatusCode::CREATED => {
                let body: AcquiredBody = parse(&call, &answer)?;
                Ok(ClaimAnswer::Acquired(Lease {
                    token: body.token,
                    claimant,
                    expires_at: body.expires_at,
                    lease_expires_at: body.lease_expires_at,
                    takeover: body.takeover,
                }))
            }
            StatusCode::CONFLICT => {
                let body: DuplicateBody = parse(&call, &answer)?;
                if body.outcome != "duplicate" {
                    return Err(protocol(&call, &answer, "a 409 that is not a duplicate"));
                }
                Ok(ClaimAnswer::Duplicate(Duplicate {
                    state: body.state,
                    result: body.result,
                    expires_at: body.expires_at,
                    completed_at: body.completed_at,
                    lease_expires_at: body.lease_expires_at,
                    retry_after: answer.retry_after,
                    holder: body.holder,
                }))
            }
            StatusCode::UNPROCESSABLE_ENTITY => Err(Error::FingerprintMismatch {
                detail: problem_of(&answer).detail,
            }),
            _ => Err(refusal(&call, &answer)),
        }
    }

    /// Completes the claim `token` owns, storing `result` (any JSON ≤ 16
    /// KiB) for later duplicates. Completing twice with the same token
    /// answers the same: a retry is safe. Pass `None::<&()>` for no result.
    pub async fn complete(
        &self,
        namespace: &str,
        key: &str,
        token: &str,
        result: Option<&impl Serialize>,
    ) -> Result<Transition, Error> {
        #[derive(Serialize)]
        struct Body<'a, R> {
            token: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            result: Option<R>,
        }
        let body = Body { token, result };
        self.transition(namespace, key, "complete", &body).await
    }

    /// Releases the claim `token` owns: the key is claimable again at once.
    pub async fn release(&self, namespace: &str, key: &str, token: &str) -> Result<(), Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            token: &'a str,
        }
        self.transition(namespace, key, "release", &Body { token })
            .await
            .map(|_| ())
    }

    /// Extends the lease of the claim `token` owns to `lease` from now
    /// (whole seconds, rounded up).
    pub async fn extend(
        &self,
        namespace: &str,
        key: &str,
        token: &str,
        lease: Duration,
    ) -> Result<Transition, Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            token: &'a str,
            lease_secs: u64,
        }
        let body = Body {
            token,
            lease_secs: whole_secs(lease),
        };
        self.transition(namespace, key, "extend", &body).await
    }

    /// The claim of `key` as it is now, or `None` when there is no live one.
    pub async fn get(&self, namespace: &str, key: &str) -> Result<Option<ClaimView>, Error> {
        check_segments(namespace, key)?;
        let call = Call::Key {
            action: "read",
            namespace,
            key,
        };
        let path = Self::claim_path(namespace, key);
        let answer = self
            .call(&call, Method::GET, &path, None, Duration::ZERO)
            .await?;
        match answer.status {
            StatusCode::OK => parse(&call, &answer).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(refusal(&call, &answer)),
        }
    }

    async fn transition(
        &self,
        namespace: &str,
        key: &str,
        action: &'static str,
        body: &impl Serialize,
    ) -> Result<Transition, Error> {
        check_segments(namespace, key)?;
        let call = Call::Key {
            action,
            namespace,
            key,
        };
        let path = format!("{}/{action}", Self::claim_path(namespace, key));
        let answer = self
            .call(
                &call,
                Method::POST,
                &path,
                Some(json_body(body)?),
                Duration::ZERO,
            )
            .await?;
        match answer.status {
            StatusCode::OK => parse(&call, &answer),
            StatusCode::CONFLICT => {
                let body: RefusalBody = parse(&call, &answer)?;
                let detail = body.detail.unwrap_or_default();
                match body.outcome.as_str() {
                    "not_owner" => Err(Error::NotOwner { detail }),
                    "already_completed" => Err(Error::AlreadyCompleted { detail }),
                    _ => Err(protocol(&call, &answer, "an unknown refusal")),
                }
            }
            StatusCode::NOT_FOUND => Err(Error::NotFound {
                detail: problem_of(&answer).detail,
            }),
            _ => Err(refusal(&call, &answer)),
        }
    }

    /// Sends one call, retrying 502/503/504 and transport failures within
    /// the budget; every other answer is returned as it came.
    pub(crate) async fn call(
        &self,
        call: &Call<'_>,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        extra_timeout: Duration,
    ) -> Result<Answer, Error> {
        let url = self.url(path);
        let budget = self.inner.retry_budget;
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match self
                .attempt(call, method.clone(), &url, body.as_ref(), extra_timeout)
                .await
            {
                Ok(answer) if is_unavailable(answer.status) => {
                    let problem = problem_of(&answer);
                    Error::Unavailable {
                        call: call.to_string(),
                        status: answer.status.as_u16(),
                        retry_after: answer.retry_after,
                        retry_after_header: answer.retry_after_header,
                        problem_type: problem.problem_type,
                        detail: problem.detail,
                    }
                }
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            if !error.is_retryable() || budget.max_attempts <= 1 {
                return Err(error);
            }
            let delay = error
                .retry_after()
                .unwrap_or_else(|| backoff(attempts))
                .min(self.inner.max_retry_delay);
            let elapsed = started.elapsed();
            if attempts >= budget.max_attempts || elapsed + delay > budget.max_elapsed {
                return Err(Error::BudgetExhausted {
                    call: call.to_string(),
                    attempts,
                    elapsed,
                    last: Box::new(error),
                });
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// `path` under the base URL.
    pub(crate) fn url(&self, path: &str) -> String {
        let mut url = String::with_capacity(self.inner.base.len() + path.len());
        url.push_str(&self.inner.base);
        url.push_str(path);
        url
    }

    /// One attempt, whatever it answers (a 503 too): no retry.
    pub(crate) async fn attempt(
        &self,
        call: &Call<'_>,
        method: Method,
        url: &str,
        body: Option<&Bytes>,
        extra_timeout: Duration,
    ) -> Result<Answer, Error> {
        let timeout = self.inner.request_timeout + extra_timeout;
        let mut request = self.inner.http.request(method, url).timeout(timeout);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let failed = |error: reqwest::Error| {
            if error.is_timeout() {
                Error::Timeout {
                    call: call.to_string(),
                    after: timeout,
                }
            } else if error.is_builder() {
                Error::Invalid {
                    what: "request",
                    detail: error.without_url().to_string(),
                }
            } else {
                Error::Transport {
                    call: call.to_string(),
                    source: error.without_url(),
                }
            }
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let header = response.headers().get(RETRY_AFTER);
        let retry_after_header = header.is_some();
        let retry_after = header
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.map_err(failed)?;
        Ok(Answer {
            status,
            retry_after,
            retry_after_header,
            body,
        })
    }
}

fn is_unavailable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

/// 100 ms doubling to 2 s, each with up to half of it taken off at random.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100) * 2u32.pow(attempt.saturating_sub(1).min(5));
    let base = base.min(Duration::from_secs(2));
    let random = uuid::Uuid::new_v4().as_u128() as u64 % 1000;
    base - base.mul_f64(random as f64 / 2000.0)
}

/// Empty keys and namespaces match no route; refuse them before sending.
pub(crate) fn check_segments(namespace: &str, key: &str) -> Result<(), Error> {
    check_namespace(namespace)?;
    if key.is_empty() {
        return Err(Error::Invalid {
            what: "key",
            detail: "it is empty (a key is 1 to 512 bytes of UTF-8)".into(),
        });
    }
    if key == "." || key == ".." {
        return Err(Error::Invalid {
            what: "key",
            detail: format!(
                "{key:?} cannot be sent in a URL path (HTTP clients remove dot segments); use the batch API or another id"
            ),
        });
    }
    Ok(())
}

pub(crate) fn check_namespace(namespace: &str) -> Result<(), Error> {
    if namespace.is_empty() || namespace == "." || namespace == ".." {
        return Err(Error::Invalid {
            what: "namespace",
            detail: format!("{namespace:?} is not a namespace ([a-z0-9][a-z0-9_-]{{0,62}})"),
        });
    }
    Ok(())
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    call: &Call<'_>,
    answer: &Answer,
) -> Result<T, Error> {
    serde_json::from_slice(&answer.body).map_err(|error| {
        protocol(
            call,
            answer,
            &format!("a body this client cannot read ({error})"),
        )
    })
}

pub(crate) fn problem_of(answer: &Answer) -> ProblemBody {
    serde_json::from_slice(&answer.body).unwrap_or_else(|_| ProblemBody {
        detail: String::from_utf8_lossy(&answer.body)
            .chars()
            .take(200)
            .collect(),
        ..ProblemBody::default()
    })
}

pub(crate) fn refusal(call: &Call<'_>, answer: &Answer) -> Error {
    let problem = problem_of(answer);
    Error::Problem {
        call: call.to_string(),
        status: answer.status.as_u16(),
        problem_type: problem.problem_type,
        title: problem.title,
        detail: problem.detail,
    }
}

pub(crate) fn protocol(call: &Call<'_>, answer: &Answer, what: &str) -> Error {
    Error::Protocol {
        call: call.to_string(),
        status: answer.status.as_u16(),
        detail: what.to_owned(),
    }
}
