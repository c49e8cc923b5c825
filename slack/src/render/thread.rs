//! Messages in a request's thread: result summaries and notes.

use countersign_control::chat::{CardState, ThreadMessage};
use countersign_shared::summary::{render_table, ResultSummary, ResultTable};
use slack_morphism::prelude::SlackBlock;

use super::mrkdwn::{
    escape_code, escape_prose, fit, group_digits, slack_len, with_mentions, Place,
    FALLBACK_TEXT_MAX, SECTION_TEXT_MAX,
};
use super::{context, section};

/// Widest table line shown; wider rows are cut (Slack wraps long lines, which makes a table
/// unreadable anyway).
pub const MAX_TABLE_LINE_CHARS: usize = 150;

/// The message as Slack blocks, with its fallback text. A result summary gets a headline, its
/// reason, the table in a code block and the audit line; a note is one section.
pub fn thread_blocks(message: &ThreadMessage) -> (String, Vec<SlackBlock>) {
    match &message.summary {
        Some(summary) => summary_blocks(summary),
        None => {
            let text = note_text(&message.text, SECTION_TEXT_MAX);
            (fit(&text, FALLBACK_TEXT_MAX), vec![section(&text)])
        }
    }
}

/// Plain text that we wrote (a note, a reply to a command) as mrkdwn, cut to `max` UTF-16
/// units: ``` fences and `code` kept; Slack principals (`slack:U1`, `slack-group:S1`) turned into
/// mentions; mentions already rendered as `<@U1>` or `<!subteam^S1>` kept; every other `&`, `<`
/// and `>` escaped, so `<!channel>` or a link in quoted user text stays plain text.
pub fn note_text(text: &str, max: usize) -> String {
    let text = text.trim_end();
    if text.trim().is_empty() {
        return "(empty message)".to_string();
    }
    fit(&with_mentions(text, Place::Note), max)
}

/// A result summary's blocks.
fn summary_blocks(summary: &ResultSummary) -> (String, Vec<SlackBlock>) {
    let emoji = CardState::from_job_state(summary.outcome.as_str())
        .map(CardState::emoji)
        .unwrap_or("grey_question");
    let headline = escape_prose(&summary.headline());
    let mut blocks = vec![section(&format!(":{emoji}: *{headline}*"))];
    let mut fallback = format!(":{emoji}: {headline}");

    if let Some(reason) = summary.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        let quoted: Vec<String> = reason
            .trim_end()
            .lines()
            .map(|line| format!(">{}", escape_prose(line)))
            .collect();
        blocks.push(section(&quoted.join("\n")));
        fallback.push('\n');
        fallback.push_str(&escape_prose(reason));
    }

    if let Some(table) = summary.table.as_ref().filter(|t| !t.columns.is_empty()) {
        let (code, notes) = table_code_block(table);
        blocks.push(section(&code));
        if !notes.is_empty() {
            blocks.push(context(&notes.join("\n")));
        }
    }

    let mut audit = format!("Request {}", escape_prose(&summary.request_id));
    if let Some(audit_ref) = &summary.audit_ref {
        audit = format!(":lock: Audit {}  ·  {audit}", escape_prose(audit_ref));
    }
    blocks.push(context(&audit));

    (fit(&fallback, FALLBACK_TEXT_MAX), blocks)
}

/// The kept rows as an aligned table in a code block that fits one section, and notes on what
/// is not shown.
fn table_code_block(table: &ResultTable) -> (String, Vec<String>) {
    const OPEN: &str = "```\n";
    const CLOSE: &str = "```";
    let room = SECTION_TEXT_MAX - slack_len(OPEN) - slack_len(CLOSE);
    let rendered = render_table(table);
    let mut body = String::new();
    let mut used = 0usize;
    let mut lines_shown = 0usize;
    let mut cut_wide = false;
    for line in rendered.lines() {
        let (line, cut) = cut_line(line);
        let escaped = format!("{}\n", escape_code(&line));
        let len = slack_len(&escaped);
        if used + len > room {
            break;
        }
        used += len;
        body.push_str(&escaped);
        lines_shown += 1;
        cut_wide |= cut;
    }
    // The header and its rule come first.
    let rows_shown = lines_shown.saturating_sub(2);

    let mut notes = Vec::new();
    let total = table.total_rows.max(table.rows.len() as u64);
    if (rows_shown as u64) < total {
        let mut note = format!(
            "First {} of {}{} rows shown",
            group_digits(rows_shown as u64),
            group_digits(total),
            if table.total_capped { "+" } else { "" }
        );
        if rows_shown < table.rows.len() {
            note.push_str(" (no more fit in a Slack message)");
        }
        note.push('.');
        notes.push(note);
    }
    if cut_wide {
        notes.push(format!(
            "Rows wider than {MAX_TABLE_LINE_CHARS} characters are cut."
        ));
    }
    let masked: Vec<String> = table
        .columns
        .iter()
        .zip(&table.masked)
        .filter(|(_, masked)| **masked)
        .map(|(name, _)| escape_prose(name))
        .collect();
    if !masked.is_empty() {
        notes.push(format!(
            ":see_no_evil: Masked by policy: {}.",
            masked.join(", ")
        ));
    }
    (format!("{OPEN}{body}{CLOSE}"), notes)
}

/// A table line cut to [`MAX_TABLE_LINE_CHARS`], and whether it was cut.
fn cut_line(line: &str) -> (String, bool) {
    match line.char_indices().nth(MAX_TABLE_LINE_CHARS) {
        None => (line.to_string(), false),
        Some(_) => {
            let kept: String = line.chars().take(MAX_TABLE_LINE_CHARS - 1).collect();
            (format!("{kept}…"), true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::{assert_within_limits, texts};
    use countersign_shared::summary::{Cell, Outcome};

    fn summary(table: Option<ResultTable>) -> ResultSummary {
        ResultSummary {
            request_id: "r-7f3a".into(),
            target: "orders-prod".into(),
            outcome: Outcome::Succeeded,
            rows_affected: None,
            table,
            duration_ms: 12,
            reason: None,
            audit_ref: Some("#42 3f9a1c2b".into()),
        }
    }

    #[test]
    fn a_read_shows_headline_table_notes_and_audit_line() {
        let table = ResultTable {
            columns: vec!["id".into(), "email".into()],
            masked: vec![false, true],
            rows: vec![
                vec![Cell::text("1"), Cell::Masked],
                vec![Cell::text("<!channel>"), Cell::Null],
            ],
            total_rows: 5,
            total_capped: false,
        };
        let (fallback, blocks) = thread_blocks(&ThreadMessage::summary(summary(Some(table))));
        let texts = texts(&blocks);
        assert_eq!(
            texts,
            vec![
                ":white_check_mark: *Succeeded on orders-prod: 5 rows in 12 ms*".to_string(),
                "```\nid         | email\n-----------+------\n1          | ***\n&lt;!channel&gt; | NULL\n```".to_string(),
                "First 2 of 5 rows shown.\n:see_no_evil: Masked by policy: email.".to_string(),
                ":lock: Audit #42 3f9a1c2b  ·  Request r-7f3a".to_string(),
            ]
        );
        assert_eq!(
            fallback,
            ":white_check_mark: Succeeded on orders-prod: 5 rows in 12 ms"
        );
        assert_within_limits(&fallback, &blocks);
    }

    #[test]
    fn a_roll_back_quotes_its_reason_escaped() {
        let mut summary = summary(None);
        summary.outcome = Outcome::RolledBack;
        summary.rows_affected = Some(500);
        summary.reason = Some("500 rows > approved 100\nnothing changed <@U1>".into());
        let (fallback, blocks) = thread_blocks(&ThreadMessage::summary(summary));
        let texts = texts(&blocks);
        assert_eq!(
            texts[0],
            ":leftwards_arrow_with_hook: *Rolled back on orders-prod: 500 rows affected in 12 ms*"
        );
        assert_eq!(
            texts[1],
            ">500 rows &gt; approved 100\n>nothing changed &lt;@U1&gt;"
        );
        assert!(fallback.contains("&lt;@U1&gt;"));
    }

    #[test]
    fn a_wide_200_row_result_is_cut_to_one_section_with_notes() {
        let columns: Vec<String> = (0..12).map(|i| format!("column_{i}")).collect();
        let rows: Vec<Vec<Cell>> = (0..200)
            .map(|r| {
                (0..12)
                    .map(|c| Cell::text(&format!("row {r} col {c} é😀 <&> ```")))
                    .collect()
            })
            .collect();
        let table = ResultTable {
            masked: vec![false; columns.len()],
            columns,
            rows,
            total_rows: 1000,
            total_capped: true,
        };
        let (fallback, blocks) = thread_blocks(&ThreadMessage::summary(summary(Some(table))));
        assert_within_limits(&fallback, &blocks);
        let texts = texts(&blocks);
        let code = &texts[1];
        assert!(code.starts_with("```\ncolumn_0"));
        assert!(code.ends_with("\n```"));
        assert_eq!(
            code.matches("```").count(),
            2,
            "cells cannot close the block"
        );
        let shown = code.lines().count() - 4; // fences, header and rule
        assert!(shown > 0);
        assert!(code
            .lines()
            .all(|line| line.chars().filter(|c| *c != '\u{200B}').count()
                <= MAX_TABLE_LINE_CHARS * 5));
        assert_eq!(
            texts[2],
            format!(
                "First {shown} of 1,000+ rows shown (no more fit in a Slack message).\nRows wider than 150 characters are cut."
            )
        );
    }

    #[test]
    fn a_note_keeps_our_fences_turns_principals_into_mentions_and_escapes_the_rest() {
        let message = ThreadMessage::note(
            "Approved by slack:U0BOB (1 of 2), <@U0EVE>.\n```\nERROR: x < 1 & slack:U9\n```\n<!channel>",
        );
        let (fallback, blocks) = thread_blocks(&message);
        let texts = texts(&blocks);
        assert_eq!(
            texts,
            vec![
                "Approved by <@U0BOB> (1 of 2), <@U0EVE>.\n```\nERROR: x &lt; 1 &amp; slack:U9\n```\n&lt;!channel&gt;"
                    .to_string()
            ]
        );
        assert_eq!(fallback, texts[0]);
        let long = ThreadMessage::note(format!("```\n{}\n```", "é".repeat(10_000)));
        let (fallback, blocks) = thread_blocks(&long);
        assert_within_limits(&fallback, &blocks);
        assert!(crate::render::test_support::texts(&blocks)[0].ends_with("…\n```"));
        assert_eq!(thread_blocks(&ThreadMessage::note("  ")).1.len(), 1);
    }
}
