//! Requests and approvals against a real PostgreSQL: each transition happens once, however
//! many replicas try it, and each is in the audit trail.

use countersign_control::audit_log;
use countersign_control::outbox::{self, JobState};
use countersign_control::requests::{self, ApprovalChange, Created, NewRequest, RequestState};
use countersign_control::store::ControlStore;
use countersign_shared::audit::AuditEvent;
use countersign_shared::job::{sql_sha256, Job, JobSigner};
use countersign_shared::sql::Category;
use countersign_testkit::PgDatabase;

fn new_request(id: &str, expires_at_ms: Option<u64>) -> NewRequest {
    NewRequest {
        id: id.into(),
        requester: "slack:U1".into(),
        target: "prod".into(),
        sql: "DELETE FROM orders WHERE id = 42".into(),
        reason: Some("ticket 12".into()),
        category: "write".into(),
        policy_version: "v1".into(),
        decision: serde_json::json!({"outcome": "needs_approval"}),
        reasons: vec!["writes on prod need a dba".into()],
        reply_to: None,
        expires_at_ms,
        origin: None,
        card: None,
    }
}

async fn events(store: &ControlStore, id: &str) -> Vec<AuditEvent> {
    audit_log::seal_all(store.pool()).await.expect("seal");
    audit_log::records_for_request(store.pool(), id)
        .await
        .expect("records")
        .into_iter()
        .map(|r| r.entry.event)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewed_request_is_approved_once_and_queued_with_its_job() {
    let db = PgDatabase::create().await;
    let store = ControlStore::connect(&db.url, 4).await.expect("store");
    let pool = store.pool();
    let request = new_request("r1", Some(countersign_control::now_ms() + 3_600_000));
    assert_eq!(
        requests::create(pool, &request, RequestState::Pending)
            .await
            .expect("create"),
        Created::New
    );
    // The same event delivered again, or seen by a second replica.
    assert_eq!(
        requests::create(pool, &request, RequestState::Pending)
            .await
            .expect("create"),
        Created::AlreadyThere
    );
    assert_eq!(
        requests::approve(pool, "r1", "slack:U2")
            .await
            .expect("approve"),
        ApprovalChange::Counted
    );
    assert_eq!(
        requests::approve(pool, "r1", "slack:U2")
            .await
            .expect("approve"),
        ApprovalChange::AlreadyCounted
    );
    assert_eq!(
        requests::approve(pool, "r1", "slack:U3")
            .await
            .expect("approve"),
        ApprovalChange::Counted
    );
    assert!(requests::withdraw(pool, "r1", "slack:U3")
        .await
        .expect("withdraw"));
    assert!(!requests::withdraw(pool, "r1", "slack:U3")
        .await
        .expect("withdraw twice"));
    assert_eq!(
        requests::active_approvers(pool, "r1")
            .await
            .expect("approvers"),
        vec!["slack:U2".to_string()]
    );
    assert_eq!(
        requests::approve(pool, "r1", "slack:U3")
            .await
            .expect("again"),
        ApprovalChange::Counted
    );

    let job = Job {
        request_id: "r1".into(),
        target: "prod".into(),
        sql: request.sql.clone(),
        sql_sha256: sql_sha256(&request.sql),
        requester: request.requester.clone(),
        approvers: vec!["slack:U2".into(), "slack:U3".into()],
        policy_version: "v1".into(),
        category: Category::Write,
        row_limit: Some(1),
        issued_at: 1,
        expires_at: u64::MAX,
    };
    let signed = JobSigner::from_seed([5; 32]).sign(&job);
    assert!(
        requests::queue(pool, RequestState::Pending, &signed, &job, None, "bot")
            .await
            .expect("queue")
    );
    // A second replica reaching quorum too writes no second job.
    assert!(
        !requests::queue(pool, RequestState::Pending, &signed, &job, None, "bot")
            .await
            .expect("queue")
    );
    assert_eq!(
        requests::state_of(pool, "r1").await.expect("state"),
        Some(RequestState::Queued)
    );
    assert_eq!(
        outbox::state_of(pool, "r1").await.expect("job"),
        Some((JobState::Queued, 0))
    );
    // Once queued, reactions change nothing.
    assert_eq!(
        requests::approve(pool, "r1", "slack:U4")
            .await
            .expect("late"),
        ApprovalChange::NotPending
    );
    assert_eq!(
        events(&store, "r1").await,
        [
            AuditEvent::Received,
            AuditEvent::Pending,
            AuditEvent::Approved,
            AuditEvent::Approved,
            AuditEvent::ApprovalWithdrawn,
            AuditEvent::Approved,
            AuditEvent::Queued
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_cancellation_and_expiry_close_a_request_once() {
    let db = PgDatabase::create().await;
    let store = ControlStore::connect(&db.url, 4).await.expect("store");
    let pool = store.pool();
    let future = Some(countersign_control::now_ms() + 3_600_000);
    for id in ["rejected", "cancelled"] {
        requests::create(pool, &new_request(id, future), RequestState::Pending)
            .await
            .expect("create");
    }
    requests::create(
        pool,
        &new_request("expired", Some(1)),
        RequestState::Pending,
    )
    .await
    .expect("create");
    let reject = |id: &'static str, to: RequestState| {
        let pool = pool.clone();
        async move {
            requests::transition(&pool, id, RequestState::Pending, to, "slack:U2", &[])
                .await
                .expect("transition")
        }
    };
    assert!(reject("rejected", RequestState::Rejected).await);
    assert!(
        !reject("rejected", RequestState::Rejected).await,
        "only once"
    );
    assert!(reject("cancelled", RequestState::Cancelled).await);
    let expired = requests::expire_due(pool, "bot").await.expect("expire");
    assert_eq!(
        expired.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["expired"]
    );
    assert!(requests::expire_due(pool, "bot")
        .await
        .expect("again")
        .is_empty());
    assert_eq!(
        events(&store, "expired").await,
        [
            AuditEvent::Received,
            AuditEvent::Pending,
            AuditEvent::Expired
        ]
    );
    assert_eq!(
        events(&store, "rejected").await,
        [
            AuditEvent::Received,
            AuditEvent::Pending,
            AuditEvent::Rejected
        ]
    );
    assert_eq!(
        requests::approve(pool, "cancelled", "slack:U2")
            .await
            .expect("approve"),
        ApprovalChange::NotPending
    );
    assert!(audit_log::verify(pool).await.expect("verify").holds());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approval_that_completes_the_quorum_is_written_with_the_job_or_not_at_all() {
    let db = PgDatabase::create().await;
    let store = ControlStore::connect(&db.url, 4).await.expect("store");
    let pool = store.pool();
    let request = new_request("r2", Some(countersign_control::now_ms() + 3_600_000));
    requests::create(pool, &request, RequestState::Pending)
        .await
        .expect("create");
    assert_eq!(
        requests::approve(pool, "r2", "slack:U2")
            .await
            .expect("approve"),
        ApprovalChange::Counted
    );
    let job = Job {
        request_id: "r2".into(),
        target: "prod".into(),
        sql: request.sql.clone(),
        sql_sha256: sql_sha256(&request.sql),
        requester: request.requester.clone(),
        approvers: vec!["slack:U2".into(), "slack:U3".into()],
        policy_version: "v1".into(),
        category: Category::Write,
        row_limit: Some(1),
        issued_at: 1,
        expires_at: u64::MAX,
    };
    let signed = JobSigner::from_seed([5; 32]).sign(&job);
    // The caller checked the quorum without U2's approval (it did not see it yet): nothing is
    // written, so the caller records the approval alone and checks again.
    assert_eq!(
        requests::approve_and_queue(pool, "slack:U3", &[], &signed, &job, None, "bot")
            .await
            .expect("changed"),
        requests::ApproveAndQueue::Changed
    );
    assert_eq!(
        requests::active_approvers(pool, "r2")
            .await
            .expect("approvers"),
        vec!["slack:U2".to_string()]
    );
    assert_eq!(outbox::state_of(pool, "r2").await.expect("no job"), None);
    // With the approvals it checked: the approval, the queued state and the job, together.
    assert_eq!(
        requests::approve_and_queue(
            pool,
            "slack:U3",
            &["slack:U2".to_string()],
            &signed,
            &job,
            None,
            "bot"
        )
        .await
        .expect("queued"),
        requests::ApproveAndQueue::Queued
    );
    assert_eq!(
        requests::state_of(pool, "r2").await.expect("state"),
        Some(RequestState::Queued)
    );
    assert_eq!(
        outbox::state_of(pool, "r2").await.expect("job"),
        Some((JobState::Queued, 0))
    );
    assert_eq!(
        events(&store, "r2").await,
        [
            AuditEvent::Received,
            AuditEvent::Pending,
            AuditEvent::Approved,
            AuditEvent::Approved,
            AuditEvent::Queued
        ]
    );
}
