//! A short-lived cache of guild members' roles.
//!
//! Every reaction on a card asks "which roles does this reviewer have?"; a burst of reactions
//! should cost one `GET /guilds/{id}/members/{id}` per reviewer, not one each. The TTL stays
//! short because a role taken away must stop counting soon.
//!
//! Each (guild, user) has its own async lock, held across the fetch: concurrent lookups of one
//! member wait for the first one's answer instead of all calling Discord; lookups of different
//! members do not wait on each other. Failures are not cached. Unlike a user group, members are
//! many: once the map holds [`PRUNE_ABOVE`] slots, expired and idle ones are dropped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serenity::model::id::{GuildId, UserId};
use tokio::time::Instant;

/// How long a member's roles are trusted by default.
pub const DEFAULT_MEMBER_CACHE_TTL: Duration = Duration::from_secs(60);

/// Above this many slots, adding one first drops the expired slots nobody is using.
const PRUNE_ABOVE: usize = 4096;

/// One member's cached roles.
#[derive(Debug)]
struct Cached {
    /// When Discord answered.
    fetched: Instant,
    /// The role ids.
    roles: Vec<String>,
}

/// One lock per member; `None` until the first successful fetch.
type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// (guild, user) → role ids, each entry trusted for `ttl`.
#[derive(Debug)]
pub(crate) struct MemberCache {
    /// How long an answer is trusted; zero disables caching.
    ttl: Duration,
    /// The slots; the std lock is only held to find, add or prune slots, never across an await.
    slots: Mutex<HashMap<(GuildId, UserId), Slot>>,
}

impl MemberCache {
    /// An empty cache.
    pub(crate) fn new(ttl: Duration) -> MemberCache {
        MemberCache {
            ttl,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The roles of `user` in `guild`, from the cache when fresh, else from `fetch` (whose
    /// success is kept).
    pub(crate) async fn get_or_fetch<F, Fut, E>(
        &self,
        guild: GuildId,
        user: UserId,
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
            if slots.len() >= PRUNE_ABOVE && !slots.contains_key(&(guild, user)) {
                self.prune(&mut slots);
            }
            slots.entry((guild, user)).or_default().clone()
        };
        let mut cached = slot.lock().await;
        if let Some(entry) = cached.as_ref() {
            if entry.fetched.elapsed() < self.ttl {
                return Ok(entry.roles.clone());
            }
        }
        let roles = fetch().await?;
        if !self.ttl.is_zero() {
            *cached = Some(Cached {
                fetched: Instant::now(),
                roles: roles.clone(),
            });
        }
        Ok(roles)
    }

    /// Drops the slots that no lookup holds and whose answer (if any) has expired.
    fn prune(&self, slots: &mut HashMap<(GuildId, UserId), Slot>) {
        slots.retain(|_, slot| {
            if Arc::strong_count(slot) > 1 {
                return true;
            }
            match slot.try_lock() {
                Ok(cached) => cached
                    .as_ref()
                    .is_some_and(|entry| entry.fetched.elapsed() < self.ttl),
                Err(_) => true,
            }
        });
    }

    /// How many slots the cache holds (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().map(|slots| slots.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn counted(calls: &AtomicUsize, roles: &[&str]) -> Result<Vec<String>, String> {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(roles.iter().map(|r| r.to_string()).collect())
    }

    const GUILD: GuildId = GuildId::new(1);

    #[tokio::test]
    async fn concurrent_lookups_of_one_member_make_one_call() {
        let cache = MemberCache::new(Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        let lookups = (0..8)
            .map(|_| cache.get_or_fetch(GUILD, UserId::new(7), || counted(&calls, &["10", "11"])));
        let results = futures_util::future::join_all(lookups).await;
        assert!(results
            .iter()
            .all(|r| r.as_deref() == Ok(&["10".to_string(), "11".to_string()][..])));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The same user in another guild is its own entry.
        cache
            .get_or_fetch(GuildId::new(2), UserId::new(7), || counted(&calls, &["12"]))
            .await
            .expect("fetch");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    // On a paused clock: the cached lookup cannot outlast the TTL however slow the machine is.
    #[tokio::test(start_paused = true)]
    async fn an_answer_expires_after_the_ttl_and_an_error_is_not_kept() {
        let cache = MemberCache::new(Duration::from_millis(100));
        let calls = AtomicUsize::new(0);
        let user = UserId::new(7);
        let failed: Result<Vec<String>, String> = cache
            .get_or_fetch(GUILD, user, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err("unreachable".to_string())
            })
            .await;
        assert!(failed.is_err());
        cache
            .get_or_fetch(GUILD, user, || counted(&calls, &["10"]))
            .await
            .expect("fetch");
        cache
            .get_or_fetch(GUILD, user, || counted(&calls, &["99"]))
            .await
            .expect("cached");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let fresh = cache
            .get_or_fetch(GUILD, user, || counted(&calls, &["99"]))
            .await
            .expect("fetch");
        assert_eq!(fresh, vec!["99".to_string()]);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_zero_ttl_always_asks() {
        let cache = MemberCache::new(Duration::ZERO);
        let calls = AtomicUsize::new(0);
        for _ in 0..3 {
            cache
                .get_or_fetch(GUILD, UserId::new(7), || counted(&calls, &["10"]))
                .await
                .expect("fetch");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn expired_slots_are_dropped_once_the_map_is_large() {
        let cache = MemberCache::new(Duration::from_millis(1));
        let ok = || async { Ok::<_, String>(vec!["10".to_string()]) };
        for user in 1..=PRUNE_ABOVE as u64 {
            cache
                .get_or_fetch(GUILD, UserId::new(user), ok)
                .await
                .expect("fetch");
        }
        assert_eq!(cache.len(), PRUNE_ABOVE);
        tokio::time::sleep(Duration::from_millis(5)).await;
        cache
            .get_or_fetch(GUILD, UserId::new(u64::MAX), ok)
            .await
            .expect("fetch");
        assert_eq!(cache.len(), 1, "expired slots were pruned");
    }
}
