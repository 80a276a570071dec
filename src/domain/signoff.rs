//! Matching sign-offs to required roles, one distinct person per slot.
//!
//! Segregation of duties: a CR needing a risk-reviewer *and* an approver is not approved
//! by one person who holds both roles signing twice. Slots are filled by a maximum
//! bipartite matching between required roles and people, so the count is the number of
//! distinct people who could legitimately fill distinct slots, whatever order they signed in.

use serde::Serialize;

/// One required sign-off and who (if anyone) fills it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slot {
    /// The role this sign-off must be given in.
    pub role: String,
    /// The principal filling it, if any.
    pub filled_by: Option<String>,
}

/// Sign-offs required vs obtained for one CR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignoffProgress {
    /// Every required slot, filled or not, in policy order.
    pub slots: Vec<Slot>,
}

impl SignoffProgress {
    /// How many slots are required.
    pub fn required(&self) -> usize {
        self.slots.len()
    }

    /// How many slots are filled by distinct people.
    pub fn obtained(&self) -> usize {
        self.slots.iter().filter(|s| s.filled_by.is_some()).count()
    }

    /// True when every slot is filled.
    pub fn complete(&self) -> bool {
        self.obtained() == self.required()
    }

    /// Every required role, in policy order (a role listed twice appears twice).
    pub fn required_roles(&self) -> Vec<&str> {
        self.slots.iter().map(|s| s.role.as_str()).collect()
    }

    /// Roles still waiting for someone.
    pub fn missing_roles(&self) -> Vec<&str> {
        self.slots
            .iter()
            .filter(|s| s.filled_by.is_none())
            .map(|s| s.role.as_str())
            .collect()
    }
}

/// Finds a largest assignment of people to slots. `candidates[p]` lists the roles person
/// `p` can fill; returns, per slot, the index of the person filling it.
fn match_slots(required: &[String], candidates: &[Vec<&str>]) -> Vec<Option<usize>> {
    let mut slot_owner: Vec<Option<usize>> = vec![None; required.len()];
    for person in 0..candidates.len() {
        let mut visited = vec![false; required.len()];
        augment(person, required, candidates, &mut slot_owner, &mut visited);
    }
    slot_owner
}

/// Kuhn's augmenting path step: try to give `person` a slot, moving others if needed.
fn augment(
    person: usize,
    required: &[String],
    candidates: &[Vec<&str>],
    slot_owner: &mut [Option<usize>],
    visited: &mut [bool],
) -> bool {
    for (slot, role) in required.iter().enumerate() {
        if visited[slot] || !candidates[person].contains(&role.as_str()) {
            continue;
        }
        visited[slot] = true;
        let free = match slot_owner[slot] {
            None => true,
            Some(other) => augment(other, required, candidates, slot_owner, visited),
        };
        if free {
            slot_owner[slot] = Some(person);
            return true;
        }
    }
    false
}

/// Fills `required` roles from approvals given as `(principal, role signed for)`.
///
/// A principal may appear several times (signing for different roles); they still fill
/// at most one slot. Callers pass only approvals that are valid (current revision, role
/// held, not the requester).
pub fn fill_slots(required: &[String], approvals: &[(&str, &str)]) -> SignoffProgress {
    let mut people: Vec<&str> = Vec::new();
    let mut roles: Vec<Vec<&str>> = Vec::new();
    for (who, role) in approvals {
        match people.iter().position(|p| p == who) {
            Some(i) => roles[i].push(role),
            None => {
                people.push(who);
                roles.push(vec![role]);
            }
        }
    }
    let owners = match_slots(required, &roles);
    SignoffProgress {
        slots: required
            .iter()
            .zip(owners)
            .map(|(role, owner)| Slot {
                role: role.clone(),
                filled_by: owner.map(|i| people[i].to_string()),
            })
            .collect(),
    }
}

/// How many of `required` people holding `roles` (one list per person) could fill at
/// best; a policy whose sign-offs can never be complete is refused by `policy check`.
pub fn max_fillable(required: &[String], roles: &[&[String]]) -> usize {
    let roles: Vec<Vec<&str>> = roles
        .iter()
        .map(|held| held.iter().map(String::as_str).collect())
        .collect();
    match_slots(required, &roles)
        .iter()
        .filter(|o| o.is_some())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_person_fills_at_most_one_slot() {
        let required = roles(&["risk-reviewer", "approver"]);
        let p = fill_slots(
            &required,
            &[("lena", "risk-reviewer"), ("lena", "approver")],
        );
        assert_eq!(p.obtained(), 1);
        assert!(!p.complete());
    }

    #[test]
    fn matching_moves_people_to_fill_every_slot() {
        // sofia could be approver or risk-reviewer; devi only risk-reviewer. Greedy
        // assignment of sofia to risk-reviewer would leave approver empty.
        let required = roles(&["risk-reviewer", "approver"]);
        let p = fill_slots(
            &required,
            &[
                ("sofia", "risk-reviewer"),
                ("sofia", "approver"),
                ("devi", "risk-reviewer"),
            ],
        );
        assert!(p.complete());
        assert_eq!(p.slots[0].filled_by.as_deref(), Some("devi"));
        assert_eq!(p.slots[1].filled_by.as_deref(), Some("sofia"));
    }

    #[test]
    fn a_role_listed_twice_needs_two_people() {
        let required = roles(&["approver", "approver"]);
        assert_eq!(fill_slots(&required, &[("lena", "approver")]).obtained(), 1);
        assert!(fill_slots(&required, &[("lena", "approver"), ("sofia", "approver")]).complete());
        assert_eq!(
            fill_slots(&required, &[]).missing_roles(),
            ["approver", "approver"]
        );
    }
}
