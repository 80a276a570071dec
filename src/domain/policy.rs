//! The governance policy: who may sign what, the risk matrix, the checklist, the
//! emergency rules. One versioned TOML file, kept beside the store.
//!
//! Parsing reports *every* problem with its key path (`signoffs.model.high[2]: ...`), and
//! unknown keys are errors: a misspelt `blockng = false` must not silently leave an item
//! blocking (or worse, the reverse).

use crate::domain::argv::{expand_once, read_argv};
use crate::domain::change_request::Gate;
use crate::domain::change_request::RiskLevel;
pub use crate::domain::per_level::PerLevel;
use crate::domain::per_level::read_per_level;
use crate::domain::reader::{Problem, Reader, SHORT_TEXT, child, index, quote};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The policy file format version this build reads.
pub const POLICY_VERSION: i64 = 1;

/// A person (or service identity) known to the policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Principal {
    /// Stable id used in CRs and decisions.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Roles held, e.g. `risk-reviewer`, `approver`, `on-call`, `lead`.
    pub roles: Vec<String>,
    /// OpenSSH public key lines (`ssh-ed25519 AAAA... comment`) the principal signs with.
    pub keys: Vec<String>,
}

impl Principal {
    /// Whether the principal holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Thresholds and flags of the risk matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskPolicy {
    /// Largest relative metric shift (in %, either direction) still rated low.
    pub low_max_shift_pct: f64,
    /// Largest relative metric shift still rated medium; anything above is high.
    pub medium_max_shift_pct: f64,
    /// Flags that make a CR high risk.
    pub high_flags: Vec<String>,
    /// Flags that make a CR at least medium risk.
    pub medium_flags: Vec<String>,
}

/// How a checklist item gets its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum ItemMode {
    /// From CI evidence on the CR: the check whose id is `evidence`.
    Automated {
        /// Check id looked up in the CR's `checks`.
        evidence: String,
    },
    /// Ticked by a reviewer, optionally with a note.
    Manual,
}

/// One item of the pre-deployment checklist.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChecklistItem {
    /// Stable id, used when ticking (`--tick privacy`).
    pub id: String,
    /// What the item asks, shown to reviewers.
    pub label: String,
    /// Automated (with its evidence key) or manual.
    #[serde(flatten)]
    pub mode: ItemMode,
    /// Gates the item applies to.
    pub gates: Vec<Gate>,
    /// Whether a failing, pending or unticked item blocks approval.
    pub blocking: bool,
}

/// Rules of the emergency gate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmergencyPolicy {
    /// Principal ids pre-designated to authorise emergencies.
    pub on_call: Vec<String>,
    /// How long an emergency exception stays open, in hours.
    pub exception_hours: i64,
    /// Deadline for the post-incident review, in hours after the exception opens.
    pub post_review_hours: i64,
    /// Roles that may sign the post-incident review.
    pub post_review_roles: Vec<String>,
    /// The playbook's target for an authorised rollback, in minutes.
    pub rollback_target_minutes: i64,
    /// Commands that perform a rollback, by subject and environment.
    pub rollback: Vec<RollbackCommand>,
}

/// A command tollgate runs once an emergency rollback is authorised.
///
/// The command is an argument vector, never a shell string, so a subject or version
/// taken from a change request cannot inject shell syntax. Placeholders in any argument:
/// `{subject}`, `{environment}`, `{from_version}`, `{to_version}`, `{incident}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackCommand {
    /// Subject it applies to; `None` for any.
    pub subject: Option<String>,
    /// Environment it applies to; `None` for any.
    pub environment: Option<String>,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Killed after this many seconds.
    pub timeout_seconds: i64,
}

/// Placeholders a rollback command may use.
pub const ROLLBACK_PLACEHOLDERS: [&str; 5] = [
    "subject",
    "environment",
    "from_version",
    "to_version",
    "incident",
];

impl RollbackCommand {
    /// The argument vector with placeholders filled in.
    pub fn render(&self, values: &[(&str, &str)]) -> Vec<String> {
        self.command
            .iter()
            .map(|arg| expand_once(arg, values))
            .collect()
    }
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// File format version.
    pub version: i64,
    /// Everyone who may act.
    pub principals: Vec<Principal>,
    /// The risk matrix.
    pub risk: RiskPolicy,
    /// Roles required to sign off, per gate and effective risk. Each listed role needs a
    /// distinct person; the requester never counts.
    pub signoffs: BTreeMap<Gate, PerLevel<Vec<String>>>,
    /// Canary observation window before full rollout, in hours.
    pub observation_hours: PerLevel<i64>,
    /// Checklist templates.
    pub checklist: Vec<ChecklistItem>,
    /// Emergency gate rules.
    pub emergency: EmergencyPolicy,
    /// Artifact kinds a CR must link, per gate and effective risk (`[artifacts.GATE]`);
    /// a gate or level without a list requires none.
    pub artifacts: BTreeMap<Gate, PerLevel<Vec<String>>>,
    /// Keys that must no longer be trusted, and from when (`[[revoked_keys]]`).
    pub revoked_keys: Vec<RevokedKey>,
    /// Sources (by name, e.g. `mlflow`) whose reported checks count as CI evidence
    /// (`[evidence] sources`); checks from anyone else count only from a `ci` principal.
    pub evidence_sources: Vec<String>,
    /// Review reminders (`[reminders]`): the SLA per risk, how often, when to escalate.
    pub reminders: Option<crate::domain::reminders::Reminders>,
    /// What happens after approval: canary skipping, deployment commands, KPI guards,
    /// the drill requirement and freeze windows (`[rollout]`, `[[kpi]]`, `[drills]`,
    /// `[[freeze]]`).
    pub after: crate::domain::rollout::AfterApproval,
}

/// A key declared compromised: entries it signed from `since` on are flagged by `verify`.
///
/// Rotation (a policy change that replaces a key) keeps earlier signatures valid;
/// revocation is the explicit statement that they may not be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokedKey {
    /// The OpenSSH public key line.
    pub key: String,
    /// From when entries signed by it are untrusted.
    pub since: RevokedSince,
    /// Why, for the record.
    pub reason: String,
}

/// The point from which a revoked key's signatures are untrusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokedSince {
    /// Entries signed at or after this time (the entry's own `at`).
    Time(chrono::DateTime<chrono::Utc>),
    /// Entries at or after this log position.
    Entry(u64),
}

/// Role required by default for each emergency sign-off when the policy has no
/// `[signoffs.emergency]` table.
pub const DEFAULT_EMERGENCY_ROLE: &str = "on-call";

/// Sign-offs a policy change needs when the policy has no `[signoffs.policy]` table: two
/// distinct leads (the proposer never counts).
pub const DEFAULT_POLICY_SIGNOFFS: [&str; 2] = ["lead", "lead"];

impl Policy {
    /// The principal with `id`.
    pub fn principal(&self, id: &str) -> Option<&Principal> {
        self.principals.iter().find(|p| p.id == id)
    }

    /// Roles that must sign off a CR of `gate` at `risk`.
    pub fn required_signoffs(&self, gate: Gate, risk: RiskLevel) -> Vec<String> {
        match (self.signoffs.get(&gate), gate) {
            (Some(table), _) => table.get(risk).clone(),
            (None, Gate::Policy) => DEFAULT_POLICY_SIGNOFFS.map(String::from).to_vec(),
            (None, _) => vec![DEFAULT_EMERGENCY_ROLE.to_string()],
        }
    }

    /// Artifact kinds a CR of `gate` at `risk` must link.
    pub fn required_artifacts(&self, gate: Gate, risk: RiskLevel) -> &[String] {
        self.artifacts
            .get(&gate)
            .map(|t| t.get(risk).as_slice())
            .unwrap_or(&[])
    }

    /// Principals holding at least one key: the only ones who can sign anything.
    pub fn signing_principals(&self) -> Vec<Principal> {
        self.principals
            .iter()
            .filter(|p| !p.keys.is_empty())
            .cloned()
            .collect()
    }

    /// Checklist items that apply to `gate`, in policy order.
    pub fn checklist_for(&self, gate: Gate) -> impl Iterator<Item = &ChecklistItem> {
        self.checklist
            .iter()
            .filter(move |i| i.gates.contains(&gate))
    }

    /// The most specific rollback command for `subject` in `environment`: subject and
    /// environment, then subject, then environment, then a catch-all.
    pub fn rollback_command(&self, subject: &str, environment: &str) -> Option<&RollbackCommand> {
        let score = |c: &RollbackCommand| {
            let s = match &c.subject {
                Some(x) if x == subject => 2,
                Some(_) => return None,
                None => 0,
            };
            let e = match &c.environment {
                Some(x) if x == environment => 1,
                Some(_) => return None,
                None => 0,
            };
            Some(s + e)
        };
        self.emergency
            .rollback
            .iter()
            .filter_map(|c| score(c).map(|s| (s, c)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, c)| c)
    }

    /// Every role some principal holds.
    pub fn known_roles(&self) -> BTreeSet<&str> {
        self.principals
            .iter()
            .flat_map(|p| p.roles.iter().map(String::as_str))
            .collect()
    }
}

/// Why a policy file was refused, and what else looks wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyReport {
    /// Errors: the policy cannot be used until they are fixed.
    pub errors: Vec<Problem>,
    /// Warnings: the policy works, but probably not as intended.
    pub warnings: Vec<Problem>,
}

impl fmt::Display for PolicyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.errors {
            writeln!(f, "error: {p}")?;
        }
        for p in &self.warnings {
            writeln!(f, "warning: {p}")?;
        }
        Ok(())
    }
}

/// Parses and validates policy TOML. On success the warnings are returned beside it.
pub fn parse_policy(text: &str) -> Result<(Policy, Vec<Problem>), PolicyReport> {
    let tree = crate::domain::reader::parse_toml(text).map_err(|problem| PolicyReport {
        errors: vec![problem],
        warnings: vec![],
    })?;
    let mut r = Reader::new();
    let mut warnings = Vec::new();
    let policy = read_policy(&mut r, &tree, &mut warnings);
    match policy {
        Some(p) if r.is_clean() => Ok((p, warnings)),
        _ => Err(PolicyReport {
            errors: r.into_problems(),
            warnings,
        }),
    }
}

const TOP_KEYS: [&str; 15] = [
    "version",
    "principals",
    "risk",
    "signoffs",
    "artifacts",
    "observation_hours",
    "checklist",
    "emergency",
    "revoked_keys",
    "evidence",
    "rollout",
    "kpi",
    "drills",
    "freeze",
    "reminders",
];

fn read_policy(r: &mut Reader, tree: &Value, warnings: &mut Vec<Problem>) -> Option<Policy> {
    let obj = r.as_object(tree, "")?;
    r.deny_unknown(obj, "", &TOP_KEYS);
    let version = r.integer(obj, "", "version", i64::MIN, i64::MAX);
    if let Some(v) = version
        && v != POLICY_VERSION
    {
        r.problem(
            "version",
            format!("expected {POLICY_VERSION} (the policy format this tollgate reads), found {v}"),
        );
    }
    let principals = read_principals(r, obj, warnings);
    let roles: BTreeSet<String> = principals
        .iter()
        .flatten()
        .flat_map(|p| p.roles.iter().cloned())
        .collect();
    let risk = r.required(obj, "", "risk").and_then(|v| read_risk(r, v));
    let signoffs = r
        .required(obj, "", "signoffs")
        .and_then(|v| read_signoffs(r, v, &roles, principals.as_deref().unwrap_or(&[])));
    let observation_hours = r.required(obj, "", "observation_hours").and_then(|v| {
        read_per_level(r, v, "observation_hours", |r, obj, path, key| {
            r.integer(obj, path, key, 0, 24 * 365)
        })
    });
    let checklist = read_checklist(r, obj, warnings);
    let emergency = r
        .required(obj, "", "emergency")
        .and_then(|v| read_emergency(r, v, &roles, principals.as_deref().unwrap_or(&[]), warnings));
    let artifacts = match obj.get("artifacts") {
        None => Some(BTreeMap::new()),
        Some(v) => read_artifacts(r, v),
    };
    let revoked_keys = match obj.get("revoked_keys") {
        None => Some(Vec::new()),
        Some(v) => read_revoked_keys(r, v, principals.as_deref().unwrap_or(&[])),
    };
    let evidence_sources = match obj.get("evidence") {
        None => Some(Vec::new()),
        Some(v) => r.as_object(v, "evidence").and_then(|e| {
            r.deny_unknown(e, "evidence", &["sources"]);
            match e.get("sources") {
                None => Some(Vec::new()),
                Some(_) => r.identifier_list(e, "evidence", "sources", 20),
            }
        }),
    };
    let after = crate::domain::rollout::policy::read(r, obj);
    let reminders = match obj.get("reminders") {
        None => Some(None),
        Some(v) => crate::domain::reminders::read(r, v).map(Some),
    };
    if let (Some(after), Some(emergency), Some(principals)) = (&after, &emergency, &principals)
        && !after.kpi.is_empty()
        && !emergency.on_call.iter().any(|id| {
            principals
                .iter()
                .any(|p| &p.id == id && p.has_role(crate::domain::provenance::SERVER_ROLE))
        })
    {
        warnings.push(Problem {
            path: "emergency.on_call".into(),
            message: "a KPI guard is configured ([[kpi]]) but no principal holding the server role is on the on-call roster: the guard records readings but cannot roll a regressed canary back; add the server's principal to on_call".into(),
        });
    }
    if signoffs
        .as_ref()
        .is_some_and(|s| !s.contains_key(&Gate::Policy))
    {
        warnings.push(Problem {
            path: "signoffs.policy".into(),
            message: format!(
                "no [signoffs.policy] table: a change to this policy needs {} (the proposer never counts); add the table to say so explicitly",
                DEFAULT_POLICY_SIGNOFFS.join(" + ")
            ),
        });
    }
    Some(Policy {
        version: version?,
        principals: principals?,
        risk: risk?,
        signoffs: signoffs?,
        observation_hours: observation_hours?,
        checklist: checklist?,
        emergency: emergency?,
        artifacts: artifacts?,
        revoked_keys: revoked_keys?,
        evidence_sources: evidence_sources?,
        after: after?,
        reminders: reminders?,
    })
}

/// `[artifacts.GATE]`: per effective risk, the artifact kinds a CR must link.
fn read_artifacts(r: &mut Reader, v: &Value) -> Option<BTreeMap<Gate, PerLevel<Vec<String>>>> {
    let obj = r.as_object(v, "artifacts")?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, table) in obj {
        let path = child("artifacts", key);
        let gate = match Gate::parse(key) {
            Some(g) if Gate::REVIEWED.contains(&g) => g,
            _ => {
                r.problem(
                    path,
                    "unknown gate; required artifacts apply to data, model and deployment",
                );
                ok = false;
                continue;
            }
        };
        let Some(levels) = r.as_object(table, &path) else {
            ok = false;
            continue;
        };
        r.deny_unknown(levels, &path, &["low", "medium", "high"]);
        let mut read = |level: &str| match levels.get(level) {
            None => Some(Vec::new()),
            Some(_) => r.identifier_list(levels, &path, level, 50),
        };
        match (read("low"), read("medium"), read("high")) {
            (Some(low), Some(medium), Some(high)) => {
                out.insert(gate, PerLevel { low, medium, high });
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// `[[revoked_keys]]`: `key`, exactly one of `since` (RFC 3339) or `since_entry` (a log
/// position), and a `reason`.
fn read_revoked_keys(
    r: &mut Reader,
    v: &Value,
    principals: &[Principal],
) -> Option<Vec<RevokedKey>> {
    let items = r.array_value(v, "revoked_keys", 1_000)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = index("revoked_keys", i);
        let Some(obj) = r.as_object(item, &path) else {
            ok = false;
            continue;
        };
        r.deny_unknown(obj, &path, &["key", "since", "since_entry", "reason"]);
        let key = r
            .required(obj, &path, "key")
            .and_then(|k| read_key_line(r, k, &child(&path, "key")));
        let reason = r.text(obj, &path, "reason", SHORT_TEXT);
        let since = match (obj.get("since"), obj.get("since_entry")) {
            (Some(_), None) => r.text(obj, &path, "since", SHORT_TEXT).and_then(|t| {
                match chrono::DateTime::parse_from_rfc3339(&t) {
                    Ok(at) => Some(RevokedSince::Time(at.with_timezone(&chrono::Utc))),
                    Err(_) => {
                        r.problem(
                            child(&path, "since"),
                            format!(
                                "expected an RFC 3339 time such as 2026-11-20T00:00:00Z, found {}",
                                quote(&t)
                            ),
                        );
                        None
                    }
                }
            }),
            (None, Some(_)) => r
                .integer(obj, &path, "since_entry", 1, i64::MAX)
                .map(|n| RevokedSince::Entry(n as u64)),
            _ => {
                r.problem(
                    &path,
                    "expected exactly one of since = \"RFC 3339 time\" or since_entry = LOG POSITION: from when the key is untrusted",
                );
                None
            }
        };
        if let Some(k) = &key {
            let blob = k.split_whitespace().nth(1);
            if let Some(owner) = principals
                .iter()
                .find(|p| p.keys.iter().any(|pk| pk.split_whitespace().nth(1) == blob))
            {
                r.problem(
                    child(&path, "key"),
                    format!(
                        "this key is revoked but still listed for {}; remove it from their keys",
                        owner.id
                    ),
                );
                ok = false;
            }
        }
        match (key, since, reason) {
            (Some(key), Some(since), Some(reason)) => out.push(RevokedKey { key, since, reason }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_principals(
    r: &mut Reader,
    obj: &Map<String, Value>,
    warnings: &mut Vec<Problem>,
) -> Option<Vec<Principal>> {
    let items = r.array(obj, "", "principals", 10_000)?;
    if items.is_empty() {
        r.problem("principals", "expected at least one [[principals]] entry");
        return None;
    }
    let mut out: Vec<Principal> = Vec::new();
    let mut ok = true;
    for (i, v) in items.iter().enumerate() {
        let path = index("principals", i);
        let Some(p) = r.as_object(v, &path) else {
            ok = false;
            continue;
        };
        r.deny_unknown(p, &path, &["id", "name", "roles", "keys"]);
        let id = r.identifier(p, &path, "id");
        let name = r.text(p, &path, "name", SHORT_TEXT);
        let roles = r.identifier_list(p, &path, "roles", 50);
        if roles.as_ref().is_some_and(Vec::is_empty) {
            r.problem(child(&path, "roles"), "expected at least one role");
        }
        let keys = match p.get("keys") {
            None => Some(Vec::new()),
            Some(v) => read_keys(r, v, &child(&path, "keys")),
        };
        if let Some(id) = &id
            && let Some(first) = out.iter().position(|q| &q.id == id)
        {
            r.problem(
                child(&path, "id"),
                format!(
                    "duplicate principal {} (also principals[{first}]); ids must be unique",
                    quote(id)
                ),
            );
        }
        // One key, one principal: a key listed twice would let one person fill two
        // sign-offs (and its signatures could not say whose they are).
        if let Some(keys) = &keys {
            for (k, line) in keys.iter().enumerate() {
                let material = key_material(line);
                let earlier = out.iter().find_map(|q| {
                    q.keys
                        .iter()
                        .position(|l| key_material(l) == material)
                        .map(|j| (q.id.clone(), j))
                });
                let same_principal = keys[..k].iter().position(|l| key_material(l) == material);
                if let Some((other, j)) = earlier {
                    r.problem(
                        index(&child(&path, "keys"), k),
                        format!(
                            "the same public key is already {other}'s (keys[{j}]); each key belongs to one principal — give each person their own key"
                        ),
                    );
                } else if let Some(j) = same_principal {
                    r.problem(
                        index(&child(&path, "keys"), k),
                        format!("the same public key as keys[{j}]; list it once"),
                    );
                }
            }
        }
        match (id, name, roles, keys) {
            (Some(id), Some(name), Some(roles), Some(keys)) => {
                if keys.is_empty() {
                    warnings.push(Problem {
                        path: child(&path, "keys"),
                        message: format!("{id} has no public key yet and cannot sign decisions"),
                    });
                }
                out.push(Principal {
                    id,
                    name,
                    roles,
                    keys,
                })
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// The key itself (algorithm and base64 blob), without the comment.
fn key_material(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_keys(r: &mut Reader, v: &Value, path: &str) -> Option<Vec<String>> {
    let items = r.array_value(v, path, 20)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match read_key_line(r, item, &index(path, i)) {
            Some(line) => out.push(line),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// One OpenSSH ed25519 public key line.
fn read_key_line(r: &mut Reader, item: &Value, path: &str) -> Option<String> {
    let line = r.text_value(
        item,
        path,
        crate::domain::reader::TextRule {
            max_chars: 1000,
            allow_empty: false,
        },
    )?;
    let mut parts = line.split_whitespace();
    let (algo, blob) = (parts.next(), parts.next());
    let blob_ok = blob.is_some_and(|b| {
        b.len() >= 16
            && b.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
    });
    if algo != Some("ssh-ed25519") || !blob_ok {
        r.problem(
            path,
            "expected an OpenSSH ed25519 public key line such as \"ssh-ed25519 AAAAC3Nza... name@host\" (the .pub file's content)",
        );
        return None;
    }
    Some(line)
}

fn read_risk(r: &mut Reader, v: &Value) -> Option<RiskPolicy> {
    let obj = r.as_object(v, "risk")?;
    r.deny_unknown(
        obj,
        "risk",
        &[
            "low_max_shift_pct",
            "medium_max_shift_pct",
            "high_flags",
            "medium_flags",
        ],
    );
    let low = r.number(obj, "risk", "low_max_shift_pct");
    let medium = r.number(obj, "risk", "medium_max_shift_pct");
    for (key, value) in [("low_max_shift_pct", low), ("medium_max_shift_pct", medium)] {
        if value.is_some_and(|x| x < 0.0) {
            r.problem(child("risk", key), "expected a percentage of 0 or more");
        }
    }
    if let (Some(l), Some(m)) = (low, medium)
        && l > m
    {
        r.problem(
            "risk.medium_max_shift_pct",
            format!("expected a value of at least low_max_shift_pct ({l}), found {m}"),
        );
    }
    let high_flags = r.identifier_list(obj, "risk", "high_flags", 200);
    let medium_flags = r.identifier_list(obj, "risk", "medium_flags", 200);
    if let (Some(h), Some(m)) = (&high_flags, &medium_flags) {
        for (i, f) in m.iter().enumerate() {
            if h.contains(f) {
                r.problem(
                    index("risk.medium_flags", i),
                    format!(
                        "flag {} is also in high_flags; list each flag once",
                        quote(f)
                    ),
                );
            }
        }
    }
    Some(RiskPolicy {
        low_max_shift_pct: low?,
        medium_max_shift_pct: medium?,
        high_flags: high_flags?,
        medium_flags: medium_flags?,
    })
}

fn read_signoffs(
    r: &mut Reader,
    v: &Value,
    roles: &BTreeSet<String>,
    principals: &[Principal],
) -> Option<BTreeMap<Gate, PerLevel<Vec<String>>>> {
    let obj = r.as_object(v, "signoffs")?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, table) in obj {
        let path = child("signoffs", key);
        let Some(gate) = Gate::parse(key) else {
            r.problem(
                path,
                "unknown gate; expected one of data, model, deployment, emergency, policy",
            );
            ok = false;
            continue;
        };
        let levels = read_per_level(r, table, &path, |r, obj, path, level| {
            let list = r.required(obj, path, level)?;
            let list_path = child(path, level);
            let items = r.array_value(list, &list_path, 20)?;
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let p = index(&list_path, i);
                let role = r.identifier_value(item, &p)?;
                if role == "requester" {
                    r.problem(
                        p,
                        "the requester never signs off their own change; name a reviewer role",
                    );
                    return None;
                }
                if !roles.contains(&role) {
                    r.problem(
                        p,
                        format!(
                            "unknown role {}: no principal holds it (known roles: {})",
                            quote(&role),
                            roles.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                    return None;
                }
                out.push(role);
            }
            if out.is_empty() {
                r.problem(
                    list_path,
                    "expected at least one role: every change needs a sign-off",
                );
                return None;
            }
            let held: Vec<&[String]> = principals.iter().map(|p| p.roles.as_slice()).collect();
            if crate::domain::signoff::max_fillable(&out, &held) < out.len() {
                r.problem(
                    list_path,
                    format!(
                        "needs {} distinct people holding {}, but the principals cannot fill every slot",
                        out.len(),
                        out.join(", ")
                    ),
                );
                return None;
            }
            Some(out)
        });
        match levels {
            Some(l) => {
                out.insert(gate, l);
            }
            None => ok = false,
        }
    }
    for gate in [Gate::Data, Gate::Model, Gate::Deployment] {
        if !obj.contains_key(gate.as_str()) {
            r.problem(
                child("signoffs", gate.as_str()),
                "missing required table; every gate except emergency needs low, medium and high sign-offs",
            );
            ok = false;
        }
    }
    ok.then_some(out)
}

fn read_checklist(
    r: &mut Reader,
    obj: &Map<String, Value>,
    warnings: &mut Vec<Problem>,
) -> Option<Vec<ChecklistItem>> {
    let items = r.array(obj, "", "checklist", 500)?;
    let mut out: Vec<ChecklistItem> = Vec::new();
    let mut ok = true;
    for (i, v) in items.iter().enumerate() {
        let path = index("checklist", i);
        let Some(item) = r.as_object(v, &path) else {
            ok = false;
            continue;
        };
        r.deny_unknown(
            item,
            &path,
            &["id", "label", "mode", "evidence", "gates", "blocking"],
        );
        let id = r.identifier(item, &path, "id");
        let label = r.text(item, &path, "label", SHORT_TEXT);
        let mode = r.choice(
            item,
            &path,
            "mode",
            &[("automated", true), ("manual", false)],
        );
        let mode = match (mode, item.get("evidence")) {
            (Some(true), Some(e)) => r
                .identifier_value(e, &child(&path, "evidence"))
                .map(|evidence| ItemMode::Automated { evidence }),
            (Some(true), None) => {
                r.problem(
                    child(&path, "evidence"),
                    "missing required field: an automated item names the CR check id it reads",
                );
                None
            }
            (Some(false), Some(_)) => {
                r.problem(
                    child(&path, "evidence"),
                    "manual items are ticked by a reviewer and take no evidence key; remove it or set mode = \"automated\"",
                );
                None
            }
            (Some(false), None) => Some(ItemMode::Manual),
            (None, _) => None,
        };
        let gates = r.array(item, &path, "gates", 4).and_then(|gs| {
            let gates_path = child(&path, "gates");
            if gs.is_empty() {
                r.problem(
                    &gates_path,
                    "expected at least one gate; an item with no gate never applies",
                );
                return None;
            }
            let mut out = Vec::new();
            for (j, g) in gs.iter().enumerate() {
                let gate = r.choice_value(g, &index(&gates_path, j), &Gate::ALL)?;
                out.push(gate);
            }
            Some(out)
        });
        let blocking = match item.get("blocking") {
            None => Some(true),
            Some(_) => r.boolean(item, &path, "blocking"),
        };
        if let Some(id) = &id
            && out.iter().any(|o| &o.id == id)
        {
            r.problem(
                child(&path, "id"),
                format!("duplicate checklist item {}", quote(id)),
            );
            ok = false;
        }
        match (id, label, mode, gates, blocking) {
            (Some(id), Some(label), Some(mode), Some(gates), Some(blocking)) => {
                out.push(ChecklistItem {
                    id,
                    label,
                    mode,
                    gates,
                    blocking,
                })
            }
            _ => ok = false,
        }
    }
    for gate in [Gate::Data, Gate::Model, Gate::Deployment] {
        if ok && !out.iter().any(|i| i.gates.contains(&gate)) {
            warnings.push(Problem {
                path: "checklist".into(),
                message: format!("no checklist item applies to the {gate} gate"),
            });
        }
    }
    ok.then_some(out)
}

fn read_emergency(
    r: &mut Reader,
    v: &Value,
    roles: &BTreeSet<String>,
    principals: &[Principal],
    warnings: &mut Vec<Problem>,
) -> Option<EmergencyPolicy> {
    let path = "emergency";
    let obj = r.as_object(v, path)?;
    r.deny_unknown(
        obj,
        path,
        &[
            "on_call",
            "exception_hours",
            "post_review_hours",
            "post_review_roles",
            "rollback_target_minutes",
            "rollback",
        ],
    );
    let on_call = r.identifier_list(obj, path, "on_call", 100);
    if let Some(list) = &on_call {
        for (i, id) in list.iter().enumerate() {
            match principals.iter().find(|p| &p.id == id) {
                None if !principals.is_empty() => r.problem(
                    index("emergency.on_call", i),
                    format!(
                        "unknown principal {}; list ids from [[principals]]",
                        quote(id)
                    ),
                ),
                // The server's principal is on the roster to let the KPI guard roll back.
                Some(p)
                    if !p.has_role(DEFAULT_EMERGENCY_ROLE)
                        && !p.has_role(crate::domain::provenance::SERVER_ROLE) =>
                {
                    warnings.push(Problem {
                        path: index("emergency.on_call", i),
                        message: format!(
                            "{id} is on the roster but does not hold the on-call role"
                        ),
                    })
                }
                _ => {}
            }
        }
        if list.is_empty() {
            r.problem(
                "emergency.on_call",
                "expected at least one on-call principal",
            );
        }
    }
    let exception_hours = r.integer(obj, path, "exception_hours", 1, 24 * 30);
    let post_review_hours = r.integer(obj, path, "post_review_hours", 1, 24 * 30);
    let post_review_roles = r.identifier_list(obj, path, "post_review_roles", 20);
    if let Some(list) = &post_review_roles {
        for (i, role) in list.iter().enumerate() {
            if !roles.contains(role) {
                r.problem(
                    index("emergency.post_review_roles", i),
                    format!("unknown role {}: no principal holds it", quote(role)),
                );
            }
        }
        if list.is_empty() {
            r.problem("emergency.post_review_roles", "expected at least one role");
        }
    }
    let rollback_target_minutes = r.integer(obj, path, "rollback_target_minutes", 1, 24 * 60);
    let rollback = match obj.get("rollback") {
        None => Some(Vec::new()),
        Some(v) => read_rollback_commands(r, v),
    };
    Some(EmergencyPolicy {
        on_call: on_call?,
        exception_hours: exception_hours?,
        post_review_hours: post_review_hours?,
        post_review_roles: post_review_roles?,
        rollback_target_minutes: rollback_target_minutes?,
        rollback: rollback?,
    })
}

fn read_rollback_commands(r: &mut Reader, v: &Value) -> Option<Vec<RollbackCommand>> {
    let items = r.array_value(v, "emergency.rollback", 100)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = index("emergency.rollback", i);
        let Some(obj) = r.as_object(item, &path) else {
            ok = false;
            continue;
        };
        r.deny_unknown(
            obj,
            &path,
            &["subject", "environment", "command", "timeout_seconds"],
        );
        let subject = r.opt_text(obj, &path, "subject", SHORT_TEXT);
        let environment = match obj.get("environment") {
            None => Some(None),
            Some(e) => r
                .choice_value(
                    e,
                    &child(&path, "environment"),
                    &[("dev", "dev"), ("staging", "staging"), ("prod", "prod")],
                )
                .map(|e| Some(e.to_string())),
        };
        let command = read_argv(r, obj, &path, &ROLLBACK_PLACEHOLDERS);
        let timeout_seconds = match obj.get("timeout_seconds") {
            None => Some(300),
            Some(_) => r.integer(obj, &path, "timeout_seconds", 1, 3600),
        };
        match (subject, environment, command, timeout_seconds) {
            (Some(subject), Some(environment), Some(command), Some(timeout_seconds)) => {
                out.push(RollbackCommand {
                    subject,
                    environment,
                    command,
                    timeout_seconds,
                })
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo;

    fn errors_of(text: &str) -> Vec<String> {
        parse_policy(text)
            .expect_err("policy must be refused")
            .errors
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn the_playbook_policy_reads_cleanly() {
        let (p, warnings) = parse_policy(demo::POLICY_TOML).unwrap();
        assert_eq!(p.principals.len(), 11);
        assert_eq!(
            p.required_signoffs(Gate::Policy, RiskLevel::High),
            ["lead", "lead"]
        );
        assert_eq!(
            p.required_artifacts(Gate::Model, RiskLevel::Medium),
            ["model_card", "validation_report"]
        );
        assert!(p.required_artifacts(Gate::Model, RiskLevel::Low).is_empty());
        assert_eq!(
            p.required_signoffs(Gate::Model, RiskLevel::High),
            ["data-reviewer", "risk-reviewer", "ops-reviewer", "approver"]
        );
        assert_eq!(
            p.required_signoffs(Gate::Emergency, RiskLevel::Low),
            ["on-call"]
        );
        assert_eq!(*p.observation_hours.get(RiskLevel::High), 24);
        assert_eq!(p.checklist_for(Gate::Data).count(), 5);
        // The shared fixture leaves keys out: each principal gets a warning, nothing else.
        assert!(warnings.iter().all(|w| w.message.contains("no public key")));
    }

    #[test]
    fn unknown_role_in_signoffs_is_named_with_its_key_path() {
        let text = demo::POLICY_TOML.replace(
            "high = [\"data-reviewer\", \"risk-reviewer\", \"ops-reviewer\", \"approver\"]",
            "high = [\"data-reviewer\", \"risk-reviewer\", \"ops-reviewr\", \"approver\"]",
        );
        let errors = errors_of(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("signoffs.model.high[2]: unknown role \"ops-reviewr\""),
            "{errors:?}"
        );
    }

    #[test]
    fn duplicate_principals_and_items_without_gates_are_all_reported() {
        let text = demo::POLICY_TOML
            .replace("id = \"sofia\"", "id = \"lena\"")
            .replace("gates = [\"model\", \"data\"]\nblocking = true\n\n[[checklist]]\nid = \"performance\"", "gates = []\nblocking = true\n\n[[checklist]]\nid = \"performance\"");
        let errors = errors_of(&text);
        assert!(
            errors.iter().any(|e| e.starts_with(
                "principals[7].id: duplicate principal \"lena\" (also principals[6])"
            )),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("checklist[0].gates: expected at least one gate")),
            "{errors:?}"
        );
    }

    #[test]
    fn typos_wrong_types_and_contradictions_are_errors() {
        let text = demo::POLICY_TOML
            .replace("blocking = false", "blockng = false")
            .replace("low_max_shift_pct = 1.0", "low_max_shift_pct = 7.0")
            .replace("exception_hours = 4", "exception_hours = \"4h\"")
            .replace(
                "medium_flags = [\"new_feature\"",
                "medium_flags = [\"new_data_source\", \"new_feature\"",
            )
            .replace(
                "mode = \"manual\"\ngates = [\"model\", \"data\"]",
                "mode = \"manual\"\nevidence = \"pii\"\ngates = [\"model\", \"data\"]",
            );
        let errors = errors_of(&text);
        let has = |prefix: &str| errors.iter().any(|e| e.starts_with(prefix));
        assert!(has("checklist[7].blockng: unknown key"), "{errors:?}");
        assert!(
            has("risk.medium_max_shift_pct: expected a value of at least low_max_shift_pct (7)"),
            "{errors:?}"
        );
        assert!(
            has("emergency.exception_hours: expected a whole number, found string \"4h\""),
            "{errors:?}"
        );
        assert!(
            has("risk.medium_flags[0]: flag \"new_data_source\" is also in high_flags"),
            "{errors:?}"
        );
        assert!(has("checklist[4].evidence: manual items"), "{errors:?}");
    }

    #[test]
    fn automated_items_need_evidence_and_signoffs_must_be_fillable() {
        let text = demo::POLICY_TOML
            .replace("evidence = \"latency\"\n", "")
            .replace(
                "low = [\"ops-reviewer\"]",
                "low = [\"ops-reviewer\", \"ops-reviewer\"]",
            );
        let errors = errors_of(&text);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("checklist[5].evidence: missing required field")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("signoffs.deployment.low: needs 2 distinct people")),
            "{errors:?}"
        );
    }

    #[test]
    fn syntax_errors_give_line_and_column_and_versions_are_checked() {
        let errors = errors_of("version = 1\n[risk\n");
        assert!(errors[0].starts_with("line 2, column"), "{errors:?}");
        let errors = errors_of(&demo::POLICY_TOML.replace("version = 1", "version = 2"));
        assert!(errors[0].starts_with("version: expected 1"), "{errors:?}");
        let errors = errors_of(
            &demo::POLICY_TOML.replace("low_max_shift_pct = 1.0", "low_max_shift_pct = nan"),
        );
        assert!(
            errors[0].contains("NaN and infinities are not allowed"),
            "{errors:?}"
        );
    }

    #[test]
    fn rollback_commands_are_argument_vectors_with_known_placeholders() {
        let text = format!(
            "{}\n[[emergency.rollback]]\nsubject = \"recommender\"\nenvironment = \"prod\"\ncommand = [\"helm\", \"rollback\", \"{{subject}}\", \"{{to_version}}\"]\ntimeout_seconds = 120\n\n[[emergency.rollback]]\ncommand = [\"./rollback.sh\", \"{{subject}}@{{environment}}\"]\n",
            demo::POLICY_TOML
        );
        let (p, _) = parse_policy(&text).unwrap();
        let c = p.rollback_command("recommender", "prod").unwrap();
        assert_eq!(
            c.render(&[("subject", "recommender"), ("to_version", "7")]),
            ["helm", "rollback", "recommender", "7"]
        );
        assert_eq!(c.timeout_seconds, 120);
        let fallback = p.rollback_command("fraud-detector", "prod").unwrap();
        assert_eq!(fallback.timeout_seconds, 300);
        assert_eq!(
            fallback.render(&[("subject", "x; rm -rf /"), ("environment", "prod")]),
            ["./rollback.sh", "x; rm -rf /@prod"]
        );

        let bad = text.replace("{to_version}", "{version}");
        let errors = errors_of(&bad);
        assert!(
            errors.iter().any(|e| e
                .starts_with("emergency.rollback[1].command[3]: unknown placeholder {version}")),
            "{errors:?}"
        );
    }

    #[test]
    fn missing_gate_tables_and_unknown_on_call_principals_are_reported() {
        let text = demo::POLICY_TOML
            .replace("[signoffs.data]", "[signoffs.dta]")
            .replace(
                "on_call = [\"marco\", \"lena\", \"guard\"]",
                "on_call = [\"marco\", \"lina\", \"guard\"]",
            );
        let errors = errors_of(&text);
        let has = |prefix: &str| errors.iter().any(|e| e.starts_with(prefix));
        assert!(has("signoffs.dta: unknown gate"), "{errors:?}");
        assert!(has("signoffs.data: missing required table"), "{errors:?}");
        assert!(
            has("emergency.on_call[1]: unknown principal \"lina\""),
            "{errors:?}"
        );
    }
}

#[cfg(test)]
mod render_tests {
    use super::expand_once;

    #[test]
    fn placeholders_are_filled_once_and_values_stay_literal() {
        let values = [("subject", "{incident}"), ("incident", "INC-1")];
        assert_eq!(
            expand_once("--name={subject} {incident} {unknown} {", &values),
            "--name={incident} INC-1 {unknown} {"
        );
    }
}
