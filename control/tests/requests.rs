//! Requests and approvals against a real PostgreSQL and a SQLite file: each transition happens
//! once, however many replicas try it, and each is in the audit trail.

#[macro_use]
mod common;

use countersign_control::audit_log;
use countersign_control::outbox::{self, JobState};
use countersign_control::requests::{self, ApprovalChange, Created, NewRequest, RequestState};
use countersign_control::store::ControlStore;
use countersign_shared::audit::AuditEvent;
use countersign_shared::job::{sql_sha256, Job, JobSigner};
use countersign_shared::sql::Category;

on_both_backends!(
    a_reviewed_request_is_approved_once_and_queued_with_its_job,
    rejection_cancellation_and_expiry_close_a_request_once,
    the_approval_that_completes_the_quorum_is_written_with_the_job_or_not_at_all,
    concurrent_approvals_queue_the_job_once,
    roots_cards_and_lists,
    the_inbox_takes_each_event_once,
);

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
    audit_log::seal_all(store).await.expect("seal");
    audit_log::records_for_request(store, id)
        .await
        .expect("records")
        .into_iter()
        .map(|r| r.entry.event)
        .collect()
}

async fn a_reviewed_request_is_approved_once_and_queued_with_its_job(store: ControlStore) {
    let pool = &store;
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

async fn rejection_cancellation_and_expiry_close_a_request_once(store: ControlStore) {
    let pool = &store;
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
        let store = store.clone();
        async move {
            requests::transition(&store, id, RequestState::Pending, to, "slack:U2", &[])
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

async fn the_approval_that_completes_the_quorum_is_written_with_the_job_or_not_at_all(
    store: ControlStore,
) {
    let pool = &store;
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

fn job_for(
    request: &NewRequest,
    approvers: &[String],
) -> (Job, countersign_shared::job::SignedJob) {
    let job = Job {
        request_id: request.id.clone(),
        target: "prod".into(),
        sql: request.sql.clone(),
        sql_sha256: sql_sha256(&request.sql),
        requester: request.requester.clone(),
        approvers: approvers.to_vec(),
        policy_version: "v1".into(),
        category: Category::Write,
        row_limit: Some(1),
        issued_at: 1,
        expires_at: u64::MAX,
    };
    let signed = JobSigner::from_seed([5; 32]).sign(&job);
    (job, signed)
}

/// Reviewers approve at the same moment, on a request that needs two approvals, each following
/// the bot's flow (complete the quorum with the job if this approval does, else record the
/// approval alone and check the quorum again): the job is queued exactly once.
async fn concurrent_approvals_queue_the_job_once(store: ControlStore) {
    const QUORUM: usize = 2;
    let request = new_request("race", Some(countersign_control::now_ms() + 3_600_000));
    requests::create(&store, &request, RequestState::Pending)
        .await
        .expect("create");
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let me = format!("slack:R{i}");
            let mut queued = 0;
            let active = requests::active_approvers(&store, "race")
                .await
                .expect("approvers");
            if active.len() + 1 >= QUORUM {
                let mut all = active.clone();
                all.push(me.clone());
                let (job, signed) = job_for(&request, &all);
                if requests::approve_and_queue(&store, &me, &active, &signed, &job, None, "bot")
                    .await
                    .expect("approve and queue")
                    == requests::ApproveAndQueue::Queued
                {
                    return 1;
                }
            }
            if requests::approve(&store, "race", &me)
                .await
                .expect("approve")
                != ApprovalChange::NotPending
            {
                let now = requests::active_approvers(&store, "race")
                    .await
                    .expect("approvers");
                if now.len() >= QUORUM {
                    let (job, signed) = job_for(&request, &now);
                    if requests::queue(&store, RequestState::Pending, &signed, &job, None, "bot")
                        .await
                        .expect("queue")
                    {
                        queued += 1;
                    }
                }
            }
            queued
        }));
    }
    let mut queued = 0;
    for task in tasks {
        queued += task.await.expect("task");
    }
    assert_eq!(queued, 1, "the job is queued once");
    assert_eq!(
        requests::state_of(&store, "race").await.expect("state"),
        Some(RequestState::Queued)
    );
    assert_eq!(
        outbox::state_of(&store, "race").await.expect("job"),
        Some((JobState::Queued, 0))
    );
    let events = events(&store, "race").await;
    assert_eq!(
        events.iter().filter(|e| **e == AuditEvent::Queued).count(),
        1,
        "{events:?}"
    );
    assert!(audit_log::verify(&store).await.expect("verify").holds());
}

/// Root messages, cards and the lists the bot's upkeep reads.
async fn roots_cards_and_lists(store: ControlStore) {
    use countersign_control::chat::ReplyTo;
    use std::time::Duration;
    let future = Some(countersign_control::now_ms() + 3_600_000);
    for id in ["a", "b", "c"] {
        let mut request = new_request(id, future);
        request.card = Some(serde_json::json!({"title": id}));
        request.origin = Some(serde_json::json!({"channel": "C1"}));
        requests::create(&store, &request, RequestState::Pending)
            .await
            .expect("create");
    }
    requests::transition(
        &store,
        "c",
        RequestState::Pending,
        RequestState::Cancelled,
        "slack:U1",
        &[],
    )
    .await
    .expect("cancel");
    let pending = requests::list(&store, &[RequestState::Pending], None, 10)
        .await
        .expect("list");
    assert_eq!(
        pending.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["b", "a"],
        "newest first"
    );
    assert_eq!(
        pending[0].origin,
        Some(serde_json::json!({"channel": "C1"}))
    );
    assert!(pending[0].expires_at_ms.is_some());
    assert!(pending[0].created_at_ms > 0);
    let mine = requests::list(
        &store,
        &[RequestState::Pending, RequestState::Cancelled],
        Some("slack:U1"),
        10,
    )
    .await
    .expect("list");
    assert_eq!(mine.len(), 3);
    assert!(
        requests::list(&store, &[RequestState::Pending], Some("slack:U9"), 10)
            .await
            .expect("list")
            .is_empty()
    );

    // Every request was created an hour ago, so "older than a minute" below does not hang on
    // how fast this machine runs the steps in between.
    let backdate = if store.pg_pool().is_some() {
        "UPDATE cs_requests SET created_at = created_at - interval '1 hour'"
    } else {
        "UPDATE cs_requests SET created_at = created_at - 3600000"
    };
    assert_eq!(
        crate::common::execute(&store, backdate)
            .await
            .expect("backdate"),
        3
    );

    // Posting the root message: one replica takes the right; a stale claim is taken over.
    assert!(!requests::roots_in_flight(&store, Duration::from_secs(10))
        .await
        .expect("in flight"));
    assert!(requests::claim_root(&store, "a", Duration::from_secs(60))
        .await
        .expect("claim"));
    assert!(!requests::claim_root(&store, "a", Duration::from_secs(60))
        .await
        .expect("claim again"));
    assert!(requests::roots_in_flight(&store, Duration::from_secs(10))
        .await
        .expect("in flight"));
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(requests::claim_root(&store, "a", Duration::from_millis(10))
        .await
        .expect("take over"));
    // "b" has a card but no root message and is old enough: missing. "a" is as old, but its
    // claim was just taken over, so the replica that holds it is posting it now.
    assert_eq!(
        requests::missing_roots(&store, Duration::from_secs(60), 10)
            .await
            .expect("missing"),
        ["b"]
    );
    let root = ReplyTo {
        platform: "slack".into(),
        channel: "C1".into(),
        thread: "1700000000.000100".into(),
    };
    requests::set_root(&store, "a", &root, "pending")
        .await
        .expect("root");
    let found = requests::find_by_root(&store, "slack", "C1", "1700000000.000100")
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.id, "a");
    assert_eq!(found.reply_to, Some(root));
    assert_eq!(found.card_shown.as_deref(), Some("pending"));
    assert!(requests::stale_cards(&store, 10)
        .await
        .expect("stale")
        .is_empty());
    requests::transition(
        &store,
        "a",
        RequestState::Pending,
        RequestState::Rejected,
        "slack:U2",
        &[],
    )
    .await
    .expect("reject");
    assert_eq!(
        requests::stale_cards(&store, 10).await.expect("stale"),
        ["a"]
    );
    requests::set_card(
        &store,
        "a",
        &serde_json::json!({"title": "a"}),
        "rejected",
        true,
    )
    .await
    .expect("card");
    assert!(requests::stale_cards(&store, 10)
        .await
        .expect("stale")
        .is_empty());
    let loaded = requests::load(&store, "a").await.expect("load").expect("a");
    assert_eq!(loaded.state, RequestState::Rejected);
    assert_eq!(loaded.card, Some(serde_json::json!({"title": "a"})));
    assert_eq!(loaded.job_state, None);
    assert!(requests::load(&store, "zz").await.expect("load").is_none());
}

/// The inbox: a key is accepted once, an unfinished event is reclaimed once it is stale, a
/// finished one is pruned.
async fn the_inbox_takes_each_event_once(store: ControlStore) {
    use countersign_control::inbox;
    use std::time::Duration;
    let payload = serde_json::json!({"text": "/query prod SELECT 1"});
    assert!(inbox::accept(&store, "e1", "command", &payload)
        .await
        .expect("accept"));
    assert!(!inbox::accept(&store, "e1", "command", &payload)
        .await
        .expect("again"));
    assert!(inbox::accept(&store, "e2", "reaction", &payload)
        .await
        .expect("accept"));
    inbox::finish(&store, "e2").await.expect("finish");
    inbox::renew(&store, "e1").await.expect("renew");
    assert!(inbox::reclaim(&store, Duration::from_secs(60), 10)
        .await
        .expect("reclaim")
        .is_empty());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reclaimed = inbox::reclaim(&store, Duration::from_secs(1), 10)
        .await
        .expect("reclaim");
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(reclaimed[0].key, "e1");
    assert_eq!(reclaimed[0].kind, "command");
    assert_eq!(reclaimed[0].payload, payload);
    assert_eq!(reclaimed[0].attempts, 2);
    assert!(
        inbox::reclaim(&store, Duration::from_secs(60), 10)
            .await
            .expect("reclaim")
            .is_empty(),
        "the claim was renewed"
    );
    inbox::abandon(&store, "e1").await.expect("abandon");
    assert_eq!(
        inbox::prune(&store, Duration::from_secs(60))
            .await
            .expect("prune"),
        0
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        inbox::prune(&store, Duration::from_millis(5))
            .await
            .expect("prune"),
        2
    );
}
