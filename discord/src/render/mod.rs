//! Message rendering: pure functions from Countersign's platform-independent messages to
//! Discord message JSON (content plus at most one embed).
//!
//! - [`card_message`]: a request's root message (the card reviewers react to).
//! - [`thread_message`]: a message in a request's thread (a result summary or a note), and
//!   [`note_message`] for any text of ours (an answer to `/query`).
//! - [`markdown`]: escaping, mentions, Discord's limits and cutting text safely.
//!
//! Everything a user or a database wrote is escaped, so it can neither format nor mention
//! anything nor break out of a code block, and every text is cut to Discord's limits (content
//! 2,000; embed title 256, description 4,096, 25 fields of 256/1,024, footer 2,048, 6,000 in
//! all) with a note saying what was left out.
//!
//! Pings: every message carries [`allowed_mentions`], `{"parse": ["users"]}`: a user mention
//! in `content` may notify that user, role mentions show as roles but notify nobody, and
//! `@everyone` / `@here` never notify, whatever the text says. Mentions inside embeds never
//! notify anyone anyway, which is why cards keep people in their embed.

mod card;
pub mod markdown;
mod thread;

pub use card::{card_message, thread_name};
pub use thread::{note_message, note_text, thread_message, MAX_TABLE_LINE_CHARS};

use countersign_control::chat::CardState;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use markdown::discord_len;

/// A message as Countersign sends it to Discord: `content` plus zero or one embed. It
/// serializes to the JSON body of a message create or edit, with [`allowed_mentions`] added.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscordMessage {
    /// The text above the embeds (at most 2,000 characters); what notifications show.
    pub content: String,
    /// The embeds (Countersign uses at most one).
    pub embeds: Vec<Embed>,
}

impl Serialize for DiscordMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut message = serializer.serialize_struct("DiscordMessage", 3)?;
        message.serialize_field("content", &self.content)?;
        message.serialize_field("embeds", &self.embeds)?;
        message.serialize_field("allowed_mentions", &allowed_mentions())?;
        message.end()
    }
}

/// The `allowed_mentions` every Countersign message carries: `{"parse": ["users"]}`. User
/// mentions in `content` may ping (a note naming who approved); role mentions render but ping
/// nobody; `@everyone` and `@here` never ping. Escaping user text is the first wall, this is
/// the second: even text we failed to escape cannot ping a role or a whole channel.
pub fn allowed_mentions() -> serde_json::Value {
    serde_json::json!({ "parse": ["users"] })
}

/// A rich embed, as much of Discord's embed object as Countersign uses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Embed {
    /// Bold text at the top (at most 256 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The main text, markdown (at most 4,096 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The colour of the bar on the left, `0xRRGGBB`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<u32>,
    /// Name/value pairs below the description (at most 25).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<EmbedField>,
    /// Small plain text at the bottom (at most 2,048 characters; no markdown, no mentions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub footer: Option<EmbedFooter>,
}

impl Embed {
    /// The characters Discord counts against the 6,000 limit: title, description, field names
    /// and values, footer text.
    pub fn total_len(&self) -> usize {
        let text = |value: &Option<String>| value.as_deref().map_or(0, discord_len);
        text(&self.title)
            + text(&self.description)
            + self
                .fields
                .iter()
                .map(|field| discord_len(&field.name) + discord_len(&field.value))
                .sum::<usize>()
            + self
                .footer
                .as_ref()
                .map_or(0, |footer| discord_len(&footer.text))
    }
}

/// One field of an embed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmbedField {
    /// The field's name (at most 256 characters, not empty).
    pub name: String,
    /// The field's value, markdown (at most 1,024 characters, not empty).
    pub value: String,
    /// Whether Discord may put it beside its neighbours.
    pub inline: bool,
}

/// An embed's footer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmbedFooter {
    /// The footer's text, shown as typed.
    pub text: String,
}

/// The Unicode emoji for one of the emoji names [`CardState::emoji`] and the renderers use
/// (Slack's names, without colons), or `None` for a name this table does not know.
pub fn unicode_emoji(name: &str) -> Option<&'static str> {
    Some(match name.trim_matches(':') {
        "hourglass_flowing_sand" => "\u{23F3}",
        "inbox_tray" => "\u{1F4E5}",
        "gear" => "\u{2699}\u{FE0F}",
        "white_check_mark" => "\u{2705}",
        "x" => "\u{274C}",
        "leftwards_arrow_with_hook" => "\u{21A9}\u{FE0F}",
        "no_entry" => "\u{26D4}",
        "warning" => "\u{26A0}\u{FE0F}",
        "no_entry_sign" => "\u{1F6AB}",
        "alarm_clock" => "\u{23F0}",
        "heavy_multiplication_x" => "\u{2716}\u{FE0F}",
        "grey_question" => "\u{2754}",
        "white_large_square" => "\u{2B1C}",
        "information_source" => "\u{2139}\u{FE0F}",
        "scissors" => "\u{2702}\u{FE0F}",
        "see_no_evil" => "\u{1F648}",
        "lock" => "\u{1F512}",
        _ => return None,
    })
}

/// What shows a state at a glance: its emoji as Unicode (❔ if the name is unknown).
pub fn state_emoji(state: CardState) -> &'static str {
    unicode_emoji(state.emoji()).unwrap_or("\u{2754}")
}

/// The embed colour for a state: amber while waiting, blue/blurple while in flight, green for
/// success, red for failures and refusals, orange where a person must look, grey when it just
/// ended.
pub fn state_colour(state: CardState) -> u32 {
    match state {
        CardState::AwaitingApproval => 0xF1C40F,
        CardState::Queued => 0x3498DB,
        CardState::Running => 0x5865F2,
        CardState::Succeeded => 0x2ECC71,
        CardState::Failed => 0xE74C3C,
        CardState::RolledBack => 0xE67E22,
        CardState::Refused => 0x992D22,
        CardState::Unknown => 0xE67E22,
        CardState::Rejected => 0x992D22,
        CardState::Expired | CardState::Cancelled => 0x95A5A6,
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Checking rendered messages against Discord's limits, for tests.

    use super::markdown::{
        discord_len, CONTENT_MAX, EMBED_DESCRIPTION_MAX, EMBED_FIELDS_MAX, EMBED_TITLE_MAX,
        EMBED_TOTAL_MAX, FIELD_NAME_MAX, FIELD_VALUE_MAX, FOOTER_MAX,
    };
    use super::DiscordMessage;

    /// Asserts every one of Discord's limits on a rendered message, and that nothing Discord
    /// rejects as empty is empty.
    pub(crate) fn assert_within_limits(message: &DiscordMessage) {
        assert!(
            discord_len(&message.content) <= CONTENT_MAX,
            "content {}",
            discord_len(&message.content)
        );
        assert!(
            !message.content.is_empty() || !message.embeds.is_empty(),
            "an empty message"
        );
        assert!(message.embeds.len() <= 10);
        for embed in &message.embeds {
            let len = |text: &Option<String>| text.as_deref().map_or(0, discord_len);
            assert!(
                len(&embed.title) <= EMBED_TITLE_MAX,
                "title {}",
                len(&embed.title)
            );
            assert!(
                len(&embed.description) <= EMBED_DESCRIPTION_MAX,
                "description {}",
                len(&embed.description)
            );
            assert!(embed.fields.len() <= EMBED_FIELDS_MAX);
            for field in &embed.fields {
                assert!(
                    !field.name.is_empty() && !field.value.is_empty(),
                    "{field:?}"
                );
                assert!(discord_len(&field.name) <= FIELD_NAME_MAX);
                assert!(
                    discord_len(&field.value) <= FIELD_VALUE_MAX,
                    "field {} is {}",
                    field.name,
                    discord_len(&field.value)
                );
            }
            if let Some(footer) = &embed.footer {
                assert!(discord_len(&footer.text) <= FOOTER_MAX);
            }
            assert!(
                embed.total_len() <= EMBED_TOTAL_MAX,
                "embed total {}",
                embed.total_len()
            );
        }
    }

    /// Every piece of text in a message, content first.
    pub(crate) fn all_text(message: &DiscordMessage) -> String {
        let mut text = message.content.clone();
        for embed in &message.embeds {
            for part in [&embed.title, &embed.description].into_iter().flatten() {
                text.push('\n');
                text.push_str(part);
            }
            for field in &embed.fields {
                text.push('\n');
                text.push_str(&field.name);
                text.push('\n');
                text.push_str(&field.value);
            }
            if let Some(footer) = &embed.footer {
                text.push('\n');
                text.push_str(&footer.text);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [CardState; 11] = [
        CardState::AwaitingApproval,
        CardState::Queued,
        CardState::Running,
        CardState::Succeeded,
        CardState::Failed,
        CardState::RolledBack,
        CardState::Refused,
        CardState::Unknown,
        CardState::Rejected,
        CardState::Expired,
        CardState::Cancelled,
    ];

    #[test]
    fn every_state_has_a_unicode_emoji_and_a_colour() {
        for state in STATES {
            assert!(
                unicode_emoji(state.emoji()).is_some(),
                "no Unicode for {state:?}'s :{}:",
                state.emoji()
            );
            assert!(state_colour(state) <= 0xFF_FF_FF);
        }
        assert_eq!(state_emoji(CardState::AwaitingApproval), "⏳");
        assert_eq!(state_emoji(CardState::Succeeded), "✅");
        assert_eq!(unicode_emoji(":x:"), Some("❌"));
        assert_eq!(unicode_emoji("tada"), None);
    }

    #[test]
    fn a_message_serializes_with_users_only_allowed_mentions() {
        let message = DiscordMessage {
            content: "hi".into(),
            embeds: vec![Embed {
                title: Some("t".into()),
                color: Some(0x2ECC71),
                ..Embed::default()
            }],
        };
        assert_eq!(
            serde_json::to_value(&message).expect("json"),
            serde_json::json!({
                "content": "hi",
                "embeds": [{ "title": "t", "color": 0x2ECC71 }],
                "allowed_mentions": { "parse": ["users"] },
            })
        );
    }
}
