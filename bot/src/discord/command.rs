//! The `/query` application command on Discord.
//!
//! Discord does not let a command mix subcommands with plain options, so every form is a
//! subcommand: `/query run sql:<sql> [target:<target>] [reason:<reason>]`, `/query cancel
//! id:<id>`, `/query pending`, `/query help`. The options become the same text the shared
//! parser reads after `/query` on Slack, so both platforms behave the same.

use serenity::all::{CommandDataOption, CommandDataOptionValue, CommandOptionType};
use serenity::builder::{CreateCommand, CreateCommandOption};

/// The command's name.
pub const NAME: &str = "query";

/// The command's definition, registered in each configured guild.
pub fn definition() -> CreateCommand {
    let text = |name: &str, description: &str, required: bool| {
        CreateCommandOption::new(CommandOptionType::String, name, description).required(required)
    };
    CreateCommand::new(NAME)
        .description("Run SQL against a database, with approval when the policy asks for it")
        .add_option(
            CreateCommandOption::new(
                CommandOptionType::SubCommand,
                "run",
                "Run SQL (or ask for approval to)",
            )
            .add_sub_option(text("sql", "The SQL to run", true))
            .add_sub_option(text(
                "target",
                "The database, as the policy names it",
                false,
            ))
            .add_sub_option(text("reason", "Why: shown to reviewers", false)),
        )
        .add_option(
            CreateCommandOption::new(
                CommandOptionType::SubCommand,
                "cancel",
                "Cancel one of your pending requests",
            )
            .add_sub_option(text("id", "The request's id", true)),
        )
        .add_option(CreateCommandOption::new(
            CommandOptionType::SubCommand,
            "pending",
            "What waits for your review, and your open requests",
        ))
        .add_option(CreateCommandOption::new(
            CommandOptionType::SubCommand,
            "help",
            "How to use /query",
        ))
}

/// The text after `/query` that the options mean. Unknown shapes become `help`, which answers
/// with the usage.
pub fn text_of(options: &[CommandDataOption]) -> String {
    let Some(first) = options.first() else {
        return "help".into();
    };
    let CommandDataOptionValue::SubCommand(values) = &first.value else {
        return "help".into();
    };
    let get = |name: &str| {
        values
            .iter()
            .find(|o| o.name == name)
            .and_then(|o| o.value.as_str())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    match first.name.as_str() {
        "run" => {
            let mut text = String::new();
            if let Some(target) = get("target") {
                text.push_str(target);
                text.push(' ');
            }
            if let Some(reason) = get("reason") {
                text.push_str("--reason ");
                text.push_str(&quote(reason));
                text.push(' ');
            }
            text.push_str(get("sql").unwrap_or_default());
            text
        }
        "cancel" => format!("cancel {}", get("id").unwrap_or_default()),
        "pending" => "pending".into(),
        _ => "help".into(),
    }
}

/// Quotes a reason for the shared parser with a quote character it does not contain (its
/// quotes are dropped if it holds every kind).
fn quote(reason: &str) -> String {
    for (open, close) in [('"', '"'), ('\'', '\''), ('\u{201C}', '\u{201D}')] {
        if !reason.contains(open) && !reason.contains(close) {
            return format!("{open}{reason}{close}");
        }
    }
    let plain: String = reason
        .chars()
        .filter(|c| !matches!(c, '"' | '\'' | '\u{201C}' | '\u{201D}'))
        .collect();
    format!("\"{plain}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{parse, Command};

    fn run(sql: &str, target: Option<&str>, reason: Option<&str>) -> Vec<CommandDataOption> {
        let mut options = vec![serde_json::json!({"name": "sql", "type": 3, "value": sql})];
        if let Some(target) = target {
            options.push(serde_json::json!({"name": "target", "type": 3, "value": target}));
        }
        if let Some(reason) = reason {
            options.push(serde_json::json!({"name": "reason", "type": 3, "value": reason}));
        }
        serde_json::from_value(serde_json::json!([{"name": "run", "type": 1, "options": options}]))
            .expect("options")
    }

    #[test]
    fn run_options_read_like_the_slack_text() {
        let text = text_of(&run("DELETE FROM t", Some("prod"), Some("ticket \"42\"")));
        assert_eq!(
            parse(&text, &["prod"], None),
            Ok(Command::Query {
                target: "prod".into(),
                sql: "DELETE FROM t".into(),
                reason: Some("ticket \"42\"".into()),
            })
        );
        let text = text_of(&run("SELECT 1", None, None));
        assert_eq!(
            parse(&text, &["prod"], Some("prod")),
            Ok(Command::Query {
                target: "prod".into(),
                sql: "SELECT 1".into(),
                reason: None,
            })
        );
    }

    #[test]
    fn the_other_forms_read_as_their_words() {
        let cancel: Vec<CommandDataOption> = serde_json::from_value(serde_json::json!([
            {"name": "cancel", "type": 1, "options": [{"name": "id", "type": 3, "value": "qabc"}]}
        ]))
        .expect("options");
        assert_eq!(text_of(&cancel), "cancel qabc");
        let pending: Vec<CommandDataOption> = serde_json::from_value(
            serde_json::json!([{"name": "pending", "type": 1, "options": []}]),
        )
        .expect("options");
        assert_eq!(text_of(&pending), "pending");
        assert_eq!(text_of(&[]), "help");
    }
}
