//! The service's own endpoints: readiness and metrics.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::client::{Call, Client, parse, protocol, refusal};
use crate::error::Error;

/// What `/readyz` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// 200 `ok`: claims are served.
    Ready,
    /// 503 `starting`: the database session is not ready yet.
    Starting,
    /// 503 `draining`: the process is shutting down.
    Draining,
}

#[derive(Deserialize)]
struct HealthBody {
    status: String,
}

impl Client {
    /// Reads `/readyz`, in one attempt whatever the retry budget: a probe
    /// reports what it saw. A 503 with the service's body is an answer
    /// ([`Readiness::Starting`], [`Readiness::Draining`]), not an error.
    pub async fn readiness(&self) -> Result<Readiness, Error> {
        let call = Call::Read("/readyz");
        let answer = self
            .attempt(
                &call,
                Method::GET,
                &self.url("/readyz"),
                None,
                Duration::ZERO,
            )
            .await?;
        if !matches!(
            answer.status,
            StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE
        ) {
            return Err(refusal(&call, &answer));
        }
        let body: HealthBody = parse(&call, &answer)?;
        match (answer.status, body.status.as_str()) {
            (StatusCode::OK, "ok") => Ok(Readiness::Ready),
            (StatusCode::SERVICE_UNAVAILABLE, "starting") => Ok(Readiness::Starting),
            (StatusCode::SERVICE_UNAVAILABLE, "draining") => Ok(Readiness::Draining),
            _ => Err(protocol(
                &call,
                &answer,
                "a readiness this client does not know",
            )),
        }
    }

    /// The `/metrics` text (OpenMetrics), retried as every call is. Needs
    /// the client's bearer token when the service protects its metrics.
    pub async fn metrics_text(&self) -> Result<String, Error> {
        let call = Call::Read("/metrics");
        let answer = self
            .call(&call, Method::GET, "/metrics", None, Duration::ZERO)
            .await?;
        if answer.status != StatusCode::OK {
            return Err(refusal(&call, &answer));
        }
        String::from_utf8(answer.body.to_vec())
            .map_err(|_| protocol(&call, &answer, "metrics that are not UTF-8"))
    }
}
