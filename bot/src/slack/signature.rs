//! Slack request signatures (HTTP mode): `x-slack-signature: v0=<hex>` where `<hex>` is
//! HMAC-SHA256 over `v0:{x-slack-request-timestamp}:{raw body}` with the app's signing secret.
//!
//! A request is accepted only with both headers, a timestamp within five minutes of now (either
//! way), and a signature that matches in constant time. Replays inside the window are the
//! caller's to catch ([`super::events::ReplayGuard`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a request's timestamp may be from now.
pub const MAX_AGE_SECONDS: u64 = 300;

/// Why a request's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header is missing.
    #[error("the request is not signed")]
    Missing,
    /// The timestamp is not a number.
    #[error("the request's timestamp is malformed")]
    BadTimestamp,
    /// The timestamp is more than five minutes away from now.
    #[error("the request's timestamp is too old (or in the future)")]
    Stale,
    /// The signature does not match.
    #[error("the request's signature does not match")]
    Mismatch,
}

impl SignatureError {
    /// A short code for metrics and logs.
    pub fn code(self) -> &'static str {
        match self {
            SignatureError::Missing => "unsigned",
            SignatureError::BadTimestamp => "bad_timestamp",
            SignatureError::Stale => "stale",
            SignatureError::Mismatch => "bad_signature",
        }
    }
}

/// Checks a request's signature. `now` is Unix seconds.
pub fn verify(
    signing_secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: u64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let at: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if at.abs_diff(now) > MAX_AGE_SECONDS {
        return Err(SignatureError::Stale);
    }
    let Some(hex_part) = signature.strip_prefix("v0=") else {
        return Err(SignatureError::Mismatch);
    };
    // Slack sends lowercase hex; anything else is not Slack's.
    if hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(SignatureError::Mismatch);
    }
    let Ok(expected) = hex::decode(hex_part) else {
        return Err(SignatureError::Mismatch);
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(signing_secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(b"v0:");
    mac.update(timestamp.trim().as_bytes());
    mac.update(b":");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The signature Slack would send (for tests and the bench).
pub fn sign(signing_secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(signing_secret) else {
        return String::new();
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const BODY: &[u8] = b"token=x&team_id=T1&command=%2Fquery&text=SELECT+1";

    #[test]
    fn a_fresh_signed_request_is_accepted() {
        let signature = sign(SECRET, "1700000000", BODY);
        assert_eq!(
            verify(
                SECRET,
                Some("1700000000"),
                Some(&signature),
                BODY,
                1_700_000_100
            ),
            Ok(())
        );
    }

    #[test]
    fn every_forgery_is_refused_with_its_reason() {
        let signature = sign(SECRET, "1700000000", BODY);
        let now = 1_700_000_010;
        assert_eq!(
            verify(
                b"another secret",
                Some("1700000000"),
                Some(&signature),
                BODY,
                now
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                SECRET,
                Some("1700000000"),
                Some(&signature),
                b"text=DROP+TABLE",
                now
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, Some("1700000001"), Some(&signature), BODY, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                SECRET,
                Some("1700000000"),
                Some(&signature.to_uppercase().replace("V0=", "v0=")),
                BODY,
                now
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                SECRET,
                Some("1700000000"),
                Some(signature.trim_start_matches("v0=")),
                BODY,
                now
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, None, Some(&signature), BODY, now),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(SECRET, Some("1700000000"), None, BODY, now),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(SECRET, Some("yesterday"), Some(&signature), BODY, now),
            Err(SignatureError::BadTimestamp)
        );
    }

    #[test]
    fn timestamps_more_than_five_minutes_away_are_refused_both_ways() {
        let signature = sign(SECRET, "1700000000", BODY);
        assert_eq!(
            verify(
                SECRET,
                Some("1700000000"),
                Some(&signature),
                BODY,
                1_700_000_301
            ),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(
                SECRET,
                Some("1700000000"),
                Some(&signature),
                BODY,
                1_699_999_699
            ),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(
                SECRET,
                Some("1700000000"),
                Some(&signature),
                BODY,
                1_700_000_300
            ),
            Ok(())
        );
    }
}
