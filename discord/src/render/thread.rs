//! Messages in a request's thread: result summaries and notes.

use countersign_control::chat::{CardState, ThreadMessage};
use countersign_shared::summary::{render_table, ResultSummary, ResultTable};

use super::markdown::{
    discord_len, escape_code, escape_prose, escape_within, fit, fit_plain, group_digits, Place,
    CONTENT_MAX, EMBED_DESCRIPTION_MAX, EMBED_TOTAL_MAX, FOOTER_MAX,
};
use super::{state_colour, state_emoji, unicode_emoji, DiscordMessage, Embed, EmbedFooter};

/// Widest table line shown; wider rows are cut (an embed is narrow, and a wrapped table is
/// unreadable anyway).
pub const MAX_TABLE_LINE_CHARS: usize = 100;

/// Most characters of a failure's or roll-back's reason shown above the table.
const REASON_MAX: usize = 1024;

/// Most characters of the "masked by policy" note (column names are the database's).
const MASKED_NOTE_MAX: usize = 512;

/// Colour of a summary whose outcome has no card state.
const GREY: u32 = 0x95A5A6;

/// The message as Discord shows it in a thread. A result summary gets its headline as content
/// and an embed, coloured by outcome, with the reason, the table in a code block, notes on
/// what is not shown, and the audit line as footer; a note is plain content.
pub fn thread_message(message: &ThreadMessage) -> DiscordMessage {
    match &message.summary {
        Some(summary) => summary_message(summary),
        None => note_message(&message.text),
    }
}

/// Text that we wrote (a note, an answer to `/query`) as a message of plain content.
pub fn note_message(text: &str) -> DiscordMessage {
    DiscordMessage {
        content: note_text(text, CONTENT_MAX),
        embeds: Vec::new(),
    }
}

/// Text that we wrote as Discord markdown, cut to `max` UTF-16 units: ``` fences, `code` and
/// our own markdown kept; Discord principals (`discord:1`, `discord-role:2`) turned into
/// mentions; mentions and timestamps already rendered (`<@1>`, `<@&2>`, `<t:3:R>`) kept; any
/// other `<`, `[` and `]` escaped outside code, so a link or channel in quoted user text stays
/// text; `@everyone` and `@here` neutralised.
pub fn note_text(text: &str, max: usize) -> String {
    let text = text.trim_end();
    if text.trim().is_empty() {
        return "(empty message)".to_string();
    }
    fit(&escape_within(text, Place::Note, usize::MAX).0, max)
}

/// A result summary's message.
fn summary_message(summary: &ResultSummary) -> DiscordMessage {
    let state = CardState::from_job_state(summary.outcome.as_str());
    let emoji = state
        .map(state_emoji)
        .or_else(|| unicode_emoji("grey_question"))
        .unwrap_or("?");
    let content = fit(
        &format!("{emoji} **{}**", escape_prose(&summary.headline())),
        CONTENT_MAX,
    );

    // A footer shows text as typed: no escaping.
    let mut footer = format!("Request {}", summary.request_id);
    if let Some(audit_ref) = &summary.audit_ref {
        footer = format!(
            "{} Audit {audit_ref}  ·  {footer}",
            unicode_emoji("lock").unwrap_or("-")
        );
    }
    let footer = fit_plain(&footer, FOOTER_MAX);

    let budget = EMBED_DESCRIPTION_MAX.min(EMBED_TOTAL_MAX.saturating_sub(discord_len(&footer)));
    let mut parts = Vec::new();
    if let Some(reason) = summary.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        let quoted: Vec<String> = reason
            .trim_end()
            .lines()
            .map(|line| format!("> {}", escape_prose(line)))
            .collect();
        parts.push(fit(&quoted.join("\n"), REASON_MAX));
    }
    if let Some(table) = summary.table.as_ref().filter(|t| !t.columns.is_empty()) {
        let used: usize = parts.iter().map(|part| discord_len(part) + 1).sum();
        let (code, notes) = table_code_block(table, budget.saturating_sub(used));
        parts.push(code);
        if !notes.is_empty() {
            parts.push(notes.join("\n"));
        }
    }
    let description = (!parts.is_empty()).then(|| fit(&parts.join("\n"), budget));

    DiscordMessage {
        content,
        embeds: vec![Embed {
            description,
            color: Some(state.map(state_colour).unwrap_or(GREY)),
            footer: Some(EmbedFooter { text: footer }),
            ..Embed::default()
        }],
    }
}

/// The kept rows as an aligned table in a code block, with the notes on what is not shown,
/// together within `room` units.
fn table_code_block(table: &ResultTable, room: usize) -> (String, Vec<String>) {
    const OPEN: &str = "```\n";
    const CLOSE: &str = "```";
    let total = table.total_rows.max(table.rows.len() as u64);
    let masked: Vec<String> = table
        .columns
        .iter()
        .zip(&table.masked)
        .filter(|(_, masked)| **masked)
        .map(|(name, _)| escape_prose(name))
        .collect();
    let masked_note = (!masked.is_empty()).then(|| {
        fit(
            &format!(
                "{} Masked by policy: {}.",
                unicode_emoji("see_no_evil").unwrap_or("-"),
                masked.join(", ")
            ),
            MASKED_NOTE_MAX,
        )
    });
    // The longest the notes can be, so the table leaves room for them.
    let longest_notes = [
        rows_note(table.rows.len(), total, table, true),
        wide_note(),
        masked_note.clone().unwrap_or_default(),
    ];
    let reserve: usize = longest_notes
        .iter()
        .map(|n| discord_len(n) + 1)
        .sum::<usize>()
        + 1;
    let code_room = room.saturating_sub(reserve + discord_len(OPEN) + discord_len(CLOSE));

    let rendered = render_table(table);
    let mut body = String::new();
    let mut used = 0usize;
    let mut lines_shown = 0usize;
    let mut cut_wide = false;
    for line in rendered.lines() {
        let (line, cut) = cut_line(line);
        let escaped = format!("{}\n", escape_code(&line));
        let len = discord_len(&escaped);
        if used + len > code_room {
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
    if (rows_shown as u64) < total {
        notes.push(rows_note(
            rows_shown,
            total,
            table,
            rows_shown < table.rows.len(),
        ));
    }
    if cut_wide {
        notes.push(wide_note());
    }
    notes.extend(masked_note);
    (format!("{OPEN}{body}{CLOSE}"), notes)
}

/// `First 20 of 1,000+ rows shown.`, saying so when rows we kept did not fit.
fn rows_note(shown: usize, total: u64, table: &ResultTable, no_room: bool) -> String {
    format!(
        "First {} of {}{} rows shown{}.",
        group_digits(shown as u64),
        group_digits(total),
        if table.total_capped { "+" } else { "" },
        if no_room {
            " (no more fit in a Discord message)"
        } else {
            ""
        }
    )
}

/// The note for rows cut to [`MAX_TABLE_LINE_CHARS`].
fn wide_note() -> String {
    format!("Rows wider than {MAX_TABLE_LINE_CHARS} characters are cut.")
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
    use crate::render::test_support::assert_within_limits;
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
    fn a_read_shows_headline_table_notes_and_audit_footer() {
        let table = ResultTable {
            columns: vec!["id".into(), "email".into()],
            masked: vec![false, true],
            rows: vec![
                vec![Cell::text("1"), Cell::Masked],
                vec![Cell::text("<@123> ```"), Cell::Null],
            ],
            total_rows: 5,
            total_capped: false,
        };
        let message = thread_message(&ThreadMessage::summary(summary(Some(table))));
        assert_eq!(
            message.content,
            "✅ **Succeeded on orders-prod: 5 rows in 12 ms**"
        );
        let embed = &message.embeds[0];
        assert_eq!(
            embed.description.as_deref(),
            Some(
                "```\nid         | email\n-----------+------\n1          | ***\n<\u{200B}@123> `\u{200B}`\u{200B}` | NULL\n```\nFirst 2 of 5 rows shown.\n🙈 Masked by policy: email."
            )
        );
        assert_eq!(
            embed.footer.as_ref().map(|f| f.text.as_str()),
            Some("🔒 Audit #42 3f9a1c2b  ·  Request r-7f3a")
        );
        assert_eq!(embed.color, Some(0x2ECC71));
        assert_within_limits(&message);
    }

    #[test]
    fn a_roll_back_quotes_its_reason_escaped() {
        let mut summary = summary(None);
        summary.outcome = Outcome::RolledBack;
        summary.rows_affected = Some(500);
        summary.reason = Some("500 rows > approved 100\n# nothing changed <@1> @everyone".into());
        let message = thread_message(&ThreadMessage::summary(summary));
        assert_eq!(
            message.content,
            "↩\u{FE0F} **Rolled back on orders-prod: 500 rows affected in 12 ms**"
        );
        let embed = &message.embeds[0];
        assert_eq!(
            embed.description.as_deref(),
            Some("> 500 rows > approved 100\n> \\# nothing changed \\<@1> @\u{2060}everyone")
        );
        assert_eq!(embed.color, Some(0xE67E22));
    }

    #[test]
    fn a_write_without_rows_or_reason_still_shows_its_audit_line() {
        let mut summary = summary(None);
        summary.rows_affected = Some(1);
        summary.audit_ref = None;
        let message = thread_message(&ThreadMessage::summary(summary));
        assert_eq!(
            message.content,
            "✅ **Succeeded on orders-prod: 1 row affected in 12 ms**"
        );
        assert_eq!(message.embeds[0].description, None);
        assert_eq!(
            message.embeds[0].footer.as_ref().map(|f| f.text.as_str()),
            Some("Request r-7f3a")
        );
        assert_within_limits(&message);
    }

    #[test]
    fn a_wide_200_row_result_fits_with_notes_on_what_is_not_shown() {
        let columns: Vec<String> = (0..12).map(|i| format!("column_{i}")).collect();
        let rows: Vec<Vec<Cell>> = (0..200)
            .map(|r| {
                (0..12)
                    .map(|c| Cell::text(&format!("row {r} col {c} é😀 <@1> ```")))
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
        let mut summary = summary(Some(table));
        summary.reason = Some("slow ".repeat(1000));
        let message = thread_message(&ThreadMessage::summary(summary));
        assert_within_limits(&message);
        let description = message.embeds[0].description.clone().unwrap_or_default();
        let (reason, rest) = description.split_once('\n').expect("reason line");
        assert!(reason.starts_with("> slow") && reason.ends_with('…'));
        assert!(rest.starts_with("```\ncolumn_0"));
        assert_eq!(
            description.matches("```").count(),
            2,
            "cells cannot close the block"
        );
        let code = &rest[..rest.rfind("```").expect("closing fence")];
        let shown = code.lines().count() - 3; // the opening fence, header and rule
        assert!(shown > 5, "{shown}");
        assert!(code
            .lines()
            .all(|line| line.chars().filter(|c| *c != '\u{200B}').count() <= MAX_TABLE_LINE_CHARS));
        assert!(
            description.ends_with(&format!(
                "```\nFirst {shown} of 1,000+ rows shown (no more fit in a Discord message).\nRows wider than 100 characters are cut."
            )),
            "{description}"
        );
    }

    #[test]
    fn a_note_keeps_our_fences_turns_principals_into_mentions_and_neutralises_the_rest() {
        let message = thread_message(&ThreadMessage::note(
            "Approved by discord:42 (1 of 2), <@43>.\n```\nERROR: x < 1 <@44>\n```\n@everyone <@&45> [x](y)",
        ));
        assert!(message.embeds.is_empty());
        assert_eq!(
            message.content,
            "Approved by <@42> (1 of 2), <@43>.\n```\nERROR: x < 1 <\u{200B}@44>\n```\n@\u{2060}everyone <@&45> \\[x\\](y)"
        );
        let long = note_message(&format!("```\n{}\n```", "é".repeat(10_000)));
        assert_within_limits(&long);
        assert!(long.content.ends_with("…\n```"));
        assert_eq!(note_message("  ").content, "(empty message)");
    }
}
