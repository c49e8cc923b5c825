//! `/query help`: how to use the command, the targets and the reactions.

use super::Bot;
use crate::command::USAGE;

/// The help text.
pub fn text(bot: &Bot) -> String {
    let targets: Vec<String> = bot
        .policy
        .targets()
        .iter()
        .map(|t| format!("`{}` ({})", t.name, t.driver.as_str()))
        .collect();
    let approve = bot
        .config
        .approve_reactions
        .first()
        .map_or("white_check_mark", String::as_str);
    let reject = bot
        .config
        .reject_reactions
        .first()
        .map_or("x", String::as_str);
    format!(
        "{USAGE}\n\
         • `/query prod SELECT count(*) FROM orders` runs a read the policy allows at once; the result appears in a thread.\n\
         • Writes, DDL and sensitive tables may need approval: the request is posted with a thread, and reviewers react with :{approve}: to approve or :{reject}: to reject. Your own approval never counts.\n\
         • `--reason \"ticket 123\"` before the SQL tells reviewers why.\n\
         • `/query pending` lists what waits for your review and your open requests; `/query cancel <id>` withdraws one of yours.\n\
         Targets: {}.",
        targets.join(", ")
    )
}
