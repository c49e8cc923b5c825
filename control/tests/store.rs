//! The control store against a real PostgreSQL and a SQLite file: the audit trail's chain and
//! its guards, and the outbox's claim-once semantics.

#[macro_use]
mod common;

use std::time::Duration;

use countersign_control::audit_log::{self, AuditSealer};
use countersign_control::chat::ReplyTo;
use countersign_control::outbox::{self, Claim, JobState};
use countersign_control::store::{Backend, ControlStore};
use countersign_shared::audit::{AuditEntry, AuditEvent, ChainBreak};
use countersign_shared::job::{sql_sha256, Job, JobSigner};
use countersign_shared::sql::Category;

use common::execute;

on_both_backends!(
    migrations_run_once_and_the_chain_verifies,
    the_database_refuses_to_edit_or_remove_audit_records,
    verification_names_edited_removed_and_reordered_records,
    concurrent_writers_get_one_unbroken_chain,
    a_job_is_claimed_once_and_only_with_its_exact_payload,
    expired_leases_requeue_a_read_once_and_make_a_write_unknown,
    concurrent_claimers_get_a_job_once,
    a_finished_job_is_sealed_and_posted_once,
    lost_jobs_are_published_again_once,
);

/// `sqlite::memory:` keeps the store in one connection: concurrent callers take turns on it
/// without deadlocking (no code path holds the connection while it waits for another).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_sqlite_store_serves_concurrent_callers() {
    for scenario in 0..2 {
        // Each `sqlite::memory:` store is a database of its own.
        let store = ControlStore::connect("sqlite::memory:", 4)
            .await
            .expect("connect and migrate");
        assert_eq!(store.backend(), Backend::Sqlite);
        store.ping().await.expect("ping");
        if scenario == 0 {
            concurrent_claimers_get_a_job_once(store.clone()).await;
        } else {
            concurrent_writers_get_one_unbroken_chain(store.clone()).await;
        }
        store.close().await;
    }
}

/// A second process opening the same file finds it migrated; opening without migrating does
/// not create a missing file; other schemes are refused with a typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_urls_are_opened_created_and_refused_as_they_say() {
    let dir = common::TempDir::new();
    let url = format!("sqlite://{}/control.db", dir.0.display());
    let first = ControlStore::connect(&url, 2).await.expect("create");
    write_entries(&first, 3).await;
    let second = ControlStore::connect(&url, 2).await.expect("reopen");
    assert_eq!(
        countersign_control::migrate::run(&second)
            .await
            .expect("migrate"),
        0
    );
    assert_eq!(audit_log::head(&second).await.expect("head").0, 3);
    let missing = format!("sqlite://{}/missing.db", dir.0.display());
    assert!(ControlStore::open(&missing, 1).await.is_err());
    for url in ["mysql://localhost/control", "control.db", ""] {
        assert!(matches!(
            ControlStore::connect(url, 1).await,
            Err(countersign_control::store::StoreError::UnsupportedUrl { .. })
        ));
    }
}

fn entry(event: AuditEvent, request: &str) -> AuditEntry {
    AuditEntry {
        sql: Some("DELETE FROM orders WHERE id = 1".into()),
        ..AuditEntry::new(event, 1_800_000_000_000, request, "slack:U1", "prod")
    }
}

async fn write_entries(store: &ControlStore, n: usize) {
    for i in 0..n {
        audit_log::enqueue(store, &entry(AuditEvent::Received, &format!("r{i}")))
            .await
            .expect("enqueue");
    }
    audit_log::seal_all(store).await.expect("seal");
}

async fn migrations_run_once_and_the_chain_verifies(store: ControlStore) {
    // A second start applies nothing new.
    assert_eq!(
        countersign_control::migrate::run(&store)
            .await
            .expect("migrate"),
        0
    );
    write_entries(&store, 5).await;
    let report = audit_log::verify(&store).await.expect("verify");
    assert!(report.holds(), "{:?}", report.breaks);
    assert_eq!(report.records, 5);
    let (head_seq, head_hash) = audit_log::head(&store).await.expect("head");
    assert_eq!((head_seq, head_hash), (5, report.head));
}

async fn the_database_refuses_to_edit_or_remove_audit_records(store: ControlStore) {
    write_entries(&store, 2).await;
    let everything = match store.backend() {
        Backend::Postgres => "TRUNCATE cs_audit",
        // SQLite has no TRUNCATE: a DELETE without WHERE is its equivalent.
        Backend::Sqlite => "DELETE FROM cs_audit",
    };
    for statement in [
        "UPDATE cs_audit SET content = '{}' WHERE seq = 1",
        "DELETE FROM cs_audit WHERE seq = 2",
        everything,
        "UPDATE cs_audit_head SET seq = 1",
        "DELETE FROM cs_audit_head",
    ] {
        let error = execute(&store, statement).await.expect_err(statement);
        let message = error.to_string();
        assert!(
            message.contains("append-only") || message.contains("only moves forward"),
            "{statement}: {message}"
        );
    }
}

/// Someone with the power to switch the triggers off edits, removes and reorders records:
/// verification names each break.
async fn verification_names_edited_removed_and_reordered_records(store: ControlStore) {
    write_entries(&store, 6).await;
    let disable = match store.backend() {
        Backend::Postgres => "ALTER TABLE cs_audit DISABLE TRIGGER USER",
        Backend::Sqlite => "DROP TRIGGER cs_audit_no_update; DROP TRIGGER cs_audit_no_delete;",
    };
    execute(&store, disable).await.expect("disable triggers");
    execute(
        &store,
        "UPDATE cs_audit SET content = replace(content, 'slack:U1', 'slack:U9') WHERE seq = 2",
    )
    .await
    .expect("edit");
    execute(&store, "DELETE FROM cs_audit WHERE seq = 4")
        .await
        .expect("remove");
    let report = audit_log::verify(&store).await.expect("verify");
    assert_eq!(
        report.breaks,
        vec![
            ChainBreak::Edited { seq: 2 },
            ChainBreak::Missing { from: 4, to: 4 },
            ChainBreak::BrokenLink { seq: 5 },
        ]
    );
    // Removing the newest record shows against the recorded head.
    execute(&store, "DELETE FROM cs_audit WHERE seq = 6")
        .await
        .expect("remove the newest");
    let report = audit_log::verify(&store).await.expect("verify");
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
    execute(
        &store,
        "UPDATE cs_audit SET seq = -1 WHERE seq = 1; UPDATE cs_audit SET seq = 1 WHERE seq = 3; UPDATE cs_audit SET seq = 3 WHERE seq = -1;",
    )
    .await
    .expect("reorder");
    let report = audit_log::verify(&store).await.expect("verify");
    for seq in [1, 3] {
        assert!(
            report.breaks.contains(&ChainBreak::Edited { seq }),
            "{:?}",
            report.breaks
        );
    }
}

async fn concurrent_writers_get_one_unbroken_chain(store: ControlStore) {
    let sealer = AuditSealer::spawn(store.clone());
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        let sealer = sealer.clone();
        tasks.push(tokio::spawn(async move {
            let id = audit_log::enqueue(&store, &entry(AuditEvent::Running, &format!("r{i}")))
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
    assert!(audit_log::verify(&store).await.expect("verify").holds());
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

async fn a_job_is_claimed_once_and_only_with_its_exact_payload(store: ControlStore) {
    let pool = &store;
    let (job, signed) = signed_job("req-1", Category::Write);
    let reply_to = ReplyTo {
        platform: "console".into(),
        channel: "general".into(),
        thread: "t1".into(),
    };
    outbox::insert_job(pool, &signed, &job, Some(&reply_to), "bot")
        .await
        .expect("insert");
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

async fn expired_leases_requeue_a_read_once_and_make_a_write_unknown(store: ControlStore) {
    let pool = &store;
    let short = Duration::from_millis(1);
    for (id, category) in [("read-1", Category::Read), ("write-1", Category::Write)] {
        let (job, signed) = signed_job(id, category);
        outbox::insert_job(pool, &signed, &job, None, "bot")
            .await
            .expect("insert");
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

/// Several executors receive the same job at once (a duplicate delivery, a reconciler's
/// re-publication): exactly one claims it, the others see it claimed.
async fn concurrent_claimers_get_a_job_once(store: ControlStore) {
    let (job, signed) = signed_job("req-race", Category::Write);
    outbox::insert_job(&store, &signed, &job, None, "bot")
        .await
        .expect("insert");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let payload = signed.payload.clone();
        tasks.push(tokio::spawn(async move {
            let running = entry(AuditEvent::Running, "req-race");
            outbox::claim(
                &store,
                "req-race",
                &payload,
                &format!("e{i}"),
                Duration::from_secs(30),
                &running,
            )
            .await
            .expect("claim")
        }));
    }
    let mut claimed = 0;
    let mut already = 0;
    for task in tasks {
        match task.await.expect("task") {
            Claim::Claimed(c) => {
                assert_eq!(c.attempts, 1);
                claimed += 1;
            }
            Claim::AlreadyClaimed { state, .. } => {
                assert_eq!(state, "running");
                already += 1;
            }
            other => panic!("unexpected claim: {other:?}"),
        }
    }
    assert_eq!((claimed, already), (1, 7));
    assert_eq!(
        outbox::state_of(&store, "req-race").await.expect("state"),
        Some((JobState::Running, 1))
    );
    audit_log::seal_all(&store).await.expect("seal");
    let events: Vec<AuditEvent> = audit_log::records_for_request(&store, "req-race")
        .await
        .expect("records")
        .into_iter()
        .map(|r| r.entry.event)
        .collect();
    assert_eq!(events, vec![AuditEvent::Queued, AuditEvent::Running]);
}

/// A job's outcome is recorded once, by the executor that holds it, sealed into the chain; the
/// reconciler finds its summary unposted once.
async fn a_finished_job_is_sealed_and_posted_once(store: ControlStore) {
    use countersign_shared::summary::{Outcome, ResultSummary};
    let (job, signed) = signed_job("req-done", Category::Read);
    outbox::insert_job(&store, &signed, &job, None, "bot")
        .await
        .expect("insert");
    let running = entry(AuditEvent::Running, "req-done");
    let claim = outbox::claim(
        &store,
        "req-done",
        &signed.payload,
        "e1",
        Duration::from_secs(30),
        &running,
    )
    .await
    .expect("claim");
    assert!(matches!(claim, Claim::Claimed(_)));
    assert!(
        outbox::renew_lease(&store, "req-done", "e1", Duration::from_secs(30))
            .await
            .expect("renew")
    );
    assert!(
        !outbox::renew_lease(&store, "req-done", "e2", Duration::from_secs(30))
            .await
            .expect("renew by another")
    );
    let summary = ResultSummary {
        request_id: "req-done".into(),
        target: "prod".into(),
        outcome: Outcome::Succeeded,
        rows_affected: None,
        table: None,
        duration_ms: 3,
        reason: None,
        audit_ref: None,
    };
    let finished_entry = entry(AuditEvent::Succeeded, "req-done");
    assert_eq!(
        outbox::finish(&store, "req-done", "e2", &summary, &finished_entry)
            .await
            .expect("finish by another"),
        None
    );
    let finished = outbox::finish(&store, "req-done", "e1", &summary, &finished_entry)
        .await
        .expect("finish")
        .expect("held");
    match (store.backend(), finished) {
        (_, outbox::Finished::Sealed(sealed)) => assert_eq!(sealed.seq, 3),
        // PostgreSQL may leave it queued when another transaction is sealing; none is here.
        (backend, outbox::Finished::Queued(_)) => panic!("not sealed on {backend:?}"),
    }
    assert_eq!(
        outbox::state_of(&store, "req-done").await.expect("state"),
        Some((JobState::Finished(summary.outcome), 1))
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let unposted = outbox::unposted(&store, "prod", Duration::from_millis(1), 10)
        .await
        .expect("unposted");
    assert_eq!(unposted.len(), 1);
    assert_eq!(unposted[0].request_id, "req-done");
    assert!(
        outbox::unposted(&store, "prod", Duration::from_millis(1), 10)
            .await
            .expect("unposted again")
            .is_empty()
    );
    outbox::mark_posted(&store, &["req-done".to_string()])
        .await
        .expect("posted");
    assert!(audit_log::verify(&store).await.expect("verify").holds());
}

/// The reconciler publishes a job Redis never got, once: the next pass finds its entry waiting
/// and leaves it alone.
async fn lost_jobs_are_published_again_once(store: ControlStore) {
    use countersign_control::queue::JobQueue;
    use countersign_control::submit::{republish_lost, submit_job, Published};
    let queue = JobQueue::in_memory(&format!("cs-test-{}", countersign_control::now_ms()));
    let (lost, lost_signed) = signed_job("req-lost", Category::Read);
    outbox::insert_job(&store, &lost_signed, &lost, None, "bot")
        .await
        .expect("insert");
    let (sent, sent_signed) = signed_job("req-sent", Category::Read);
    assert!(matches!(
        submit_job(&store, &queue, &sent_signed, &sent, None, "bot")
            .await
            .expect("submit"),
        Published::Now
    ));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        republish_lost(&store, &queue, "prod", Duration::from_millis(1), 10)
            .await
            .expect("republish"),
        1,
        "only the job Redis never got"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        republish_lost(&store, &queue, "prod", Duration::from_millis(1), 10)
            .await
            .expect("republish again"),
        0,
        "both entries are waiting in the stream"
    );
}
