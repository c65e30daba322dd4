//! TLS to Cassandra: claims over TLS, and a node certificate from the wrong
//! CA refused.

use std::path::PathBuf;

use dedupd::store::tls::client_config;
use dedupd::store::{CqlSettings, connect_session};
use reqwest::StatusCode;
use serde_json::json;

use dedupd_test_support::database;
use dedupd_test_support::{TestOptions, spawn_app_with};

/// The CA of the test nodes' certificates. Without one the TLS tests fail
/// and say how to get one, unless DEDUPD_TEST_TLS=off turns them off,
/// which they announce.
fn tls_ca() -> Option<PathBuf> {
    if let Some(ca) = &database().tls_ca {
        return Some(ca.clone());
    }
    if std::env::var("DEDUPD_TEST_TLS").as_deref() == Ok("off") {
        eprintln!("TLS tests turned off by DEDUPD_TEST_TLS=off: nothing about TLS was tested");
        return None;
    }
    panic!(
        "the test database ({}) has no TLS CA: point DEDUPD_TEST_CQL_TLS_CA at the CA of its \
         nodes' certificates, use the local nodes (deploy/local/cassandra, which speak TLS), or \
         set DEDUPD_TEST_TLS=off to run without the TLS tests",
        database().source
    );
}

#[tokio::test]
async fn claims_work_over_tls() {
    let Some(ca) = tls_ca() else { return };
    let app = spawn_app_with(TestOptions {
        tls: Some(client_config(&ca, None).expect("a TLS client configuration")),
        ..TestOptions::default()
    })
    .await;
    let token = app.acquire("over-tls", json!({})).await;
    let (status, _) = app.claim_json("over-tls", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = app.complete("over-tls", &token, json!("tls")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_node_certificate_from_another_ca_is_refused() {
    let Some(_) = tls_ca() else { return };
    // A CA of our own, which never signed the nodes' certificates.
    let dir = std::env::temp_dir().join(format!("dedupd-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let stranger = dir.join("stranger-ca.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=stranger",
        ])
        .arg("-keyout")
        .arg(dir.join("stranger.key"))
        .arg("-out")
        .arg(&stranger)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    let settings = CqlSettings {
        tls: Some(client_config(&stranger, None).unwrap()),
        connect_timeout: std::time::Duration::from_secs(3),
        ..CqlSettings::local(database().nodes.clone())
    };
    let refused = connect_session(&settings).await;
    assert!(
        refused.is_err(),
        "a node the CA did not sign must be refused"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
