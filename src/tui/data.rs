//! What the screens show, loaded from the store off the UI thread.
//!
//! Rows are built once per load with every CR string already sanitised, so drawing never
//! touches untrusted text and filtering does not re-sanitise on each keystroke.

use super::error::TuiError;
use crate::domain::change_request::Gate;
use crate::domain::checklist::CheckCounts;
use crate::domain::decision::{Decision, Verdict};
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
    /// Someone decided on it today (UTC).
    pub decided_today: bool,
    /// Lower-case text the fuzzy filter searches: id, title, subject, requester.
    pub haystack: String,
}

/// Whether `me` could give one of the sign-offs still open on this CR.
fn needs(me: Option<&Principal>, requester: &str, e: &Evaluation) -> bool {
    let Some(me) = me else { return false };
    e.status == Status::Pending
        && me.id != requester
        && !e
            .counted
            .iter()
            .any(|d| d.principal == me.id && d.verdict == Verdict::Approve)
        && e.signoffs.missing_roles().iter().any(|r| me.has_role(r))
}

/// Builds the queue row of one CR.
pub fn row(
    cr: &StoredCr,
    e: &Evaluation,
    me: Option<&Principal>,
    today: chrono::NaiveDate,
) -> QueueRow {
    let c = &cr.current.cr;
    let s = &c.subject;
    let subject = match &s.from_version {
        Some(from) => format!(
            "{} {}→{}",
            sanitize(&s.name),
            sanitize(from),
            sanitize(&s.to_version)
        ),
        None => format!("{} (new) {}", sanitize(&s.name), sanitize(&s.to_version)),
    };
    let id = sanitize(&c.id);
    let title = sanitize(&c.title);
    let requester = sanitize(&c.requester);
    // ASCII where possible: the matcher's fast path avoids converting each row per keystroke.
    let haystack = format!("{id} {title} {} {requester}", subject.replace('→', " ")).to_lowercase();
    QueueRow {
        gate: c.gate,
        computed: e.risk.computed,
        declared: e.risk.declared,
        effective: e.risk.effective,
        environment: s.environment.as_str(),
        created_at: c.created_at,
        obtained: e.signoffs.obtained(),
        required: e.signoffs.required(),
        checks: e.checks,
        status: e.status,
        blocked: e.blocked,
        awaiting: e.awaiting_evidence,
        needs_me: needs(me, &c.requester, e),
        decided_today: e.counted.iter().any(|d| d.at.date_naive() == today),
        id,
        title,
        subject,
        requester,
        haystack,
    }
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

/// Loads and evaluates every CR for the queue, a page at a time so a large store is never
/// held in memory whole, evaluating each page on every core.
pub fn load_queue(
    store: &dyn Store,
    book: &PolicyBook,
    me: Option<&Principal>,
    now: DateTime<Utc>,
) -> Result<QueueData, TuiError> {
    const PAGE: usize = 5_000;
    let head = store.recorded_head().ok();
    let decisions = store.all_decisions()?;
    let today = now.date_naive();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    let mut per_cr = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_page(after.as_deref(), PAGE)?;
        let Some(last) = page.last() else { break };
        after = Some(last.current.cr.id.clone());
        let chunk = page.len().div_ceil(threads).max(1);
        let evaluated: Vec<Vec<(QueueRow, Option<SubjectState>)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = page
                .chunks(chunk)
                .map(|part| {
                    let decisions = &decisions;
                    scope.spawn(move || {
                        part.iter()
                            .map(|cr| {
                                let mine = decisions
                                    .get(&cr.current.cr.id)
                                    .map(Vec::as_slice)
                                    .unwrap_or(&[]);
                                let e = evaluate_in(&cr.current.cr, &cr.current.digest, mine, book);
                                (
                                    row(cr, &e, me, today),
                                    SubjectState::from_cr(&cr.current.cr, e.status),
                                )
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        for (r, s) in evaluated.into_iter().flatten() {
            rows.push(r);
            per_cr.push(s);
        }
    }
    let derived = crate::workflow::exceptions(store)?;
    Ok(QueueData {
        rows,
        subjects: after_rollbacks(subjects(per_cr.into_iter().flatten()), &derived.live),
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
    Ok(DetailData {
        cr,
        eval,
        revisions,
        decisions,
        policy_changes,
    })
}
