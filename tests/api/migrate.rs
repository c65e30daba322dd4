//! `dedupd migrate` against a fresh keyspace.

use dedupd::domain::KeyspaceName;
use dedupd::store::migrate::{MIGRATIONS, Replication, migrate};
use dedupd::store::{CqlSettings, connect_session};

use dedupd_test_support::database;

#[tokio::test]
async fn migrate_applies_every_file_once_and_records_it() {
    let settings = CqlSettings::local(database().nodes.clone());
    let session = connect_session(&settings).await.unwrap();
    let name = format!("m_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let keyspace = KeyspaceName::parse(&name).unwrap();

    let first = migrate(&session, &keyspace, &Replication::Everywhere(1))
        .await
        .unwrap();
    assert_eq!(first.applied.len(), MIGRATIONS.len());
    assert!(first.already_applied.is_empty());

    let second = migrate(&session, &keyspace, &Replication::Everywhere(1))
        .await
        .unwrap();
    assert!(second.applied.is_empty(), "nothing is applied twice");
    assert_eq!(second.already_applied.len(), MIGRATIONS.len());

    let rows = session
        .query_unpaged(
            format!("SELECT version, checksum FROM {name}.schema_migrations"),
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(rows.rows_num(), MIGRATIONS.len());

    // The claims table carries the options the CQL file chose.
    let options = session
        .query_unpaged(
            "SELECT gc_grace_seconds, compaction FROM system_schema.tables \
             WHERE keyspace_name = ? AND table_name = 'claims'",
            (name.as_str(),),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let (gc_grace, compaction): (i32, std::collections::HashMap<String, String>) =
        options.single_row().unwrap();
    assert_eq!(gc_grace, 10_800);
    assert!(compaction["class"].contains("TimeWindowCompactionStrategy"));

    drop_keyspace(&session, &name).await;
}

/// Cleanup, not an assertion: a schema change can time out on a loaded
/// machine (it waits for schema agreement), so it is tried a few times.
async fn drop_keyspace(session: &scylla::client::session::Session, name: &str) {
    for attempt in 1..=3 {
        match session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {name}"), ())
            .await
        {
            Ok(_) => return,
            Err(error) if attempt < 3 => {
                eprintln!("dropping keyspace {name} failed ({error}); again");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            Err(error) => panic!("cannot drop keyspace {name}: {error}"),
        }
    }
}
