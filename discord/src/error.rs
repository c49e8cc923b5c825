//! What can go wrong talking to Discord.
//!
//! Callers care about three cases: Discord answered and said no (an unknown channel, a missing
//! permission: [`DiscordError::Refused`] with Discord's JSON error code), Discord kept rate
//! limiting the call after the bounded retries ([`DiscordError::RateLimited`], with how long
//! Discord asked us to wait), or Discord could not be reached at all
//! ([`DiscordError::Unreachable`], worth retrying as it is).
//!
//! Error texts never hold the bot token, a request body or a URL: interaction and webhook
//! routes carry the interaction token (a credential for 15 minutes) in their path, and
//! reqwest's own messages name the URL, so they are stripped here. Texts name the action
//! (`messages.create`, ...) instead.

use std::error::Error as StdError;
use std::time::Duration;

use serenity::http::{DiscordJsonError, HttpError, StatusCode};

/// Discord's JSON error code for an unknown channel (also a deleted thread).
pub const UNKNOWN_CHANNEL: i64 = 10003;
/// Discord's JSON error code for an unknown message.
pub const UNKNOWN_MESSAGE: i64 = 10008;
/// Discord's JSON error code for a user who is not (or no longer) a member of the guild.
pub const UNKNOWN_MEMBER: i64 = 10007;
/// Discord's JSON error code for an interaction that was already acknowledged.
pub const INTERACTION_ALREADY_ACKNOWLEDGED: i64 = 40060;
/// Discord's JSON error code for a missing permission.
pub const MISSING_PERMISSIONS: i64 = 50013;
/// Discord's JSON error code when a message already has a thread.
pub const THREAD_ALREADY_CREATED: i64 = 160004;

/// Why a Discord call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscordError {
    /// Discord answered with an error status and its JSON error body.
    #[error("Discord refused {action}: {message} (error {code}, HTTP {status})")]
    Refused {
        /// What we asked (`messages.create`, `members.get`, ...).
        action: &'static str,
        /// The HTTP status (400, 403, 404, ...).
        status: u16,
        /// Discord's JSON error code (`10003` unknown channel, `50013` missing permissions,
        /// ...); 0 when the body held none (0 is also Discord's "general error").
        code: i64,
        /// Discord's message, with its per-field explanations in parentheses.
        message: String,
    },
    /// Discord answered 429 on every try, or asked for a longer wait than we allow (see
    /// [`DiscordApiBuilder::max_retry_wait`](crate::DiscordApiBuilder::max_retry_wait)).
    #[error("Discord rate limited {action}: retry after {} ms{}", retry_after.as_millis(), if *global { " (global limit)" } else { "" })]
    RateLimited {
        /// What we asked.
        action: &'static str,
        /// How long Discord asked us to wait (its `retry_after`, else `Retry-After`).
        retry_after: Duration,
        /// Whether the limit was the bot's global one rather than the route's.
        global: bool,
    },
    /// Discord could not be reached, did not answer in time, or what answered was not
    /// Discord's API (a 5xx without a JSON error, a body that does not parse). Worth retrying;
    /// note that a timed-out call may have taken effect.
    #[error("could not reach Discord for {action}: {reason}")]
    Unreachable {
        /// What we asked.
        action: &'static str,
        /// What went wrong, without URLs or credentials.
        reason: String,
    },
    /// The client could not be built (an empty token, a base URL that is not http(s)) or an
    /// argument was unusable (an id that is not a snowflake, an empty emoji).
    #[error("Discord client misconfigured: {0}")]
    Config(String),
}

impl DiscordError {
    /// Discord's JSON error code, when Discord refused.
    pub fn code(&self) -> Option<i64> {
        match self {
            DiscordError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when trying the same call again later may work: Discord was unreachable, rate
    /// limited the call, or failed on its side (5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            DiscordError::Unreachable { .. } | DiscordError::RateLimited { .. } => true,
            DiscordError::Refused { status, .. } => *status >= 500,
            DiscordError::Config(_) => false,
        }
    }

    /// An error status with its body: Discord's JSON error when the body is one, else
    /// "unreachable" for a 5xx (a proxy's HTML page) and a refusal without a code for a 4xx.
    pub(crate) fn from_status(action: &'static str, status: StatusCode, body: &[u8]) -> Self {
        match serde_json::from_slice::<DiscordJsonError>(body) {
            Ok(error) => DiscordError::Refused {
                action,
                status: status.as_u16(),
                code: error.code as i64,
                message: explained(&error),
            },
            Err(_) if status.is_server_error() => DiscordError::Unreachable {
                action,
                reason: format!("Discord answered HTTP {}", status.as_u16()),
            },
            Err(_) => DiscordError::Refused {
                action,
                status: status.as_u16(),
                code: 0,
                message: format!(
                    "{} without a Discord error body",
                    status.canonical_reason().unwrap_or("an error status")
                ),
            },
        }
    }

    /// A failure inside serenity (building the request, its rate limiter, sending it).
    pub(crate) fn from_serenity(action: &'static str, error: serenity::Error) -> Self {
        match error {
            serenity::Error::Http(http) => match http {
                HttpError::Request(error) => DiscordError::from_reqwest(action, error),
                HttpError::Url(_) | HttpError::InvalidScheme | HttpError::InvalidPort => {
                    DiscordError::Config("the Discord base URL does not make a valid URL".into())
                }
                HttpError::InvalidHeader(_) => {
                    DiscordError::Config("the bot token is not a valid header value".into())
                }
                HttpError::RateLimitI64F64 | HttpError::RateLimitUtf8 => {
                    DiscordError::Unreachable {
                        action,
                        reason: "Discord sent rate-limit headers that do not parse".into(),
                    }
                }
                // Not returned by the calls we make (`Ratelimiter::perform`,
                // `Request::build`); kept general, without serenity's text (which for an
                // unsuccessful request would be Discord's message, already handled above).
                other => DiscordError::Unreachable {
                    action,
                    reason: match other.status_code() {
                        Some(status) => format!("Discord answered HTTP {}", status.as_u16()),
                        None => "serenity's HTTP client failed".into(),
                    },
                },
            },
            _ => DiscordError::Unreachable {
                action,
                reason: "serenity's HTTP client failed".into(),
            },
        }
    }

    /// A failure sending the request or reading the answer. reqwest names the URL in its
    /// message; it is removed (an interaction token may be in the path).
    pub(crate) fn from_reqwest(action: &'static str, error: reqwest::Error) -> Self {
        let error = error.without_url();
        DiscordError::Unreachable {
            action,
            reason: cause_chain(&error),
        }
    }

    /// No answer within the request timeout.
    pub(crate) fn timed_out(action: &'static str, timeout: Duration) -> Self {
        DiscordError::Unreachable {
            action,
            reason: format!("no answer within {} ms", timeout.as_millis()),
        }
    }

    /// An answer whose body is not what Discord sends for this call.
    pub(crate) fn unexpected(action: &'static str, error: &serde_json::Error) -> Self {
        DiscordError::Unreachable {
            action,
            reason: format!("unexpected answer: {error}"),
        }
    }
}

/// Discord's message with its per-field explanations, as serenity shows them:
/// `Invalid Form Body (content: Must be 2000 or fewer in length.)`.
fn explained(error: &DiscordJsonError) -> String {
    if error.errors.is_empty() {
        return error.message.clone();
    }
    let details: Vec<String> = error
        .errors
        .iter()
        .map(|detail| format!("{}: {}", detail.path, detail.message))
        .collect();
    format!("{} ({})", error.message, details.join(", "))
}

/// An error and its causes, `outer: inner: innermost` (reqwest's own message is only "error
/// sending request"; the causes say "Connection refused").
fn cause_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_discord_json_error_keeps_its_code_and_explanations() {
        let body = br#"{"message":"Invalid Form Body","code":50035,
            "errors":{"content":{"_errors":[{"code":"BASE_TYPE_MAX_LENGTH","message":"Must be 2000 or fewer in length."}]}}}"#;
        let error = DiscordError::from_status("messages.create", StatusCode::BAD_REQUEST, body);
        assert_eq!(error.code(), Some(50035));
        assert_eq!(
            error.to_string(),
            "Discord refused messages.create: Invalid Form Body (content: Must be 2000 or fewer in length.) (error 50035, HTTP 400)"
        );
        assert!(!error.is_retryable());
    }

    #[test]
    fn a_body_that_is_not_discords_is_unreachable_for_5xx_and_a_plain_refusal_for_4xx() {
        let error = DiscordError::from_status(
            "messages.create",
            StatusCode::BAD_GATEWAY,
            b"<html>bad gateway</html>",
        );
        assert_eq!(
            error,
            DiscordError::Unreachable {
                action: "messages.create",
                reason: "Discord answered HTTP 502".into()
            }
        );
        assert!(error.is_retryable());
        let error = DiscordError::from_status("members.get", StatusCode::NOT_FOUND, b"");
        assert_eq!(error.code(), Some(0));
        assert_eq!(
            error.to_string(),
            "Discord refused members.get: Not Found without a Discord error body (error 0, HTTP 404)"
        );
    }

    #[test]
    fn a_rate_limit_says_how_long_to_wait() {
        let error = DiscordError::RateLimited {
            action: "messages.edit",
            retry_after: Duration::from_millis(1500),
            global: true,
        };
        assert!(error.is_retryable());
        assert_eq!(
            error.to_string(),
            "Discord rate limited messages.edit: retry after 1500 ms (global limit)"
        );
    }
}
