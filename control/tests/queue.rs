//! The job queue's two backends, Redis (the machine's, each test under its own key prefix,
//! removed afterwards) and in-process, run through the same scenarios: every scenario is one
//! function of the backend, and `both!` makes a test of it per backend
//! (`<scenario>::redis`, `<scenario>::memory`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use countersign_control::queue::{Delivery, JobQueue, Stream, STREAM_MAX_LEN};
use countersign_shared::job::SignedJob;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Redis,
    Memory,
}

/// A queue under a fresh prefix; the Redis keys under it are removed on drop.
struct Fixture {
    queue: JobQueue,
    backend: Backend,
    prefix: String,
}

impl Fixture {
    async fn new(backend: Backend) -> Fixture {
        let prefix = countersign_testkit::redis_namespace();
        let queue = match backend {
            Backend::Redis => JobQueue::connect(&countersign_testkit::redis_url(), &prefix)
                .await
                .expect("redis at COUNTERSIGN_TEST_REDIS (scripts/services.sh starts it)"),
            Backend::Memory => JobQueue::in_memory(&prefix),
        };
        assert_eq!(queue.is_in_memory(), backend == Backend::Memory);
        Fixture {
            queue,
            backend,
            prefix,
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.backend != Backend::Redis {
            return;
        }
        let Ok(client) = redis::Client::open(countersign_testkit::redis_url()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        for keys in keys.chunks(1000) {
            let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

macro_rules! both {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$scenario(super::Backend::Redis).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$scenario(super::Backend::Memory).await;
            }
        }
    };
}

fn envelope(n: usize) -> SignedJob {
    SignedJob {
        payload: format!("{{\"n\":{n}}}"),
        signature: format!("sig-{n}"),
    }
}

fn ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(|d| d.id.clone()).collect()
}

/// An entry id as `(ms, seq)`.
fn parse_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').expect("an id is <ms>-<seq>");
    (
        ms.parse().expect("milliseconds"),
        seq.parse().expect("sequence"),
    )
}

const TARGET: &str = "prod";
const SHORT: Duration = Duration::from_millis(100);

async fn publish_read_ack(backend: Backend) {
    let f = Fixture::new(backend).await;
    let q = &f.queue;
    q.ensure_group(Stream::Jobs, TARGET).await.expect("group");
    // A second call finds the group there.
    q.ensure_group(Stream::Jobs, TARGET).await.expect("group");
    assert_eq!(
        q.pending_count(Stream::Jobs, TARGET)
            .await
            .expect("pending"),
        0
    );
    let mut published = Vec::new();
    for n in 0..3 {
        published.push(
            q.publish(Stream::Jobs, TARGET, &envelope(n))
                .await
                .expect("publish"),
        );
    }
    // Ids are <ms>-<seq> and grow.
    let parsed: Vec<_> = published.iter().map(|id| parse_id(id)).collect();
    assert!(parsed.windows(2).all(|w| w[0] < w[1]), "{published:?}");

    let first = q
        .read(Stream::Jobs, TARGET, "a", 2, SHORT)
        .await
        .expect("read");
    assert_eq!(ids(&first), published[..2].to_vec());
    for (n, delivery) in first.iter().enumerate() {
        assert_eq!(delivery.delivered, 1);
        assert_eq!(delivery.envelope.as_ref().expect("envelope"), &envelope(n));
    }
    let second = q
        .read(Stream::Jobs, TARGET, "a", 10, SHORT)
        .await
        .expect("read");
    assert_eq!(ids(&second), published[2..].to_vec());
    let nothing = q
        .read(Stream::Jobs, TARGET, "b", 10, SHORT)
        .await
        .expect("read");
    assert!(nothing.is_empty());
    assert_eq!(
        q.pending_count(Stream::Jobs, TARGET)
            .await
            .expect("pending"),
        3
    );

    q.ack(Stream::Jobs, TARGET, &published[..2])
        .await
        .expect("ack");
    assert_eq!(
        q.pending_count(Stream::Jobs, TARGET)
            .await
            .expect("pending"),
        1
    );
    // Acknowledging again, nothing, or an unknown id is no error.
    q.ack(Stream::Jobs, TARGET, &published[..1])
        .await
        .expect("ack");
    q.ack(Stream::Jobs, TARGET, &[]).await.expect("ack");
    q.ack(Stream::Jobs, TARGET, &["1-1".to_string()])
        .await
        .expect("ack");
    // A malformed id is refused, and nothing of the call is acknowledged.
    assert!(q
        .ack(
            Stream::Jobs,
            TARGET,
            &[published[2].clone(), "not-an-id".to_string()]
        )
        .await
        .is_err());
    assert_eq!(
        q.pending_count(Stream::Jobs, TARGET)
            .await
            .expect("pending"),
        1
    );
    q.ack(Stream::Jobs, TARGET, &published[2..])
        .await
        .expect("ack");
    assert_eq!(
        q.pending_count(Stream::Jobs, TARGET)
            .await
            .expect("pending"),
        0
    );

    // Acknowledged entries stay in the stream (until trimmed); other ids are not there.
    let exist = q
        .entries_exist(Stream::Jobs, TARGET, &[&published[0], "1-0", &published[2]])
        .await
        .expect("exist");
    assert_eq!(exist, vec![true, false, true]);
    assert!(q
        .entries_exist(Stream::Jobs, TARGET, &[])
        .await
        .expect("exist")
        .is_empty());
    assert_eq!(
        q.entries_exist(Stream::Jobs, "elsewhere", &[&published[0]])
            .await
            .expect("exist"),
        vec![false]
    );
    // The preflight stream of the same target is another stream.
    assert_eq!(
        q.entries_exist(Stream::Preflight, TARGET, &[&published[0]])
            .await
            .expect("exist"),
        vec![false]
    );
    q.ping().await.expect("ping");
}
both!(publish_read_ack);

/// Without a group a read creates it and returns at once; the group then delivers what the
/// stream already held. The pending count needs the group.
async fn a_missing_group_is_created_by_a_read(backend: Backend) {
    let f = Fixture::new(backend).await;
    let q = &f.queue;
    assert!(q.pending_count(Stream::Jobs, TARGET).await.is_err());
    let early = q
        .publish(Stream::Jobs, TARGET, &envelope(1))
        .await
        .expect("publish");
    assert!(q.pending_count(Stream::Jobs, TARGET).await.is_err());
    let started = Instant::now();
    let read = q
        .read(Stream::Jobs, TARGET, "a", 10, Duration::from_secs(5))
        .await
        .expect("read");
    assert!(read.is_empty());
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(
        q.pending_count(Stream::Jobs, TARGET)
            .await
            .expect("pending"),
        0
    );
    let read = q
        .read(Stream::Jobs, TARGET, "a", 10, SHORT)
        .await
        .expect("read");
    assert_eq!(ids(&read), vec![early]);

    // Reclaim too creates a missing group.
    let reclaimed = q
        .reclaim(Stream::Preflight, TARGET, "a", Duration::ZERO, 10)
        .await
        .expect("reclaim");
    assert!(reclaimed.is_empty());
    assert_eq!(
        q.pending_count(Stream::Preflight, TARGET)
            .await
            .expect("pending"),
        0
    );
}
both!(a_missing_group_is_created_by_a_read);

/// Two consumers reading at once, each on its own reader, while entries are published: each
/// entry goes to exactly one of them.
async fn each_entry_goes_to_one_consumer(backend: Backend) {
    let f = Fixture::new(backend).await;
    f.queue
        .ensure_group(Stream::Jobs, TARGET)
        .await
        .expect("group");
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for consumer in ["a", "b"] {
        let queue = f.queue.reader().await.expect("reader");
        let done = done.clone();
        readers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let read = queue
                    .read(
                        Stream::Jobs,
                        TARGET,
                        consumer,
                        3,
                        Duration::from_millis(200),
                    )
                    .await
                    .expect("read");
                if read.is_empty() && finished {
                    return got;
                }
                for delivery in &read {
                    assert_eq!(delivery.delivered, 1);
                    assert!(delivery.envelope.is_ok());
                }
                got.extend(ids(&read));
            }
        }));
    }
    let mut published = HashSet::new();
    for n in 0..60 {
        published.insert(
            f.queue
                .publish(Stream::Jobs, TARGET, &envelope(n))
                .await
                .expect("publish"),
        );
        if n % 7 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    done.store(true, Ordering::SeqCst);
    let mut seen = HashSet::new();
    let mut per_reader = Vec::new();
    for reader in readers {
        let got = reader.await.expect("reader task");
        per_reader.push(got.len());
        for id in got {
            assert!(seen.insert(id.clone()), "{id} was delivered twice");
        }
    }
    assert_eq!(seen, published);
    assert_eq!(
        f.queue
            .pending_count(Stream::Jobs, TARGET)
            .await
            .expect("pending"),
        60
    );
    eprintln!("{backend:?}: deliveries per reader {per_reader:?}");
}
both!(each_entry_goes_to_one_consumer);

/// An entry delivered and not acknowledged goes to another consumer once it was idle long
/// enough, each time with its delivery count increased.
async fn reclaim_after_idle(backend: Backend) {
    let f = Fixture::new(backend).await;
    let q = &f.queue;
    q.ensure_group(Stream::Jobs, TARGET).await.expect("group");
    let id = q
        .publish(Stream::Jobs, TARGET, &envelope(7))
        .await
        .expect("publish");
    let acked = q
        .publish(Stream::Jobs, TARGET, &envelope(8))
        .await
        .expect("publish");
    let read = q
        .read(Stream::Jobs, TARGET, "a", 10, SHORT)
        .await
        .expect("read");
    assert_eq!(ids(&read), vec![id.clone(), acked.clone()]);
    q.ack(Stream::Jobs, TARGET, &[acked]).await.expect("ack");

    // Not idle long enough yet.
    let idle = Duration::from_millis(150);
    let none = q
        .reclaim(Stream::Jobs, TARGET, "b", Duration::from_secs(30), 10)
        .await
        .expect("reclaim");
    assert!(none.is_empty());

    tokio::time::sleep(idle + Duration::from_millis(50)).await;
    let reclaimed = q
        .reclaim(Stream::Jobs, TARGET, "b", idle, 10)
        .await
        .expect("reclaim");
    assert_eq!(ids(&reclaimed), vec![id.clone()]);
    assert_eq!(reclaimed[0].delivered, 2);
    assert_eq!(
        reclaimed[0].envelope.as_ref().expect("envelope"),
        &envelope(7)
    );
    // The reclaim made it fresh again: nobody takes it right away (a long idle time, so a
    // slow machine between the two calls cannot make it idle).
    let none = q
        .reclaim(Stream::Jobs, TARGET, "c", Duration::from_secs(30), 10)
        .await
        .expect("reclaim");
    assert!(none.is_empty());
    // Reading never hands out a pending entry again.
    assert!(q
        .read(Stream::Jobs, TARGET, "c", 10, SHORT)
        .await
        .expect("read")
        .is_empty());

    tokio::time::sleep(idle + Duration::from_millis(50)).await;
    let again = q
        .reclaim(Stream::Jobs, TARGET, "c", idle, 10)
        .await
        .expect("reclaim");
    assert_eq!(ids(&again), vec![id.clone()]);
    assert_eq!(again[0].delivered, 3);
    assert_eq!(
        q.pending_count(Stream::Jobs, TARGET)
            .await
            .expect("pending"),
        1
    );

    q.ack(Stream::Jobs, TARGET, &[id]).await.expect("ack");
    assert_eq!(
        q.pending_count(Stream::Jobs, TARGET)
            .await
            .expect("pending"),
        0
    );
    assert!(q
        .reclaim(Stream::Jobs, TARGET, "d", Duration::ZERO, 10)
        .await
        .expect("reclaim")
        .is_empty());
}
both!(reclaim_after_idle);

/// Reclaim takes at most `count` entries, the oldest first.
async fn reclaim_respects_its_count(backend: Backend) {
    let f = Fixture::new(backend).await;
    let q = &f.queue;
    q.ensure_group(Stream::Jobs, TARGET).await.expect("group");
    let mut published = Vec::new();
    for n in 0..5 {
        published.push(
            q.publish(Stream::Jobs, TARGET, &envelope(n))
                .await
                .expect("publish"),
        );
    }
    q.read(Stream::Jobs, TARGET, "a", 10, SHORT)
        .await
        .expect("read");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let first = q
        .reclaim(Stream::Jobs, TARGET, "b", Duration::from_millis(10), 2)
        .await
        .expect("reclaim");
    assert_eq!(ids(&first), published[..2].to_vec());
    // Acknowledged, so the second reclaim cannot take them back however long it comes after.
    q.ack(Stream::Jobs, TARGET, &ids(&first))
        .await
        .expect("ack");
    let rest = q
        .reclaim(Stream::Jobs, TARGET, "b", Duration::from_millis(10), 10)
        .await
        .expect("reclaim");
    assert_eq!(ids(&rest), published[2..].to_vec());
    assert!(rest.iter().all(|d| d.delivered == 2));
}
both!(reclaim_respects_its_count);

/// A blocked read returns as soon as an entry is published, long before its timeout; with
/// nothing published it returns empty after about its timeout.
async fn a_blocked_read_wakes_on_publish(backend: Backend) {
    let f = Fixture::new(backend).await;
    f.queue
        .ensure_group(Stream::Jobs, TARGET)
        .await
        .expect("group");

    let started = Instant::now();
    let read = f
        .queue
        .read(Stream::Jobs, TARGET, "a", 10, Duration::from_millis(300))
        .await
        .expect("read");
    let waited = started.elapsed();
    assert!(read.is_empty());
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    let reader = f.queue.reader().await.expect("reader");
    let blocked = tokio::spawn(async move {
        let started = Instant::now();
        let read = reader
            .read(Stream::Jobs, TARGET, "a", 10, Duration::from_secs(10))
            .await
            .expect("read");
        (read, Instant::now(), started)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published_at = Instant::now();
    let id = f
        .queue
        .publish(Stream::Jobs, TARGET, &envelope(1))
        .await
        .expect("publish");
    let (read, returned_at, started) = blocked.await.expect("reader task");
    assert_eq!(ids(&read), vec![id]);
    assert!(
        returned_at.duration_since(published_at) < Duration::from_secs(5),
        "woke {:?} after the publish",
        returned_at.duration_since(published_at)
    );
    assert!(returned_at.duration_since(started) < Duration::from_secs(8));
}
both!(a_blocked_read_wakes_on_publish);

/// A preflight request travels on its own stream; the answer comes back through `reply`,
/// whether it was stored before the wait or during it; without one the wait times out.
async fn preflight_reply_round_trip(backend: Backend) {
    let f = Fixture::new(backend).await;
    let q = &f.queue;
    q.ensure_group(Stream::Preflight, TARGET)
        .await
        .expect("group");
    let entry = q
        .publish(Stream::Preflight, TARGET, &envelope(1))
        .await
        .expect("publish");
    let read = q
        .read(Stream::Preflight, TARGET, "executor", 1, SHORT)
        .await
        .expect("read");
    assert_eq!(ids(&read), vec![entry.clone()]);
    assert!(q
        .read(Stream::Jobs, TARGET, "executor", 1, SHORT)
        .await
        .expect("read")
        .is_empty());
    q.ack(Stream::Preflight, TARGET, &[entry])
        .await
        .expect("ack");

    // Stored before the wait: taken at once, in order, and only once.
    let answer = serde_json::json!({"rows": 42, "note": "estimate"});
    q.reply("pf-1", &answer).await.expect("reply");
    q.reply("pf-1", &serde_json::json!(2)).await.expect("reply");
    let started = Instant::now();
    assert_eq!(
        q.wait_reply("pf-1", Duration::from_secs(5))
            .await
            .expect("wait"),
        Some(answer.clone())
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(
        q.wait_reply("pf-1", Duration::from_secs(5))
            .await
            .expect("wait"),
        Some(serde_json::json!(2))
    );

    // Nothing comes: None after about the timeout.
    let started = Instant::now();
    let none = q
        .wait_reply("pf-1", Duration::from_millis(300))
        .await
        .expect("wait");
    let waited = started.elapsed();
    assert_eq!(none, None);
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // Stored during the wait: the waiter wakes at once. Another id does not wake it.
    let waiter = q.clone();
    let waiting = tokio::spawn(async move {
        let answer = waiter
            .wait_reply("pf-2", Duration::from_secs(10))
            .await
            .expect("wait");
        (answer, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.reply("pf-other", &serde_json::json!("not yours"))
        .await
        .expect("reply");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    let replied_at = Instant::now();
    q.reply("pf-2", &answer).await.expect("reply");
    let (got, returned_at) = waiting.await.expect("waiter task");
    assert_eq!(got, Some(answer));
    assert!(returned_at.duration_since(replied_at) < Duration::from_secs(5));
    assert_eq!(
        q.wait_reply("pf-other", Duration::from_millis(100))
            .await
            .expect("wait"),
        Some(serde_json::json!("not yours"))
    );
}
both!(preflight_reply_round_trip);

/// A stream keeps (at least) its last STREAM_MAX_LEN entries: the oldest are trimmed. A pending
/// entry that was trimmed still counts as pending until a reclaim drops it.
async fn streams_are_trimmed(backend: Backend) {
    let f = Fixture::new(backend).await;
    let q = &f.queue;
    q.ensure_group(Stream::Jobs, TARGET).await.expect("group");
    let pending = q
        .publish(Stream::Jobs, TARGET, &envelope(0))
        .await
        .expect("publish");
    q.read(Stream::Jobs, TARGET, "a", 1, SHORT)
        .await
        .expect("read");
    let extra = 300;
    let signed = envelope(1);
    let mut ids = Vec::with_capacity(STREAM_MAX_LEN + extra);
    // In batches, so Redis gets them pipelined.
    let total = STREAM_MAX_LEN + extra;
    let mut published = 0;
    while published < total {
        let batch = (total - published).min(2_000);
        let results = futures_util::future::join_all(
            (0..batch).map(|_| q.publish(Stream::Jobs, TARGET, &signed)),
        )
        .await;
        for result in results {
            ids.push(result.expect("publish"));
        }
        published += batch;
    }
    ids.sort_by_key(|id| parse_id(id));
    let newest = ids[ids.len() - 1].as_str();
    let kept = ids[extra].as_str();
    let exist = q
        .entries_exist(
            Stream::Jobs,
            TARGET,
            &[&pending, ids[0].as_str(), kept, newest],
        )
        .await
        .expect("exist");
    assert_eq!(exist, vec![false, false, true, true]);
    if backend == Backend::Memory {
        // Exactly STREAM_MAX_LEN are left (Redis trims by whole nodes, keeping a few more).
        let exist = q
            .entries_exist(Stream::Jobs, TARGET, &[ids[extra - 2].as_str()])
            .await
            .expect("exist");
        assert_eq!(exist, vec![false]);
    }

    assert_eq!(
        q.pending_count(Stream::Jobs, TARGET)
            .await
            .expect("pending"),
        1
    );
    let reclaimed = q
        .reclaim(Stream::Jobs, TARGET, "b", Duration::ZERO, 10)
        .await
        .expect("reclaim");
    assert!(reclaimed.is_empty(), "{:?}", ids_of(&reclaimed));
    assert_eq!(
        q.pending_count(Stream::Jobs, TARGET)
            .await
            .expect("pending"),
        0
    );
    // The group goes on with the entries that were never read.
    let next = q
        .read(Stream::Jobs, TARGET, "a", 1, SHORT)
        .await
        .expect("read");
    assert_eq!(next.len(), 1);
}
both!(streams_are_trimmed);

fn ids_of(deliveries: &[Delivery]) -> Vec<&str> {
    deliveries.iter().map(|d| d.id.as_str()).collect()
}

/// Clones and readers share one in-process queue; `memory://<name>` connections in one
/// process share theirs; separate queues share nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_queues_share_by_clone_and_by_name() {
    let prefix = countersign_testkit::redis_namespace();
    let name = countersign_testkit::unique_name("queue");
    let url = format!("memory://{name}");
    let bot = JobQueue::connect(&url, &prefix).await.expect("connect");
    let executor = JobQueue::connect(&url, &prefix).await.expect("connect");
    assert!(bot.is_in_memory());
    executor.ping().await.expect("ping");
    executor
        .ensure_group(Stream::Jobs, TARGET)
        .await
        .expect("group");
    let id = bot
        .publish(Stream::Jobs, TARGET, &envelope(1))
        .await
        .expect("publish");
    let reader = executor.reader().await.expect("reader");
    let read = reader
        .read(Stream::Jobs, TARGET, "a", 10, SHORT)
        .await
        .expect("read");
    assert_eq!(ids(&read), vec![id.clone()]);
    assert_eq!(
        bot.clone()
            .pending_count(Stream::Jobs, TARGET)
            .await
            .expect("pending"),
        1
    );
    executor
        .reply("pf", &serde_json::json!(1))
        .await
        .expect("reply");
    assert_eq!(
        bot.wait_reply("pf", SHORT).await.expect("wait"),
        Some(serde_json::json!(1))
    );

    // Another name, another prefix or a private queue: nothing shared.
    let other_name = JobQueue::connect(&format!("{url}-other"), &prefix)
        .await
        .expect("connect");
    let other_prefix = JobQueue::connect(&url, &format!("{prefix}-other"))
        .await
        .expect("connect");
    let private = JobQueue::in_memory(&prefix);
    for queue in [&other_name, &other_prefix, &private] {
        assert_eq!(
            queue
                .entries_exist(Stream::Jobs, TARGET, &[&id])
                .await
                .expect("exist"),
            vec![false]
        );
    }
}

/// An entry that is not a signed envelope comes back with the reason (written straight to
/// Redis: the in-process queue only takes entries through `publish`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_redis_entry_is_delivered_with_the_reason() {
    let f = Fixture::new(Backend::Redis).await;
    f.queue
        .ensure_group(Stream::Jobs, TARGET)
        .await
        .expect("group");
    let client = redis::Client::open(countersign_testkit::redis_url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let key = f.queue.key(Stream::Jobs, TARGET);
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("other")
        .arg("x")
        .query_async(&mut conn)
        .await
        .expect("xadd");
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("envelope")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .expect("xadd");
    let read = f
        .queue
        .read(Stream::Jobs, TARGET, "a", 10, SHORT)
        .await
        .expect("read");
    assert_eq!(read.len(), 2);
    assert_eq!(
        read[0].envelope.as_ref().err().map(String::as_str),
        Some("the stream entry has no `envelope` field")
    );
    assert!(read[1]
        .envelope
        .as_ref()
        .err()
        .is_some_and(|reason| reason.starts_with("the stream entry is not a signed envelope")));
}
