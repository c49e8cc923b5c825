//! Who is asking: chat users, chat groups, console users and services, as typed principals.

use std::fmt;

use serde::{Serialize, Serializer};

/// The kind of a principal, written as the prefix before `:` in a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PrincipalKind {
    /// A Slack user (`slack:U024BE7LH`).
    SlackUser,
    /// A Slack user group (`slack-group:S0614TZR7`).
    SlackGroup,
    /// A Discord user (`discord:80351110224678912`).
    DiscordUser,
    /// A Discord role (`discord-role:41771983423143936`).
    DiscordRole,
    /// A user of the local console (`console:alice`).
    Console,
    /// A non-human caller such as a scheduled job (`service:nightly-report`).
    Service,
}

impl PrincipalKind {
    /// Every kind.
    pub const ALL: [PrincipalKind; 6] = [
        PrincipalKind::SlackUser,
        PrincipalKind::SlackGroup,
        PrincipalKind::DiscordUser,
        PrincipalKind::DiscordRole,
        PrincipalKind::Console,
        PrincipalKind::Service,
    ];

    /// The prefix written before `:`.
    pub fn prefix(self) -> &'static str {
        match self {
            PrincipalKind::SlackUser => "slack",
            PrincipalKind::SlackGroup => "slack-group",
            PrincipalKind::DiscordUser => "discord",
            PrincipalKind::DiscordRole => "discord-role",
            PrincipalKind::Console => "console",
            PrincipalKind::Service => "service",
        }
    }

    /// True for kinds that name a group of people (Slack user groups, Discord roles) rather
    /// than one caller.
    pub fn is_group(self) -> bool {
        matches!(self, PrincipalKind::SlackGroup | PrincipalKind::DiscordRole)
    }

    /// What an id of this kind looks like, for error messages.
    fn id_form(self) -> &'static str {
        match self {
            PrincipalKind::SlackUser => {
                "a Slack user id such as U024BE7LH (upper-case letters and digits)"
            }
            PrincipalKind::SlackGroup => {
                "a Slack user group id such as S0614TZR7 (upper-case letters and digits)"
            }
            PrincipalKind::DiscordUser => "a Discord user id such as 80351110224678912 (digits)",
            PrincipalKind::DiscordRole => "a Discord role id such as 41771983423143936 (digits)",
            PrincipalKind::Console => "a name such as alice (letters, digits, '.', '_', '-', '@')",
            PrincipalKind::Service => {
                "a name such as nightly-report (letters, digits, '.', '_', '-', '@')"
            }
        }
    }

    fn accepts(self, id: &str) -> bool {
        match self {
            PrincipalKind::SlackUser | PrincipalKind::SlackGroup => id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
            PrincipalKind::DiscordUser | PrincipalKind::DiscordRole => {
                id.bytes().all(|b| b.is_ascii_digit())
            }
            PrincipalKind::Console | PrincipalKind::Service => id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@')),
        }
    }
}

impl fmt::Display for PrincipalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

/// A caller or a group of callers, parsed from `kind:id` (`slack:U024BE7LH`, `console:alice`).
///
/// Two principals are the same caller only when kind and id are equal: `slack:U1` and
/// `console:U1` are different people as far as the policy knows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Principal {
    kind: PrincipalKind,
    id: String,
}

/// Why a principal string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    /// No `:` separates kind and id.
    #[error(
        "'{text}' is not a principal: expected kind:id, such as slack:U024BE7LH or console:alice"
    )]
    MissingKind {
        /// The text as given.
        text: String,
    },
    /// The part before `:` is not a known kind.
    #[error("unknown principal kind '{prefix}' in '{text}'")]
    UnknownKind {
        /// The text as given.
        text: String,
        /// The unknown prefix.
        prefix: String,
    },
    /// The id is empty or has characters this kind of id never has.
    #[error("'{text}' is not a valid {kind} principal: expected {expected}")]
    BadId {
        /// The text as given.
        text: String,
        /// The kind named by the prefix.
        kind: PrincipalKind,
        /// What an id of this kind looks like.
        expected: &'static str,
    },
}

impl PrincipalError {
    /// A suggestion for fixing the principal, for error messages.
    pub fn hint(&self) -> String {
        let kinds = PrincipalKind::ALL.map(PrincipalKind::prefix).join(", ");
        match self {
            PrincipalError::MissingKind { .. } => format!("prefix the id with one of: {kinds}"),
            PrincipalError::UnknownKind { prefix, .. } => {
                let nearest = super::error::nearest(prefix, PrincipalKind::ALL.map(|k| k.prefix()));
                match nearest {
                    Some(near) => format!("did you mean '{near}'? known kinds: {kinds}"),
                    None => format!("known kinds: {kinds}"),
                }
            }
            PrincipalError::BadId { kind, .. } => {
                format!("write {}:<id> with {}", kind.prefix(), kind.id_form())
            }
        }
    }
}

impl Principal {
    /// Parses `kind:id`. Surrounding whitespace is ignored; the id is kept as written.
    pub fn parse(text: &str) -> Result<Principal, PrincipalError> {
        let trimmed = text.trim();
        let Some((prefix, id)) = trimmed.split_once(':') else {
            return Err(PrincipalError::MissingKind {
                text: text.to_string(),
            });
        };
        let Some(kind) = PrincipalKind::ALL
            .into_iter()
            .find(|k| k.prefix() == prefix)
        else {
            return Err(PrincipalError::UnknownKind {
                text: text.to_string(),
                prefix: prefix.to_string(),
            });
        };
        Principal::new(kind, id).map_err(|_| PrincipalError::BadId {
            text: text.to_string(),
            kind,
            expected: kind.id_form(),
        })
    }

    /// Builds a principal from a kind and an id, checking the id's form.
    pub fn new(kind: PrincipalKind, id: &str) -> Result<Principal, PrincipalError> {
        if id.is_empty() || id.len() > 128 || !kind.accepts(id) {
            return Err(PrincipalError::BadId {
                text: format!("{}:{id}", kind.prefix()),
                kind,
                expected: kind.id_form(),
            });
        }
        Ok(Principal {
            kind,
            id: id.to_string(),
        })
    }

    /// The kind of principal.
    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    /// The id after the prefix.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// True for a group of people (Slack user group, Discord role).
    pub fn is_group(&self) -> bool {
        self.kind.is_group()
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.prefix(), self.id)
    }
}

impl std::str::FromStr for Principal {
    type Err = PrincipalError;

    fn from_str(text: &str) -> Result<Principal, PrincipalError> {
        Principal::parse(text)
    }
}

impl Serialize for Principal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A caller as the chat platform reports them: their own principal and the groups they belong
/// to (Slack user groups, Discord roles). Used both for the requester and for each approver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The caller themself.
    pub principal: Principal,
    /// Groups the platform says the caller belongs to; they grant the roles those groups have.
    pub groups: Vec<Principal>,
}

impl Identity {
    /// An identity with no groups.
    pub fn new(principal: Principal) -> Identity {
        Identity {
            principal,
            groups: Vec::new(),
        }
    }

    /// The same identity, belonging to `groups` as well.
    pub fn with_groups(mut self, groups: impl IntoIterator<Item = Principal>) -> Identity {
        self.groups.extend(groups);
        self
    }

    /// The principal and each group, in that order.
    pub fn all_principals(&self) -> impl Iterator<Item = &Principal> {
        std::iter::once(&self.principal).chain(self.groups.iter())
    }
}

/// The person or service asking to run SQL.
pub type Requester = Identity;
/// A person approving a request.
pub type Approver = Identity;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_kind_parses_and_displays_back() {
        for text in [
            "slack:U024BE7LH",
            "slack-group:S0614TZR7",
            "discord:80351110224678912",
            "discord-role:41771983423143936",
            "console:alice",
            "service:nightly-report",
        ] {
            let principal = Principal::parse(text).expect("valid principal");
            assert_eq!(principal.to_string(), text);
        }
    }

    #[test]
    fn groups_are_told_apart_from_callers() {
        let group = Principal::parse("slack-group:S0614TZR7").expect("valid");
        let user = Principal::parse("slack:U024BE7LH").expect("valid");
        assert!(group.is_group());
        assert!(!user.is_group());
        assert_eq!(group.kind(), PrincipalKind::SlackGroup);
        assert_eq!(group.id(), "S0614TZR7");
    }

    #[test]
    fn unknown_kind_is_an_error_with_the_nearest_kind() {
        let error = Principal::parse("slak:U024BE7LH").expect_err("unknown kind");
        assert!(matches!(error, PrincipalError::UnknownKind { .. }));
        assert!(
            error.hint().contains("did you mean 'slack'"),
            "{}",
            error.hint()
        );
    }

    #[test]
    fn missing_kind_is_an_error() {
        let error = Principal::parse("alice").expect_err("no kind");
        assert!(matches!(error, PrincipalError::MissingKind { .. }));
    }

    #[test]
    fn ids_of_the_wrong_form_are_errors() {
        for text in [
            "slack:",
            "slack:u024be7lh",
            "discord:abc",
            "console:al ice",
            "console:a:b",
        ] {
            let error = Principal::parse(text).expect_err(text);
            assert!(matches!(error, PrincipalError::BadId { .. }), "{text}");
        }
    }

    #[test]
    fn same_id_on_different_platforms_is_a_different_principal() {
        let a = Principal::parse("console:U1").expect("valid");
        let b = Principal::parse("slack:U1").expect("valid");
        assert_ne!(a, b);
    }
}
