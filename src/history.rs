//! The decision history for leads: every decision with its context, filters, and the
//! governance-health figures (lead times, rates, exceptions, over-governance signals).
//! Shared by `tollgate history` / `tollgate health` and the TUI's History screen.

use crate::domain::change_request::Gate;
use crate::domain::decision::Verdict;
use crate::domain::emergency::{Exception, ExceptionState};
use crate::domain::policy_book::PolicyBook;
use crate::domain::risk::{RiskLevel, assess};
use crate::domain::status::Status;
use crate::store::Store;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// An entry hash as the log writes it (`sha256:` and 64 lower-case hex digits), kept as
/// its 32 bytes: a million History rows are some 80 MB smaller than with the text. Any
/// other text (a store written by something else) is kept as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryHash {
    /// A SHA-256 digest.
    Sha256([u8; 32]),
    /// Anything else, verbatim.
    Other(Box<str>),
}

impl From<String> for EntryHash {
    fn from(text: String) -> Self {
        let mut bytes = [0u8; 32];
        match text.strip_prefix("sha256:") {
            Some(h)
                if h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                    && hex::decode_to_slice(h, &mut bytes).is_ok() =>
            {
                EntryHash::Sha256(bytes)
            }
            _ => EntryHash::Other(text.into_boxed_str()),
        }
    }
}

impl std::fmt::Display for EntryHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryHash::Sha256(bytes) => write!(f, "sha256:{}", hex::encode(bytes)),
            EntryHash::Other(text) => f.write_str(text),
        }
    }
}

impl Serialize for EntryHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One decision with what a lead needs to read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// Log position.
    pub seq: u64,
    /// Entry hash.
    pub hash: EntryHash,
    /// When it was signed.
    pub at: DateTime<Utc>,
    /// The CR.
    pub cr_id: Arc<str>,
    /// Revision decided on.
    pub cr_revision: u32,
    /// Its digest.
    pub cr_digest: Arc<str>,
    /// Verdict.
    pub verdict: Verdict,
    /// Role signed for.
    pub role: Arc<str>,
    /// Who.
    pub principal: Arc<str>,
    /// Gate of the CR.
    pub gate: Gate,
    /// Subject name.
    pub subject: Arc<str>,
    /// Environment.
    pub environment: Arc<str>,
    /// CR title.
    pub title: Arc<str>,
    /// Effective risk of the revision decided on.
    pub risk: RiskLevel,
    /// When tollgate first stored the CR.
    pub submitted_at: Option<DateTime<Utc>>,
    /// Submitted → decided.
    #[serde(serialize_with = "seconds")]
    pub lead_time: Option<Duration>,
}

fn seconds<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_i64(d.num_seconds()),
        None => s.serialize_none(),
    }
}

/// A pending CR, for over-governance signals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Waiting {
    /// CR id.
    pub cr_id: String,
    /// Effective risk.
    pub risk: RiskLevel,
    /// How long it has waited since submission.
    #[serde(serialize_with = "seconds")]
    pub waited: Option<Duration>,
}

/// Everything the history screens and commands show.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Decisions, oldest first.
    pub entries: Vec<HistoryEntry>,
    /// Pending CRs with how long they have waited.
    pub waiting: Vec<Waiting>,
    /// Decision entries left out because they name what the store does not hold.
    pub untrusted: Vec<crate::audit::log::Untrusted>,
    /// Emergency rollbacks, their outcomes and post-incident reviews, oldest first.
    pub events: Vec<EmergencyEvent>,
}

/// What an emergency entry records, as the history lists it beside the decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum EventKind {
    /// An on-call bypass authorising a rollback.
    Rollback {
        /// Version rolled back from.
        from_version: String,
        /// Version rolled back to.
        to_version: String,
    },
    /// The rollback command's recorded outcome.
    RollbackRan {
        /// Whether it succeeded.
        succeeded: bool,
    },
    /// A lead's post-incident review.
    Review,
}

impl EventKind {
    /// One word for the table's verdict column.
    pub fn label(&self) -> &'static str {
        match self {
            EventKind::Rollback { .. } => "rollback",
            EventKind::RollbackRan { succeeded: true } => "ran ok",
            EventKind::RollbackRan { succeeded: false } => "ran FAIL",
            EventKind::Review => "review",
        }
    }
}

/// One emergency entry in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmergencyEvent {
    /// Log position.
    pub seq: u64,
    /// Entry hash.
    pub hash: String,
    /// When it was signed.
    pub at: DateTime<Utc>,
    /// What it records.
    #[serde(flatten)]
    pub kind: EventKind,
    /// Incident ticket.
    pub incident: String,
    /// Who signed it.
    pub principal: String,
    /// Subject and environment rolled back (empty for a review).
    pub subject: String,
    /// Environment.
    pub environment: String,
}

/// The emergency entries as history events; one that does not read is left out (the
/// readers that derive exceptions name it as untrusted).
pub fn emergency_events(entries: &[crate::audit::log::LogEntry]) -> Vec<EmergencyEvent> {
    use crate::audit::log::EntryKind;
    use crate::domain::emergency::Claim;
    let mut subjects: HashMap<String, (String, String)> = HashMap::new();
    entries
        .iter()
        .filter_map(|e| {
            let kind = EntryKind::parse(&e.kind)?;
            let claim = crate::audit::emergency::claim_of(kind, &e.body).ok()?;
            let (kind, incident, subject, environment) = match &claim {
                Claim::Authorise(a) => {
                    subjects.insert(e.hash.clone(), (a.subject.clone(), a.environment.clone()));
                    (
                        EventKind::Rollback {
                            from_version: a.from_version.clone(),
                            to_version: a.to_version.clone(),
                        },
                        a.incident.clone(),
                        a.subject.clone(),
                        a.environment.clone(),
                    )
                }
                Claim::Rollback(o) => {
                    let (subject, environment) =
                        subjects.get(&o.authorisation).cloned().unwrap_or_default();
                    (
                        EventKind::RollbackRan {
                            succeeded: o.outcome.succeeded(),
                        },
                        o.incident.clone(),
                        subject,
                        environment,
                    )
                }
                Claim::Review(r) => (
                    EventKind::Review,
                    r.incident.clone(),
                    String::new(),
                    String::new(),
                ),
            };
            Some(EmergencyEvent {
                seq: e.seq,
                hash: e.hash.clone(),
                at: claim.at(),
                kind,
                incident,
                principal: claim.principal().to_string(),
                subject,
                environment,
            })
        })
        .collect()
}

/// What the history shows about one revision, shared by every decision on it.
#[derive(Clone)]
struct RevisionContext {
    cr_id: Arc<str>,
    digest: Arc<str>,
    gate: Gate,
    subject: Arc<str>,
    environment: Arc<str>,
    title: Arc<str>,
    risk: RiskLevel,
}

/// Loads every decision with the context of the revision it was bound to, a page of the
/// log at a time; repeated strings (CR, subject, principal, role) are shared, so a
/// million decisions stay a few hundred bytes each.
pub fn load(
    store: &dyn Store,
    book: &PolicyBook,
    now: DateTime<Utc>,
) -> Result<History, crate::store::StoreError> {
    let submitted = store.submission_times()?;
    // Looked up by &str (no allocation per decision): CR id → revision → context.
    let mut revisions: HashMap<String, HashMap<u32, RevisionContext>> = HashMap::new();
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    let mut intern = |s: String| -> Arc<str> {
        match names.get(s.as_str()) {
            Some(a) => a.clone(),
            None => {
                let a: Arc<str> = Arc::from(s.as_str());
                names.insert(s, a.clone());
                a
            }
        }
    };
    let mut entries = Vec::new();
    let mut untrusted = Vec::new();
    let mut after = 0;
    loop {
        let page = store.decision_summaries(after, 50_000)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for s in page {
            let known = revisions
                .get(s.cr_id.as_str())
                .and_then(|r| r.get(&s.cr_revision))
                .cloned();
            let ctx = match known {
                Some(ctx) => ctx,
                None => {
                    let Some(rev) = store.revision(&s.cr_id, s.cr_revision)? else {
                        // One bad entry never stops the history: it is left out, named.
                        untrusted.push(crate::audit::log::Untrusted {
                            seq: s.seq,
                            problem: format!(
                                "decides on {} revision {}, which is not in the store",
                                s.cr_id, s.cr_revision
                            ),
                        });
                        continue;
                    };
                    let c = &rev.cr;
                    let ctx = RevisionContext {
                        cr_id: Arc::from(c.id.as_str()),
                        digest: Arc::from(rev.digest.as_str()),
                        gate: c.gate,
                        subject: Arc::from(c.subject.name.as_str()),
                        environment: Arc::from(c.subject.environment.as_str()),
                        title: Arc::from(c.title.as_str()),
                        risk: assess(c, &book.policy().risk).effective,
                    };
                    revisions
                        .entry(s.cr_id.clone())
                        .or_default()
                        .insert(s.cr_revision, ctx.clone());
                    ctx
                }
            };
            let Some(verdict) = Verdict::ALL
                .iter()
                .find(|(n, _)| *n == s.verdict)
                .map(|(_, v)| *v)
            else {
                untrusted.push(crate::audit::log::Untrusted {
                    seq: s.seq,
                    problem: format!("unknown verdict {:?}", s.verdict),
                });
                continue;
            };
            let submitted_at = submitted.get(&s.cr_id).copied();
            entries.push(HistoryEntry {
                lead_time: submitted_at.map(|t| (s.at - t).max(Duration::zero())),
                submitted_at,
                seq: s.seq,
                hash: s.hash.into(),
                at: s.at,
                cr_id: ctx.cr_id,
                cr_revision: s.cr_revision,
                cr_digest: if *ctx.digest == *s.cr_digest {
                    ctx.digest
                } else {
                    Arc::from(s.cr_digest)
                },
                verdict,
                role: intern(s.role),
                principal: intern(s.principal),
                gate: ctx.gate,
                subject: ctx.subject,
                environment: ctx.environment,
                title: ctx.title,
                risk: ctx.risk,
            });
        }
    }
    // What waits, from the queue's cached rows (status and risk as the queue shows
    // them): with the cache warm — any earlier listing, the TUI's own queue — no decision
    // is read again here; stale rows are evaluated and cached on the way.
    let mut waiting = Vec::new();
    let pending = crate::workflow::queue::SummaryPages::new(store, book, None)
        .only(Some(Status::Pending.as_str()), None)
        .without_cells();
    for page in pending {
        for row in page? {
            let Some(risk) = RiskLevel::ALL
                .iter()
                .find(|(name, _)| *name == row.risk)
                .map(|(_, r)| *r)
            else {
                continue;
            };
            waiting.push(Waiting {
                waited: submitted
                    .get(&row.cr_id)
                    .map(|t| (now - *t).max(Duration::zero())),
                cr_id: row.cr_id,
                risk,
            });
        }
    }
    Ok(History {
        entries,
        waiting,
        untrusted,
        events: emergency_events(&store.emergency_entries()?),
    })
}

/// A filter over the history: structured terms plus free text.
///
/// Written the way a lead types it in `/`: `principal:devi verdict:approve risk:high
/// gate:model subject:fraud since:2026-11-01 until:2026-11-30 spam` — every term must
/// match; words without a `key:` search CR id, title, subject, principal and role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Principal id.
    pub principal: Option<String>,
    /// Subject name (substring).
    pub subject: Option<String>,
    /// Gate.
    pub gate: Option<Gate>,
    /// Effective risk.
    pub risk: Option<RiskLevel>,
    /// Verdict.
    pub verdict: Option<Verdict>,
    /// First day included (UTC).
    pub since: Option<NaiveDate>,
    /// Last day included (UTC).
    pub until: Option<NaiveDate>,
    /// Free-text words (all must appear).
    pub words: Vec<String>,
}

/// A filter expression that does not read: which term, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A value outside the key's choices.
    #[error("{key}: expected one of {expected}, found {found:?}")]
    NotAChoice {
        /// The key (`gate`, `risk`, `verdict`).
        key: String,
        /// The choices, comma-separated.
        expected: String,
        /// What was typed.
        found: String,
    },
    /// A date that is not `YYYY-MM-DD`.
    #[error("{key}: expected a date such as 2026-11-01, found {found:?}")]
    NotADate {
        /// The key (`since`, `until`).
        key: String,
        /// What was typed.
        found: String,
    },
    /// A key the filter does not know.
    #[error(
        "unknown filter {0:?}; use principal:, subject:, gate:, risk:, verdict:, since:, until: or plain words"
    )]
    UnknownKey(String),
}

fn pick<T: Copy>(key: &str, value: &str, options: &[(&str, T)]) -> Result<T, FilterError> {
    options
        .iter()
        .find(|(n, _)| *n == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| FilterError::NotAChoice {
            key: key.to_string(),
            expected: options
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
            found: value.to_string(),
        })
}

impl Filter {
    /// Parses a filter expression; errors say which term and what was expected.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        let mut f = Filter::default();
        for term in expr.split_whitespace() {
            let Some((key, value)) = term.split_once(':') else {
                f.words.push(term.to_lowercase());
                continue;
            };
            let date = |v: &str| {
                NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| FilterError::NotADate {
                    key: key.to_string(),
                    found: v.to_string(),
                })
            };
            match key {
                "principal" | "by" => f.principal = Some(value.to_string()),
                "subject" => f.subject = Some(value.to_lowercase()),
                "gate" => f.gate = Some(pick(key, value, &Gate::ALL)?),
                "risk" => f.risk = Some(pick(key, value, &RiskLevel::ALL)?),
                "verdict" => f.verdict = Some(pick(key, value, &Verdict::ALL)?),
                "since" => f.since = Some(date(value)?),
                "until" => f.until = Some(date(value)?),
                other => {
                    return Err(FilterError::UnknownKey(other.to_string()));
                }
            }
        }
        Ok(f)
    }

    /// Whether an emergency event passes: a gate, risk or verdict term is about
    /// decisions, so it leaves events out; the other terms apply as to decisions (words
    /// search the incident, subject and principal).
    pub fn matches_event(&self, e: &EmergencyEvent) -> bool {
        self.gate.is_none()
            && self.risk.is_none()
            && self.verdict.is_none()
            && self.passes(
                e.at,
                &e.principal,
                &e.subject,
                &[&e.incident, &e.subject, &e.principal, e.kind.label()],
            )
    }

    /// Whether `e` passes.
    pub fn matches(&self, e: &HistoryEntry) -> bool {
        self.gate.is_none_or(|g| g == e.gate)
            && self.risk.is_none_or(|r| r == e.risk)
            && self.verdict.is_none_or(|v| v == e.verdict)
            && self.passes(
                e.at,
                &e.principal,
                &e.subject,
                &[&e.cr_id, &e.title, &e.subject, &e.principal, &e.role],
            )
    }

    /// The terms every row answers: principal, subject, days, and the free words over
    /// `fields`.
    fn passes(&self, at: DateTime<Utc>, principal: &str, subject: &str, fields: &[&str]) -> bool {
        let day = at.date_naive();
        self.principal.as_ref().is_none_or(|p| p == principal)
            && self
                .subject
                .as_ref()
                .is_none_or(|s| subject.to_lowercase().contains(s))
            && self.since.is_none_or(|d| day >= d)
            && self.until.is_none_or(|d| day <= d)
            && self
                .words
                .iter()
                .all(|w| fields.iter().any(|field| contains_ignore_case(field, w)))
    }
}

/// Whether `hay` contains `needle` (already lower-case), ignoring case, without
/// allocating for ASCII text (the common case across a million rows).
fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    if hay.is_ascii() && needle.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle.as_bytes());
        n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
    } else {
        hay.to_lowercase().contains(needle)
    }
}

/// Lead-time figures for one risk level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeadTimes {
    /// Risk level.
    pub risk: RiskLevel,
    /// Decisions counted.
    pub decisions: usize,
    /// Median lead time, in seconds.
    pub median_secs: Option<i64>,
    /// 90th percentile, in seconds.
    pub p90_secs: Option<i64>,
}

/// Governance health: how fast and how decisively the process runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    /// Lead time (submitted → decided) by risk.
    pub lead_times: Vec<LeadTimes>,
    /// Decisions counted.
    pub decisions: usize,
    /// Share of decisions that approve, 0–1.
    pub approval_rate: f64,
    /// Share that reject.
    pub rejection_rate: f64,
    /// Share that request changes.
    pub changes_rate: f64,
    /// Emergency exceptions opened.
    pub exceptions_opened: usize,
    /// Closed by a review.
    pub exceptions_closed: usize,
    /// Review overdue.
    pub exceptions_overdue: usize,
    /// Low-risk CRs pending longer than the threshold (a sign of over-governance).
    pub slow_low_risk: Vec<Waiting>,
    /// The threshold used, in hours.
    pub slow_after_hours: i64,
}

/// Rollback drills in one calendar quarter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarterDrills {
    /// `2026-Q4`.
    pub quarter: String,
    /// Drills run.
    pub drills: usize,
    /// Of which failed (or timed out).
    pub failed: usize,
    /// Median run time of the successful ones, in seconds.
    pub median_secs: Option<f64>,
    /// The slowest successful one, in seconds.
    pub slowest_secs: Option<f64>,
    /// Successful drills within the policy's rollback target.
    pub within_target: usize,
}

/// Rollback drills per quarter against the policy's `rollback_target_minutes`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillHealth {
    /// Quarters with drills, oldest first.
    pub quarters: Vec<QuarterDrills>,
    /// The playbook's target for a rollback, in minutes.
    pub target_minutes: i64,
    /// Subjects whose last drill failed.
    pub failing: Vec<String>,
}

/// Groups `drills` by calendar quarter.
pub fn drill_health(
    drills: &[crate::domain::rollout::DrillFact],
    target_minutes: i64,
) -> DrillHealth {
    use chrono::Datelike;
    let mut quarters: Vec<QuarterDrills> = Vec::new();
    let mut times: Vec<Vec<f64>> = Vec::new();
    let mut sorted: Vec<&crate::domain::rollout::DrillFact> = drills.iter().collect();
    sorted.sort_by_key(|d| d.at);
    for d in sorted {
        let quarter = format!("{}-Q{}", d.at.year(), d.at.month0() / 3 + 1);
        if quarters.last().is_none_or(|q| q.quarter != quarter) {
            quarters.push(QuarterDrills {
                quarter,
                drills: 0,
                failed: 0,
                median_secs: None,
                slowest_secs: None,
                within_target: 0,
            });
            times.push(Vec::new());
        }
        let (Some(q), Some(t)) = (quarters.last_mut(), times.last_mut()) else {
            continue;
        };
        q.drills += 1;
        if d.outcome.succeeded() {
            let secs = d.outcome.duration_ms as f64 / 1000.0;
            t.push(secs);
            if secs <= (target_minutes * 60) as f64 {
                q.within_target += 1;
            }
        } else {
            q.failed += 1;
        }
    }
    for (q, t) in quarters.iter_mut().zip(times.iter_mut()) {
        t.sort_by(f64::total_cmp);
        q.median_secs = t.get(t.len().saturating_sub(1) / 2).copied();
        q.slowest_secs = t.last().copied();
    }
    let mut failing: Vec<String> = Vec::new();
    for d in drills.iter().rev() {
        let last_of_subject = drills.iter().rev().find(|x| x.subject == d.subject) == Some(d);
        if last_of_subject && !d.outcome.succeeded() && !failing.contains(&d.subject) {
            failing.push(d.subject.clone());
        }
    }
    DrillHealth {
        quarters,
        target_minutes,
        failing,
    }
}

/// The `q`-quantile (0–1) of sorted values, nearest rank.
fn quantile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Computes the health figures over `entries` (already filtered as the lead wishes).
pub fn health(
    entries: &[&HistoryEntry],
    waiting: &[Waiting],
    exceptions: &[Exception],
    now: DateTime<Utc>,
) -> Health {
    let slow_after_hours = 24;
    let lead_times = RiskLevel::ALL
        .iter()
        .map(|(_, level)| {
            let mut secs: Vec<i64> = entries
                .iter()
                .filter(|e| e.risk == *level)
                .filter_map(|e| e.lead_time.map(|d| d.num_seconds()))
                .collect();
            secs.sort_unstable();
            LeadTimes {
                risk: *level,
                decisions: secs.len(),
                median_secs: quantile(&secs, 0.5),
                p90_secs: quantile(&secs, 0.9),
            }
        })
        .collect();
    let n = entries.len();
    let rate = |v: Verdict| {
        if n == 0 {
            0.0
        } else {
            entries.iter().filter(|e| e.verdict == v).count() as f64 / n as f64
        }
    };
    let mut slow_low_risk: Vec<Waiting> = waiting
        .iter()
        .filter(|w| {
            w.risk == RiskLevel::Low
                && w.waited
                    .is_some_and(|d| d > Duration::hours(slow_after_hours))
        })
        .cloned()
        .collect();
    slow_low_risk.sort_by_key(|w| std::cmp::Reverse(w.waited));
    Health {
        lead_times,
        decisions: n,
        approval_rate: rate(Verdict::Approve),
        rejection_rate: rate(Verdict::Reject),
        changes_rate: rate(Verdict::RequestChanges),
        exceptions_opened: exceptions.len(),
        exceptions_closed: exceptions
            .iter()
            .filter(|x| x.state(now) == ExceptionState::Closed)
            .count(),
        exceptions_overdue: exceptions
            .iter()
            .filter(|x| x.state(now) == ExceptionState::ReviewOverdue)
            .count(),
        slow_low_risk,
        slow_after_hours,
    }
}

/// `3d 4h`, `5h 02m`, `12m`: a duration for tables.
pub fn human_duration(d: Duration) -> String {
    let m = d.num_minutes().max(0);
    if m >= 48 * 60 {
        format!("{}d {}h", m / (24 * 60), (m / 60) % 24)
    } else if m >= 60 {
        format!("{}h {:02}m", m / 60, m % 60)
    } else {
        format!("{m}m")
    }
}

/// Quotes a CSV field (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Free text (a rationale) as a CSV field that a spreadsheet shows as text: a leading
/// `=`, `+`, `-`, `@`, tab or carriage return would make it a formula (OWASP's CSV
/// injection advice), so such a field starts with `'`.
fn csv_text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        csv_field(&format!("'{s}"))
    } else {
        csv_field(s)
    }
}

/// The rationale of every decision entry among `seqs`, read from the log (a page at a
/// time): the history keeps no rationales in memory, the exports ask for them.
pub fn rationales(
    store: &dyn Store,
    seqs: &std::collections::HashSet<u64>,
) -> Result<HashMap<u64, String>, crate::store::StoreError> {
    let mut out = HashMap::new();
    let Some(&last) = seqs.iter().max() else {
        return Ok(out);
    };
    let mut after = seqs.iter().min().map_or(0, |s| s.saturating_sub(1));
    while after < last {
        let page = store.log_entries(after, 10_000)?;
        let Some(end) = page.last().map(|e| e.seq) else {
            break;
        };
        for e in page.iter().filter(|e| seqs.contains(&e.seq)) {
            if let Ok(record) = crate::audit::log::DecisionRecord::parse(&e.body) {
                out.insert(e.seq, record.rationale);
            }
        }
        after = end;
    }
    Ok(out)
}

/// The history as CSV with a header row; `rationale` gives each decision's rationale
/// (the last column, so the earlier columns keep their positions).
pub fn to_csv<'a>(
    entries: &[&HistoryEntry],
    verified: impl Fn(u64) -> &'static str,
    rationale: impl Fn(u64) -> Option<&'a str>,
) -> String {
    let mut out = String::from(
        "seq,at,cr_id,cr_revision,subject,environment,gate,risk,verdict,principal,role,lead_time_seconds,verification,hash,rationale\n",
    );
    for e in entries {
        let fields = [
            e.seq.to_string(),
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            csv_field(&e.cr_id),
            e.cr_revision.to_string(),
            csv_field(&e.subject),
            e.environment.to_string(),
            e.gate.to_string(),
            e.risk.to_string(),
            e.verdict.to_string(),
            csv_field(&e.principal),
            csv_field(&e.role),
            e.lead_time
                .map(|d| d.num_seconds().to_string())
                .unwrap_or_default(),
            verified(e.seq).to_string(),
            e.hash.to_string(),
            csv_text(rationale(e.seq).unwrap_or_default()),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_hashes_read_back_exactly_as_the_log_wrote_them() {
        let digest = crate::audit::log::entry_hash("{}");
        let kept = EntryHash::from(digest.clone());
        assert!(matches!(kept, EntryHash::Sha256(_)));
        assert_eq!(kept.to_string(), digest);
        assert_eq!(
            serde_json::to_value(&kept).unwrap(),
            serde_json::json!(digest)
        );
        for odd in ["sha256:ABC", "md5:00", "sha256:", &digest.to_uppercase()] {
            let kept = EntryHash::from(odd.to_string());
            assert!(matches!(kept, EntryHash::Other(_)), "{odd}");
            assert_eq!(kept.to_string(), odd);
        }
    }
    use chrono::TimeZone;

    fn entry(seq: u64, verdict: Verdict, risk: RiskLevel, lead_h: i64) -> HistoryEntry {
        let at =
            Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap() + Duration::hours(seq as i64);
        HistoryEntry {
            seq,
            hash: format!("h{seq}").into(),
            at,
            cr_id: format!("CR-{seq}").into(),
            cr_revision: 1,
            cr_digest: "d".into(),
            verdict,
            role: "risk-reviewer".into(),
            principal: if seq.is_multiple_of(2) {
                "devi".into()
            } else {
                "kai".into()
            },
            gate: Gate::Model,
            subject: "fraud-detector".into(),
            environment: "prod".into(),
            title: "Promote fraud v13".into(),
            risk,
            submitted_at: Some(at - Duration::hours(lead_h)),
            lead_time: Some(Duration::hours(lead_h)),
        }
    }

    #[test]
    fn filters_combine_structured_terms_and_words() {
        let e = entry(2, Verdict::Approve, RiskLevel::High, 5);
        let f = Filter::parse(
            "principal:devi verdict:approve risk:high since:2026-11-20 until:2026-11-20 fraud v13",
        )
        .unwrap();
        assert!(f.matches(&e));
        assert!(!Filter::parse("principal:kai").unwrap().matches(&e));
        assert!(!Filter::parse("since:2026-11-21").unwrap().matches(&e));
        assert!(!Filter::parse("spam").unwrap().matches(&e));
        assert!(
            Filter::parse("gate:model subject:FRAUD")
                .unwrap()
                .matches(&e)
        );
        assert!(
            Filter::parse("risk:severe")
                .unwrap_err()
                .to_string()
                .contains("expected one of low, medium, high")
        );
        assert!(
            Filter::parse("since:yesterday")
                .unwrap_err()
                .to_string()
                .contains("expected a date")
        );
        assert!(
            Filter::parse("owner:x")
                .unwrap_err()
                .to_string()
                .contains("unknown filter")
        );
    }

    #[test]
    fn lead_time_quantiles_and_rates() {
        let entries: Vec<HistoryEntry> = (1..=10)
            .map(|i| {
                entry(
                    i,
                    if i <= 7 {
                        Verdict::Approve
                    } else {
                        Verdict::Reject
                    },
                    RiskLevel::Medium,
                    i as i64,
                )
            })
            .collect();
        let refs: Vec<&HistoryEntry> = entries.iter().collect();
        let h = health(&refs, &[], &[], Utc::now());
        let medium = h
            .lead_times
            .iter()
            .find(|l| l.risk == RiskLevel::Medium)
            .unwrap();
        assert_eq!(medium.decisions, 10);
        assert_eq!(medium.median_secs, Some(5 * 3600));
        assert_eq!(medium.p90_secs, Some(9 * 3600));
        assert!((h.approval_rate - 0.7).abs() < 1e-9);
        assert!((h.rejection_rate - 0.3).abs() < 1e-9);
        let low = h
            .lead_times
            .iter()
            .find(|l| l.risk == RiskLevel::Low)
            .unwrap();
        assert_eq!(low.median_secs, None);
    }

    #[test]
    fn low_risk_changes_waiting_long_are_flagged() {
        let waiting = vec![
            Waiting {
                cr_id: "CR-1".into(),
                risk: RiskLevel::Low,
                waited: Some(Duration::hours(30)),
            },
            Waiting {
                cr_id: "CR-2".into(),
                risk: RiskLevel::Low,
                waited: Some(Duration::hours(2)),
            },
            Waiting {
                cr_id: "CR-3".into(),
                risk: RiskLevel::High,
                waited: Some(Duration::hours(90)),
            },
        ];
        let h = health(&[], &waiting, &[], Utc::now());
        let ids: Vec<&str> = h.slow_low_risk.iter().map(|w| w.cr_id.as_str()).collect();
        assert_eq!(ids, ["CR-1"]);
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut e = entry(1, Verdict::Approve, RiskLevel::Low, 1);
        e.cr_id = "CR,\"1\"".into();
        let csv = to_csv(
            &[&e],
            |_| "valid",
            |_| Some("=HYPERLINK(\"x\"), then \"quoted\""),
        );
        let row = csv.lines().nth(1).unwrap();
        assert!(row.contains("\"CR,\"\"1\"\"\""), "{csv}");
        assert!(
            row.ends_with(",\"'=HYPERLINK(\"\"x\"\"), then \"\"quoted\"\"\""),
            "a formula is shown as text: {row}"
        );
        assert_eq!(csv.lines().next().unwrap().split(',').count(), 15);
    }
}
