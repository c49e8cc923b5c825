//! Loading a policy: TOML to [`PolicyFile`], then every value checked and compiled into a
//! [`Policy`], with errors located at `file:line:column` and a hint.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::sql::{Category, Dialect, Flag};

use super::duration::{parse_duration, DURATION_FORM};
use super::error::{nearest, nearest_within, Location, PolicyError};
use super::file::{
    ApprovalFile, PermissionFile, PolicyFile, RoleFile, RuleFile, SettingsFile, Str, TargetFile,
    WhenFile,
};
use super::glob::{Pattern, Patterns};
use super::model::{
    normalize_verb, Action, ApprovalMode, ApprovalSpec, Conditions, Driver, Masking, Permission,
    Role, Rule, Settings, TargetSettings, DEFAULT_APPROVAL_TTL, DEFAULT_MAX_RESULT_ROWS,
    DEFAULT_ROW_LIMIT, DEFAULT_STATEMENT_TIMEOUT,
};
use super::principal::Principal;
use super::Policy;
use crate::sql::KNOWN_VERBS;

/// Reads a file as UTF-8 text.
pub(crate) fn read_text(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Lowercase hex SHA-256 of the text's bytes.
pub(crate) fn version_of(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Where errors are reported: the file's name and its text, to turn byte offsets into lines.
pub(crate) struct Context<'a> {
    pub source: &'a str,
    pub text: &'a str,
}

impl Context<'_> {
    pub(crate) fn error(
        &self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) -> PolicyError {
        PolicyError::Invalid {
            location: Location::of_span(self.source, self.text, span),
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub(crate) fn at(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) -> PolicyError {
        self.error(Some(span), message, hint)
    }

    pub(crate) fn principal(&self, text: &Str) -> Result<Principal, PolicyError> {
        Principal::parse(text.get_ref()).map_err(|e| self.at(text.span(), e.to_string(), e.hint()))
    }

    fn pattern(&self, text: &Str, what: &str) -> Result<Pattern, PolicyError> {
        Pattern::new(text.get_ref()).map_err(|e| {
            self.at(
                text.span(),
                format!("bad {what} pattern '{}': {e}", text.get_ref()),
                "patterns use * for any run of characters, ? for one character, [abc] for a \
                 class and {a,b} for alternatives; quote a literal * or ? as [*] or [?]"
                    .to_string(),
            )
        })
    }

    fn patterns(&self, texts: &[Str], what: &str) -> Result<Patterns, PolicyError> {
        texts
            .iter()
            .map(|t| self.pattern(t, what))
            .collect::<Result<Vec<_>, _>>()
            .map(Patterns::new)
    }

    fn duration(&self, text: &Str, what: &str) -> Result<Duration, PolicyError> {
        parse_duration(text.get_ref()).ok_or_else(|| {
            self.at(
                text.span(),
                format!("bad duration '{}' for {what}", text.get_ref()),
                format!("write {DURATION_FORM}"),
            )
        })
    }

    fn non_empty<'v, T>(
        &self,
        list: &'v Spanned<Vec<T>>,
        what: &str,
    ) -> Result<&'v [T], PolicyError> {
        if list.get_ref().is_empty() {
            return Err(self.at(
                list.span(),
                format!("{what} is an empty list, which never matches"),
                format!("list at least one value, or remove {what}"),
            ));
        }
        Ok(list.get_ref())
    }
}

/// Parses, checks and compiles policy text.
pub(crate) fn parse_policy(text: &str, source: &str) -> Result<Policy, PolicyError> {
    let cx = Context { source, text };
    let file: PolicyFile =
        toml::from_str(text).map_err(|e| PolicyError::from_toml(source, text, &e))?;
    let settings = settings(&cx, &file.settings)?;
    let roles = roles(&cx, &file.roles)?;
    let targets = targets(&cx, &file.targets)?;
    let known = Known {
        roles: roles.iter().map(|r| r.name.as_str()).collect(),
        targets: targets.iter().map(|t| t.name.as_str()).collect(),
    };
    let permissions = file
        .permissions
        .iter()
        .map(|p| permission(&cx, &known, p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rules: Vec<Rule> = Vec::with_capacity(file.rules.len());
    for file_rule in &file.rules {
        let rule = rule(&cx, &known, &settings, file_rule)?;
        if rules.iter().any(|r| r.name == rule.name) {
            let name = &file_rule.name;
            return Err(cx.at(
                name.span(),
                format!("a rule named '{}' is already defined", rule.name),
                "give every rule its own name: reasons and decisions quote it".to_string(),
            ));
        }
        rules.push(rule);
    }
    let masking = Masking {
        columns: cx.patterns(&file.masking.columns, "masking column")?,
    };
    let classify_options = crate::sql::ClassifyOptions {
        max_input_bytes: settings.max_sql_bytes,
        pure_functions: settings.read_only_functions.clone(),
        ..crate::sql::ClassifyOptions::default()
    };
    Ok(Policy {
        source: source.to_string(),
        version: version_of(text),
        classify_options,
        settings,
        targets: targets.into_iter().map(std::sync::Arc::new).collect(),
        roles,
        permissions,
        rules,
        masking,
    })
}

/// Names defined in the policy, for checking references.
struct Known<'a> {
    roles: Vec<&'a str>,
    targets: Vec<&'a str>,
}

impl Known<'_> {
    fn role(&self, cx: &Context<'_>, name: &Str) -> Result<String, PolicyError> {
        let wanted = name.get_ref();
        if self.roles.contains(&wanted.as_str()) {
            return Ok(wanted.clone());
        }
        let defined = if self.roles.is_empty() {
            "no roles are defined: add a [roles.<name>] table with members".to_string()
        } else {
            format!("defined roles: {}", self.roles.join(", "))
        };
        let hint = match nearest(wanted, self.roles.iter().copied()) {
            Some(near) => format!("did you mean '{near}'? {defined}"),
            None => defined,
        };
        Err(cx.at(name.span(), format!("unknown role '{wanted}'"), hint))
    }

    /// Compiles target globs, refusing a glob that matches no defined target (a likely typo).
    fn target_patterns(&self, cx: &Context<'_>, texts: &[Str]) -> Result<Patterns, PolicyError> {
        let patterns = cx.patterns(texts, "target")?;
        for (pattern, text) in patterns.iter().zip(texts) {
            if !self.targets.iter().any(|t| pattern.is_match(t)) {
                let known = format!("known targets: {}", self.targets.join(", "));
                let hint = match nearest(pattern.as_str(), self.targets.iter().copied()) {
                    Some(near) => format!("did you mean '{near}'? {known}"),
                    None => known,
                };
                return Err(cx.at(
                    text.span(),
                    format!("target pattern '{}' matches no target", pattern.as_str()),
                    hint,
                ));
            }
        }
        Ok(patterns)
    }
}

fn settings(cx: &Context<'_>, file: &SettingsFile) -> Result<Settings, PolicyError> {
    let default_approval_ttl = match &file.default_approval_ttl {
        Some(text) => cx.duration(text, "settings.default_approval_ttl")?,
        None => DEFAULT_APPROVAL_TTL,
    };
    let max_sql_bytes = match &file.max_sql_bytes {
        Some(n) => match usize::try_from(*n.get_ref()) {
            Ok(bytes) if bytes > 0 => bytes,
            _ => {
                return Err(cx.at(
                    n.span(),
                    format!("max_sql_bytes must be a positive size, not {}", n.get_ref()),
                    "65536 (64 KiB) fits any statement a person types".to_string(),
                ))
            }
        },
        None => crate::sql::DEFAULT_MAX_INPUT_BYTES,
    };
    Ok(Settings {
        allow_multi_statement: file.allow_multi_statement.unwrap_or(false),
        default_approval_ttl,
        max_sql_bytes,
        sensitive_tables: cx.patterns(&file.sensitive_tables, "sensitive table")?,
        read_only_functions: read_only_functions(cx, &file.read_only_functions)?,
    })
}

/// Names of functions the team vouches for: `function` or `schema.function`, lower-cased.
fn read_only_functions(
    cx: &Context<'_>,
    names: &[Str],
) -> Result<std::collections::BTreeSet<String>, PolicyError> {
    let mut set = std::collections::BTreeSet::new();
    for name in names {
        let text = name.get_ref().trim().to_ascii_lowercase();
        let parts: Vec<&str> = text.split('.').collect();
        let valid = parts.len() <= 2
            && parts.iter().all(|p| {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
        if !valid {
            return Err(cx.at(
                name.span(),
                format!("'{}' is not a function name", name.get_ref()),
                "write `function` or `schema.function`, without arguments or parentheses"
                    .to_string(),
            ));
        }
        set.insert(text);
    }
    Ok(set)
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_name(cx: &Context<'_>, name: &Str, what: &str) -> Result<(), PolicyError> {
    if is_name(name.get_ref()) {
        return Ok(());
    }
    Err(cx.at(
        name.span(),
        format!("'{}' is not a valid {what} name", name.get_ref()),
        format!("{what} names use letters, digits, '_' and '-' (at most 64)"),
    ))
}

fn roles(cx: &Context<'_>, file: &BTreeMap<Str, RoleFile>) -> Result<Vec<Role>, PolicyError> {
    let mut roles = Vec::with_capacity(file.len());
    for (name, role) in file {
        check_name(cx, name, "role")?;
        let members = role
            .members
            .iter()
            .map(|m| cx.principal(m))
            .collect::<Result<Vec<_>, _>>()?;
        roles.push(Role {
            name: name.get_ref().clone(),
            members,
        });
    }
    Ok(roles)
}

fn targets(cx: &Context<'_>, file: &[TargetFile]) -> Result<Vec<TargetSettings>, PolicyError> {
    if file.is_empty() {
        return Err(cx.error(
            Some(0..0),
            "the policy defines no targets, so every request would be denied",
            "add a [[targets]] table with name and driver".to_string(),
        ));
    }
    let mut targets: Vec<TargetSettings> = Vec::with_capacity(file.len());
    for t in file {
        check_name(cx, &t.name, "target")?;
        if targets.iter().any(|o| &o.name == t.name.get_ref()) {
            return Err(cx.at(
                t.name.span(),
                format!("a target named '{}' is already defined", t.name.get_ref()),
                "give every target its own name".to_string(),
            ));
        }
        let driver = parse_named(
            cx,
            &t.driver,
            "driver",
            Driver::parse,
            &["postgres", "mysql", "sqlite"],
        )?;
        let dialect = match &t.dialect {
            Some(text) => parse_named(
                cx,
                text,
                "dialect",
                Dialect::parse,
                &["postgres", "mysql", "sqlite", "generic"],
            )?,
            None => driver.default_dialect(),
        };
        let positive = |n: &Option<Spanned<u64>>, what: &str, default: u64| match n {
            Some(n) if *n.get_ref() == 0 => Err(cx.at(
                n.span(),
                format!("{what} must be at least 1"),
                format!(
                    "to forbid writes on a target, use a rule with action = \"deny\"; \
                         the default {what} is {default}"
                ),
            )),
            Some(n) => Ok(*n.get_ref()),
            None => Ok(default),
        };
        let default_schema = match &t.default_schema {
            Some(schema) if schema.get_ref().trim().is_empty() => {
                return Err(cx.at(
                    schema.span(),
                    "default_schema is empty",
                    "name the schema unqualified tables resolve to, such as \"public\", or \
                     remove the key"
                        .to_string(),
                ))
            }
            Some(schema) => Some(schema.get_ref().clone()),
            None => None,
        };
        targets.push(TargetSettings {
            name: t.name.get_ref().clone(),
            driver,
            dialect,
            default_schema,
            row_limit: positive(&t.row_limit, "row_limit", DEFAULT_ROW_LIMIT)?,
            max_result_rows: positive(
                &t.max_result_rows,
                "max_result_rows",
                DEFAULT_MAX_RESULT_ROWS,
            )?,
            statement_timeout: match &t.statement_timeout {
                Some(text) => cx.duration(text, "statement_timeout")?,
                None => DEFAULT_STATEMENT_TIMEOUT,
            },
            review_channel: t.review_channel.as_ref().map(|c| c.get_ref().clone()),
        });
    }
    Ok(targets)
}

/// Parses a value from a closed set, suggesting the nearest valid one.
fn parse_named<T>(
    cx: &Context<'_>,
    text: &Str,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
    valid: &[&str],
) -> Result<T, PolicyError> {
    parse(text.get_ref()).ok_or_else(|| {
        let list = valid.join(", ");
        let hint = match nearest(text.get_ref(), valid.iter().copied()) {
            Some(near) => format!("did you mean '{near}'? valid {what}s: {list}"),
            None => format!("valid {what}s: {list}"),
        };
        cx.at(
            text.span(),
            format!("unknown {what} '{}'", text.get_ref()),
            hint,
        )
    })
}

fn categories(cx: &Context<'_>, texts: &[Str]) -> Result<BTreeSet<Category>, PolicyError> {
    let valid = Category::ALL.map(Category::as_str);
    texts
        .iter()
        .map(|t| parse_named(cx, t, "category", Category::parse, &valid))
        .collect()
}

fn flags(cx: &Context<'_>, texts: &[Str]) -> Result<BTreeSet<Flag>, PolicyError> {
    let valid = Flag::ALL.map(Flag::as_str);
    texts
        .iter()
        .map(|t| parse_named(cx, t, "flag", Flag::parse, &valid))
        .collect()
}

/// Checks verbs against those the classifier reports. A verb it does not list is accepted when
/// its first word starts a known verb and it is not one edit away from a known one, since
/// rarely seen statements get their first words as verb (`CREATE OPERATOR`).
fn verbs(cx: &Context<'_>, texts: &[Str]) -> Result<BTreeSet<String>, PolicyError> {
    let mut verbs = BTreeSet::new();
    for text in texts {
        let verb = normalize_verb(text.get_ref());
        if !KNOWN_VERBS.contains(&verb.as_str()) {
            let first = verb.split(' ').next().unwrap_or("");
            let first_known = KNOWN_VERBS
                .iter()
                .any(|k| k.split(' ').next() == Some(first));
            // One edit only: verbs are open-ended, and two real verbs can be two edits apart
            // (CREATE SERVER, CREATE USER).
            let near = nearest_within(&verb, KNOWN_VERBS.iter().copied(), 1);
            if !first_known || near.is_some() {
                let hint = match near {
                    Some(near) => format!("did you mean '{near}'?"),
                    None => "verbs are statement keywords as `countersign sql classify` shows \
                             them, such as SELECT, INSERT, UPDATE, DELETE, CREATE TABLE, DROP \
                             TABLE, GRANT"
                        .to_string(),
                };
                return Err(cx.at(
                    text.span(),
                    format!("unknown verb '{}'", text.get_ref()),
                    hint,
                ));
            }
        }
        verbs.insert(verb);
    }
    Ok(verbs)
}

fn permission(
    cx: &Context<'_>,
    known: &Known<'_>,
    file: &PermissionFile,
) -> Result<Permission, PolicyError> {
    let role = known.role(cx, &file.role)?;
    let targets = match &file.targets {
        Some(texts) => known.target_patterns(cx, texts)?,
        None => Patterns::everything(),
    };
    let categories = categories(cx, cx.non_empty(&file.categories, "categories")?)?;
    let verbs = match &file.verbs {
        Some(list) => Some(verbs(cx, cx.non_empty(list, "verbs")?)?),
        None => None,
    };
    let tables_allow = match &file.tables_allow {
        Some(list) => cx.patterns(cx.non_empty(list, "tables_allow")?, "table")?,
        None => Patterns::everything(),
    };
    Ok(Permission {
        role,
        targets,
        categories,
        verbs,
        tables_allow,
        tables_deny: cx.patterns(&file.tables_deny, "table")?,
    })
}

fn conditions(
    cx: &Context<'_>,
    known: &Known<'_>,
    when: &WhenFile,
) -> Result<Conditions, PolicyError> {
    Ok(Conditions {
        targets: match &when.targets {
            Some(list) => Some(known.target_patterns(cx, cx.non_empty(list, "when.targets")?)?),
            None => None,
        },
        roles: match &when.roles {
            Some(list) => Some(
                cx.non_empty(list, "when.roles")?
                    .iter()
                    .map(|r| known.role(cx, r))
                    .collect::<Result<_, _>>()?,
            ),
            None => None,
        },
        categories: match &when.categories {
            Some(list) => Some(categories(cx, cx.non_empty(list, "when.categories")?)?),
            None => None,
        },
        verbs: match &when.verbs {
            Some(list) => Some(verbs(cx, cx.non_empty(list, "when.verbs")?)?),
            None => None,
        },
        tables: match &when.tables {
            Some(list) => Some(cx.patterns(cx.non_empty(list, "when.tables")?, "table")?),
            None => None,
        },
        tables_written: match &when.tables_written {
            Some(list) => Some(cx.patterns(cx.non_empty(list, "when.tables_written")?, "table")?),
            None => None,
        },
        flags: match &when.flags {
            Some(list) => Some(flags(cx, cx.non_empty(list, "when.flags")?)?),
            None => None,
        },
        missing_where: when.missing_where,
        sensitive: when.sensitive,
        multi_statement: when.multi_statement,
        estimated_rows_over: when.estimated_rows_over,
    })
}

fn rule(
    cx: &Context<'_>,
    known: &Known<'_>,
    settings: &Settings,
    file: &RuleFile,
) -> Result<Rule, PolicyError> {
    let name = file.name.get_ref().trim();
    if name.is_empty() {
        return Err(cx.at(
            file.name.span(),
            "a rule's name is empty",
            "name the rule after what it catches, such as \"delete without where\"".to_string(),
        ));
    }
    if file.when.sensitive == Some(true) && settings.sensitive_tables.is_empty() {
        return Err(cx.error(
            None,
            format!("rule '{name}' uses sensitive = true but settings.sensitive_tables is empty"),
            "list the sensitive tables in [settings] sensitive_tables = [\"payroll.*\"]"
                .to_string(),
        ));
    }
    let when = conditions(cx, known, &file.when)?;
    let action = match (file.action.get_ref().as_str(), &file.approval) {
        ("allow", None) => Action::Allow,
        ("deny", None) => Action::Deny,
        ("require_approval", Some(approval)) => {
            Action::RequireApproval(approval_spec(cx, known, settings, approval)?)
        }
        ("require_approval", None) => {
            return Err(cx.at(
                file.action.span(),
                format!("rule '{name}' requires approval but does not say from whom"),
                "add approval = { from = [\"dba\"], count = 1 } to the rule".to_string(),
            ))
        }
        ("allow" | "deny", Some(approval)) => {
            return Err(cx.at(
                approval.span(),
                format!(
                    "rule '{name}' has an approval table but its action is '{}'",
                    file.action.get_ref()
                ),
                "set action = \"require_approval\", or remove the approval table".to_string(),
            ))
        }
        (other, _) => {
            let valid = ["allow", "require_approval", "deny"];
            let list = valid.join(", ");
            let hint = match nearest(other, valid) {
                Some(near) => format!("did you mean '{near}'? valid actions: {list}"),
                None => format!("valid actions: {list}"),
            };
            return Err(cx.at(
                file.action.span(),
                format!("unknown action '{other}'"),
                hint,
            ));
        }
    };
    let row_limit = match &file.row_limit {
        Some(n) if *n.get_ref() == 0 => {
            return Err(cx.at(
                n.span(),
                "a rule's row_limit must be at least 1",
                "to forbid the statements a rule catches, use action = \"deny\"".to_string(),
            ))
        }
        Some(n) => Some(*n.get_ref()),
        None => None,
    };
    let reason = file
        .reason
        .as_ref()
        .map(|r| r.get_ref().trim().to_string())
        .filter(|r| !r.is_empty());
    let because = match &reason {
        Some(reason) => format!("rule '{name}': {reason}"),
        None => format!("rule '{name}'"),
    };
    Ok(Rule {
        name: name.to_string(),
        when,
        action,
        reason,
        row_limit,
        because,
    })
}

fn approval_spec(
    cx: &Context<'_>,
    known: &Known<'_>,
    settings: &Settings,
    approval: &Spanned<ApprovalFile>,
) -> Result<ApprovalSpec, PolicyError> {
    let file = approval.get_ref();
    let mut from: Vec<String> = Vec::new();
    for role in cx.non_empty(&file.from, "approval.from")? {
        let role = known.role(cx, role)?;
        if !from.contains(&role) {
            from.push(role);
        }
    }
    let count =
        match &file.count {
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(count) if count > 0 => count,
                _ => return Err(cx.at(
                    n.span(),
                    format!("approval count must be at least 1, not {}", n.get_ref()),
                    "a count of 0 would approve without anyone looking; use action = \"allow\" \
                     for statements that need no review"
                        .to_string(),
                )),
            },
            None => 1,
        };
    let mode = match &file.mode {
        Some(text) => parse_named(cx, text, "mode", ApprovalMode::parse, &["any_of", "all_of"])?,
        None => ApprovalMode::AnyOf,
    };
    let ttl = match &file.ttl {
        Some(text) => cx.duration(text, "approval.ttl")?,
        None => settings.default_approval_ttl,
    };
    let phrase = super::approval::approvals_phrase(count, mode, &from);
    Ok(ApprovalSpec {
        from,
        count,
        mode,
        ttl,
        phrase,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[targets]]
name = "prod"
driver = "postgres"

[roles.engineer]
members = ["console:alice"]

[roles.dba]
members = ["console:bob"]
"#;

    fn load(extra: &str) -> Result<Policy, PolicyError> {
        parse_policy(&format!("{MINIMAL}{extra}"), "policy.toml")
    }

    fn error(extra: &str) -> String {
        load(extra)
            .expect_err("the policy should be refused")
            .to_string()
    }

    #[test]
    fn minimal_policy_loads_with_defaults() {
        let policy = load("").expect("valid");
        let prod = policy.target("prod").expect("prod");
        assert_eq!(prod.dialect, Dialect::Postgres);
        assert_eq!(prod.row_limit, DEFAULT_ROW_LIMIT);
        assert!(!policy.settings().allow_multi_statement);
        assert_eq!(policy.settings().default_approval_ttl, DEFAULT_APPROVAL_TTL);
    }

    #[test]
    fn unknown_key_error_names_line_and_nearest_key() {
        let text = "[[targets]]\nname = \"prod\"\ndriver = \"postgres\"\nrow_limt = 5\n";
        let message = parse_policy(text, "policy.toml")
            .expect_err("unknown key")
            .to_string();
        assert!(
            message.starts_with("policy.toml:4:1: unknown field `row_limt`"),
            "{message}"
        );
        assert!(
            message.contains("\nhint: did you mean `row_limit`?"),
            "{message}"
        );
        assert!(message.contains("statement_timeout"), "{message}");
    }

    #[test]
    fn unknown_key_inside_when_is_an_error() {
        let message = error(
            "[[rules]]\nname = \"r\"\nwhen = { categorys = [\"write\"] }\naction = \"deny\"\n",
        );
        assert!(message.contains("unknown field `categorys`"), "{message}");
        assert!(message.contains("did you mean `categories`?"), "{message}");
    }

    #[test]
    fn unknown_role_in_a_permission_lists_defined_roles() {
        let message = error("[[permissions]]\nrole = \"engineers\"\ncategories = [\"read\"]\n");
        assert!(
            message.starts_with("policy.toml:12:8: unknown role 'engineers'"),
            "{message}"
        );
        assert!(message.contains("did you mean 'engineer'?"), "{message}");
        assert!(
            message.contains("defined roles: dba, engineer"),
            "{message}"
        );
    }

    #[test]
    fn unknown_role_in_an_approval_is_an_error() {
        let message = error(
            "[[rules]]\nname = \"r\"\naction = \"require_approval\"\napproval = { from = [\"dbas\"] }\n",
        );
        assert!(message.contains("unknown role 'dbas'"), "{message}");
        assert!(message.contains("policy.toml:14:"), "{message}");
    }

    #[test]
    fn bad_duration_shows_the_accepted_form() {
        let message = error("[settings]\ndefault_approval_ttl = \"4 hours\"\n");
        assert!(message.contains("bad duration '4 hours'"), "{message}");
        assert!(
            message.contains("hint: write a whole number followed by s, m, h or d"),
            "{message}"
        );
    }

    #[test]
    fn bad_glob_is_an_error() {
        let message = error("[settings]\nsensitive_tables = [\"payroll.[abc\"]\n");
        assert!(
            message.contains("bad sensitive table pattern 'payroll.[abc'"),
            "{message}"
        );
        assert!(message.contains("policy.toml:12:21:"), "{message}");
    }

    #[test]
    fn approval_count_of_zero_is_an_error() {
        let message = error(
            "[[rules]]\nname = \"r\"\naction = \"require_approval\"\napproval = { from = [\"dba\"], count = 0 }\n",
        );
        assert!(
            message.contains("approval count must be at least 1"),
            "{message}"
        );
    }

    #[test]
    fn misspelled_category_suggests_the_nearest() {
        let message = error("[[permissions]]\nrole = \"dba\"\ncategories = [\"wrte\"]\n");
        assert!(message.contains("unknown category 'wrte'"), "{message}");
        assert!(message.contains("did you mean 'write'?"), "{message}");
    }

    #[test]
    fn misspelled_flag_suggests_the_nearest() {
        let message = error(
            "[[rules]]\nname = \"r\"\nwhen = { flags = [\"side_effect_functon\"] }\naction = \"deny\"\n",
        );
        assert!(
            message.contains("unknown flag 'side_effect_functon'"),
            "{message}"
        );
        assert!(
            message.contains("did you mean 'side_effect_function'?"),
            "{message}"
        );
    }

    #[test]
    fn misspelled_verb_suggests_the_nearest() {
        let message =
            error("[[rules]]\nname = \"r\"\nwhen = { verbs = [\"DELEET\"] }\naction = \"deny\"\n");
        assert!(message.contains("unknown verb 'DELEET'"), "{message}");
        assert!(message.contains("did you mean 'DELETE'?"), "{message}");
    }

    #[test]
    fn real_verbs_two_edits_from_a_known_verb_are_accepted() {
        load(
            "[[rules]]\nname = \"r\"\nwhen = { verbs = [\"CREATE SERVER\"] }\naction = \"deny\"\n",
        )
        .expect("valid");
    }

    #[test]
    fn verbs_with_an_unknown_first_word_are_refused() {
        let message = error(
            "[[rules]]\nname = \"r\"\nwhen = { verbs = [\"REMOVE ALL\"] }\naction = \"deny\"\n",
        );
        assert!(message.contains("unknown verb 'REMOVE ALL'"), "{message}");
    }

    #[test]
    fn rarely_seen_verbs_with_a_known_first_word_are_accepted() {
        load("[[rules]]\nname = \"r\"\nwhen = { verbs = [\"create operator\"] }\naction = \"deny\"\n")
            .expect("valid");
    }

    #[test]
    fn unknown_principal_kind_is_a_load_error() {
        let message = error("[roles.oncall]\nmembers = [\"pagerduty:P123\"]\n");
        assert!(
            message.contains("unknown principal kind 'pagerduty'"),
            "{message}"
        );
        assert!(message.contains("policy.toml:12:"), "{message}");
    }

    #[test]
    fn target_pattern_matching_no_target_is_an_error() {
        let message = error(
            "[[permissions]]\nrole = \"dba\"\ntargets = [\"prdo\"]\ncategories = [\"read\"]\n",
        );
        assert!(
            message.contains("target pattern 'prdo' matches no target"),
            "{message}"
        );
        assert!(message.contains("did you mean 'prod'?"), "{message}");
    }

    #[test]
    fn require_approval_without_approval_is_an_error() {
        let message = error("[[rules]]\nname = \"r\"\naction = \"require_approval\"\n");
        assert!(message.contains("does not say from whom"), "{message}");
    }

    #[test]
    fn approval_on_a_deny_rule_is_an_error() {
        let message =
            error("[[rules]]\nname = \"r\"\naction = \"deny\"\napproval = { from = [\"dba\"] }\n");
        assert!(
            message.contains("has an approval table but its action is 'deny'"),
            "{message}"
        );
    }

    #[test]
    fn misspelled_action_suggests_the_nearest() {
        let message = error("[[rules]]\nname = \"r\"\naction = \"require-approval\"\n");
        assert!(
            message.contains("did you mean 'require_approval'?"),
            "{message}"
        );
    }

    #[test]
    fn duplicate_rule_names_are_an_error() {
        let message = error(
            "[[rules]]\nname = \"r\"\naction = \"deny\"\n[[rules]]\nname = \"r\"\naction = \"allow\"\n",
        );
        assert!(
            message.contains("a rule named 'r' is already defined"),
            "{message}"
        );
        assert!(message.contains("policy.toml:15:8:"), "{message}");
    }

    #[test]
    fn a_policy_without_targets_is_an_error() {
        let message = parse_policy("[roles.dba]\nmembers = []\n", "p.toml")
            .expect_err("no targets")
            .to_string();
        assert!(
            message.starts_with("p.toml:1:1: the policy defines no targets"),
            "{message}"
        );
    }

    #[test]
    fn unknown_driver_suggests_the_nearest() {
        let message = parse_policy(
            "[[targets]]\nname = \"x\"\ndriver = \"postgresql\"\n",
            "p.toml",
        )
        .expect_err("bad driver")
        .to_string();
        assert!(message.contains("unknown driver 'postgresql'"), "{message}");
        assert!(message.contains("did you mean 'postgres'?"), "{message}");
    }

    #[test]
    fn toml_syntax_errors_are_located() {
        let message = parse_policy("[[targets]\nname = 1\n", "p.toml")
            .expect_err("bad toml")
            .to_string();
        assert!(message.starts_with("p.toml:1:"), "{message}");
    }

    #[test]
    fn version_is_the_sha256_of_the_bytes() {
        let policy = load("").expect("valid");
        assert_eq!(policy.version(), version_of(MINIMAL));
        assert_eq!(policy.version().len(), 64);
        assert_eq!(policy.short_version(), &policy.version()[..12]);
        assert!(policy
            .version()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
}
