//! Discord markdown: escaping user text, mentions, Discord's limits and cutting text safely.
//!
//! Discord reads `*`, `_`, `~`, `` ` ``, `|` and `[...](...)` anywhere, and `>`, `#`, `-`, `+`
//! at the start of a line, as markdown, and `<@id>`, `<@&id>`, `<t:...>` as mentions and
//! timestamps. In user text each is escaped with a backslash, which Discord drops when it
//! shows the text. Inside a code block a backslash shows as typed, so there nothing is escaped;
//! instead a zero-width space splits runs of three or more backticks (so user text cannot close
//! the block) and the `<` of a `<@id>` (so a mention cannot ping even where a client renders
//! it). `@everyone` and `@here` in user text get a word joiner after the `@`. None of this is
//! the only wall: every message also carries `allowed_mentions` that lets only user mentions
//! ping (see [`super::allowed_mentions`]).
//!
//! Lengths are measured in UTF-16 code units, never fewer than the characters Discord counts,
//! and text is only ever cut between characters, never inside a backslash escape or a mention,
//! with an open code block closed.

/// Most characters in a message's `content`.
pub const CONTENT_MAX: usize = 2000;
/// Most characters in an embed's title.
pub const EMBED_TITLE_MAX: usize = 256;
/// Most characters in an embed's description.
pub const EMBED_DESCRIPTION_MAX: usize = 4096;
/// Most fields in one embed.
pub const EMBED_FIELDS_MAX: usize = 25;
/// Most characters in a field's name.
pub const FIELD_NAME_MAX: usize = 256;
/// Most characters in a field's value.
pub const FIELD_VALUE_MAX: usize = 1024;
/// Most characters in an embed's footer text.
pub const FOOTER_MAX: usize = 2048;
/// Most characters in all of an embed's title, description, field names and values and footer
/// together.
pub const EMBED_TOTAL_MAX: usize = 6000;
/// Most characters in a thread's name.
pub const THREAD_NAME_MAX: usize = 100;

/// Zero-width space: splits a run of backticks or a mention inside code.
const ZERO_WIDTH_SPACE: char = '\u{200B}';
/// Word joiner: placed after `@` so `@everyone` in user text stays plain text.
const WORD_JOINER: char = '\u{2060}';
/// Discord's special mentions when written as plain words.
const SPECIAL_MENTIONS: [&str; 2] = ["everyone", "here"];
/// Longest snowflake: 20 digits fit in a `u64`.
const SNOWFLAKE_MAX_DIGITS: usize = 20;

/// The length of `text` as this crate counts it against Discord's limits: UTF-16 code units.
pub fn discord_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Where escaped text goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Inside a ``` code block: backtick runs and `<@id>` are split, nothing else changes.
    Code,
    /// Ordinary text a user wrote: markdown escaped, `@everyone` neutralised, no mentions.
    Prose,
    /// Like [`Place::Prose`], but Discord principals (`discord:123`, `discord-role:456`)
    /// become mentions: for text we compose around user text (requirements, review reasons).
    Mentions,
    /// Text that we wrote, with intended markdown (``` fences, `code`, **bold**) and perhaps
    /// mentions already rendered (`<@1>`, `<@&2>`, `<t:3:R>`), which are kept. Principals
    /// become mentions; any other `<`, `[` and `]` are escaped outside code, mentions are split
    /// inside code, and `@everyone` gets a word joiner everywhere.
    Note,
}

/// Escapes user text for ordinary markdown.
pub fn escape_prose(text: &str) -> String {
    escape_within(text, Place::Prose, usize::MAX).0
}

/// Escapes user text for use inside a ``` code block.
pub fn escape_code(text: &str) -> String {
    escape_within(text, Place::Code, usize::MAX).0
}

/// Text with principals in it (`1 approval from discord-role:456`): escaped as user text,
/// with each Discord principal turned into a mention.
pub fn with_mentions(text: &str) -> String {
    escape_within(text, Place::Mentions, usize::MAX).0
}

/// Escapes `text` for `place`, keeping at most `budget` UTF-16 units of output. Returns the
/// escaped text and how many characters of `text` it holds (all of them unless cut). An
/// escape, a mention or a split backtick is added whole or not at all.
pub(crate) fn escape_within(text: &str, place: Place, budget: usize) -> (String, usize) {
    let chars: Vec<char> = text.chars().collect();
    let runs = backtick_runs(&chars);
    let mut out = String::with_capacity(text.len().min(budget.saturating_mul(4)));
    let mut used = 0usize;
    let mut piece = String::new();
    let mut index = 0;
    let mut line_start = true;
    // Only tracked for `Place::Note`: whether we are inside our own fence or inline code.
    let mut in_fence = false;
    let mut in_inline = false;
    while index < chars.len() {
        piece.clear();
        let c = chars[index];
        let mut taken = 1;
        let in_code = place == Place::Code || in_fence || in_inline;
        let escapes_markdown = matches!(place, Place::Prose | Place::Mentions);
        let makes_mentions = matches!(place, Place::Mentions | Place::Note) && !in_code;
        match c {
            '`' if place == Place::Note => {
                taken = runs[index];
                piece.extend(&chars[index..index + taken]);
                if taken >= 3 {
                    if !in_inline {
                        in_fence = !in_fence;
                    }
                } else if !in_fence {
                    in_inline = !in_inline;
                }
            }
            '`' if place == Place::Code => {
                if runs[index] >= 3 && index > 0 && chars[index - 1] == '`' {
                    piece.push(ZERO_WIDTH_SPACE);
                }
                piece.push('`');
            }
            '<' if in_code => {
                piece.push('<');
                if user_mention_len(&chars[index..]) > 0 {
                    piece.push(ZERO_WIDTH_SPACE);
                }
            }
            '<' if place == Place::Note && rendered_token_len(&chars[index..]) > 0 => {
                taken = rendered_token_len(&chars[index..]);
                piece.extend(&chars[index..index + taken]);
            }
            '<' | '[' | ']' if place == Place::Note && !in_code => {
                piece.push('\\');
                piece.push(c);
            }
            '@' if place != Place::Code && starts_special_mention(&chars[index + 1..]) => {
                piece.push('@');
                piece.push(WORD_JOINER);
            }
            'd' if makes_mentions && at_word_start(&chars, index) => {
                match principal_at(&chars[index..]) {
                    Some((mention, len)) => {
                        taken = len;
                        piece.push_str(&mention);
                    }
                    None => piece.push(c),
                }
            }
            c if escapes_markdown && needs_escape(c, line_start) => {
                piece.push('\\');
                piece.push(c);
            }
            c => piece.push(c),
        }
        let len = discord_len(&piece);
        if used.saturating_add(len) > budget {
            return (out, index);
        }
        used += len;
        out.push_str(&piece);
        for &consumed in &chars[index..index + taken] {
            line_start = match consumed {
                '\n' => true,
                ' ' | '\t' => line_start,
                _ => false,
            };
        }
        index += taken;
    }
    (out, chars.len())
}

/// For each backtick, the length of the run it belongs to (0 for other characters).
fn backtick_runs(chars: &[char]) -> Vec<usize> {
    let mut runs = vec![0usize; chars.len()];
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '`' {
            let start = i;
            while i < chars.len() && chars[i] == '`' {
                i += 1;
            }
            for len in &mut runs[start..i] {
                *len = i - start;
            }
        } else {
            i += 1;
        }
    }
    runs
}

/// Whether `c` is markdown in user text at this point of a line.
fn needs_escape(c: char, line_start: bool) -> bool {
    matches!(c, '\\' | '*' | '_' | '~' | '`' | '|' | '<' | '[' | ']')
        || (line_start && matches!(c, '>' | '#' | '-' | '+'))
}

/// Whether `rest` (what follows an `@`) is `everyone` or `here` as a whole word.
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

/// Whether a principal may start at `index`: the text's start or after a space or opening
/// punctuation.
fn at_word_start(chars: &[char], index: usize) -> bool {
    index == 0 || {
        let before = chars[index - 1];
        before.is_whitespace() || matches!(before, '(' | '[' | '"' | '\'' | ',')
    }
}

/// The number of leading ASCII digits of `text` (at most one more than a snowflake has).
fn digits(text: &[char]) -> usize {
    text.iter()
        .take(SNOWFLAKE_MAX_DIGITS + 1)
        .take_while(|c| c.is_ascii_digit())
        .count()
}

/// Whether `digits` is a snowflake: 1 to 20 digits, not zero.
fn is_snowflake(digits: &str) -> bool {
    !digits.is_empty()
        && digits.len() <= SNOWFLAKE_MAX_DIGITS
        && digits.chars().all(|c| c.is_ascii_digit())
        && digits.parse::<u64>().is_ok_and(|id| id != 0)
}

/// A principal (`discord:123`, `discord-role:456`) at the start of `text`, as a mention, with
/// the number of characters it spans; `None` when `text` does not start with one that ends at
/// a word boundary.
fn principal_at(text: &[char]) -> Option<(String, usize)> {
    let starts = |prefix: &str| {
        text.len() >= prefix.len() && text.iter().zip(prefix.chars()).all(|(a, b)| *a == b)
    };
    let (prefix, sigil) = if starts("discord-role:") {
        ("discord-role:", "@&")
    } else if starts("discord:") {
        ("discord:", "@")
    } else {
        return None;
    };
    let start = prefix.len();
    let count = digits(&text[start..]);
    let id: String = text[start..start + count].iter().collect();
    let end = start + count;
    let at_boundary = text.get(end).is_none_or(|next| {
        next.is_whitespace()
            || matches!(
                next,
                ')' | ']' | ',' | '.' | ';' | ':' | '!' | '?' | '"' | '\''
            )
    });
    (is_snowflake(&id) && at_boundary).then(|| (format!("<{sigil}{id}>"), end))
}

/// The length of a user mention (`<@1>`, `<@!1>`, `<@&1>` for roles) at the start of `text`,
/// or 0.
fn user_mention_len(text: &[char]) -> usize {
    if text.len() < 2 || text[0] != '<' || text[1] != '@' {
        return 0;
    }
    let mut at = 2;
    if matches!(text.get(at), Some('!' | '&')) {
        at += 1;
    }
    let count = digits(&text[at..]);
    let id: String = text[at..at + count].iter().collect();
    match text.get(at + count) {
        Some('>') if is_snowflake(&id) => at + count + 1,
        _ => 0,
    }
}

/// The length of a mention or timestamp as we render them (`<@1>`, `<@&2>`, `<t:1700000000:R>`)
/// at the start of `text`, or 0. Our own texts arrive with these already rendered; nothing
/// else in angle brackets (`<#channel>`, `<https://...>`, `<:emoji:1>`) passes.
fn rendered_token_len(text: &[char]) -> usize {
    let mention = user_mention_len(text);
    if mention > 0 {
        return mention;
    }
    if text.len() < 3 || text[..3] != ['<', 't', ':'] {
        return 0;
    }
    let count = digits(&text[3..]);
    if count == 0 || count > SNOWFLAKE_MAX_DIGITS {
        return 0;
    }
    let mut at = 3 + count;
    if text.get(at) == Some(&':') && text.get(at + 1).is_some_and(|s| "tTdDfFR".contains(*s)) {
        at += 2;
    }
    match text.get(at) {
        Some('>') => at + 1,
        _ => 0,
    }
}

/// A principal as Discord shows it: `discord:123` → `<@123>`, `discord-role:456` → `<@&456>`,
/// anything else (`service:nightly-report`, `slack:U1`, `discord:not-a-number`) as escaped
/// plain text.
pub fn mention(principal: &str) -> String {
    let chars: Vec<char> = principal.chars().collect();
    match principal_at(&chars) {
        Some((mention, len)) if len == chars.len() => mention,
        _ => escape_prose(principal),
    }
}

/// Cuts built markdown to at most `max` UTF-16 units, ending with `…` when cut. The cut never
/// splits a character, a backslash escape or a `<...>` mention or timestamp, and an open ```
/// block is closed.
pub fn fit(text: &str, max: usize) -> String {
    if discord_len(text) <= max {
        return text.to_string();
    }
    // Room for "…" and a closing "\n```".
    let budget = max.saturating_sub(5);
    let mut used = 0usize;
    let mut cut = 0usize;
    let mut escaping = false;
    let mut in_token = false;
    let mut chars = text.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        let len = c.len_utf16();
        if used + len > budget {
            break;
        }
        used += len;
        let next = chars.peek().map(|(_, next)| *next);
        if escaping {
            escaping = false;
        } else if c == '\\' {
            escaping = true;
        } else if c == '<' && matches!(next, Some('@' | 't' | '#' | ':' | 'a')) {
            in_token = true;
        } else if in_token && (c == '>' || c.is_whitespace()) {
            in_token = false;
        }
        if !escaping && !in_token {
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

/// Plain text (an embed footer, a thread name: places where Discord shows markdown as typed)
/// cut to `max` UTF-16 units, ending with `…` when cut.
pub fn fit_plain(text: &str, max: usize) -> String {
    if discord_len(text) <= max {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0usize;
    for c in text.chars() {
        if used + c.len_utf16() > max.saturating_sub(1) {
            break;
        }
        used += c.len_utf16();
        out.push(c);
    }
    out.push('…');
    out
}

pub use countersign_shared::summary::group_digits;

/// A Discord timestamp every reader sees in their own time zone, relative: `<t:1700000000:R>`
/// ("in 2 hours").
pub fn relative_time(unix_seconds: u64) -> String {
    format!("<t:{unix_seconds}:R>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_cannot_ping_link_or_format() {
        let text = "hi @everyone @Here <@1234> <@&5678> [click](https://evil) **b** __u__ ~~s~~ ||spoil|| @hereby";
        let escaped = escape_prose(text);
        assert!(escaped.contains("@\u{2060}everyone"));
        assert!(escaped.contains("@\u{2060}Here"));
        assert!(escaped.contains("@hereby"), "only whole words: {escaped}");
        assert!(escaped.contains("\\<@1234>"));
        assert!(escaped.contains("\\<@&5678>"));
        assert!(escaped.contains("\\[click\\](https://evil)"));
        assert!(escaped.contains("\\*\\*b\\*\\* \\_\\_u\\_\\_ \\~\\~s\\~\\~ \\|\\|spoil\\|\\|"));
        assert_eq!(escape_prose("a\\b"), "a\\\\b");
    }

    #[test]
    fn block_markdown_is_escaped_only_at_the_start_of_a_line() {
        assert_eq!(
            escape_prose("# title\n  > quote\n- item\n-# small\n+ x"),
            "\\# title\n  \\> quote\n\\- item\n\\-# small\n\\+ x"
        );
        assert_eq!(escape_prose("orders-prod #1 a > b"), "orders-prod #1 a > b");
    }

    #[test]
    fn backtick_runs_and_mentions_cannot_escape_a_code_block() {
        let escaped = escape_code("SELECT 1 ```\n<@123>``` `a``b` ```` tags <@ ARRAY[1]");
        assert!(!escaped.contains("```"), "{escaped}");
        assert!(
            escaped.contains("`a``b`"),
            "short runs are left alone: {escaped}"
        );
        assert!(escaped.contains("<\u{200B}@123>"));
        assert!(
            escaped.contains("tags <@ ARRAY[1]"),
            "PostgreSQL's <@ is not a mention: {escaped}"
        );
        assert_eq!(escape_code("a < b AND c > d -- x"), "a < b AND c > d -- x");
    }

    #[test]
    fn principals_become_mentions_and_nothing_else_does() {
        assert_eq!(mention("discord:80351110224678912"), "<@80351110224678912>");
        assert_eq!(mention("discord-role:456"), "<@&456>");
        assert_eq!(mention("service:nightly-report"), "service:nightly-report");
        assert_eq!(mention("slack:U1"), "slack:U1");
        assert_eq!(mention("discord:0"), "discord:0");
        assert_eq!(mention("discord:12a"), "discord:12a");
        assert_eq!(
            mention("discord:123456789012345678901"),
            "discord:123456789012345678901"
        );
        assert_eq!(mention("discord:1><@&2"), "discord:1>\\<@&2");
        assert_eq!(
            with_mentions("2 approvals from discord-role:456 (or discord:789), not *x*"),
            "2 approvals from <@&456> (or <@789>), not \\*x\\*"
        );
        assert_eq!(
            with_mentions("say discord:1x or adiscord:2"),
            "say discord:1x or adiscord:2"
        );
    }

    #[test]
    fn notes_keep_our_markdown_and_rendered_mentions_only() {
        let (note, _) = escape_within(
            "Approved by discord:1 and <@2>, ask <@&3> <t:1700000000:R>. <#4> <https://x> [a](b) @everyone\n```\nERROR <@5> discord:6 [x]\n```\n`<@7>` **done**",
            Place::Note,
            usize::MAX,
        );
        assert_eq!(
            note,
            "Approved by <@1> and <@2>, ask <@&3> <t:1700000000:R>. \\<#4> \\<https://x> \\[a\\](b) @\u{2060}everyone\n```\nERROR <\u{200B}@5> discord:6 [x]\n```\n`<\u{200B}@7>` **done**"
        );
    }

    #[test]
    fn escaping_within_a_budget_never_splits_a_character_or_an_escape() {
        let (out, taken) = escape_within("ab*cd", Place::Prose, 3);
        assert_eq!((out.as_str(), taken), ("ab", 2));
        let (out, taken) = escape_within("é😀x", Place::Code, 2);
        assert_eq!((out.as_str(), taken), ("é", 1));
        let (out, taken) = escape_within("é😀x", Place::Code, 3);
        assert_eq!((out.as_str(), taken), ("é😀", 2));
        let (out, taken) = escape_within("a discord:123456 b", Place::Mentions, 5);
        assert_eq!((out.as_str(), taken), ("a ", 2));
    }

    #[test]
    fn fit_cuts_at_safe_points_and_closes_code_blocks() {
        assert_eq!(fit("short", 10), "short");
        let text = format!("```\n{}\n```", "😀".repeat(100));
        let cut = fit(&text, 50);
        assert!(discord_len(&cut) <= 50, "{}", discord_len(&cut));
        assert!(cut.ends_with("…\n```"));
        assert_eq!(
            fit(&format!("{}<@123456789>", "a".repeat(8)), 16),
            "aaaaaaaa…"
        );
        let escaped = format!("{}\\*{}", "a".repeat(9), "b".repeat(10));
        assert_eq!(fit(&escaped, 15), "aaaaaaaaa…", "never between \\ and *");
        assert_eq!(fit(&escaped, 16), "aaaaaaaaa\\*…");
        assert_eq!(fit_plain("abcdef", 4), "abc…");
        assert_eq!(fit_plain("é😀é😀", 4), "é😀…");
    }

    #[test]
    fn numbers_and_times_read_well() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(10_240), "10,240");
        assert_eq!(group_digits(1_234_567), "1,234,567");
        assert_eq!(relative_time(1_700_000_000), "<t:1700000000:R>");
    }
}
