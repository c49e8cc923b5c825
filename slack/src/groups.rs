//! A short-lived cache of user-group members.
//!
//! Every reaction on a card asks "is this reviewer in the group?"; a burst of reactions should
//! cost one `usergroups.users.list` call (Slack's tier 2: about 20 a minute), not one each. The
//! TTL stays short because a member removed from a group must stop counting soon.
//!
//! Each group has its own async lock, held across the fetch: concurrent lookups of one group
//! wait for the first one's answer instead of all calling Slack; lookups of different groups do
//! not wait on each other. Failures are not cached.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How long a group's member list is trusted by default.
pub const DEFAULT_GROUP_CACHE_TTL: Duration = Duration::from_secs(60);

/// One group's cached members.
#[derive(Debug)]
struct Cached {
    /// When Slack answered.
    fetched: Instant,
    /// The member user ids.
    members: Vec<String>,
}

/// One lock per group; `None` until the first successful fetch.
type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Group id → members, each entry trusted for `ttl`.
#[derive(Debug)]
pub(crate) struct GroupCache {
    /// How long an answer is trusted; zero disables caching.
    ttl: Duration,
    /// The slots; the std lock is only held to find or add a slot, never across an await.
    slots: Mutex<HashMap<String, Slot>>,
}

impl GroupCache {
    /// An empty cache.
    pub(crate) fn new(ttl: Duration) -> GroupCache {
        GroupCache {
            ttl,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The members of `group`, from the cache when fresh, else from `fetch` (whose success is
    /// kept).
    pub(crate) async fn get_or_fetch<F, Fut, E>(
        &self,
        group: &str,
        fetch: F,
    ) -> Result<Vec<String>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<String>, E>>,
    {
        let slot = {
            // A panic elsewhere while holding this lock leaves the map intact: keep using it.
            let mut slots = self
                .slots
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            slots.entry(group.to_string()).or_default().clone()
        };
        let mut cached = slot.lock().await;
        if let Some(entry) = cached.as_ref() {
            if entry.fetched.elapsed() < self.ttl {
                return Ok(entry.members.clone());
            }
        }
        let members = fetch().await?;
        if !self.ttl.is_zero() {
            *cached = Some(Cached {
                fetched: Instant::now(),
                members: members.clone(),
            });
        }
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn counted(calls: &AtomicUsize, members: &[&str]) -> Result<Vec<String>, String> {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(members.iter().map(|m| m.to_string()).collect())
    }

    #[tokio::test]
    async fn concurrent_lookups_of_one_group_make_one_call() {
        let cache = GroupCache::new(Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        let lookups = (0..8).map(|_| cache.get_or_fetch("S1", || counted(&calls, &["U1", "U2"])));
        let results = futures_util::future::join_all(lookups).await;
        assert!(results
            .iter()
            .all(|r| r.as_deref() == Ok(&["U1".to_string(), "U2".to_string()][..])));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Another group is its own entry.
        cache
            .get_or_fetch("S2", || counted(&calls, &["U3"]))
            .await
            .expect("fetch");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    // On a paused clock: the cached lookup cannot outlast the TTL however slow the machine is.
    #[tokio::test(start_paused = true)]
    async fn an_answer_expires_after_the_ttl_and_an_error_is_not_kept() {
        let cache = GroupCache::new(Duration::from_millis(100));
        let calls = AtomicUsize::new(0);
        let failed: Result<Vec<String>, String> = cache
            .get_or_fetch("S1", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err("unreachable".to_string())
            })
            .await;
        assert!(failed.is_err());
        cache
            .get_or_fetch("S1", || counted(&calls, &["U1"]))
            .await
            .expect("fetch");
        cache
            .get_or_fetch("S1", || counted(&calls, &["U9"]))
            .await
            .expect("cached");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let fresh = cache
            .get_or_fetch("S1", || counted(&calls, &["U9"]))
            .await
            .expect("fetch");
        assert_eq!(fresh, vec!["U9".to_string()]);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_zero_ttl_always_asks() {
        let cache = GroupCache::new(Duration::ZERO);
        let calls = AtomicUsize::new(0);
        for _ in 0..3 {
            cache
                .get_or_fetch("S1", || counted(&calls, &["U1"]))
                .await
                .expect("fetch");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
