//! What the screens show, loaded from the store off the UI thread.
//!
//! Rows are built once per load with every CR string already sanitised, so drawing never
//! touches untrusted text and filtering does not re-sanitise on each keystroke.

use super::error::TuiError;
use crate::domain::change_request::Gate;
use crate::domain::checklist::CheckCounts;
use crate::domain::decision::Decision;
use crate::domain::emergency::{Exception, SubjectState, after_rollbacks, subjects};
use crate::domain::policy::Principal;
use crate::domain::policy_book::PolicyBook;
use crate::domain::risk::RiskLevel;
use crate::domain::status::{Evaluation, Status, evaluate_in};
use crate::domain::text::sanitize;
use crate::store::{RevisionInfo, Store, StoredCr};
use chrono::{DateTime, Utc};

/// One line of the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRow {
    /// CR id (sanitised).
    pub id: String,
    /// Gate.
    pub gate: Gate,
    /// Computed risk.
    pub computed: RiskLevel,
    /// Declared risk.
    pub declared: RiskLevel,
    /// The higher of the two.
    pub effective: RiskLevel,
    /// Title (sanitised).
    pub title: String,
    /// `name from→to` (sanitised).
    pub subject: String,
    /// `dev` / `staging` / `prod`.
    pub environment: &'static str,
    /// Requester (sanitised).
    pub requester: String,
    /// When the CR was created.
    pub created_at: DateTime<Utc>,
    /// Sign-offs obtained.
    pub obtained: usize,
    /// Sign-offs required.
    pub required: usize,
    /// CI evidence counts.
    pub checks: CheckCounts,
    /// Derived status.
    pub status: Status,
    /// A blocking check fails.
    pub blocked: bool,
    /// Blocking evidence is pending or missing.
    pub awaiting: bool,
    /// The signed-in reviewer holds an open sign-off and may give it.
    pub needs_me: bool,
    /// The open sign-off role the reviewer would fill (when `needs_me`).
    pub my_role: Option<String>,
    /// Someone decided on it today (UTC).
    pub decided_today: bool,
    /// Where its rollout stands (`canary 10%`, `full`, `rolled back`), once one began.
    pub rollout: Option<crate::domain::rollout::Progress>,
    /// Lower-case text the fuzzy filter searches: id, title, subject, requester.
    pub haystack: String,
}

/// Everything the queue load brings: rows, the subjects an emergency can roll back, and
/// the exceptions (for the status bar and the Exceptions screen).
#[derive(Debug, Clone, Default)]
pub struct QueueData {
    /// Queue rows.
    pub rows: Vec<QueueRow>,
    /// Subjects, most recently changed first.
    pub subjects: Vec<SubjectState>,
    /// Emergency exceptions.
    pub exceptions: Vec<Exception>,
    /// The log head read before loading: anything recorded later shows up as a change
    /// at the next poll, even if it landed while the queue was loading.
    pub head: Option<crate::store::Head>,
}

/// A queue row as the summary cache holds it (`list --json`'s row), the fields the queue
/// and the emergency picker need.
#[derive(Debug, serde::Deserialize)]
struct CachedRow {
    id: String,
    gate: String,
    title: String,
    subject: CachedSubject,
    requester: String,
    created_at: DateTime<Utc>,
    status: String,
    risk: CachedRisk,
    signoffs: CachedSignoffs,
    checks: CheckCounts,
    blocked: bool,
    awaiting_evidence: bool,
    #[serde(default)]
    approved_by: Vec<String>,
    #[serde(default)]
    last_decided_at: Option<DateTime<Utc>>,
}

#[derive(Debug, serde::Deserialize)]
struct CachedSubject {
    name: String,
    from_version: Option<String>,
    to_version: String,
    environment: String,
}

#[derive(Debug, serde::Deserialize)]
struct CachedRisk {
    computed: String,
    declared: String,
    effective: String,
}

#[derive(Debug, serde::Deserialize)]
struct CachedSignoffs {
    required: usize,
    obtained: usize,
    missing_roles: Vec<String>,
}

/// The spelling's value in `all`, or `None`.
fn named<T: Copy>(all: &[(&str, T)], name: &str) -> Option<T> {
    all.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The queue row and the subject state of a cached summary; `None` when it does not read
/// (the summary is computed again at the next listing).
fn from_cached(
    s: &crate::store::Summary,
    me: Option<&Principal>,
    today: chrono::NaiveDate,
) -> Option<(QueueRow, Option<SubjectState>)> {
    use crate::domain::change_request::Environment;
    let r: CachedRow = serde_json::from_str(&s.row).ok()?;
    let gate = named(&Gate::ALL, &r.gate)?;
    let status = named(&Status::ALL, &r.status)?;
    let (computed, declared, effective) = (
        named(&RiskLevel::ALL, &r.risk.computed)?,
        named(&RiskLevel::ALL, &r.risk.declared)?,
        named(&RiskLevel::ALL, &r.risk.effective)?,
    );
    let environment = named(&Environment::ALL, &r.subject.environment)?;
    let subject = match &r.subject.from_version {
        Some(from) => format!(
            "{} {}→{}",
            sanitize(&r.subject.name),
            sanitize(from),
            sanitize(&r.subject.to_version)
        ),
        None => format!(
            "{} (new) {}",
            sanitize(&r.subject.name),
            sanitize(&r.subject.to_version)
        ),
    };
    let (id, title, requester) = (sanitize(&r.id), sanitize(&r.title), sanitize(&r.requester));
    let haystack = format!("{id} {title} {} {requester}", subject.replace('→', " ")).to_lowercase();
    let my_role = me
        .filter(|me| {
            status == Status::Pending && me.id != r.requester && !r.approved_by.contains(&me.id)
        })
        .and_then(|me| {
            r.signoffs
                .missing_roles
                .iter()
                .find(|role| me.has_role(role))
                .map(|role| sanitize(role))
        });
    let needs_me = my_role.is_some();
    let subject_state = (gate != Gate::Policy).then(|| SubjectState {
        name: r.subject.name.clone(),
        environment: environment.as_str().to_string(),
        current: r.subject.to_version.clone(),
        last_good: r.subject.from_version.clone(),
        latest_cr: r.id.clone(),
        latest_status: status,
        updated_at: r.created_at,
        basis: crate::domain::emergency::LiveBasis::of_latest_cr(status),
    });
    Some((
        QueueRow {
            gate,
            computed,
            declared,
            effective,
            environment: environment.as_str(),
            created_at: r.created_at,
            obtained: r.signoffs.obtained,
            required: r.signoffs.required,
            checks: r.checks,
            status,
            blocked: r.blocked,
            awaiting: r.awaiting_evidence,
            needs_me,
            my_role,
            decided_today: r.last_decided_at.is_some_and(|t| t.date_naive() == today),
            rollout: None,
            id,
            title,
            subject,
            requester,
            haystack,
        },
        subject_state,
    ))
}

/// Rows read (and sent to the screen) before the rest of the queue.
const FIRST_PAGE: usize = 500;

/// Loads the queue from the store's summary cache, a page at a time (rows whose key no
/// longer holds are evaluated and cached again on the way), with the subjects an
/// emergency can roll back and the exceptions.
pub fn load_queue(
    store: &dyn Store,
    book: &PolicyBook,
    me: Option<&Principal>,
    now: DateTime<Utc>,
    first_page: &mut dyn FnMut(Vec<QueueRow>),
) -> Result<QueueData, TuiError> {
    let loaded = read_queue(store, book, me, now, first_page);
    give_back_freed_memory();
    loaded
}

/// Hands the memory a large load freed back to the system. Reading 100,000 cached rows
/// (or a million decisions for History) parses far more than it keeps, and drops it at
/// once; glibc keeps such freed heap for reuse, so a TUI left open would hold it for
/// hours.
pub(crate) fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory at the top and inside the heap; it
    // touches nothing in use and may be called from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn read_queue(
    store: &dyn Store,
    book: &PolicyBook,
    me: Option<&Principal>,
    now: DateTime<Utc>,
    first_page: &mut dyn FnMut(Vec<QueueRow>),
) -> Result<QueueData, TuiError> {
    let head = store.recorded_head().ok();
    let today = now.date_naive();
    // The operations entries are read once, for the rollouts and the exceptions both.
    let operations = store.emergency_entries()?;
    let rollouts = crate::audit::rollout::derive(&operations);
    let mut rows = Vec::new();
    let mut per_cr = Vec::new();
    for (n, page) in crate::workflow::queue::SummaryPages::new(store, book, None)
        .page_size(FIRST_PAGE)
        .enumerate()
    {
        for s in page? {
            let Some((mut row, subject)) = from_cached(&s, me, today) else {
                return Err(TuiError::BadEntry {
                    seq: 0,
                    detail: format!(
                        "the queue row of {} does not read; `tollgate verify` names and drops it",
                        sanitize(&s.cr_id)
                    ),
                });
            };
            row.rollout = rollouts.of(&s.cr_id).and_then(|r| r.progress());
            rows.push(row);
            per_cr.extend(subject);
        }
        if n == 0 && rows.len() >= FIRST_PAGE {
            // More may follow: the first rows go on screen while the rest is read.
            first_page(rows.clone());
        }
    }
    let derived = crate::workflow::exceptions_from(store, &operations)?;
    Ok(QueueData {
        rows,
        subjects: after_rollbacks(subjects(per_cr), &derived.live),
        exceptions: derived.exceptions,
        head,
    })
}

/// A decision as the detail screen lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedDecision {
    /// The decision.
    pub decision: Decision,
    /// Log position.
    pub seq: u64,
    /// Whether its signature verifies against the policy's keys (and why not).
    pub signature: Result<(), BadSignature>,
}

/// Why an entry's signature does not check out, as a screen shows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSignature {
    /// The entry carries no signature.
    #[error("unsigned")]
    Unsigned,
    /// It does not verify.
    #[error(transparent)]
    Invalid(#[from] crate::audit::keys::SignatureError),
}

/// Everything the detail screen shows about one CR.
#[derive(Debug, Clone)]
pub struct DetailData {
    /// The CR at its current revision.
    pub cr: StoredCr,
    /// Rules' view of it.
    pub eval: Evaluation,
    /// All revisions.
    pub revisions: Vec<RevisionInfo>,
    /// Every decision on it (any revision), with signature status.
    pub decisions: Vec<SignedDecision>,
    /// For a policy change request: what it changes against the policy in force.
    pub policy_changes: Option<Vec<crate::domain::policy_diff::PolicyChange>>,
    /// Its rollout as the log tells it, once a stage was recorded.
    pub rollout: Option<crate::domain::rollout::CrRollout>,
    /// The last rollback drill of its subject.
    pub drill: Option<crate::domain::rollout::DrillFact>,
}

/// Loads one CR with its evaluation and the signature status of its decisions.
pub fn load_detail(store: &dyn Store, book: &PolicyBook, id: &str) -> Result<DetailData, TuiError> {
    let cr = store.get(id)?.ok_or_else(|| TuiError::Gone(sanitize(id)))?;
    let decisions = store.decisions(id)?;
    let eval = evaluate_in(&cr.current.cr, &cr.current.digest, &decisions, book);
    let revisions = store.revisions(id)?;
    // Each signature is checked with the keys in force when it was made.
    let keyrings = crate::audit::policy_log::Keyrings::new(book);
    let entries = store.decision_entries(id)?;
    let policy_changes =
        crate::domain::policy_diff::proposal_changes(book.policy(), &cr.current.cr);
    let decisions = entries
        .iter()
        .zip(decisions)
        .map(|(entry, decision)| SignedDecision {
            signature: match (&entry.principal, &entry.signature) {
                (Some(_), Some(_)) => keyrings
                    .verify(entry)
                    .map(|_| ())
                    .map_err(BadSignature::from),
                _ => Err(BadSignature::Unsigned),
            },
            seq: entry.seq,
            decision,
        })
        .collect();
    let mut after = crate::workflow::rollout::rollouts_with_readings(store, id)?;
    let drill = after.last_drill(&cr.current.cr.subject.name).cloned();
    let rollout = after.crs.remove(id);
    Ok(DetailData {
        cr,
        eval,
        revisions,
        decisions,
        policy_changes,
        rollout,
        drill,
    })
}
