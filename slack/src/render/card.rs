//! A request's root message: the card reviewers read and react to.
//!
//! Top to bottom: the state at a glance, who/where/what as fields, the reason, the SQL in a
//! code block, why it needs review with the estimate, the approval checklist, and (while it
//! waits) how to approve and when it expires.

use countersign_control::chat::{CardState, RequestCard};
use slack_morphism::prelude::SlackBlock;

use super::mrkdwn::{
    escape_prose, escape_within, fit, group_digits, mention, slack_date, slack_len, with_mentions,
    Place, FALLBACK_TEXT_MAX, SECTION_TEXT_MAX,
};
use super::{context, fields_section, section};

/// How much of the SQL the notification text previews.
const SQL_PREVIEW_CHARS: usize = 200;

/// The card as Slack blocks, with its fallback text.
pub fn card_blocks(card: &RequestCard) -> (String, Vec<SlackBlock>) {
    let mut blocks = Vec::new();

    let mut top = format!(":{}: *{}*", card.state.emoji(), card.state.label());
    if let Some(detail) = &card.state_detail {
        top.push('\n');
        // Written by the bot, mentions already rendered ("Rejected by <@U1>.").
        top.push_str(&with_mentions(detail, Place::Note));
    }
    blocks.push(section(&top));

    blocks.push(fields_section(vec![
        format!("*Requested by*\n{}", mention(&card.requester)),
        format!("*Target*\n{}", escape_prose(&card.target)),
        format!("*Category*\n{}", escape_prose(&card.category)),
        format!("*Request*\n{}", escape_prose(&card.request_id)),
    ]));

    if let Some(reason) = card.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        blocks.push(section(&format!("*Reason*\n{}", escape_prose(reason))));
    }

    let (sql, sql_note) = sql_code_block(&card.sql);
    blocks.push(section(&sql));
    if let Some(note) = sql_note {
        blocks.push(context(&note));
    }

    if let Some(review) = review_text(card) {
        blocks.push(section(&review));
    }
    if let Some(approvals) = approvals_text(card) {
        blocks.push(section(&approvals));
    }
    if card.state == CardState::AwaitingApproval {
        let mut how_to = format!(
            "React with :{}: to approve or :{}: to reject.",
            escape_prose(&card.approve_reaction),
            escape_prose(&card.reject_reaction)
        );
        if let Some(expires_ms) = card.expires_at_ms {
            how_to.push_str(&format!("  Expires {}.", slack_date(expires_ms / 1000)));
        }
        blocks.push(context(&how_to));
    }

    (fallback_text(card), blocks)
}

/// The SQL in a code block that fits one section, and a note when it had to be cut.
fn sql_code_block(sql: &str) -> (String, Option<String>) {
    const OPEN: &str = "```\n";
    const CUT: &str = "\n…";
    const CLOSE: &str = "\n```";
    let sql = sql.trim_end();
    let total = sql.chars().count();
    let room = SECTION_TEXT_MAX - slack_len(OPEN) - slack_len(CLOSE);
    let (body, shown) = match escape_within(sql, Place::Code, room) {
        (body, shown) if shown == total => (body, shown),
        _ => escape_within(sql, Place::Code, room - slack_len(CUT)),
    };
    let text = if shown == total {
        format!("{OPEN}{body}{CLOSE}")
    } else {
        format!("{OPEN}{body}{CUT}{CLOSE}")
    };
    let note = (shown < total).then(|| {
        format!(
            ":scissors: SQL truncated: showing {} of {} characters.",
            group_digits(shown as u64),
            group_digits(total as u64)
        )
    });
    (text, note)
}

/// Why the request needs review, and the estimate with its notes.
fn review_text(card: &RequestCard) -> Option<String> {
    let mut lines = Vec::new();
    if !card.review_reasons.is_empty() {
        lines.push("*Needs review*".to_string());
        for why in &card.review_reasons {
            lines.push(format!("• {}", with_mentions(why, Place::Prose)));
        }
    }
    match card.estimated_rows {
        Some(rows) => lines.push(format!(
            "*Estimate:* about {} {}",
            group_digits(rows),
            if rows == 1 { "row" } else { "rows" }
        )),
        None if !card.review_reasons.is_empty() => {
            lines.push("*Estimate:* none available".to_string())
        }
        None => {}
    }
    for note in &card.estimate_notes {
        lines.push(format!(":information_source: {}", escape_prose(note)));
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The approval checklist and whose approvals count so far.
fn approvals_text(card: &RequestCard) -> Option<String> {
    if card.requirements.is_empty() && card.approvers.is_empty() {
        return None;
    }
    let mut lines = vec!["*Approvals*".to_string()];
    for requirement in &card.requirements {
        let mark = if requirement.satisfied {
            ":white_check_mark:"
        } else {
            ":white_large_square:"
        };
        lines.push(format!(
            "{mark} {}",
            with_mentions(&requirement.wanted, Place::Prose)
        ));
    }
    if !card.approvers.is_empty() {
        let approvers: Vec<String> = card.approvers.iter().map(|a| mention(a)).collect();
        lines.push(format!("Approved by {}", approvers.join(", ")));
    }
    Some(lines.join("\n"))
}

/// One line for notifications: state, what, where, who, and the start of the SQL.
fn fallback_text(card: &RequestCard) -> String {
    let one_line = card.sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let (mut preview, shown) = escape_within(&one_line, Place::Prose, SQL_PREVIEW_CHARS);
    if shown < one_line.chars().count() {
        preview.push('…');
    }
    let text = format!(
        "{}: {} request {} on {} by {}: {preview}",
        card.state.label(),
        escape_prose(&card.category),
        escape_prose(&card.request_id),
        escape_prose(&card.target),
        mention(&card.requester),
    );
    fit(&text, FALLBACK_TEXT_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::{assert_within_limits, texts};
    use countersign_control::chat::CardRequirement;

    fn card() -> RequestCard {
        RequestCard {
            request_id: "r-7f3a".into(),
            requester: "slack:U024BE7LH".into(),
            target: "orders-prod".into(),
            sql: "DELETE FROM orders WHERE id = 42".into(),
            reason: Some("Customer asked for deletion (ticket 981)".into()),
            category: "write".into(),
            review_reasons: vec!["Writes to orders need a DBA".into()],
            estimated_rows: Some(1),
            estimate_notes: vec!["Cascades to order_items".into()],
            requirements: vec![
                CardRequirement {
                    wanted: "1 approval from slack-group:S0DBA".into(),
                    satisfied: true,
                },
                CardRequirement {
                    wanted: "1 approval from security".into(),
                    satisfied: false,
                },
            ],
            approvers: vec!["slack:U0BOB".into(), "service:nightly-report".into()],
            state: CardState::AwaitingApproval,
            state_detail: None,
            expires_at_ms: Some(1_700_000_000_123),
            approve_reaction: "white_check_mark".into(),
            reject_reaction: "x".into(),
        }
    }

    #[test]
    fn an_awaiting_card_reads_well() {
        let (fallback, blocks) = card_blocks(&card());
        let texts = texts(&blocks);
        assert_eq!(texts[0], ":hourglass_flowing_sand: *Awaiting approval*");
        assert_eq!(texts[1], "*Requested by*\n<@U024BE7LH>");
        assert_eq!(texts[2], "*Target*\norders-prod");
        assert!(texts.contains(&"```\nDELETE FROM orders WHERE id = 42\n```".to_string()));
        let review = texts
            .iter()
            .find(|t| t.starts_with("*Needs review*"))
            .expect("review");
        assert!(review.contains("• Writes to orders need a DBA"));
        assert!(review.contains("*Estimate:* about 1 row"));
        assert!(review.contains(":information_source: Cascades to order_items"));
        let approvals = texts
            .iter()
            .find(|t| t.starts_with("*Approvals*"))
            .expect("approvals");
        assert!(approvals.contains(":white_check_mark: 1 approval from <!subteam^S0DBA>"));
        assert!(approvals.contains(":white_large_square: 1 approval from security"));
        assert!(approvals.contains("Approved by <@U0BOB>, service:nightly-report"));
        let how_to = texts.last().expect("how-to");
        assert!(how_to.starts_with(
            "React with :white_check_mark: to approve or :x: to reject.  Expires <!date^1700000000^{date_short_pretty} {time}|2023-11-14 22:13 UTC>"
        ));
        assert_eq!(
            fallback,
            "Awaiting approval: write request r-7f3a on orders-prod by <@U024BE7LH>: DELETE FROM orders WHERE id = 42"
        );
        assert_within_limits(&fallback, &blocks);
    }

    #[test]
    fn every_state_shows_its_emoji_and_label_at_the_top() {
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
            card.state_detail = Some("Rejected by slack:U0EVE: not during the freeze".into());
            let (fallback, blocks) = card_blocks(&card);
            let texts = texts(&blocks);
            assert_eq!(
                texts[0],
                format!(
                    ":{}: *{}*\nRejected by <@U0EVE>: not during the freeze",
                    state.emoji(),
                    state.label()
                )
            );
            assert!(fallback.starts_with(&format!("{}: ", state.label())));
            let how_to = texts.iter().any(|t| t.starts_with("React with"));
            assert_eq!(how_to, state == CardState::AwaitingApproval, "{state:?}");
        }
    }

    #[test]
    fn user_text_cannot_mention_anyone_or_escape_the_code_block() {
        let mut card = card();
        card.sql = "SELECT '<!channel>' ```\n<@U1> & `x` FROM t".into();
        card.reason = Some("<!here> please <https://evil.example|click> @channel".into());
        card.target = "<!everyone>".into();
        card.requester = "slack:U1><!channel".into();
        card.estimate_notes = vec!["<@U2>".into()];
        // The bot writes the detail with the mention rendered; user text in it stays inert.
        card.state_detail = Some("Rejected by <@U0EVE>: <!channel>".into());
        let (fallback, blocks) = card_blocks(&card);
        let all = texts(&blocks).join("\n") + &fallback;
        for bad in [
            "<!channel>",
            "<!here>",
            "<!everyone>",
            "<@U1>",
            "<@U2>",
            "<https:",
        ] {
            assert!(!all.contains(bad), "{bad} got through: {all}");
        }
        let sql = texts(&blocks)
            .into_iter()
            .find(|t| t.starts_with("```"))
            .expect("sql block");
        assert_eq!(sql.matches("```").count(), 2, "{sql}");
        assert!(sql.contains("&lt;@U1&gt; &amp; `x`"));
        assert!(all.contains("@\u{2060}channel"));
        assert!(all.contains("Rejected by <@U0EVE>: &lt;!channel&gt;"));
    }

    #[test]
    fn a_100_kb_statement_is_cut_to_one_section_with_a_note() {
        let mut card = card();
        // Multi-byte characters and escapes everywhere, so neither can be split.
        card.sql = "SELECT 'é😀<&>' AS x, ".repeat(100 * 1024 / 24);
        card.reason = Some("why ".repeat(2000));
        card.review_reasons = vec!["rule ".repeat(300); 40];
        card.approvers = vec!["slack:U0BOB".into(); 500];
        let total = card.sql.trim_end().chars().count();
        assert!(card.sql.len() >= 100_000);
        let (fallback, blocks) = card_blocks(&card);
        assert_within_limits(&fallback, &blocks);
        let texts = texts(&blocks);
        let sql = texts.iter().find(|t| t.starts_with("```")).expect("sql");
        assert!(sql.ends_with("\n…\n```"));
        let note = texts
            .iter()
            .find(|t| t.starts_with(":scissors:"))
            .expect("truncation note");
        let shown = sql
            .trim_start_matches("```\n")
            .trim_end_matches("\n…\n```")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
            .chars()
            .count();
        assert_eq!(
            note,
            &format!(
                ":scissors: SQL truncated: showing {} of {} characters.",
                group_digits(shown as u64),
                group_digits(total as u64)
            )
        );
        assert!(slack_len(sql) > 2900, "the SQL uses the room it has");
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
        let (fallback, blocks) = card_blocks(&card);
        assert_eq!(blocks.len(), 3, "{:?}", texts(&blocks));
        assert!(fallback.contains("by service:nightly-report"));
    }
}
