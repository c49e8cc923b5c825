//! Approval quorum: whether the approvals given satisfy a decision's requirements, and what is
//! still missing. Pure, so the bot (counting reactions) and the executor (re-checking a signed
//! job) reach the same answer.

use std::collections::BTreeMap;

use super::decide::ApprovalRequirement;
use super::model::ApprovalMode;
use super::principal::{Identity, Principal, PrincipalKind};
use super::Policy;

/// Where a set of approvals stands against a decision's requirements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    /// True when every requirement is satisfied (also when there are none).
    pub satisfied: bool,
    /// One entry per requirement, in the decision's order.
    pub requirements: Vec<RequirementStatus>,
    /// Approvals that count for no requirement, and why.
    pub ignored: Vec<IgnoredApproval>,
}

impl QuorumStatus {
    /// What is still missing, one sentence per unsatisfied requirement
    /// (`needs 1 more approval from dba (rule 'writes')`).
    pub fn missing(&self) -> Vec<String> {
        self.requirements
            .iter()
            .filter_map(|r| r.missing.clone())
            .collect()
    }
}

/// Where one requirement stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequirementStatus {
    /// The rule that requires it.
    pub rule: String,
    /// True when enough approvals count for it.
    pub satisfied: bool,
    /// Approvers counted for it, in the order they approved.
    pub counted: Vec<Principal>,
    /// What is still missing, when not satisfied.
    pub missing: Option<String>,
}

/// An approval that counts for nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredApproval {
    /// Who approved.
    pub approver: Principal,
    /// Why it does not count.
    pub why: String,
}

/// Checks approvals against requirements.
///
/// - The requester's own approval never counts, whatever their roles.
/// - Only people approve: a `service:` principal, or a group principal, never counts.
/// - The same approver counts once, however many times they appear (the first entry is used).
/// - An approver counts for a requirement when their principal or one of their groups holds
///   one of its roles.
/// - `any_of`: `count` approvers in total holding any listed role.
/// - `all_of`: `count` approvers for each listed role, each approver counted for one role only
///   (one person holding two roles does not satisfy both).
/// - Requirements are independent: one approver may count for several of them.
pub fn check_quorum(
    policy: &Policy,
    requirements: &[ApprovalRequirement],
    requester: &Identity,
    approvers: &[Identity],
) -> QuorumStatus {
    let mut ignored = Vec::new();
    let mut eligible: Vec<(&Principal, Vec<String>)> = Vec::new();
    let mut seen: Vec<&Principal> = Vec::new();
    for approver in approvers {
        let principal = &approver.principal;
        if seen.contains(&principal) {
            continue;
        }
        seen.push(principal);
        let why = if *principal == requester.principal {
            Some("the requester cannot approve their own request")
        } else if principal.kind() == PrincipalKind::Service {
            Some("services cannot approve: approvals come from people")
        } else if principal.is_group() {
            Some("a group cannot approve: approvals come from people")
        } else {
            None
        };
        match why {
            Some(why) => ignored.push(IgnoredApproval {
                approver: principal.clone(),
                why: why.to_string(),
            }),
            None => eligible.push((principal, policy.roles_of(approver))),
        }
    }

    let statuses: Vec<RequirementStatus> = requirements
        .iter()
        .map(|requirement| requirement_status(requirement, &eligible))
        .collect();
    for (principal, roles) in &eligible {
        let counts = requirements
            .iter()
            .any(|r| r.from.iter().any(|role| roles.contains(role)));
        if !counts {
            let asked: Vec<&str> = requirements
                .iter()
                .flat_map(|r| r.from.iter().map(String::as_str))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            ignored.push(IgnoredApproval {
                approver: (*principal).clone(),
                why: format!("holds none of the roles asked for ({})", asked.join(", ")),
            });
        }
    }
    QuorumStatus {
        satisfied: statuses.iter().all(|s| s.satisfied),
        requirements: statuses,
        ignored,
    }
}

fn requirement_status(
    requirement: &ApprovalRequirement,
    eligible: &[(&Principal, Vec<String>)],
) -> RequirementStatus {
    let count = requirement.count as usize;
    let (counted, missing) = match requirement.mode {
        ApprovalMode::AnyOf => {
            let counted: Vec<Principal> = eligible
                .iter()
                .filter(|(_, roles)| requirement.from.iter().any(|r| roles.contains(r)))
                .map(|(p, _)| (*p).clone())
                .collect();
            let short = count.saturating_sub(counted.len());
            let missing = (short > 0).then(|| {
                format!(
                    "needs {short} more {} from {}",
                    plural(short, "approval"),
                    requirement.from.join(" or ")
                )
            });
            (counted, missing)
        }
        ApprovalMode::AllOf => {
            let (filled, counted_indices) = assign(&requirement.from, count, eligible);
            let counted = counted_indices
                .into_iter()
                .map(|i| eligible[i].0.clone())
                .collect();
            let mut parts = Vec::new();
            for (role, filled) in requirement.from.iter().zip(filled) {
                let short = count.saturating_sub(filled);
                if short > 0 {
                    if parts.is_empty() {
                        parts.push(format!(
                            "{short} more {} from {role}",
                            plural(short, "approval")
                        ));
                    } else {
                        parts.push(format!("{short} more from {role}"));
                    }
                }
            }
            let missing = (!parts.is_empty()).then(|| format!("needs {}", parts.join(" and ")));
            (counted, missing)
        }
    };
    RequirementStatus {
        rule: requirement.rule.clone(),
        satisfied: missing.is_none(),
        counted,
        missing: missing.map(|m| format!("{m} (rule '{}')", requirement.rule)),
    }
}

/// Assigns approvers to `count` slots per role so that each approver fills at most one slot and
/// as many slots as possible are filled (a bipartite matching found by augmenting paths).
/// Returns how many slots of each role are filled, and the approvers counted, in order.
fn assign(
    roles: &[String],
    count: usize,
    eligible: &[(&Principal, Vec<String>)],
) -> (Vec<usize>, Vec<usize>) {
    // A role never has more filled slots than there are approvers: this bounds the work.
    let per_role = count.min(eligible.len());
    if per_role == 0 {
        return (vec![0; roles.len()], Vec::new());
    }
    let mut filler: Vec<Option<usize>> = vec![None; roles.len() * per_role];
    let holds =
        |approver: usize, slot: usize| eligible[approver].1.contains(&roles[slot / per_role]);
    for approver in 0..eligible.len() {
        let mut visited = vec![false; filler.len()];
        augment(approver, &holds, &mut visited, &mut filler);
    }
    let filled = filler
        .chunks(per_role)
        .map(|chunk| chunk.iter().filter(|s| s.is_some()).count())
        .collect();
    let mut counted: Vec<usize> = filler.iter().flatten().copied().collect();
    counted.sort_unstable();
    (filled, counted)
}

/// Tries to give `approver` a slot, moving earlier approvers to other slots they also fit.
fn augment(
    approver: usize,
    holds: &impl Fn(usize, usize) -> bool,
    visited: &mut [bool],
    filler: &mut [Option<usize>],
) -> bool {
    for slot in 0..filler.len() {
        if visited[slot] || !holds(approver, slot) {
            continue;
        }
        visited[slot] = true;
        let free = match filler[slot] {
            None => true,
            Some(other) => augment(other, holds, visited, filler),
        };
        if free {
            filler[slot] = Some(approver);
            return true;
        }
    }
    false
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// `2 approvals from dba`, `1 approval from dba or oncall`, `1 approval from each of dba and
/// security`.
pub(crate) fn approvals_phrase(count: u32, mode: ApprovalMode, from: &[String]) -> String {
    let noun = plural(count as usize, "approval");
    match (mode, from) {
        (ApprovalMode::AllOf, [_, _, ..]) => {
            format!("{count} {noun} from each of {}", from.join(" and "))
        }
        _ => format!("{count} {noun} from {}", from.join(" or ")),
    }
}

/// How many approvals satisfy every requirement when each approver holds exactly one of the
/// roles involved (the usual case; people holding several roles may need fewer).
///
/// `all_of` requirements fix a minimum per role; `any_of` requirements, largest first, are then
/// topped up on the listed role that most other `any_of` requirements also accept. This is
/// exact for one requirement and for requirements whose roles nest, and never too low.
pub fn approvals_needed(requirements: &[ApprovalRequirement]) -> u64 {
    let mut need: BTreeMap<&str, u64> = BTreeMap::new();
    for r in requirements
        .iter()
        .filter(|r| r.mode == ApprovalMode::AllOf)
    {
        for role in &r.from {
            let entry = need.entry(role.as_str()).or_insert(0);
            *entry = (*entry).max(u64::from(r.count));
        }
    }
    let mut any_of: Vec<&ApprovalRequirement> = requirements
        .iter()
        .filter(|r| r.mode == ApprovalMode::AnyOf)
        .collect();
    any_of.sort_by_key(|r| std::cmp::Reverse(r.count));
    for r in &any_of {
        let have: u64 = r
            .from
            .iter()
            .map(|role| need.get(role.as_str()).copied().unwrap_or(0))
            .sum();
        let short = u64::from(r.count).saturating_sub(have);
        if short == 0 {
            continue;
        }
        let best = r.from.iter().max_by_key(|role| {
            let shared = any_of.iter().filter(|o| o.from.contains(role)).count();
            // max_by_key keeps the last maximum: reverse the position to prefer the first.
            (
                shared,
                std::cmp::Reverse(r.from.iter().position(|x| x == *role)),
            )
        });
        if let Some(role) = best {
            *need.entry(role.as_str()).or_insert(0) += short;
        }
    }
    need.values().sum()
}
