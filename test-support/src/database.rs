//! The database the tests run against, found or started once per test run.
//!
//! In order: the contact points in `DEDUPD_TEST_CQL`; a ScyllaDB container
//! when a Docker engine answers; the local Cassandra node that
//! `deploy/local/cassandra up` starts (or finds already running). When none
//! works the tests fail, saying how to get one: they never skip.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use dedupd::domain::KeyspaceName;
use dedupd::store::CqlSettings;
use dedupd::store::connect_session;
use dedupd::store::migrate::{Replication, migrate};

/// The keyspace every test shares; tests keep apart by namespace.
pub const TEST_KEYSPACE: &str = "dedupd_test";

pub struct TestDatabase {
    pub nodes: Vec<String>,
    pub source: &'static str,
    /// The CA of the nodes' TLS certificates, when they speak TLS: the
    /// local nodes always do; elsewhere DEDUPD_TEST_CQL_TLS_CA names it.
    pub tls_ca: Option<std::path::PathBuf>,
}

static DATABASE: OnceLock<TestDatabase> = OnceLock::new();

/// The database, started and migrated on first use.
pub fn database() -> &'static TestDatabase {
    DATABASE.get_or_init(|| {
        // Runs on its own thread: the caller is inside a tokio runtime, and
        // starting and migrating needs one of its own.
        std::thread::spawn(|| {
            let database = find_or_start();
            migrate_test_keyspace(&database.nodes);
            eprintln!(
                "tests use {} at {} (keyspace {TEST_KEYSPACE})",
                database.source,
                database.nodes.join(",")
            );
            database
        })
        .join()
        .unwrap_or_else(|_| panic!("no database for the integration tests; see the message above"))
    })
}

fn find_or_start() -> TestDatabase {
    if let Ok(nodes) = std::env::var("DEDUPD_TEST_CQL") {
        let nodes: Vec<String> = nodes
            .split(',')
            .map(|node| node.trim().to_owned())
            .filter(|node| !node.is_empty())
            .collect();
        assert!(
            !nodes.is_empty(),
            "DEDUPD_TEST_CQL is set but names no contact point"
        );
        return TestDatabase {
            nodes,
            source: "DEDUPD_TEST_CQL",
            tls_ca: std::env::var_os("DEDUPD_TEST_CQL_TLS_CA").map(Into::into),
        };
    }
    if docker_answers() {
        return start_scylla_container();
    }
    start_local_cassandra()
}

fn docker_answers() -> bool {
    if std::env::var_os("DOCKER_HOST").is_some() {
        return true;
    }
    #[cfg(unix)]
    {
        std::os::unix::net::UnixStream::connect("/var/run/docker.sock").is_ok()
    }
    #[cfg(not(unix))]
    {
        false
    }
}

fn start_scylla_container() -> TestDatabase {
    use testcontainers_modules::scylladb::ScyllaDB;
    use testcontainers_modules::testcontainers::ImageExt;
    use testcontainers_modules::testcontainers::runners::SyncRunner;

    static CONTAINER: OnceLock<testcontainers_modules::testcontainers::Container<ScyllaDB>> =
        OnceLock::new();
    let container = CONTAINER.get_or_init(|| {
        ScyllaDB::default()
            .with_startup_timeout(Duration::from_secs(180))
            .start()
            .unwrap_or_else(|error| {
                panic!(
                    "a Docker engine answers but ScyllaDB did not start in it: {error}. \
                     Set DEDUPD_TEST_CQL=host:port to use a running Cassandra or ScyllaDB instead."
                )
            })
    });
    let port = container
        .get_host_port_ipv4(9042)
        .expect("the ScyllaDB container exposes 9042");
    TestDatabase {
        nodes: vec![format!("127.0.0.1:{port}")],
        source: "a ScyllaDB container (testcontainers)",
        tls_ca: None,
    }
}

fn start_local_cassandra() -> TestDatabase {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/cassandra");
    let output = Command::new(script)
        .arg("up")
        .output()
        .unwrap_or_else(|error| panic!("cannot run {script}: {error}"));
    if !output.status.success() {
        panic!(
            "the integration tests need Cassandra or ScyllaDB and none could be started.\n\
             `{script} up` failed:\n{}\n\
             Fix that (it needs OpenJDK 17 and Maven with access to Maven Central), or point \
             DEDUPD_TEST_CQL at a running node (host:port, comma-separated), or run Docker so \
             the tests can start ScyllaDB themselves.",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let contact_points = stdout.lines().last().unwrap_or_default().trim().to_owned();
    assert!(
        !contact_points.is_empty(),
        "`{script} up` printed no contact points"
    );
    let tls_ca = Command::new(script)
        .arg("tls-ca")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().into());
    TestDatabase {
        nodes: contact_points.split(',').map(str::to_owned).collect(),
        source: "the local Cassandra node (deploy/local/cassandra)",
        tls_ca,
    }
}

fn migrate_test_keyspace(nodes: &[String]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the migration");
    runtime.block_on(async {
        let settings = CqlSettings::local(nodes.to_vec());
        let session = connect_session(&settings)
            .await
            .unwrap_or_else(|error| panic!("cannot reach the test database at {nodes:?}: {error}"));
        let keyspace = KeyspaceName::parse(TEST_KEYSPACE).unwrap();
        migrate(&session, &keyspace, &Replication::Everywhere(1))
            .await
            .unwrap_or_else(|error| panic!("cannot migrate the test keyspace: {error}"));
    });
}
