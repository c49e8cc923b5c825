//! Block Kit rendering: pure functions from Countersign's platform-independent messages to
//! Slack blocks.
//!
//! - [`card_blocks`]: a request's root message (the card reviewers react to).
//! - [`thread_blocks`]: a message in a request's thread (a result summary or a note).
//! - [`mrkdwn`]: escaping, mentions and cutting text to Slack's limits.
//!
//! Each returns the blocks and a fallback text: Slack shows the fallback in notifications and in
//! clients that cannot draw blocks. Everything a user or a database wrote is escaped, so it can
//! neither mention anyone nor break out of a code block, and every text is cut to Slack's limits
//! (3,000 characters a section, 50 blocks a message) with a note saying what was left out.

mod card;
pub mod mrkdwn;
mod thread;

pub use card::card_blocks;
pub use thread::{note_text, thread_blocks};

use slack_morphism::prelude::{
    SlackBlock, SlackBlockMarkDownText, SlackBlockText, SlackContextBlock,
    SlackContextBlockElement, SlackSectionBlock,
};

use mrkdwn::{fit, CONTEXT_TEXT_MAX, FIELD_TEXT_MAX, SECTION_TEXT_MAX};

/// A mrkdwn text object. `verbatim` stops Slack from turning bare words into links or
/// mentions; our own `<@U1>` mentions still work.
fn mrkdwn_text(text: String) -> SlackBlockMarkDownText {
    SlackBlockMarkDownText::new(text).with_verbatim(true)
}

/// A section holding built mrkdwn, cut to Slack's limit.
fn section(text: &str) -> SlackBlock {
    SlackSectionBlock::new()
        .with_text(SlackBlockText::MarkDown(mrkdwn_text(fit(
            text,
            SECTION_TEXT_MAX,
        ))))
        .into()
}

/// A section of short fields, shown two to a row.
fn fields_section(fields: Vec<String>) -> SlackBlock {
    SlackSectionBlock::new()
        .with_fields(
            fields
                .iter()
                .map(|field| SlackBlockText::MarkDown(mrkdwn_text(fit(field, FIELD_TEXT_MAX))))
                .collect(),
        )
        .into()
}

/// A context block (small grey text) holding built mrkdwn.
fn context(text: &str) -> SlackBlock {
    SlackContextBlock::new(vec![SlackContextBlockElement::MarkDown(mrkdwn_text(fit(
        text,
        CONTEXT_TEXT_MAX,
    )))])
    .into()
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Reading rendered blocks back, for tests.

    use slack_morphism::prelude::SlackBlock;

    /// Every `text` string in the blocks (sections, fields, context elements), in order.
    pub(crate) fn texts(blocks: &[SlackBlock]) -> Vec<String> {
        let value = serde_json::to_value(blocks).expect("blocks serialize");
        let mut out = Vec::new();
        collect(&value, &mut out);
        out
    }

    fn collect(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("text", serde_json::Value::String(text)) => out.push(text.clone()),
                        _ => collect(value, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| collect(item, out)),
            _ => {}
        }
    }

    /// Asserts Slack's limits on a rendered message.
    pub(crate) fn assert_within_limits(fallback: &str, blocks: &[SlackBlock]) {
        use super::mrkdwn::{slack_len, FALLBACK_TEXT_MAX, MAX_BLOCKS, SECTION_TEXT_MAX};
        assert!(blocks.len() <= MAX_BLOCKS, "{} blocks", blocks.len());
        assert!(
            slack_len(fallback) <= FALLBACK_TEXT_MAX,
            "fallback {}",
            slack_len(fallback)
        );
        for text in texts(blocks) {
            assert!(!text.is_empty(), "an empty text");
            assert!(
                slack_len(&text) <= SECTION_TEXT_MAX,
                "a text of {} units",
                slack_len(&text)
            );
        }
    }
}
