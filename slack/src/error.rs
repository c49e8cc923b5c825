//! What can go wrong talking to Slack.
//!
//! Callers care about one distinction: Slack answered and said no (a bad channel, a missing
//! scope, a rate limit), or Slack could not be reached at all (worth retrying as it is). Error
//! texts never hold the token, the request body or a `response_url` (which is a credential of
//! its own); they name the Web API method and Slack's error code.

use std::error::Error as StdError;
use std::time::Duration;

use slack_morphism::errors::SlackClientError;

/// Why a Slack call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    /// Slack answered and refused: `code` is Slack's error code (`channel_not_found`,
    /// `not_in_channel`, `missing_scope`, `ratelimited`, ...).
    #[error("Slack refused {method}: {code}")]
    Refused {
        /// The Web API method (`chat.postMessage`, ...).
        method: &'static str,
        /// Slack's error code, as Slack spells it.
        code: String,
        /// For `ratelimited`: how long Slack asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// Slack could not be reached, or what answered was not Slack's API (an HTTP error status,
    /// a body that does not parse). Worth retrying later.
    #[error("could not reach Slack for {method}: {reason}")]
    Unreachable {
        /// The Web API method (`chat.postMessage`, ...).
        method: &'static str,
        /// What went wrong, without URLs or credentials.
        reason: String,
    },
    /// The client could not be built (a bad API URL, no TLS roots) or an argument was unusable
    /// (a `response_url` that is not a URL).
    #[error("Slack client misconfigured: {0}")]
    Config(String),
}

/// The error code Slack uses for rate limiting.
pub const RATE_LIMITED: &str = "ratelimited";

impl SlackError {
    /// Slack's error code, when Slack refused.
    pub fn code(&self) -> Option<&str> {
        match self {
            SlackError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True when trying the same call again later may work: Slack was unreachable or rate
    /// limited the call.
    pub fn is_retryable(&self) -> bool {
        match self {
            SlackError::Unreachable { .. } => true,
            SlackError::Refused { code, .. } => code == RATE_LIMITED,
            SlackError::Config(_) => false,
        }
    }

    /// Maps slack-morphism's error for `method`. slack-morphism's own messages include the
    /// response body, which we leave out.
    pub(crate) fn from_client(method: &'static str, error: SlackClientError) -> SlackError {
        match error {
            SlackClientError::ApiError(api) => SlackError::Refused {
                method,
                code: api.code,
                retry_after: None,
            },
            SlackClientError::RateLimitError(limit) => SlackError::Refused {
                method,
                code: limit.code.unwrap_or_else(|| RATE_LIMITED.to_string()),
                retry_after: limit.retry_after,
            },
            SlackClientError::HttpError(http) => SlackError::Unreachable {
                method,
                reason: format!("Slack answered HTTP {}", http.status_code),
            },
            SlackClientError::ProtocolError(protocol) => SlackError::Unreachable {
                method,
                reason: format!("unexpected answer: {}", protocol.json_error),
            },
            SlackClientError::HttpProtocolError(protocol) => SlackError::Unreachable {
                method,
                reason: match &protocol.cause {
                    Some(cause) => cause_chain(cause.as_ref()),
                    None => "HTTP protocol error".to_string(),
                },
            },
            SlackClientError::SystemError(system) => SlackError::Unreachable {
                method,
                reason: match (&system.message, &system.cause) {
                    (_, Some(cause)) => cause_chain(cause.as_ref()),
                    (Some(message), None) => message.clone(),
                    (None, None) => "system error".to_string(),
                },
            },
            SlackClientError::EndOfStream(_) => SlackError::Unreachable {
                method,
                reason: "the connection closed early".to_string(),
            },
            SlackClientError::SocketModeProtocolError(socket) => SlackError::Unreachable {
                method,
                reason: socket.message,
            },
        }
    }
}

/// An error and its causes, `outer: inner: innermost` (hyper's own message is only "client
/// error (Connect)"; the cause says "Connection refused").
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
    use slack_morphism::errors::{SlackClientApiError, SlackRateLimitError};

    #[test]
    fn a_refusal_keeps_slacks_code_and_drops_the_body() {
        let error = SlackError::from_client(
            "chat.postMessage",
            SlackClientError::ApiError(
                SlackClientApiError::new("channel_not_found".into())
                    .with_http_response_body("{\"ok\":false,\"secret\":\"xoxb-1\"}".into()),
            ),
        );
        assert_eq!(error.code(), Some("channel_not_found"));
        assert_eq!(
            error.to_string(),
            "Slack refused chat.postMessage: channel_not_found"
        );
        assert!(!error.is_retryable());
    }

    #[test]
    fn a_rate_limit_is_a_retryable_refusal_with_its_wait() {
        let error = SlackError::from_client(
            "chat.update",
            SlackClientError::RateLimitError(
                SlackRateLimitError::new().with_retry_after(Duration::from_secs(7)),
            ),
        );
        assert_eq!(error.code(), Some(RATE_LIMITED));
        assert!(error.is_retryable());
        assert!(matches!(
            error,
            SlackError::Refused { retry_after: Some(wait), .. } if wait == Duration::from_secs(7)
        ));
    }
}
