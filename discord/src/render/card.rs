//! A request's root message: the card reviewers read and react to.
//!
//! The content line shows the state at a glance (Unicode emoji and bold label) with its
//! one-line detail ("Rejected by ..."). The embed, coloured by state, holds the rest: the title
//! names the request; the description holds the SQL in a code block (with a note when it had
//! to be cut) and, while the request waits, how to approve and when it expires; the fields say
//! who asked, the target and category, the reason, why it needs review with the estimate, and
//! the approval checklist. People are mentioned in the embed, where a mention never pings;
//! the detail line in the content may name one (the bot writes "Rejected by ..."), but it
//! arrives through an edit, and an edit notifies nobody.

use countersign_control::chat::{CardState, RequestCard};

use super::markdown::{
    discord_len, escape_prose, escape_within, fit, fit_plain, group_digits, mention, relative_time,
    with_mentions, Place, CONTENT_MAX, EMBED_DESCRIPTION_MAX, EMBED_TITLE_MAX, EMBED_TOTAL_MAX,
    FIELD_NAME_MAX, FIELD_VALUE_MAX, THREAD_NAME_MAX,
};
use super::thread::note_text;
use super::{state_colour, state_emoji, unicode_emoji, DiscordMessage, Embed, EmbedField};

/// Most characters in a short inline field (who, target, category): they sit three to a row,
/// and what they do not use is left for the SQL.
const INLINE_VALUE_MAX: usize = 256;

/// The card as a Discord message.
pub fn card_message(card: &RequestCard) -> DiscordMessage {
    let mut content = format!("{} **{}**", state_emoji(card.state), card.state.label());
    if let Some(detail) = card
        .state_detail
        .as_deref()
        .filter(|detail| !detail.trim().is_empty())
    {
        // Written by the bot, perhaps with mentions already rendered ("Rejected by <@1>.").
        content.push('\n');
        let room = CONTENT_MAX.saturating_sub(discord_len(&content));
        content.push_str(&note_text(detail, room));
    }

    let title = fit(
        &format!("Request {}", escape_prose(&card.request_id)),
        EMBED_TITLE_MAX,
    );

    let mut fields = vec![
        field("Requested by", &mention(&card.requester), true),
        field("Target", &escape_prose(&card.target), true),
        field("Category", &escape_prose(&card.category), true),
    ];
    if let Some(reason) = card.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        fields.push(field("Reason", &escape_prose(reason.trim_end()), false));
    }
    if let Some(review) = review_text(card) {
        fields.push(field("Needs review", &review, false));
    }
    if let Some(approvals) = approvals_text(card) {
        fields.push(field("Approvals", &approvals, false));
    }

    let mut embed = Embed {
        title: Some(title),
        color: Some(state_colour(card.state)),
        fields,
        ..Embed::default()
    };
    // What is left of the 6,000 for the description once the rest is in.
    let budget = EMBED_DESCRIPTION_MAX.min(EMBED_TOTAL_MAX.saturating_sub(embed.total_len()));
    embed.description = Some(description(card, budget));

    DiscordMessage {
        content: fit(&content, CONTENT_MAX),
        embeds: vec![embed],
    }
}

/// The name of the thread under a card: `query <request id>`, plain text within Discord's 100
/// characters.
pub fn thread_name(card: &RequestCard) -> String {
    let name = format!("query {}", card.request_id);
    let one_line = name.split_whitespace().collect::<Vec<_>>().join(" ");
    fit_plain(&one_line, THREAD_NAME_MAX)
}

/// A field with its value cut to the field's limit (inline fields to a shorter one); an
/// empty value, which Discord refuses, shows as a dash.
fn field(name: &str, value: &str, inline: bool) -> EmbedField {
    let max = if inline {
        INLINE_VALUE_MAX
    } else {
        FIELD_VALUE_MAX
    };
    let value = if value.trim().is_empty() {
        "—"
    } else {
        value
    };
    EmbedField {
        name: fit(name, FIELD_NAME_MAX),
        value: fit(value, max),
        inline,
    }
}

/// The SQL block, the note when it was cut, and (while waiting) how to review, within
/// `budget`.
fn description(card: &RequestCard, budget: usize) -> String {
    let how_to = (card.state == CardState::AwaitingApproval).then(|| {
        let mut line = format!(
            "React with {} to approve or {} to reject.",
            card.approve_reaction, card.reject_reaction
        );
        if let Some(expires_ms) = card.expires_at_ms {
            line.push_str(&format!(" Expires {}.", relative_time(expires_ms / 1000)));
        }
        line
    });
    let total = card.sql.trim_end().chars().count();
    // The longest the note can be: both counts as long as the total.
    let note_room = discord_len(&truncation_note(total, total)) + 1;
    let how_to_room = how_to.as_deref().map_or(0, |line| discord_len(line) + 2);
    let (sql, note) = sql_code_block(&card.sql, budget.saturating_sub(note_room + how_to_room));

    let mut text = sql;
    if let Some(note) = note {
        text.push('\n');
        text.push_str(&note);
    }
    if let Some(how_to) = how_to {
        text.push_str("\n\n");
        text.push_str(&how_to);
    }
    fit(&text, budget)
}

/// The SQL in a code block of at most `room` units, and a note when it had to be cut.
fn sql_code_block(sql: &str, room: usize) -> (String, Option<String>) {
    const OPEN: &str = "```sql\n";
    const CUT: &str = "\n…";
    const CLOSE: &str = "\n```";
    let sql = sql.trim_end();
    if sql.trim().is_empty() {
        return ("*(no SQL)*".to_string(), None);
    }
    let total = sql.chars().count();
    let room = room.saturating_sub(discord_len(OPEN) + discord_len(CLOSE));
    let (body, shown) = match escape_within(sql, Place::Code, room) {
        (body, shown) if shown == total => (body, shown),
        _ => escape_within(sql, Place::Code, room.saturating_sub(discord_len(CUT))),
    };
    if shown == total {
        return (format!("{OPEN}{body}{CLOSE}"), None);
    }
    (
        format!("{OPEN}{body}{CUT}{CLOSE}"),
        Some(truncation_note(shown, total)),
    )
}

/// `✂️ SQL truncated: showing 1,234 of 102,400 characters.`
fn truncation_note(shown: usize, total: usize) -> String {
    format!(
        "{} SQL truncated: showing {} of {} characters.",
        unicode_emoji("scissors").unwrap_or("-"),
        group_digits(shown as u64),
        group_digits(total as u64)
    )
}

/// Why the request needs review, and the estimate with its notes.
fn review_text(card: &RequestCard) -> Option<String> {
    let mut lines = Vec::new();
    for why in &card.review_reasons {
        lines.push(format!("• {}", with_mentions(why)));
    }
    match card.estimated_rows {
        Some(rows) => lines.push(format!(
            "**Estimate:** about {} {}",
            group_digits(rows),
            if rows == 1 { "row" } else { "rows" }
        )),
        None if !card.review_reasons.is_empty() => {
            lines.push("**Estimate:** none available".to_string())
        }
        None => {}
    }
    for note in &card.estimate_notes {
        lines.push(format!(
            "{} {}",
            unicode_emoji("information_source").unwrap_or("-"),
            escape_prose(note)
        ));
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The approval checklist and whose approvals count so far.
fn approvals_text(card: &RequestCard) -> Option<String> {
    if card.requirements.is_empty() && card.approvers.is_empty() {
        return None;
    }
    let mut lines = Vec::new();
    for requirement in &card.requirements {
        let mark = if requirement.satisfied {
            "white_check_mark"
        } else {
            "white_large_square"
        };
        lines.push(format!(
            "{} {}",
            unicode_emoji(mark).unwrap_or("-"),
            with_mentions(&requirement.wanted)
        ));
    }
    if !card.approvers.is_empty() {
        let approvers: Vec<String> = card.approvers.iter().map(|a| mention(a)).collect();
        lines.push(format!("Approved by {}", approvers.join(", ")));
    }
    Some(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::{all_text, assert_within_limits};
    use countersign_control::chat::CardRequirement;

    fn card() -> RequestCard {
        RequestCard {
            request_id: "r-7f3a".into(),
            requester: "discord:80351110224678912".into(),
            target: "orders-prod".into(),
            sql: "DELETE FROM orders WHERE id = 42".into(),
            reason: Some("Customer asked for deletion (ticket 981)".into()),
            category: "write".into(),
            review_reasons: vec!["Writes to orders need a DBA".into()],
            estimated_rows: Some(1),
            estimate_notes: vec!["Cascades to order_items".into()],
            requirements: vec![
                CardRequirement {
                    wanted: "1 approval from discord-role:456".into(),
                    satisfied: true,
                },
                CardRequirement {
                    wanted: "1 approval from security".into(),
                    satisfied: false,
                },
            ],
            approvers: vec!["discord:789".into(), "service:nightly-report".into()],
            state: CardState::AwaitingApproval,
            state_detail: None,
            expires_at_ms: Some(1_700_003_600_123),
            approve_reaction: "✅".into(),
            reject_reaction: "❌".into(),
        }
    }

    fn embed(message: &DiscordMessage) -> &Embed {
        assert_eq!(message.embeds.len(), 1);
        &message.embeds[0]
    }

    fn field_value<'a>(embed: &'a Embed, name: &str) -> &'a str {
        embed
            .fields
            .iter()
            .find(|field| field.name == name)
            .map(|field| field.value.as_str())
            .unwrap_or_else(|| panic!("no field {name}: {:?}", embed.fields))
    }

    #[test]
    fn an_awaiting_card_reads_well() {
        let message = card_message(&card());
        assert_eq!(message.content, "⏳ **Awaiting approval**");
        let embed = embed(&message);
        assert_eq!(embed.title.as_deref(), Some("Request r-7f3a"));
        assert_eq!(embed.color, Some(0xF1C40F));
        assert_eq!(
            embed.description.as_deref(),
            Some(
                "```sql\nDELETE FROM orders WHERE id = 42\n```\n\nReact with ✅ to approve or ❌ to reject. Expires <t:1700003600:R>."
            )
        );
        let names: Vec<&str> = embed.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Requested by",
                "Target",
                "Category",
                "Reason",
                "Needs review",
                "Approvals"
            ]
        );
        assert!(embed.fields[..3].iter().all(|f| f.inline));
        assert_eq!(field_value(embed, "Requested by"), "<@80351110224678912>");
        assert_eq!(field_value(embed, "Target"), "orders-prod");
        assert_eq!(
            field_value(embed, "Reason"),
            "Customer asked for deletion (ticket 981)"
        );
        assert_eq!(
            field_value(embed, "Needs review"),
            "• Writes to orders need a DBA\n**Estimate:** about 1 row\nℹ\u{FE0F} Cascades to order\\_items"
        );
        assert_eq!(
            field_value(embed, "Approvals"),
            "✅ 1 approval from <@&456>\n⬜ 1 approval from security\nApproved by <@789>, service:nightly-report"
        );
        assert_within_limits(&message);
        assert_eq!(thread_name(&card()), "query r-7f3a");
    }

    #[test]
    fn every_state_shows_its_emoji_label_and_colour_and_only_a_waiting_one_says_how_to_react() {
        let states = [
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
        for state in states {
            let mut card = card();
            card.state = state;
            card.state_detail = Some("Rejected by discord:555: not during the freeze".into());
            let message = card_message(&card);
            assert_eq!(
                message.content,
                format!(
                    "{} **{}**\nRejected by <@555>: not during the freeze",
                    unicode_emoji(state.emoji()).expect("emoji"),
                    state.label()
                )
            );
            assert_eq!(embed(&message).color, Some(state_colour(state)));
            let description = embed(&message).description.clone().unwrap_or_default();
            assert_eq!(
                description.contains("React with ✅ to approve or ❌ to reject."),
                state == CardState::AwaitingApproval,
                "{state:?}"
            );
            assert_within_limits(&message);
        }
    }

    #[test]
    fn user_text_cannot_mention_anyone_format_or_escape_the_code_block() {
        let mut card = card();
        card.sql = "SELECT '@everyone <@1>' ```\n**x** FROM t -- ```".into();
        card.reason = Some("@everyone @here <@2> <@&3> [click](https://evil.example) # big".into());
        card.target = "@here".into();
        card.requester = "discord:1><@&9".into();
        card.estimate_notes = vec!["<@4>".into()];
        card.state_detail = Some("Rejected by <@555>: @everyone look".into());
        let message = card_message(&card);
        // The SQL is shown as written (inside code, in an embed: neither renders nor pings);
        // everything else must be inert.
        let all = all_text(&message);
        let sql_start = all.find("```sql").expect("sql block");
        let sql_end = sql_start + 6 + all[sql_start + 6..].find("\n```").expect("closing fence");
        let all = format!("{}{}", &all[..sql_start], &all[sql_end..]);
        for bad in [
            "@everyone",
            "@here",
            "<@1>",
            "<@2>",
            "<@&3>",
            "<@4>",
            "<@&9",
            "[click]",
        ] {
            // A backslash before it makes it text.
            let live = all
                .match_indices(bad)
                .any(|(at, _)| !all[..at].ends_with('\\'));
            assert!(!live, "{bad} got through: {all}");
        }
        assert!(all.contains("@\u{2060}everyone @\u{2060}here \\<@2> \\<@&3> \\[click\\]"));
        assert_eq!(
            message.content, "⏳ **Awaiting approval**\nRejected by <@555>: @\u{2060}everyone look",
            "the bot's rendered mention stays a mention"
        );
        let description = embed(&message).description.clone().unwrap_or_default();
        assert_eq!(description.matches("```").count(), 2, "{description}");
        assert!(
            description.contains("'@everyone <\u{200B}@1>'"),
            "SQL is shown as written, mentions split"
        );
        assert!(
            description.contains("**x** FROM t"),
            "no markdown inside code"
        );
        assert_eq!(
            field_value(embed(&message), "Requested by"),
            "discord:1>\\<@&9"
        );
    }

    #[test]
    fn a_100_kb_statement_fits_with_a_note_saying_how_much_is_shown() {
        let mut card = card();
        // Multi-byte characters and backtick runs everywhere, so neither can be split.
        card.sql = "SELECT 'é😀```' AS x, ".repeat(100 * 1024 / 22);
        card.reason = Some("why ".repeat(2000));
        card.review_reasons = vec!["rule ".repeat(300); 40];
        card.requirements = vec![
            CardRequirement {
                wanted: "1 approval from discord-role:456".into(),
                satisfied: false
            };
            200
        ];
        card.approvers = vec!["discord:789".into(); 500];
        card.target = "t".repeat(5000);
        card.state_detail = Some("d".repeat(5000));
        let total = card.sql.trim_end().chars().count();
        assert!(card.sql.len() >= 100_000);
        let message = card_message(&card);
        assert_within_limits(&message);
        let description = embed(&message).description.clone().unwrap_or_default();
        assert!(description.starts_with("```sql\nSELECT"));
        let (code, rest) = description.split_once("\n…\n```\n").expect("cut SQL");
        let shown = code
            .trim_start_matches("```sql\n")
            .chars()
            .filter(|c| *c != '\u{200B}')
            .count();
        assert!(
            rest.starts_with(&format!(
                "✂\u{FE0F} SQL truncated: showing {} of {} characters.",
                group_digits(shown as u64),
                group_digits(total as u64)
            )),
            "{rest}"
        );
        assert!(
            rest.ends_with("to reject. Expires <t:1700003600:R>."),
            "{rest}"
        );
        assert_eq!(description.matches("```").count(), 2);
        assert!(shown > 1000, "the SQL uses the room it has: {shown}");
        let approvals = field_value(embed(&message), "Approvals");
        assert!(approvals.ends_with('…'), "{approvals}");
        assert!(message.content.ends_with('…'));
    }

    #[test]
    fn a_card_without_review_or_approvals_stays_short() {
        let mut card = card();
        card.state = CardState::Queued;
        card.reason = None;
        card.review_reasons.clear();
        card.estimated_rows = None;
        card.estimate_notes.clear();
        card.requirements.clear();
        card.approvers.clear();
        card.requester = "service:nightly-report".into();
        card.target = String::new();
        let message = card_message(&card);
        let embed = embed(&message);
        assert_eq!(embed.fields.len(), 3, "{:?}", embed.fields);
        assert_eq!(field_value(embed, "Requested by"), "service:nightly-report");
        assert_eq!(field_value(embed, "Target"), "—");
        assert_eq!(
            embed.description.as_deref(),
            Some("```sql\nDELETE FROM orders WHERE id = 42\n```")
        );
        assert_within_limits(&message);
    }

    #[test]
    fn a_thread_name_is_one_line_within_100_characters() {
        let mut card = card();
        card.request_id = format!("r\n{}", "é".repeat(200));
        let name = thread_name(&card);
        assert!(!name.contains('\n'));
        assert_eq!(name.chars().count(), 100);
        assert!(name.starts_with("query r é"));
    }
}
