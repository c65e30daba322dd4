//! What `dedupd proxy` adds to an API: the same POSTs sent to an upstream
//! alone and through the proxy in front of it, each with a fresh
//! `Idempotency-Key` (one claim and one completion per request), and
//! retries of keys whose responses are stored (answered from the
//! completed-claims cache).
//!
//! The upstream is as cheap as an API can be (a constant 201 from this
//! process), so its ratios are the proxy's whole cost, the worst case: an
//! API that spends milliseconds per request sees the same absolute
//! overhead over a larger base.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;

use super::load::{Operation, on_keys};

/// The upstream: a trivial order API on a free loopback port, served by a
/// task of this process until dropped.
pub struct Upstream {
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start() -> anyhow::Result<Self> {
        let app = Router::new().route(
            "/orders",
            post(|| async {
                (
                    StatusCode::CREATED,
                    [
                        ("content-type", "application/json"),
                        ("location", "/orders/1"),
                    ],
                    r#"{"order":"accepted"}"#,
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { base, task })
    }
}

/// POSTs with an `Idempotency-Key`, to an upstream or a proxy: one pooled
/// client shared by every worker.
#[derive(Clone)]
pub struct KeyedPosts {
    client: reqwest::Client,
}

impl Default for KeyedPosts {
    fn default() -> Self {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(120))
            .build()
            .expect("a plain HTTP client for the bench");
        Self { client }
    }
}

/// What an answer must be to count as one.
#[derive(Clone, Copy)]
pub enum Expect {
    /// 201 from the upstream itself (forwarded, not replayed).
    Forwarded,
    /// 201 replayed from storage (`Idempotent-Replayed: true`).
    Replayed,
}

impl KeyedPosts {
    /// `POST {base}/orders` with the key `{prefix}-{index}`: a new key each.
    pub fn new_keys(&self, base: &str, prefix: String) -> Operation {
        self.posts(
            base,
            move |index| format!("{prefix}-{index}"),
            Expect::Forwarded,
        )
    }

    /// `POST {base}/orders` with the keys of `sent`, in turn.
    pub fn retries(&self, base: &str, sent: Arc<Vec<String>>) -> Operation {
        self.posts(
            base,
            move |index| sent[(index % sent.len() as u64) as usize].clone(),
            Expect::Replayed,
        )
    }

    /// Sends each of `keys` once (so that retries find them stored).
    pub async fn send_once(&self, base: &str, keys: &[String]) -> anyhow::Result<()> {
        let operation = self.posts(
            base,
            {
                let keys = keys.to_vec();
                move |index| keys[index as usize].clone()
            },
            Expect::Forwarded,
        );
        for index in 0..keys.len() as u64 {
            operation(index)
                .await
                .map_err(|error| anyhow::anyhow!("sending a key through the proxy: {error}"))?;
        }
        Ok(())
    }

    fn posts(
        &self,
        base: &str,
        key_of: impl Fn(u64) -> String + Send + Sync + 'static,
        expect: Expect,
    ) -> Operation {
        let shared = Arc::new((self.client.clone(), format!("{base}/orders")));
        on_keys(shared, key_of, move |shared, key| async move {
            let (client, url) = &*shared;
            let response = client
                .post(url)
                .header("idempotency-key", key)
                .header("content-type", "application/json")
                .body(r#"{"amount":100,"currency":"EUR"}"#)
                .send()
                .await
                .map_err(|error| {
                    if error.is_timeout() {
                        "timeout".to_owned()
                    } else {
                        "transport".to_owned()
                    }
                })?;
            let status = response.status();
            let replayed = response.headers().contains_key("idempotent-replayed");
            // Read the body, as a client would, so the connection is reused.
            let _ = response.bytes().await.map_err(|_| "body".to_owned())?;
            match (status.as_u16(), expect, replayed) {
                (201, Expect::Forwarded, false) | (201, Expect::Replayed, true) => Ok(()),
                (201, _, _) => Err("replay_mismatch".to_owned()),
                (status, _, _) => Err(format!("http_{status}")),
            }
        })
    }
}
