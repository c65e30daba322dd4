//! The lab's keyspace guard against a real Cassandra: it writes into a
//! keyspace it created (or marked) and refuses one it did not.

use dedupd::domain::KeyspaceName;
use dedupd::store::migrate::Replication;
use dedupd_lab::keyspace::{KeyspaceArgs, prepare};
use dedupd_test_support::test_session;

fn unique_keyspace(prefix: &str) -> KeyspaceName {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
    KeyspaceName::parse(&format!("{prefix}_{suffix}")).expect("a valid keyspace name")
}

fn args(name: &KeyspaceName, allow_existing: bool) -> KeyspaceArgs {
    KeyspaceArgs {
        name: name.clone(),
        allow_existing,
    }
}

#[tokio::test]
async fn a_new_keyspace_is_created_marked_and_accepted_again() {
    let session = test_session().await;
    let keyspace = unique_keyspace("lab_new");
    let replication = Replication::Everywhere(1);
    prepare(&session, &args(&keyspace, false), &replication)
        .await
        .expect("an absent keyspace is the lab's to create");
    prepare(&session, &args(&keyspace, false), &replication)
        .await
        .expect("a keyspace the lab marked is the lab's");
    drop_keyspace(&session, &keyspace).await;
}

#[tokio::test]
async fn a_keyspace_the_lab_did_not_create_is_refused_unless_allowed() {
    let session = test_session().await;
    let keyspace = unique_keyspace("lab_foreign");
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE {} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}",
                keyspace.as_str()
            ),
            (),
        )
        .await
        .expect("create a foreign keyspace");
    session
        .query_unpaged(
            format!(
                "CREATE TABLE {}.orders (id text PRIMARY KEY)",
                keyspace.as_str()
            ),
            (),
        )
        .await
        .expect("create a foreign table");
    let replication = Replication::Everywhere(1);
    let refusal = prepare(&session, &args(&keyspace, false), &replication)
        .await
        .expect_err("a foreign keyspace is refused");
    assert!(
        refusal.to_string().contains("--allow-existing-keyspace"),
        "the refusal names the way out: {refusal}"
    );
    let marker = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'lab_marker'",
            (keyspace.as_str(),),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(marker.rows_num(), 0, "a refusal writes nothing");
    prepare(&session, &args(&keyspace, true), &replication)
        .await
        .expect("allowed explicitly");
    drop_keyspace(&session, &keyspace).await;
}

async fn drop_keyspace(session: &scylla::client::session::Session, keyspace: &KeyspaceName) {
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", keyspace.as_str()), ())
        .await
        .expect("drop the keyspace");
}
