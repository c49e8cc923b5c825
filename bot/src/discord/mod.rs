//! The Discord adapter.
//!
//! - [`adapter`]: [`adapter::DiscordAdapter`], the flow's [`crate::chat::ChatAdapter`] on the
//!   REST client of `countersign-discord`: the request as a message with a thread created from
//!   it, private answers through the deferred interaction, roles as groups.
//! - [`gateway`]: the serenity gateway client: registers `/query` in the configured guilds,
//!   defers each interaction at once and hands it to the flow, turns reactions (the
//!   `GUILD_MESSAGE_REACTIONS` intent) into the flow's events.
//! - [`command`]: the `/query` application command: its definition and its options as the text
//!   the shared command parser reads.

pub mod adapter;
pub mod command;
pub mod gateway;

/// Discord reactions arrive as Unicode emoji; the flow (and the policy's configuration) names
/// them as Slack does. The two that matter by default are mapped; any other emoji keeps its
/// Unicode form as its name.
pub fn reaction_name(unicode: &str) -> String {
    match unicode.trim_end_matches('\u{FE0F}') {
        "\u{2705}" => "white_check_mark".into(),
        "\u{274C}" => "x".into(),
        "\u{2714}" => "heavy_check_mark".into(),
        "\u{1F44D}" => "+1".into(),
        other => other.to_string(),
    }
}

/// The Unicode emoji for a reaction name, for seeding and showing reactions on Discord.
pub fn reaction_unicode(name: &str) -> String {
    match name {
        "heavy_check_mark" => "\u{2714}\u{FE0F}".into(),
        "+1" => "\u{1F44D}".into(),
        other => countersign_discord::render::unicode_emoji(other)
            .map(str::to_string)
            .unwrap_or_else(|| other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaction_names_round_trip() {
        for name in ["white_check_mark", "x", "heavy_check_mark", "+1"] {
            assert_eq!(reaction_name(&reaction_unicode(name)), name);
        }
        assert_eq!(reaction_name("\u{1F389}"), "\u{1F389}");
    }
}
