//! Parsing what people type after `/query`, the same for every chat adapter.
//!
//! ```text
//! /query [target] [--reason "why"] <sql>
//! /query cancel <request id>
//! /query pending
//! /query help
//! ```
//!
//! The target may be left out where the channel or the policy names a default. Options come
//! before the SQL; once the SQL starts, everything to the end is SQL (so `--reason` inside a
//! SQL comment stays SQL). SQL pasted in a Slack or Discord code block (```` ```sql ... ``` ````
//! or `` `...` ``) is taken out of it. `cancel`, `pending` and `help` are reserved words: a
//! target cannot be named after them.

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run SQL on a target (or ask to).
    Query {
        /// The target's name in the policy.
        target: String,
        /// The SQL exactly as it will be classified, approved and run.
        sql: String,
        /// The justification shown to reviewers.
        reason: Option<String>,
    },
    /// Cancel one of my pending requests.
    Cancel {
        /// The request's id.
        request_id: String,
    },
    /// What waits for my review, and my own open requests.
    Pending,
    /// How to use the command.
    Help,
}

/// Why a command could not be read. `Display` is the message shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Nothing after `/query`.
    #[error("Nothing to run. {USAGE}")]
    Empty,
    /// No SQL after the target and options.
    #[error("No SQL after `{0}`. {USAGE}")]
    NoSql(String),
    /// The first word is not a target and there is no default target here.
    #[error("`{word}` is not a target, and this channel has no default target. Targets: {known}. {USAGE}")]
    UnknownTarget {
        /// What was typed.
        word: String,
        /// The policy's targets, comma-separated.
        known: String,
    },
    /// `cancel` without an id.
    #[error("Say which request to cancel: `/query cancel <request id>`.")]
    CancelWithoutId,
    /// An option this command does not know.
    #[error("Unknown option `{0}`: the only option is `--reason \"...\"`, before the SQL.")]
    UnknownOption(String),
    /// `--reason` without text, or with an unclosed quote.
    #[error("`--reason` needs a text: `--reason \"why this is needed\"`.")]
    BadReason,
}

/// The one-line usage, appended to errors.
pub const USAGE: &str =
    "Usage: `/query [target] [--reason \"why\"] <sql>`, `/query cancel <id>`, `/query pending`, `/query help`.";

/// Parses the text after `/query`. `targets` are the policy's target names; `default_target`
/// is the target of the channel (or the policy's default), if any.
pub fn parse(
    text: &str,
    targets: &[&str],
    default_target: Option<&str>,
) -> Result<Command, CommandError> {
    let text = text.trim();
    let (first, rest) = split_word(text);
    match first.to_ascii_lowercase().as_str() {
        "" => return Err(CommandError::Empty),
        "help" if rest.is_empty() => return Ok(Command::Help),
        "pending" if rest.is_empty() => return Ok(Command::Pending),
        "cancel" => {
            let (id, extra) = split_word(rest);
            return if id.is_empty() || !extra.is_empty() {
                Err(CommandError::CancelWithoutId)
            } else {
                Ok(Command::Cancel {
                    request_id: id.to_string(),
                })
            };
        }
        _ => {}
    }
    let mut rest = text;
    let mut target = None;
    let mut reason = None;
    loop {
        let (word, after) = split_word(rest);
        if word.starts_with("--") {
            let (value, after) = parse_option(word, after)?;
            reason = Some(value);
            rest = after;
            continue;
        }
        if target.is_none() {
            if let Some(name) = targets.iter().find(|t| t.eq_ignore_ascii_case(word)) {
                target = Some((*name).to_string());
                rest = after;
                continue;
            }
        }
        break;
    }
    let target = match (target, default_target) {
        (Some(target), _) => target,
        (None, Some(default)) => default.to_string(),
        (None, None) => {
            let (word, _) = split_word(rest);
            return Err(CommandError::UnknownTarget {
                word: word.to_string(),
                known: targets.join(", "),
            });
        }
    };
    let sql = unfence(rest).trim().to_string();
    if sql.is_empty() {
        return Err(CommandError::NoSql(text.to_string()));
    }
    Ok(Command::Query {
        target,
        sql,
        reason,
    })
}

/// The first whitespace-separated word and the rest (trimmed at its start).
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], text[end..].trim_start()),
        None => (text, ""),
    }
}

/// Reads `--reason "..."`, `--reason '...'`, `--reason=word` or `--reason word`.
fn parse_option<'a>(word: &str, after: &'a str) -> Result<(String, &'a str), CommandError> {
    let (name, inline) = match word.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (word, None),
    };
    if !name.eq_ignore_ascii_case("--reason") {
        return Err(CommandError::UnknownOption(name.to_string()));
    }
    if let Some(value) = inline {
        for (open, close) in QUOTES {
            if let Some(inner) = value.strip_prefix(open) {
                // `--reason="one word"` closes in this word; `--reason="two words"` after it.
                if let Some(end) = inner.find(close) {
                    return non_empty(&inner[..end]).map(|reason| (reason, after));
                }
                let end = after.find(close).ok_or(CommandError::BadReason)?;
                let reason = format!("{inner} {}", &after[..end]);
                return non_empty(&reason).map(|reason| (reason, &after[end + close.len_utf8()..]));
            }
        }
        return if value.is_empty() {
            Err(CommandError::BadReason)
        } else {
            Ok((value.to_string(), after))
        };
    }
    let after = after.trim_start();
    for (open, close) in QUOTES {
        if let Some(inner) = after.strip_prefix(open) {
            let end = inner.find(close).ok_or(CommandError::BadReason)?;
            return non_empty(&inner[..end])
                .map(|reason| (reason, &inner[end + close.len_utf8()..]));
        }
    }
    let (value, rest) = split_word(after);
    if value.is_empty() {
        return Err(CommandError::BadReason);
    }
    Ok((value.to_string(), rest))
}

/// The quotes a reason may be written in (chat clients turn `"` into `“”`).
const QUOTES: [(char, char); 3] = [('"', '"'), ('\'', '\''), ('“', '”')];

fn non_empty(text: &str) -> Result<String, CommandError> {
    let text = text.trim();
    if text.is_empty() {
        Err(CommandError::BadReason)
    } else {
        Ok(text.to_string())
    }
}

/// Takes SQL out of a code block: ```` ```sql\n...\n``` ```` or `` `...` ``.
fn unfence(text: &str) -> &str {
    let text = text.trim();
    if let Some(inner) = text
        .strip_prefix("```")
        .and_then(|inner| inner.strip_suffix("```"))
    {
        // A language tag on the opening line (```sql) is not SQL.
        return match inner.split_once('\n') {
            Some((first, body)) if !first.trim().contains(' ') => body,
            _ => inner,
        };
    }
    if let Some(inner) = text
        .strip_prefix('`')
        .and_then(|inner| inner.strip_suffix('`'))
    {
        if !inner.contains('`') {
            return inner;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGETS: &[&str] = &["prod", "analytics"];

    fn query(target: &str, sql: &str, reason: Option<&str>) -> Command {
        Command::Query {
            target: target.into(),
            sql: sql.into(),
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn a_target_and_sql_parse_and_the_sql_is_kept_exactly() {
        assert_eq!(
            parse("prod DELETE FROM orders WHERE id = 42", TARGETS, None),
            Ok(query("prod", "DELETE FROM orders WHERE id = 42", None))
        );
        assert_eq!(
            parse("PROD select  1\n  from t", TARGETS, None),
            Ok(query("prod", "select  1\n  from t", None))
        );
    }

    #[test]
    fn the_target_may_be_left_out_where_there_is_a_default() {
        assert_eq!(
            parse("SELECT 1", TARGETS, Some("analytics")),
            Ok(query("analytics", "SELECT 1", None))
        );
        assert_eq!(
            parse("SELECT 1", TARGETS, None),
            Err(CommandError::UnknownTarget {
                word: "SELECT".into(),
                known: "prod, analytics".into()
            })
        );
    }

    #[test]
    fn a_reason_is_read_before_the_sql_in_any_quoting() {
        let expected = query("prod", "DELETE FROM t WHERE id = 1", Some("ticket 12"));
        for text in [
            "prod --reason \"ticket 12\" DELETE FROM t WHERE id = 1",
            "--reason 'ticket 12' prod DELETE FROM t WHERE id = 1",
            "prod --reason “ticket 12” DELETE FROM t WHERE id = 1",
        ] {
            assert_eq!(parse(text, TARGETS, None), Ok(expected.clone()), "{text}");
        }
        assert_eq!(
            parse("prod --reason=cleanup DELETE FROM t", TARGETS, None),
            Ok(query("prod", "DELETE FROM t", Some("cleanup")))
        );
        assert_eq!(
            parse("prod --reason=\"ticket 12\" DELETE FROM t", TARGETS, None),
            Ok(query("prod", "DELETE FROM t", Some("ticket 12")))
        );
    }

    #[test]
    fn options_after_the_sql_starts_are_sql() {
        assert_eq!(
            parse("prod SELECT 1 -- --reason x", TARGETS, None),
            Ok(query("prod", "SELECT 1 -- --reason x", None))
        );
    }

    #[test]
    fn bad_options_and_missing_parts_say_what_to_type() {
        assert_eq!(parse("  ", TARGETS, None), Err(CommandError::Empty));
        assert_eq!(
            parse("prod --reason \"unclosed DELETE", TARGETS, None),
            Err(CommandError::BadReason)
        );
        assert_eq!(
            parse("prod --force DELETE FROM t", TARGETS, None),
            Err(CommandError::UnknownOption("--force".into()))
        );
        assert!(matches!(
            parse("prod", TARGETS, None),
            Err(CommandError::NoSql(_))
        ));
        assert_eq!(
            parse("cancel", TARGETS, None),
            Err(CommandError::CancelWithoutId)
        );
        let message = parse("prod --force x", TARGETS, None)
            .expect_err("unknown option")
            .to_string();
        assert!(message.contains("--reason"), "{message}");
    }

    #[test]
    fn the_other_commands_parse() {
        assert_eq!(parse("help", TARGETS, None), Ok(Command::Help));
        assert_eq!(parse("PENDING", TARGETS, None), Ok(Command::Pending));
        assert_eq!(
            parse("cancel req_1a2b", TARGETS, None),
            Ok(Command::Cancel {
                request_id: "req_1a2b".into()
            })
        );
    }

    #[test]
    fn sql_in_a_code_block_is_taken_out_of_it() {
        assert_eq!(
            parse("prod ```sql\nSELECT 1\n```", TARGETS, None),
            Ok(query("prod", "SELECT 1", None))
        );
        assert_eq!(
            parse("prod `SELECT 1`", TARGETS, None),
            Ok(query("prod", "SELECT 1", None))
        );
        assert_eq!(
            parse("prod ```SELECT 1```", TARGETS, None),
            Ok(query("prod", "SELECT 1", None))
        );
    }
}
