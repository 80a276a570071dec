//! Demo data built into the binary: the playbook's sample change requests and policy
//! (copies of `../shared/fixtures`, kept identical by a test), so `tollgate demo` opens on
//! a realistic queue on any machine.

use crate::domain::change_request::{ChangeRequest, parse_document};
use crate::domain::policy::{Policy, parse_policy};

/// The sample change requests as `(file name, JSON text)`.
pub const FIXTURES: [(&str, &str); 5] = [
    ("CR-1042.json", include_str!("fixtures/CR-1042.json")),
    ("CR-1043.json", include_str!("fixtures/CR-1043.json")),
    ("CR-1044.json", include_str!("fixtures/CR-1044.json")),
    ("CR-1045.json", include_str!("fixtures/CR-1045.json")),
    ("CR-1046.json", include_str!("fixtures/CR-1046.json")),
];

/// The playbook's policy, as shipped in the shared fixtures (principals without keys).
pub const POLICY_TOML: &str = include_str!("fixtures/policy.toml");

/// The demo policy, parsed. The text is compiled in and covered by tests, so a failure
/// here is a build defect, not user input.
pub fn policy() -> Policy {
    match parse_policy(POLICY_TOML) {
        Ok((p, _)) => p,
        Err(report) => panic!("built-in demo policy is invalid:\n{report}"),
    }
}

/// The demo change requests, parsed (see [`policy`] on why a failure panics).
pub fn change_requests() -> Vec<ChangeRequest> {
    FIXTURES
        .iter()
        .map(|(name, text)| match parse_document(text.as_bytes()) {
            Ok((cr, _)) => cr,
            Err(e) => panic!("built-in fixture {name} is invalid:\n{e}"),
        })
        .collect()
}
