//! `countersign audit verify` and `countersign audit export` against a real control database.

mod common;

use common::{countersign, stdout};
use countersign_control::audit_log;
use countersign_control::store::ControlStore;
use countersign_shared::audit::{AuditEntry, AuditEvent, AuditRecord};
use countersign_testkit::PgDatabase;

async fn trail(records: usize) -> PgDatabase {
    let db = PgDatabase::create().await;
    let store = ControlStore::connect(&db.url, 2).await.expect("store");
    for i in 0..records {
        let entry = AuditEntry {
            sql: Some(format!("DELETE FROM orders WHERE id = {i}")),
            ..AuditEntry::new(
                AuditEvent::Succeeded,
                1_800_000_000_000,
                format!("req-{i}"),
                "executor:e1",
                "prod",
            )
        };
        audit_log::enqueue(&store, &entry).await.expect("enqueue");
    }
    audit_log::seal_all(&store).await.expect("seal");
    store.close().await;
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_an_intact_trail_and_export_streams_it() {
    let db = trail(3).await;
    let out = countersign(&["audit", "verify", "--database-url", &db.url], None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).starts_with("audit trail holds: 3 records, head "),
        "{}",
        stdout(&out)
    );

    let out = countersign(
        &[
            "audit",
            "export",
            "--format",
            "jsonl",
            "--database-url",
            &db.url,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let records: Vec<AuditRecord> = stdout(&out)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is a record"))
        .collect();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(countersign_shared::audit::verify_chain(records).holds());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_an_edited_record_and_fails() {
    let db = trail(3).await;
    let pool = db.pool().await;
    sqlx::raw_sql(
        "ALTER TABLE cs_audit DISABLE TRIGGER USER;
         UPDATE cs_audit SET content = replace(content, 'id = 1', 'id = 9') WHERE seq = 2;",
    )
    .execute(&pool)
    .await
    .expect("tamper");
    let out = countersign(&["audit", "verify", "--database-url", &db.url], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("audit trail BROKEN"), "{text}");
    assert!(text.contains("record #2 was edited"), "{text}");
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let out = countersign(
        &[
            "audit",
            "verify",
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connecting to the control database"), "{err}");
}
