//! CQL username and password, against a node that requires them: a second
//! local cluster with PasswordAuthenticator on 127.0.0.9 (or the one named
//! by DEDUPD_TEST_CQL_AUTH as `host:port,user,password`).

use std::process::Command;
use std::sync::OnceLock;

use dedupd::domain::KeyspaceName;
use dedupd::store::migrate::{Replication, migrate};
use dedupd::store::{CqlSettings, connect_session};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::json;

use dedupd_test_support::TEST_KEYSPACE;
use dedupd_test_support::{TestOptions, spawn_app_with};

struct AuthCluster {
    nodes: Vec<String>,
    user: String,
    password: String,
}

fn settings(cluster: &AuthCluster, user: Option<&str>, password: Option<&str>) -> CqlSettings {
    CqlSettings {
        username: user.map(str::to_owned),
        password: password.map(|p| SecretString::from(p.to_owned())),
        ..CqlSettings::local(cluster.nodes.clone())
    }
}

/// The password-protected cluster, started once and migrated.
fn auth_cluster() -> &'static AuthCluster {
    static CLUSTER: OnceLock<AuthCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        std::thread::spawn(|| {
            let cluster = match std::env::var("DEDUPD_TEST_CQL_AUTH") {
                Ok(spec) => {
                    let parts: Vec<&str> = spec.split(',').collect();
                    let [node, user, password] = parts.as_slice() else {
                        panic!("DEDUPD_TEST_CQL_AUTH must be host:port,user,password");
                    };
                    AuthCluster {
                        nodes: vec![(*node).to_owned()],
                        user: (*user).to_owned(),
                        password: (*password).to_owned(),
                    }
                }
                Err(_) => start_local_auth_cluster(),
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                // The superuser appears just after the node starts serving.
                let mut last_error = None;
                for _ in 0..60 {
                    let attempt = settings(&cluster, Some(&cluster.user), Some(&cluster.password));
                    match connect_session(&attempt).await {
                        Ok(session) => {
                            let keyspace = KeyspaceName::parse(TEST_KEYSPACE).unwrap();
                            migrate(&session, &keyspace, &Replication::Everywhere(1))
                                .await
                                .expect("migrate the password-protected cluster");
                            return;
                        }
                        Err(error) => last_error = Some(error),
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                panic!("cannot log in to the password-protected cluster: {last_error:?}");
            });
            cluster
        })
        .join()
        .unwrap_or_else(|_| panic!("no password-protected cluster; see the message above"))
    })
}

fn start_local_auth_cluster() -> AuthCluster {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local/cassandra");
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache")
        });
    let output = Command::new(script)
        .arg("up")
        .env("DEDUPD_CASSANDRA_RUN", cache.join("dedupd/run-auth"))
        .env("DEDUPD_CASSANDRA_FIRST_IP", "9")
        .env("DEDUPD_CASSANDRA_AUTH", "password")
        .output()
        .unwrap_or_else(|error| panic!("cannot run {script}: {error}"));
    assert!(
        output.status.success(),
        "the password-protected test cluster did not start: {}\nSet DEDUPD_TEST_CQL_AUTH=host:port,user,password to use another.",
        String::from_utf8_lossy(&output.stderr)
    );
    let nodes = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .split(',')
        .map(str::to_owned)
        .collect();
    AuthCluster {
        nodes,
        user: "cassandra".into(),
        password: "cassandra".into(),
    }
}

#[tokio::test]
async fn without_the_right_password_the_session_is_refused() {
    let cluster = auth_cluster();
    for (user, password) in [
        (None, None),
        (Some(cluster.user.as_str()), Some("wrong-password")),
    ] {
        let refused = connect_session(&settings(cluster, user, password)).await;
        let error = refused.expect_err("the node requires a valid password");
        assert!(
            !error.to_string().contains("wrong-password"),
            "the password must not appear in errors: {error}"
        );
    }
}

#[tokio::test]
async fn claims_work_with_the_password_from_configuration() {
    let cluster = auth_cluster();
    let app = spawn_app_with(TestOptions {
        nodes: Some(cluster.nodes.clone()),
        credentials: Some((cluster.user.clone(), cluster.password.clone())),
        ..TestOptions::default()
    })
    .await;
    let token = app.acquire("with-password", json!({})).await;
    let (status, _) = app.claim_json("with-password", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = app.complete("with-password", &token, json!(1)).await;
    assert_eq!(status, StatusCode::OK);
}
