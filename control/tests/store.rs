//! The control store against a real PostgreSQL: the audit trail's chain and its guards, and
//! the outbox's claim-once semantics.

use std::time::Duration;

use countersign_control::audit_log::{self, AuditSealer};
use countersign_control::chat::ReplyTo;
use countersign_control::outbox::{self, Claim, JobState};
use countersign_control::store::ControlStore;
use countersign_shared::audit::{AuditEntry, AuditEvent, ChainBreak};
use countersign_shared::job::{sql_sha256, Job, JobSigner};
use countersign_shared::sql::Category;
use countersign_testkit::PgDatabase;

async fn store(db: &PgDatabase) -> ControlStore {
    ControlStore::connect(&db.url, 4)
        .await
        .expect("connect and migrate")
}

fn entry(event: AuditEvent, request: &str) -> AuditEntry {
    AuditEntry {
        sql: Some("DELETE FROM orders WHERE id = 1".into()),
        ..AuditEntry::new(event, 1_800_000_000_000, request, "slack:U1", "prod")
    }
}

async fn write_entries(store: &ControlStore, n: usize) {
    for i in 0..n {
        audit_log::enqueue(store.pool(), &entry(AuditEvent::Received, &format!("r{i}")))
            .await
            .expect("enqueue");
    }
    audit_log::seal_all(store.pool()).await.expect("seal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_and_the_chain_verifies() {
    let db = PgDatabase::create().await;
    let store = store(&db).await;
    // A second start applies nothing new.
    assert_eq!(
        countersign_control::migrate::run(store.pool())
            .await
            .expect("migrate"),
        0
    );
    write_entries(&store, 5).await;
    let report = audit_log::verify(store.pool()).await.expect("verify");
    assert!(report.holds(), "{:?}", report.breaks);
    assert_eq!(report.records, 5);
    let (head_seq, head_hash) = audit_log::head(store.pool()).await.expect("head");
    assert_eq!((head_seq, head_hash), (5, report.head));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_to_edit_or_remove_audit_records() {
    let db = PgDatabase::create().await;
    let store = store(&db).await;
    write_entries(&store, 2).await;
    for statement in [
        "UPDATE cs_audit SET content = '{}' WHERE seq = 1",
        "DELETE FROM cs_audit WHERE seq = 2",
        "TRUNCATE cs_audit",
        "UPDATE cs_audit_head SET seq = 1",
    ] {
        let error = sqlx::query(statement)
            .execute(store.pool())
            .await
            .expect_err(statement);
        let message = error.to_string();
        assert!(
            message.contains("append-only") || message.contains("only moves forward"),
            "{statement}: {message}"
        );
    }
}

/// Someone with the power to switch the triggers off edits, removes and reorders records:
/// verification names each break.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_names_edited_removed_and_reordered_records() {
    let db = PgDatabase::create().await;
    let store = store(&db).await;
    write_entries(&store, 6).await;
    let pool = store.pool();
    sqlx::raw_sql("ALTER TABLE cs_audit DISABLE TRIGGER USER")
        .execute(pool)
        .await
        .expect("disable triggers");
    sqlx::query(
        "UPDATE cs_audit SET content = replace(content, 'slack:U1', 'slack:U9') WHERE seq = 2",
    )
    .execute(pool)
    .await
    .expect("edit");
    sqlx::query("DELETE FROM cs_audit WHERE seq = 4")
        .execute(pool)
        .await
        .expect("remove");
    let report = audit_log::verify(pool).await.expect("verify");
    assert_eq!(
        report.breaks,
        vec![
            ChainBreak::Edited { seq: 2 },
            ChainBreak::Missing { from: 4, to: 4 },
            ChainBreak::BrokenLink { seq: 5 },
        ]
    );
    // Removing the newest record shows against the recorded head.
    sqlx::query("DELETE FROM cs_audit WHERE seq = 6")
        .execute(pool)
        .await
        .expect("remove the newest");
    let report = audit_log::verify(pool).await.expect("verify");
    assert!(
        matches!(
            report.breaks.last(),
            Some(ChainBreak::Truncated {
                last: 5,
                head_seq: 6,
                ..
            })
        ),
        "{:?}",
        report.breaks
    );
    // Swapping two records' places: the sequence number is part of each hash.
    sqlx::raw_sql(
        "UPDATE cs_audit SET seq = -1 WHERE seq = 1; UPDATE cs_audit SET seq = 1 WHERE seq = 3; UPDATE cs_audit SET seq = 3 WHERE seq = -1;",
    )
    .execute(pool)
    .await
    .expect("reorder");
    let report = audit_log::verify(pool).await.expect("verify");
    for seq in [1, 3] {
        assert!(
            report.breaks.contains(&ChainBreak::Edited { seq }),
            "{:?}",
            report.breaks
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_get_one_unbroken_chain() {
    let db = PgDatabase::create().await;
    let store = store(&db).await;
    let sealer = AuditSealer::spawn(store.pool().clone());
    let mut tasks = Vec::new();
    for i in 0..40 {
        let pool = store.pool().clone();
        let sealer = sealer.clone();
        tasks.push(tokio::spawn(async move {
            let id = audit_log::enqueue(&pool, &entry(AuditEvent::Running, &format!("r{i}")))
                .await
                .expect("enqueue");
            sealer.sealed(id).await.expect("sealed")
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        let sealed = task.await.expect("task");
        assert!(sealed.reference().starts_with('#'));
        seqs.push(sealed.seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=40).collect::<Vec<u64>>());
    assert!(audit_log::verify(store.pool())
        .await
        .expect("verify")
        .holds());
}

fn signed_job(request_id: &str, category: Category) -> (Job, countersign_shared::job::SignedJob) {
    let sql = "SELECT 1".to_string();
    let job = Job {
        request_id: request_id.into(),
        target: "prod".into(),
        sql_sha256: sql_sha256(&sql),
        sql,
        requester: "slack:U1".into(),
        approvers: vec![],
        policy_version: "v".into(),
        category,
        row_limit: None,
        issued_at: 1,
        expires_at: u64::MAX,
    };
    let signed = JobSigner::from_seed([3; 32]).sign(&job);
    (job, signed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_claimed_once_and_only_with_its_exact_payload() {
    let db = PgDatabase::create().await;
    let store = store(&db).await;
    let pool = store.pool();
    let (job, signed) = signed_job("req-1", Category::Write);
    let reply_to = ReplyTo {
        platform: "console".into(),
        channel: "general".into(),
        thread: "t1".into(),
    };
    let mut tx = pool.begin().await.expect("begin");
    outbox::insert_job(&mut *tx, &signed, &job, Some(&reply_to), "bot")
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
    let running = entry(AuditEvent::Running, "req-1");
    let lease = Duration::from_secs(30);

    let forged = format!("{} ", signed.payload);
    assert!(matches!(
        outbox::claim(pool, "req-1", &forged, "e1", lease, &running)
            .await
            .expect("claim"),
        Claim::PayloadMismatch { reply_to: Some(_) }
    ));
    assert!(matches!(
        outbox::claim(pool, "req-9", &signed.payload, "e1", lease, &running)
            .await
            .expect("claim"),
        Claim::NotFound
    ));
    let Claim::Claimed(claimed) =
        outbox::claim(pool, "req-1", &signed.payload, "e1", lease, &running)
            .await
            .expect("claim")
    else {
        panic!("the first claim must win");
    };
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.reply_to, Some(reply_to));
    assert!(matches!(
        outbox::claim(pool, "req-1", &signed.payload, "e2", lease, &running).await.expect("claim"),
        Claim::AlreadyClaimed { claimed_by: Some(ref by), .. } if by == "e1"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leases_requeue_a_read_once_and_make_a_write_unknown() {
    let db = PgDatabase::create().await;
    let store = store(&db).await;
    let pool = store.pool();
    let short = Duration::from_millis(1);
    for (id, category) in [("read-1", Category::Read), ("write-1", Category::Write)] {
        let (job, signed) = signed_job(id, category);
        let mut tx = pool.begin().await.expect("begin");
        outbox::insert_job(&mut *tx, &signed, &job, None, "bot")
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
        let running = entry(AuditEvent::Running, id);
        let claim = outbox::claim(pool, id, &signed.payload, "e1", short, &running)
            .await
            .expect("claim");
        assert!(matches!(claim, Claim::Claimed(_)));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut abandoned = outbox::expire_leases(pool, "prod", "executor:e2", 2)
        .await
        .expect("expire");
    abandoned.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    assert_eq!(abandoned.len(), 2);
    assert!(abandoned[0].requeued, "the read runs once more");
    assert!(!abandoned[1].requeued, "the write is never run again");
    assert_eq!(
        outbox::state_of(pool, "write-1").await.expect("state"),
        Some((
            JobState::Finished(countersign_shared::summary::Outcome::Unknown),
            1
        ))
    );
    // The read's second claim also dies: now it is unknown too.
    let (_, signed) = signed_job("read-1", Category::Read);
    let running = entry(AuditEvent::Running, "read-1");
    let claim = outbox::claim(pool, "read-1", &signed.payload, "e2", short, &running)
        .await
        .expect("claim");
    assert!(matches!(claim, Claim::Claimed(ref c) if c.attempts == 2));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let abandoned = outbox::expire_leases(pool, "prod", "executor:e3", 2)
        .await
        .expect("expire");
    assert_eq!(abandoned.len(), 1);
    assert!(!abandoned[0].requeued);
    audit_log::seal_all(pool).await.expect("seal");
    let events: Vec<AuditEvent> = audit_log::records_for_request(pool, "read-1")
        .await
        .expect("records")
        .into_iter()
        .map(|r| r.entry.event)
        .collect();
    assert_eq!(
        events,
        vec![
            AuditEvent::Queued,
            AuditEvent::Running,
            AuditEvent::Queued,
            AuditEvent::Running,
            AuditEvent::OutcomeUnknown
        ]
    );
}
