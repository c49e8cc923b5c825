//! The executor's settings: which target it serves, where its services are, and its timings.

use std::time::Duration;

/// How one executor runs. Secrets (database URLs) are read by the binary from the environment
/// or mounted files and never logged; this struct's `Debug` leaves them out.
#[derive(Clone)]
pub struct ExecutorConfig {
    /// The policy's name for the database this executor serves.
    pub target: String,
    /// This executor's name: the consumer name in Redis and the claimant in the outbox.
    pub executor_id: String,
    /// The first part of every Redis key.
    pub stream_prefix: String,
    /// Jobs handled at once.
    pub workers: usize,
    /// How long a claim holds before the reconciler may take the job back.
    pub lease: Duration,
    /// Deliveries unacknowledged this long are taken over by another executor.
    pub reclaim_idle: Duration,
    /// A queued job not claimed this long after it was published is published again.
    pub republish_after: Duration,
    /// How often the reconciler looks for work.
    pub reconcile_every: Duration,
    /// A finished job's summary not marked posted this long after it finished is posted again.
    pub repost_after: Duration,
    /// Rows counted in a result before counting stops.
    pub count_cap: u64,
    /// On SIGTERM, how long the job in hand may take to finish.
    pub drain: Duration,
    /// Times a read whose executor died is run in all (a write always runs at most once).
    pub max_read_attempts: i32,
}

impl ExecutorConfig {
    /// Defaults for a target, fit for production.
    pub fn new(target: impl Into<String>, executor_id: impl Into<String>) -> ExecutorConfig {
        ExecutorConfig {
            target: target.into(),
            executor_id: executor_id.into(),
            stream_prefix: "countersign".into(),
            workers: 16,
            lease: Duration::from_secs(15),
            reclaim_idle: Duration::from_secs(5),
            republish_after: Duration::from_secs(10),
            reconcile_every: Duration::from_secs(2),
            repost_after: Duration::from_secs(30),
            count_cap: 1_000_000,
            drain: Duration::from_secs(25),
            max_read_attempts: 2,
        }
    }

    /// The actor name audit entries carry.
    pub fn actor(&self) -> String {
        format!("executor:{}", self.executor_id)
    }
}

impl std::fmt::Debug for ExecutorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorConfig")
            .field("target", &self.target)
            .field("executor_id", &self.executor_id)
            .field("stream_prefix", &self.stream_prefix)
            .field("workers", &self.workers)
            .field("lease", &self.lease)
            .field("reclaim_idle", &self.reclaim_idle)
            .field("republish_after", &self.republish_after)
            .field("count_cap", &self.count_cap)
            .field("drain", &self.drain)
            .finish()
    }
}
