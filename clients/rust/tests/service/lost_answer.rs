//! A claim whose answer is lost on the way back is retried with the same
//! claimant and acquires exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dedupd_client::{ClaimOptions, State};
use dedupd_test_support::spawn_app;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use super::{acquired, client_at, client_of, duplicate};

/// A loopback proxy to `upstream`. The first connection forwards the
/// request, reads the answer, and closes the client's side without relaying
/// it; the answer it swallowed is kept. Every later connection is relayed.
struct DroppingProxy {
    address: String,
    swallowed: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DroppingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn dropping_proxy(upstream: String) -> DroppingProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let swallowed = Arc::new(Mutex::new(Vec::new()));
    let dropped = Arc::new(AtomicBool::new(false));
    let kept = swallowed.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            let first = !dropped.swap(true, Ordering::SeqCst);
            let kept = kept.clone();
            tokio::spawn(async move {
                let server = TcpStream::connect(&upstream).await.unwrap();
                if first {
                    swallow_answer(client, server, kept).await;
                } else {
                    relay(client, server).await;
                }
            });
        }
    });
    DroppingProxy {
        address,
        swallowed,
        task,
    }
}

/// Forwards the request, reads the whole answer (bounded), then closes.
async fn swallow_answer(mut client: TcpStream, mut server: TcpStream, kept: Arc<Mutex<Vec<u8>>>) {
    let mut request = vec![0u8; 64 * 1024];
    let read = client.read(&mut request).await.unwrap();
    server.write_all(&request[..read]).await.unwrap();
    // A request bigger than one read: the rest, until the server answers.
    let mut answer = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut buffer = vec![0u8; 16 * 1024];
    while !answer.ends_with(b"}") {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let more = tokio::select! {
            more = server.read(&mut buffer) => more.unwrap(),
            more = client.read(&mut request) => {
                let more = more.unwrap();
                server.write_all(&request[..more]).await.unwrap();
                continue;
            }
            _ = tokio::time::sleep(remaining) => panic!("no answer from upstream within 10 s"),
        };
        if more == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..more]);
    }
    *kept.lock().await = answer;
    // Dropping both streams closes the client's connection with no answer.
}

async fn relay(mut client: TcpStream, mut server: TcpStream) {
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

#[tokio::test]
async fn a_lost_answer_is_retried_with_the_same_claimant_and_acquires_once() {
    let app = spawn_app().await;
    let upstream = app.address.trim_start_matches("http://").to_owned();
    let proxy = dropping_proxy(upstream).await;
    let through_proxy = client_at(&proxy.address);

    let lease = acquired(
        through_proxy
            .claim(&app.namespace, "lost-answer", &ClaimOptions::new())
            .await
            .unwrap(),
    );
    // The answer the proxy swallowed granted the very token the retry got:
    // the claim was made once, and recovered.
    let swallowed = String::from_utf8_lossy(&proxy.swallowed.lock().await).into_owned();
    assert!(swallowed.starts_with("HTTP/1.1 201"), "{swallowed}");
    assert!(swallowed.contains(&lease.token), "{swallowed}");
    assert!(!lease.takeover);

    let direct = client_of(&app);
    let other = duplicate(
        direct
            .claim(&app.namespace, "lost-answer", &ClaimOptions::new())
            .await
            .unwrap(),
    );
    assert_eq!(other.state, State::InProgress);
}

#[tokio::test]
async fn a_completion_whose_answer_is_lost_is_retried_and_completes() {
    let app = spawn_app().await;
    let upstream = app.address.trim_start_matches("http://").to_owned();
    let proxy = dropping_proxy(upstream).await;
    let direct = client_of(&app);
    let through_proxy = client_at(&proxy.address);
    let ns = &app.namespace;

    let lease = acquired(
        direct
            .claim(ns, "lost-completion", &ClaimOptions::new())
            .await
            .unwrap(),
    );
    // The proxy's first connection carries the completion: it lands, its
    // answer is swallowed, and the retry with the same token hears 200.
    let done = through_proxy
        .complete(ns, "lost-completion", &lease.token, Some(&"stored once"))
        .await
        .unwrap();
    assert_eq!(done.state, Some(State::Completed));
    let swallowed = String::from_utf8_lossy(&proxy.swallowed.lock().await).into_owned();
    assert!(swallowed.starts_with("HTTP/1.1 200"), "{swallowed}");

    let replay = duplicate(
        direct
            .claim(ns, "lost-completion", &ClaimOptions::new())
            .await
            .unwrap(),
    );
    assert_eq!(replay.result, Some(serde_json::json!("stored once")));
}
