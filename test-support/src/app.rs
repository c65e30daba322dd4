//! `spawn_app()`: a dedupd in the test's own process, on a free loopback
//! port, over the test database; and the calls every test makes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dedupd::claims::{ClaimSettings, ReadFirstPolicy, RetryBudget, WaitSettings};
use dedupd::domain::KeyspaceName;
use dedupd::domain::Namespaces;
use dedupd::http::AppState;
use dedupd::proxy::ProxyConfig;
use dedupd::startup::{AppConfig, Application};
use dedupd::store::CqlSettings;
use dedupd::store::faults::FaultPlan;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::database::{TEST_KEYSPACE, database};

pub struct TestApp {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    pub client: reqwest::Client,
    /// A namespace no other test uses.
    pub namespace: String,
    pub faults: Arc<FaultPlan>,
    pub state: AppState,
    /// Where its probes and metrics are: `/readyz`, or for a proxy
    /// `/_dedupd/readyz`.
    probes: &'static str,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Knobs a test may turn; `Default` is what most tests want.
pub struct TestOptions {
    pub namespaces: Namespaces,
    pub auth: dedupd::http::auth::Auth,
    pub nodes: Option<Vec<String>>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// CQL user and password.
    pub credentials: Option<(String, String)>,
    /// Announced node address → address to dial (a proxy).
    pub address_map: HashMap<SocketAddr, SocketAddr>,
    /// The driver's request timeout, when not the default.
    pub request_timeout: Option<Duration>,
    pub max_in_flight: usize,
    pub budget: RetryBudget,
    pub read_first: ReadFirstPolicy,
    pub completed_cache_bytes: u64,
    pub completed_cache_max_age: Duration,
    pub wait: WaitSettings,
    pub shutdown_delay: Duration,
    pub wait_ready: bool,
    /// Run as `dedupd proxy` with this config instead of the claim API.
    pub proxy: Option<ProxyConfig>,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            namespaces: Namespaces::default(),
            auth: Default::default(),
            nodes: None,
            tls: None,
            credentials: None,
            address_map: HashMap::new(),
            request_timeout: None,
            max_in_flight: 512,
            budget: RetryBudget::default(),
            read_first: ReadFirstPolicy::default(),
            completed_cache_bytes: ClaimSettings::default().completed_cache_bytes,
            completed_cache_max_age: ClaimSettings::default().completed_cache_max_age,
            wait: WaitSettings::default(),
            shutdown_delay: Duration::ZERO,
            wait_ready: true,
            proxy: None,
        }
    }
}

pub fn unique_namespace() -> String {
    format!("t-{}", &Uuid::new_v4().simple().to_string()[..20])
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestOptions::default()).await
}

pub async fn spawn_app_with(options: TestOptions) -> TestApp {
    let nodes = match options.nodes {
        Some(nodes) => nodes,
        None => database().nodes.clone(),
    };
    let defaults = CqlSettings::local(nodes);
    let cql = CqlSettings {
        tls: options.tls,
        username: options.credentials.as_ref().map(|(user, _)| user.clone()),
        password: options
            .credentials
            .map(|(_, password)| secrecy::SecretString::from(password)),
        address_map: options.address_map,
        request_timeout: options.request_timeout.unwrap_or(defaults.request_timeout),
        ..defaults
    };
    let config = AppConfig::builder(cql, KeyspaceName::parse(TEST_KEYSPACE).unwrap())
        .namespaces(options.namespaces)
        .auth(options.auth)
        .max_in_flight(options.max_in_flight)
        .claims(ClaimSettings {
            budget: options.budget,
            read_first: options.read_first,
            completed_cache_bytes: options.completed_cache_bytes,
            completed_cache_max_age: options.completed_cache_max_age,
            // The tests wait out 1 s leases and TTLs by 1.3 s; the margin's
            // rule has unit tests (claims::decide) and a fault-suite phase.
            max_clock_skew: Duration::ZERO,
            wait: options.wait,
        })
        .shutdown_delay(options.shutdown_delay)
        .proxy(options.proxy.clone())
        .build();
    let faults = Arc::new(FaultPlan::default());
    let application = Application::build_with_faults(config, faults.clone())
        .await
        .expect("bind 127.0.0.1:0");
    let address = format!("http://{}", application.local_addr().unwrap());
    let state = application.state();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let app = TestApp {
        address,
        client: reqwest::Client::new(),
        namespace: unique_namespace(),
        faults,
        state,
        probes: if options.proxy.is_some() {
            "/_dedupd"
        } else {
            ""
        },
        shutdown: Some(shutdown),
        server,
    };
    if options.wait_ready {
        app.wait_ready().await;
    }
    app
}

impl TestApp {
    /// Polls /readyz, bounded.
    pub async fn wait_ready(&self) {
        for _ in 0..300 {
            if let Ok(response) = self.client.get(self.probe("/readyz")).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the app did not become ready within 30 s");
    }

    /// Stops the app the way SIGTERM does.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// A probe's or the metrics' URL (`/readyz`, `/metrics`), wherever
    /// this app serves them.
    pub fn probe(&self, path: &str) -> String {
        format!("{}{}{path}", self.address, self.probes)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn claim_url(&self, key: &str) -> String {
        self.url(&format!(
            "/v1/namespaces/{}/claims/{}",
            self.namespace,
            encode(key)
        ))
    }

    pub async fn claim(&self, key: &str, body: Value) -> Response {
        self.client
            .post(self.claim_url(key))
            .json(&body)
            .send()
            .await
            .expect("claim request")
    }

    pub async fn claim_json(&self, key: &str, body: Value) -> (StatusCode, Value) {
        json_of(self.claim(key, body).await).await
    }

    /// Claims `key` and returns the token, asserting the claim was won.
    pub async fn acquire(&self, key: &str, body: Value) -> String {
        let (status, body) = self.claim_json(key, body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    pub async fn action(&self, key: &str, action: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/{action}", self.claim_url(key)))
            .json(&body)
            .send()
            .await
            .expect("action request");
        json_of(response).await
    }

    pub async fn complete(&self, key: &str, token: &str, result: Value) -> (StatusCode, Value) {
        self.action(key, "complete", json!({"token": token, "result": result}))
            .await
    }

    pub async fn release(&self, key: &str, token: &str) -> (StatusCode, Value) {
        self.action(key, "release", json!({"token": token})).await
    }

    pub async fn extend(&self, key: &str, token: &str, lease_secs: u64) -> (StatusCode, Value) {
        self.action(
            key,
            "extend",
            json!({"token": token, "lease_secs": lease_secs}),
        )
        .await
    }

    pub async fn get(&self, key: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(self.claim_url(key))
            .send()
            .await
            .expect("get request");
        json_of(response).await
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.probe("/metrics"))
            .send()
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics body")
    }
}

/// Percent-encodes a key for a path segment (everything but unreserved).
pub fn encode(key: &str) -> String {
    let mut encoded = String::new();
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

pub async fn json_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("response body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text:?}"));
    (status, value)
}

/// The per-key `status` of each result of a batch answer, in order.
pub fn result_statuses(body: &Value) -> Vec<u64> {
    body["results"]
        .as_array()
        .expect("a batch answer has results")
        .iter()
        .map(|result| result["status"].as_u64().expect("a numeric status"))
        .collect()
}

/// A raw HTTP/1.1 request over TCP, for requests a client library would
/// refuse or rewrite (bad percent-encoding, odd methods, bad headers).
pub async fn raw_request(
    app: &TestApp,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

impl TestApp {
    /// `claim_json` with an owned key, for building many futures at once.
    pub async fn claim_json_owned(&self, key: String) -> (StatusCode, Value) {
        self.claim_json(&key, json!({})).await
    }
}

/// The batch claim endpoint.
impl TestApp {
    pub async fn claim_batch(&self, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.url(&format!("/v1/namespaces/{}/claims", self.namespace)))
            .json(&body)
            .send()
            .await
            .unwrap();
        json_of(response).await
    }
}

/// The sequence endpoints.
impl TestApp {
    pub fn stream_url(&self, stream: &str) -> String {
        self.url(&format!(
            "/v1/namespaces/{}/sequences/{}",
            self.namespace,
            encode(stream)
        ))
    }

    pub async fn offer(&self, stream: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.stream_url(stream))
            .json(&body)
            .send()
            .await
            .unwrap();
        json_of(response).await
    }

    pub async fn offer_seq(&self, stream: &str, seq: u64) -> (StatusCode, Value) {
        self.offer(stream, json!({"seq": seq})).await
    }

    pub async fn set_last(&self, stream: &str, last: u64) -> (StatusCode, Value) {
        let response = self
            .client
            .put(self.stream_url(stream))
            .json(&json!({"last": last}))
            .send()
            .await
            .unwrap();
        json_of(response).await
    }

    pub async fn stream(&self, stream: &str) -> (StatusCode, Value) {
        json_of(
            self.client
                .get(self.stream_url(stream))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn delete_stream(&self, stream: &str) -> StatusCode {
        self.client
            .delete(self.stream_url(stream))
            .send()
            .await
            .unwrap()
            .status()
    }
}
