//! Slack mrkdwn: escaping user text, mentions, and cutting text to Slack's limits.
//!
//! Slack reads `<...>` as a link or mention (`<!channel>`, `<@U1>`) and `&` as the start of an
//! entity, so `&`, `<` and `>` in anything a user wrote are escaped; Slack shows them as typed,
//! inside code blocks too. Lengths are measured in UTF-16 code units (what Slack's limits
//! count, and never less than the number of characters), and text is only ever cut between
//! characters and outside an entity or a mention.

/// Most characters in a section block's text.
pub const SECTION_TEXT_MAX: usize = 3000;
/// Most characters in one of a section block's fields.
pub const FIELD_TEXT_MAX: usize = 2000;
/// Most characters in a context block's text element.
pub const CONTEXT_TEXT_MAX: usize = 3000;
/// Most blocks in one message.
pub const MAX_BLOCKS: usize = 50;
/// Most characters we put in a message's top-level `text` (the notification and fallback).
pub const FALLBACK_TEXT_MAX: usize = 3000;

/// Zero-width space: splits a run of backticks so it cannot close a code block.
const ZERO_WIDTH_SPACE: char = '\u{200B}';
/// Word joiner: placed after `@` so `@channel` in user text stays plain text.
const WORD_JOINER: char = '\u{2060}';
/// Slack's special mentions when written as plain words.
const SPECIAL_MENTIONS: [&str; 3] = ["channel", "here", "everyone"];

/// Slack's length of `text`: UTF-16 code units.
pub fn slack_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Where escaped text goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Inside a ``` code block: runs of three or more backticks are split so user text cannot
    /// close the block.
    Code,
    /// Ordinary text: backtick runs are split too (they would open a code block), and
    /// `@channel`-style words get a word joiner.
    Prose,
    /// Text that we wrote, with intended ``` fences and possibly mentions already rendered
    /// (`<@U1>`, `<!subteam^S1>`, which are kept): other `&`, `<`, `>` and `@channel` words are
    /// escaped.
    Note,
}

/// Escapes `&`, `<` and `>`, nothing else.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Escapes user text for use in ordinary mrkdwn.
pub fn escape_prose(text: &str) -> String {
    escape_within(text, Place::Prose, usize::MAX).0
}

/// Escapes user text for use inside a ``` code block.
pub fn escape_code(text: &str) -> String {
    escape_within(text, Place::Code, usize::MAX).0
}

/// Escapes `text` for `place`, keeping at most `budget` UTF-16 units of output. Returns the
/// escaped text and how many characters of `text` it holds (all of them unless cut).
pub(crate) fn escape_within(text: &str, place: Place, budget: usize) -> (String, usize) {
    let chars: Vec<char> = text.chars().collect();
    // The length of the backtick run each backtick belongs to.
    let mut run_len = vec![0usize; chars.len()];
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '`' {
            let start = i;
            while i < chars.len() && chars[i] == '`' {
                i += 1;
            }
            for len in &mut run_len[start..i] {
                *len = i - start;
            }
        } else {
            i += 1;
        }
    }
    let mut out = String::with_capacity(text.len().min(budget.saturating_mul(4)));
    let mut used = 0usize;
    let mut piece = String::new();
    let mut index = 0;
    while index < chars.len() {
        piece.clear();
        let mut taken = 1;
        match chars[index] {
            '<' if place == Place::Note && rendered_mention_len(&chars[index..]) > 0 => {
                taken = rendered_mention_len(&chars[index..]);
                piece.extend(&chars[index..index + taken]);
            }
            '&' => piece.push_str("&amp;"),
            '<' => piece.push_str("&lt;"),
            '>' => piece.push_str("&gt;"),
            '`' if place != Place::Note
                && run_len[index] >= 3
                && index > 0
                && chars[index - 1] == '`' =>
            {
                piece.push(ZERO_WIDTH_SPACE);
                piece.push('`');
            }
            '@' if place != Place::Code && starts_special_mention(&chars[index + 1..]) => {
                piece.push('@');
                piece.push(WORD_JOINER);
            }
            c => piece.push(c),
        }
        let len = slack_len(&piece);
        if used + len > budget {
            return (out, index);
        }
        used += len;
        out.push_str(&piece);
        index += taken;
    }
    (out, chars.len())
}

/// The length of a user or group mention as Slack writes it (`<@U1>`, `<!subteam^S1>`) at the
/// start of `text`, or 0. Our own texts arrive with mentions already rendered (the bot's
/// "Rejected by <@U1>."); only these two forms pass, never `<!channel>` or a link.
fn rendered_mention_len(text: &[char]) -> usize {
    let Some(end) = text.iter().position(|c| *c == '>') else {
        return 0;
    };
    let inner: String = text[1..end].iter().collect();
    let id = inner
        .strip_prefix('@')
        .or_else(|| inner.strip_prefix("!subteam^"));
    match id {
        Some(id) if is_slack_id(id) => end + 1,
        _ => 0,
    }
}

/// Whether `rest` (what follows an `@`) is `channel`, `here` or `everyone` as a whole word.
fn starts_special_mention(rest: &[char]) -> bool {
    SPECIAL_MENTIONS.iter().any(|word| {
        let len = word.chars().count();
        rest.len() >= len
            && rest[..len]
                .iter()
                .zip(word.chars())
                .all(|(a, b)| a.eq_ignore_ascii_case(&b))
            && rest.get(len).is_none_or(|next| !next.is_alphanumeric())
    })
}

/// A principal as Slack shows it: `slack:U123` → `<@U123>`, `slack-group:S1` →
/// `<!subteam^S1>`, anything else (`service:nightly-report`, `console:alice`) as escaped plain
/// text. An id that does not look like a Slack id is shown as text, never as a mention.
pub fn mention(principal: &str) -> String {
    principal_mention(principal).unwrap_or_else(|| escape_prose(principal))
}

/// The mention for a Slack principal, or `None` for anything else.
fn principal_mention(principal: &str) -> Option<String> {
    if let Some(user) = principal.strip_prefix("slack:") {
        is_slack_id(user).then(|| format!("<@{user}>"))
    } else if let Some(group) = principal.strip_prefix("slack-group:") {
        is_slack_id(group).then(|| format!("<!subteam^{group}>"))
    } else {
        None
    }
}

/// Slack ids are short runs of letters and digits (`U024BE7LH`, `S0614TZR7`).
fn is_slack_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 32 && id.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Text with principals in it (`Rejected by slack:U1`, `2 approvals from slack-group:S1`):
/// escaped for `place`, with each whitespace-separated Slack principal (optionally wrapped in
/// punctuation such as `(…),`) turned into a mention. Inside ``` fences (in [`Place::Note`]
/// text) nothing is turned into a mention.
pub(crate) fn with_mentions(text: &str, place: Place) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fences = 0usize;
    let mut rest = text;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(word_end);
        let space_end = tail
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(tail.len());
        let (space, next) = tail.split_at(space_end);
        let in_code = fences % 2 == 1;
        fences += word.matches("```").count();
        out.push_str(&word_with_mention(word, place, in_code));
        out.push_str(space);
        rest = next;
    }
    out
}

/// One word, its principal (if any) turned into a mention.
fn word_with_mention(word: &str, place: Place, in_code: bool) -> String {
    let escape = |text: &str| escape_within(text, place, usize::MAX).0;
    if in_code {
        return escape(word);
    }
    let is_edge = |c: char| {
        matches!(
            c,
            '(' | ')' | ',' | '.' | ';' | ':' | '!' | '?' | '"' | '\''
        )
    };
    let core = word.trim_start_matches(is_edge);
    let lead = &word[..word.len() - core.len()];
    let core = core.trim_end_matches(is_edge);
    let trail = &word[lead.len() + core.len()..];
    match principal_mention(core) {
        Some(mention) => format!("{}{mention}{}", escape(lead), escape(trail)),
        None => escape(word),
    }
}

/// Cuts built mrkdwn to at most `max` UTF-16 units, ending with `…` when cut. The cut never
/// splits a character, an `&...;` entity or a `<...>` mention, and an open ``` block is closed.
pub fn fit(text: &str, max: usize) -> String {
    if slack_len(text) <= max {
        return text.to_string();
    }
    // Room for "…" and a closing "\n```".
    let budget = max.saturating_sub(5);
    let mut used = 0usize;
    let mut cut = 0usize;
    let mut in_angle = false;
    let mut in_entity = false;
    for (index, c) in text.char_indices() {
        let len = c.len_utf16();
        if used + len > budget {
            break;
        }
        used += len;
        match c {
            '<' => in_angle = true,
            '>' => in_angle = false,
            '&' => in_entity = true,
            ';' => in_entity = false,
            c if in_entity && !c.is_ascii_alphanumeric() && c != '#' => in_entity = false,
            _ => {}
        }
        if !in_angle && !in_entity {
            cut = index + c.len_utf8();
        }
    }
    let mut out = text[..cut].to_string();
    out.push('…');
    if out.matches("```").count() % 2 == 1 {
        out.push_str("\n```");
    }
    out
}

pub use countersign_shared::summary::group_digits;

/// Slack's date formatting for a Unix time: readers see it in their own time zone, clients
/// that cannot format dates see the UTC fallback.
pub fn slack_date(unix_seconds: u64) -> String {
    format!(
        "<!date^{unix_seconds}^{{date_short_pretty}} {{time}}|{}>",
        utc_text(unix_seconds)
    )
}

/// `2023-11-14 22:13 UTC`.
fn utc_text(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let seconds = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        seconds / 3600,
        (seconds % 3600) / 60
    )
}

/// Days since 1970-01-01 → (year, month, day), Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_cannot_make_mentions_or_links() {
        let text = "hi <!channel> <@U1> <https://evil|click> & @here @Everyone @hereby";
        let escaped = escape_prose(text);
        assert!(!escaped.contains('<') && !escaped.contains('>'));
        assert!(escaped.contains("&lt;!channel&gt;"));
        assert!(escaped.contains("&amp; "));
        assert!(escaped.contains("@\u{2060}here "));
        assert!(escaped.contains("@\u{2060}Everyone"));
        assert!(escaped.contains("@hereby"), "only whole words: {escaped}");
    }

    #[test]
    fn backtick_runs_cannot_close_a_code_block() {
        let escaped = escape_code("SELECT 1 ```\n<!channel>``` `a``b` ````");
        assert!(!escaped.contains("```"), "{escaped}");
        assert!(
            escaped.contains("`a``b`"),
            "short runs are left alone: {escaped}"
        );
        // The note place keeps our own fences.
        assert_eq!(escape("```\n1 < 2\n```"), "```\n1 &lt; 2\n```");
    }

    #[test]
    fn principals_become_mentions_and_nothing_else_does() {
        assert_eq!(mention("slack:U024BE7LH"), "<@U024BE7LH>");
        assert_eq!(mention("slack-group:S0614TZR7"), "<!subteam^S0614TZR7>");
        assert_eq!(mention("service:nightly-report"), "service:nightly-report");
        assert_eq!(mention("console:alice"), "console:alice");
        assert_eq!(mention("slack:U1><!channel"), "slack:U1&gt;&lt;!channel");
        assert_eq!(mention("slack:"), "slack:");
        assert_eq!(
            with_mentions(
                "Rejected by slack:U1 (and slack-group:S2), not <b>",
                Place::Prose
            ),
            "Rejected by <@U1> (and <!subteam^S2>), not &lt;b&gt;"
        );
        assert_eq!(
            with_mentions("```\nslack:U1\n``` slack:U2", Place::Note),
            "```\nslack:U1\n``` <@U2>"
        );
        // Our own texts may hold rendered user and group mentions; nothing else passes.
        assert_eq!(
            with_mentions(
                "Rejected by <@U1>, ask <!subteam^S1>. <!channel> <@U1|x> <https://x> <@U1",
                Place::Note
            ),
            "Rejected by <@U1>, ask <!subteam^S1>. &lt;!channel&gt; &lt;@U1|x&gt; &lt;https://x&gt; &lt;@U1"
        );
        assert_eq!(escape_prose("<@U1>"), "&lt;@U1&gt;");
    }

    #[test]
    fn escaping_within_a_budget_never_splits_a_character_or_an_entity() {
        let (out, taken) = escape_within("ab<cd", Place::Prose, 5);
        assert_eq!((out.as_str(), taken), ("ab", 2));
        let (out, taken) = escape_within("é😀x", Place::Code, 2);
        assert_eq!((out.as_str(), taken), ("é", 1));
        let (out, taken) = escape_within("é😀x", Place::Code, 3);
        assert_eq!((out.as_str(), taken), ("é😀", 2));
    }

    #[test]
    fn fit_cuts_at_safe_points_and_closes_code_blocks() {
        assert_eq!(fit("short", 10), "short");
        let text = format!("```\n{}\n```", "😀".repeat(100));
        let cut = fit(&text, 50);
        assert!(slack_len(&cut) <= 50, "{}", slack_len(&cut));
        assert!(cut.ends_with("…\n```"));
        let mention = format!("{}<@U123456789>", "a".repeat(8));
        assert_eq!(fit(&mention, 16), "aaaaaaaa…");
        let entity = format!("{}&amp;{}", "a".repeat(8), "b".repeat(6));
        assert_eq!(fit(&entity, 16), "aaaaaaaa…");
    }

    #[test]
    fn numbers_and_dates_read_well() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(10_240), "10,240");
        assert_eq!(group_digits(1_234_567), "1,234,567");
        assert_eq!(
            slack_date(1_700_000_000),
            "<!date^1700000000^{date_short_pretty} {time}|2023-11-14 22:13 UTC>"
        );
        assert_eq!(utc_text(951_782_400), "2000-02-29 00:00 UTC");
    }
}
