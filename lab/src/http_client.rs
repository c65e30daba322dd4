//! The lab's HTTP/1.1 client: hyper's own pooled client with bodies the
//! caller serialized once, so that client-side URL parsing and body
//! building do not weigh on the service's measured overhead. The bench,
//! the soak and the checker all speak to dedupd through it.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How a client is set up; the default is hyper's own (its idle pool, no
/// connect timeout).
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    /// Idle connections kept per host: the bench's closed loops keep many
    /// in use at once.
    pub max_idle_per_host: Option<usize>,
    /// How long dialling may take: the checker dials processes it kills.
    pub connect_timeout: Option<Duration>,
}

#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

/// An answer, read to its end.
pub struct Reply {
    pub status: u16,
    pub retry_after: bool,
    pub body: Bytes,
}

/// Why a request got no (complete) answer. Displayed, it is the error kind
/// the bench reports.
#[derive(Debug)]
pub enum Failure {
    Request(hyper::http::Error),
    Connection(hyper_util::client::legacy::Error),
    Body(hyper::Error),
    TimedOut,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Request(error) => write!(f, "request:{error}"),
            Failure::Connection(error) => write!(f, "http:{error}"),
            Failure::Body(error) => write!(f, "http body:{error}"),
            Failure::TimedOut => f.write_str("timeout"),
        }
    }
}

impl HttpClient {
    pub fn new(settings: Settings) -> Self {
        let mut connector = HttpConnector::new();
        // Small requests answered at once: Nagle's algorithm would only
        // hold them back.
        connector.set_nodelay(true);
        connector.set_connect_timeout(settings.connect_timeout);
        let mut builder = Client::builder(TokioExecutor::new());
        if let Some(idle) = settings.max_idle_per_host {
            builder.pool_max_idle_per_host(idle);
        }
        Self {
            client: builder.build(connector),
        }
    }

    /// POSTs a JSON body. `within` bounds the wait for the answer's head
    /// and, again, for its body; `None` waits as long as it takes.
    pub async fn post_json(
        &self,
        url: &str,
        body: Bytes,
        within: Option<Duration>,
    ) -> Result<Reply, Failure> {
        let request = hyper::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(Failure::Request)?;
        self.send(request, within).await
    }

    /// GETs `url`, bounded as `post_json` is.
    pub async fn get(&self, url: &str, within: Option<Duration>) -> Result<Reply, Failure> {
        let request = hyper::Request::get(url)
            .body(Full::new(Bytes::new()))
            .map_err(Failure::Request)?;
        self.send(request, within).await
    }

    async fn send(
        &self,
        request: hyper::Request<Full<Bytes>>,
        within: Option<Duration>,
    ) -> Result<Reply, Failure> {
        let response = bounded(within, self.client.request(request))
            .await?
            .map_err(Failure::Connection)?;
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key("retry-after");
        // Read the body: a real client does, and it is part of the cost.
        let body = bounded(within, response.into_body().collect())
            .await?
            .map_err(Failure::Body)?
            .to_bytes();
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }
}

async fn bounded<F: Future>(within: Option<Duration>, future: F) -> Result<F::Output, Failure> {
    match within {
        Some(limit) => tokio::time::timeout(limit, future)
            .await
            .map_err(|_| Failure::TimedOut),
        None => Ok(future.await),
    }
}
