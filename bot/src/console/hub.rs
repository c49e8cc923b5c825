//! [`ConsoleHub`]: the local console's workspace — its people, channels and messages, with
//! their threads and reactions — kept in memory, saved to a file, and watched by browsers.
//!
//! The hub is the console's "chat server": the [`super::ConsoleAdapter`] posts into it for the
//! flow and the executor, and the web API ([`super::web`]) posts into it for the people at the
//! browser. Every change bumps a version that browsers wait on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use countersign_control::chat::RequestCard;
use countersign_control::now_ms;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The author of everything the bot and the executors post.
pub const BOT_AUTHOR: &str = "countersign";

/// The most messages a workspace keeps; the oldest go first.
pub const MAX_MESSAGES: usize = 5_000;

/// Longest text a person can post (a `/query` with its SQL included).
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// One person of the console, as the user switcher shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleUser {
    /// The name after `console:` (`alice`).
    pub name: String,
    /// The policy roles the person holds (`dba`), for the switcher.
    pub roles: Vec<String>,
}

impl ConsoleUser {
    /// The person's principal (`console:alice`).
    pub fn principal(&self) -> String {
        format!("console:{}", self.name)
    }
}

/// One message of the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleMessage {
    /// Unique in the workspace (`m12`).
    pub id: String,
    /// The channel (`#demo`).
    pub channel: String,
    /// The root message's id when this is a reply in a thread.
    pub thread: Option<String>,
    /// A principal (`console:alice`) or [`BOT_AUTHOR`].
    pub author: String,
    /// Plain text (``` fences for code and tables).
    pub text: String,
    /// A request's card, when this message is one.
    pub card: Option<RequestCard>,
    /// Only this principal sees the message (a private answer).
    pub visible_to: Option<String>,
    /// Reactions: name → who reacted.
    pub reactions: BTreeMap<String, BTreeSet<String>>,
    /// When it was posted (Unix milliseconds).
    pub posted_ms: u64,
    /// When its content last changed, if it did.
    pub edited_ms: Option<u64>,
}

/// Why the hub refused a change. `Display` is shown in the browser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// No such message.
    #[error("message {0} does not exist")]
    NoMessage(String),
    /// No such channel.
    #[error("channel {0} does not exist")]
    NoChannel(String),
    /// Empty or oversized text, a malformed reaction name.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    next_id: u64,
    messages: Vec<ConsoleMessage>,
}

#[derive(Debug)]
struct State {
    version: u64,
    saved: Saved,
}

/// What a browser sees at one version.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// Pass this back as `since` to wait for the next change.
    pub version: u64,
    /// Messages visible to the viewer, oldest first.
    pub messages: Vec<ConsoleMessage>,
}

/// The console's workspace.
#[derive(Debug)]
pub struct ConsoleHub {
    users: Vec<ConsoleUser>,
    channels: Vec<String>,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    file: Option<PathBuf>,
}

impl ConsoleHub {
    /// A workspace with these people and channels. With a `file`, earlier messages are read
    /// from it (when it exists) and every change is saved to it by [`ConsoleHub::save_loop`].
    pub fn open(
        users: Vec<ConsoleUser>,
        channels: Vec<String>,
        file: Option<PathBuf>,
    ) -> Result<ConsoleHub, std::io::Error> {
        let saved = match &file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path)?;
                serde_json::from_str(&text).map_err(|error| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not a console workspace: {error}", path.display()),
                    )
                })?
            }
            _ => Saved::default(),
        };
        let (changed, _) = watch::channel(0);
        Ok(ConsoleHub {
            users,
            channels,
            state: Mutex::new(State { version: 0, saved }),
            changed,
            file,
        })
    }

    /// The people.
    pub fn users(&self) -> &[ConsoleUser] {
        &self.users
    }

    /// The channels.
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// Is `principal` one of the console's people?
    pub fn knows(&self, principal: &str) -> bool {
        self.users.iter().any(|user| user.principal() == principal)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-changed in a way that
        // matters more than losing the console, so keep going with what is there.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn changed(&self, state: &mut State) {
        state.version += 1;
        self.changed.send_replace(state.version);
    }

    /// Posts a message and returns its id.
    pub fn post(
        &self,
        channel: &str,
        thread: Option<&str>,
        author: &str,
        text: &str,
        card: Option<RequestCard>,
        visible_to: Option<&str>,
    ) -> Result<String, HubError> {
        if !self.channels.iter().any(|c| c == channel) {
            return Err(HubError::NoChannel(channel.to_string()));
        }
        let mut state = self.lock();
        if let Some(root) = thread {
            let root_message = state
                .saved
                .messages
                .iter()
                .find(|m| m.id == root)
                .ok_or_else(|| HubError::NoMessage(root.to_string()))?;
            if root_message.thread.is_some() {
                return Err(HubError::Invalid("replies cannot have threads".into()));
            }
        }
        state.saved.next_id += 1;
        let id = format!("m{}", state.saved.next_id);
        state.saved.messages.push(ConsoleMessage {
            id: id.clone(),
            channel: channel.to_string(),
            thread: thread.map(str::to_string),
            author: author.to_string(),
            text: text.to_string(),
            card,
            visible_to: visible_to.map(str::to_string),
            reactions: BTreeMap::new(),
            posted_ms: now_ms(),
            edited_ms: None,
        });
        if state.saved.messages.len() > MAX_MESSAGES {
            let excess = state.saved.messages.len() - MAX_MESSAGES;
            state.saved.messages.drain(..excess);
        }
        self.changed(&mut state);
        Ok(id)
    }

    /// Replaces a message's card (and its text).
    pub fn update_card(&self, id: &str, text: &str, card: RequestCard) -> Result<(), HubError> {
        let mut state = self.lock();
        let message = state
            .saved
            .messages
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or_else(|| HubError::NoMessage(id.to_string()))?;
        if message.card.as_ref() == Some(&card) && message.text == text {
            return Ok(());
        }
        message.text = text.to_string();
        message.card = Some(card);
        message.edited_ms = Some(now_ms());
        self.changed(&mut state);
        Ok(())
    }

    /// Adds or removes `who`'s reaction. Returns the message's channel when the reaction
    /// changed, `None` when it was already so (a second click of the same state does nothing,
    /// as on Slack and Discord).
    pub fn react(
        &self,
        id: &str,
        who: &str,
        reaction: &str,
        added: bool,
    ) -> Result<Option<String>, HubError> {
        if reaction.is_empty()
            || reaction.len() > 64
            || !reaction
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        {
            return Err(HubError::Invalid(format!(
                "`{reaction}` is not a reaction name"
            )));
        }
        let mut state = self.lock();
        let message = state
            .saved
            .messages
            .iter_mut()
            .find(|m| m.id == id && m.visible_to.is_none())
            .ok_or_else(|| HubError::NoMessage(id.to_string()))?;
        let channel = message.channel.clone();
        let changed = if added {
            message
                .reactions
                .entry(reaction.to_string())
                .or_default()
                .insert(who.to_string())
        } else {
            let removed = message
                .reactions
                .get_mut(reaction)
                .is_some_and(|people| people.remove(who));
            message.reactions.retain(|_, people| !people.is_empty());
            removed
        };
        if !changed {
            return Ok(None);
        }
        self.changed(&mut state);
        Ok(Some(channel))
    }

    /// Everything `viewer` may see, at the current version.
    pub fn view(&self, viewer: &str) -> View {
        let state = self.lock();
        View {
            version: state.version,
            messages: state
                .saved
                .messages
                .iter()
                .filter(|m| m.visible_to.as_deref().is_none_or(|only| only == viewer))
                .cloned()
                .collect(),
        }
    }

    /// One message, whoever may see it (for tests and the adapter).
    pub fn message(&self, id: &str) -> Option<ConsoleMessage> {
        self.lock()
            .saved
            .messages
            .iter()
            .find(|m| m.id == id)
            .cloned()
    }

    /// Waits until the version differs from `since` (a change, or a restarted hub whose
    /// versions began again), or `limit` elapses.
    pub async fn wait_past(&self, since: u64, limit: Duration) {
        let mut changes = self.changed.subscribe();
        let _ = tokio::time::timeout(limit, changes.wait_for(|version| *version != since)).await;
    }

    /// Saves the workspace to its file after every change (at most every 200 ms) until
    /// `stop`, and once more at the end. Without a file, returns at once.
    pub async fn save_loop(&self, stop: tokio_util::sync::CancellationToken) {
        let Some(path) = self.file.clone() else {
            return;
        };
        let mut changes = self.changed.subscribe();
        let mut saved_version = 0;
        loop {
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                changed = changes.changed() => changed.is_err(),
            };
            if !stopping {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let (version, text) = {
                let state = self.lock();
                (
                    state.version,
                    serde_json::to_string(&state.saved).unwrap_or_default(),
                )
            };
            if version != saved_version && !text.is_empty() {
                let temporary = path.with_extension("json.tmp");
                let written = tokio::fs::write(&temporary, text.as_bytes()).await;
                match written {
                    Ok(()) => match tokio::fs::rename(&temporary, &path).await {
                        Ok(()) => saved_version = version,
                        Err(error) => {
                            tracing::warn!(%error, path = %path.display(), "could not save the console")
                        }
                    },
                    Err(error) => {
                        tracing::warn!(%error, path = %path.display(), "could not save the console")
                    }
                }
            }
            if stopping {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> ConsoleHub {
        ConsoleHub::open(
            vec![ConsoleUser {
                name: "alice".into(),
                roles: vec!["engineer".into()],
            }],
            vec!["#demo".into()],
            None,
        )
        .expect("hub")
    }

    #[test]
    fn private_messages_are_seen_by_their_reader_only() {
        let hub = hub();
        hub.post("#demo", None, BOT_AUTHOR, "for all", None, None)
            .expect("post");
        hub.post(
            "#demo",
            None,
            BOT_AUTHOR,
            "for alice",
            None,
            Some("console:alice"),
        )
        .expect("post");
        let texts = |viewer: &str| -> Vec<String> {
            hub.view(viewer)
                .messages
                .into_iter()
                .map(|m| m.text)
                .collect()
        };
        assert_eq!(texts("console:alice"), ["for all", "for alice"]);
        assert_eq!(texts("console:bob"), ["for all"]);
    }

    #[test]
    fn a_reaction_counts_once_per_person_and_removal_of_nothing_is_no_change() {
        let hub = hub();
        let id = hub
            .post("#demo", None, BOT_AUTHOR, "card", None, None)
            .expect("post");
        let version = hub.view("x").version;
        assert_eq!(
            hub.react(&id, "console:bob", "white_check_mark", true),
            Ok(Some("#demo".into()))
        );
        assert_eq!(
            hub.react(&id, "console:bob", "white_check_mark", true),
            Ok(None)
        );
        assert_eq!(hub.react(&id, "console:bob", "x", false), Ok(None));
        assert_eq!(hub.view("x").version, version + 1);
        let message = hub.message(&id).expect("message");
        assert_eq!(message.reactions["white_check_mark"].len(), 1);
        assert_eq!(
            hub.react(&id, "console:bob", "white_check_mark", false),
            Ok(Some("#demo".into()))
        );
        assert!(hub.message(&id).expect("message").reactions.is_empty());
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let hub = hub();
        assert_eq!(
            hub.post("#nope", None, BOT_AUTHOR, "x", None, None),
            Err(HubError::NoChannel("#nope".into()))
        );
        assert_eq!(
            hub.post("#demo", Some("m99"), BOT_AUTHOR, "x", None, None),
            Err(HubError::NoMessage("m99".into()))
        );
        let id = hub
            .post("#demo", None, BOT_AUTHOR, "x", None, None)
            .expect("post");
        assert!(matches!(
            hub.react(&id, "console:bob", "<script>", true),
            Err(HubError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn a_waiting_browser_wakes_on_a_change() {
        let hub = std::sync::Arc::new(hub());
        let since = hub.view("x").version;
        let waiter = {
            let hub = hub.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                hub.wait_past(since, Duration::from_secs(30)).await;
                started.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        hub.post("#demo", None, BOT_AUTHOR, "x", None, None)
            .expect("post");
        let waited = waiter.await.expect("join");
        assert!(waited < Duration::from_secs(10), "woke after {waited:?}");
        // A browser that saw a later version (before a restart) is answered at once.
        let started = std::time::Instant::now();
        hub.wait_past(since + 100, Duration::from_secs(30)).await;
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn the_workspace_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("cs-hub-{}", now_ms()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("console.json");
        let users = hub().users().to_vec();
        let first = std::sync::Arc::new(
            ConsoleHub::open(users.clone(), vec!["#demo".into()], Some(file.clone())).expect("hub"),
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let saver = {
            let first = first.clone();
            let stop = stop.clone();
            tokio::spawn(async move { first.save_loop(stop).await })
        };
        let id = first
            .post("#demo", None, "console:alice", "hello", None, None)
            .expect("post");
        stop.cancel();
        saver.await.expect("join");
        let second =
            ConsoleHub::open(users, vec!["#demo".into()], Some(file.clone())).expect("reopen");
        assert_eq!(second.message(&id).expect("kept").text, "hello");
        let next = second
            .post("#demo", None, "console:alice", "again", None, None)
            .expect("post");
        assert_ne!(next, id, "ids continue after a restart");
        std::fs::remove_dir_all(&dir).ok();
    }
}
