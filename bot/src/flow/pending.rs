//! `/query pending`: what waits for my review, and my own open requests.

use countersign_control::requests::{self, RequestState};
use countersign_shared::summary::truncate_chars;

use super::query::requirements_of;
use super::{Bot, FlowError};
use crate::chat::Origin;

/// Most requests listed per section.
const LIMIT: usize = 20;

/// The list for `origin`'s user.
pub async fn text(bot: &Bot, origin: &Origin) -> Result<String, FlowError> {
    let store = &bot.store;
    let open = requests::list(store, &[RequestState::Pending], None, 500).await?;
    let me = bot.identity(&origin.user).await?;
    let mut mine = Vec::new();
    let mut to_review = Vec::new();
    for request in &open {
        let line = format!(
            "• `{}` on {} by {}: `{}`",
            request.id,
            request.target,
            bot.mention(&origin.platform, &request.requester),
            truncate_chars(&request.sql.replace('\n', " "), 80)
        );
        if request.requester == origin.user {
            mine.push(line);
            continue;
        }
        let Some(requirements) = requirements_of(request.decision.as_ref()) else {
            continue;
        };
        let requester = bot.identity(&request.requester).await?;
        let status =
            bot.policy
                .check_approvals(&requirements, &requester, std::slice::from_ref(&me));
        let counts =
            status.ignored.is_empty() && status.requirements.iter().any(|r| !r.counted.is_empty());
        if !counts {
            continue;
        }
        let approved = requests::active_approvers(store, &request.id).await?;
        if approved.contains(&origin.user) {
            continue;
        }
        let wanted: Vec<String> = requirements.iter().map(|r| r.describe()).collect();
        to_review.push(format!("{line} (needs {})", wanted.join(" and ")));
    }
    let mut out = String::new();
    section(&mut out, "Waiting for your review", &to_review);
    section(&mut out, "Your open requests", &mine);
    if out.is_empty() {
        out = "Nothing waits for your review, and you have no open requests.".into();
    }
    Ok(out.trim_end().to_string())
}

fn section(out: &mut String, title: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    out.push_str(&format!("*{title}* ({}):\n", lines.len()));
    for line in lines.iter().take(LIMIT) {
        out.push_str(line);
        out.push('\n');
    }
    if lines.len() > LIMIT {
        out.push_str(&format!("…and {} more.\n", lines.len() - LIMIT));
    }
}
