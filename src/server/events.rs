//! Signed events out: the team server tells subscribers what the log records, at least
//! once, from a durable queue in its store.
//!
//! A worker thread tails the log from a cursor kept in the database, derives events from
//! each new entry (`cr.submitted`, `cr.revised`, `decision.recorded`, `cr.approved`,
//! `cr.rejected`, `emergency.authorised`, `rollback.executed`) and queues one delivery
//! per matching subscriber — with an id made of the entry, the subscriber and the event,
//! in the same transaction as the cursor, so every append path (the API, or a CLI on the
//! server's own store) produces each event once, whatever the number of replicas. Due
//! deliveries are POSTed with `X-Tollgate-Signature: sha256=HEX` (HMAC-SHA256 of the body
//! with the subscriber's secret, GitHub's convention), `X-Tollgate-Event` and
//! `X-Tollgate-Delivery`; a 2xx acknowledges, anything else is retried with backoff.

use super::ServerState;
use crate::audit::log::{EntryKind, LogEntry, time_text};
use crate::domain::status::Status;
use crate::store::{Delivery, NewDelivery, Store};
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How a subscriber wants its bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// tollgate's JSON body.
    Json,
    /// A Slack incoming-webhook message (Block Kit).
    Slack,
}

/// One subscriber (`[[subscriber]]` in `serve --subscribers FILE`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscriber {
    /// A short name (in delivery ids and `tollgate events`).
    pub name: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The HMAC secret.
    pub secret: String,
    /// The events it wants; every event when left out.
    #[serde(default)]
    pub events: Vec<String>,
    /// `json` (default) or `slack`.
    #[serde(default = "json_format")]
    pub format: Format,
}

fn json_format() -> Format {
    Format::Json
}

/// Every event the server sends.
pub const EVENTS: [&str; 9] = [
    "cr.stale",
    "review.overdue",
    "cr.submitted",
    "cr.revised",
    "decision.recorded",
    "cr.approved",
    "cr.rejected",
    "emergency.authorised",
    "rollback.executed",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    subscriber: Vec<Subscriber>,
}

/// Why a subscribers file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {detail}")]
pub struct SubscribersError {
    path: String,
    detail: String,
}

/// Reads `[[subscriber]]` tables from `path`.
pub fn load(path: &Path) -> Result<Vec<Subscriber>, SubscribersError> {
    let err = |detail: String| SubscribersError {
        path: path.display().to_string(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let file: File = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    for (i, s) in file.subscriber.iter().enumerate() {
        crate::domain::reader::check_identifier(&s.name)
            .map_err(|e| err(format!("subscriber[{i}].name: {e}")))?;
        if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
            return Err(err(format!("subscriber[{i}].url: expected an http(s) URL")));
        }
        if s.secret.len() < 16 {
            return Err(err(format!(
                "subscriber[{i}].secret: expected at least 16 characters"
            )));
        }
        if let Some(e) = s.events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
            return Err(err(format!(
                "subscriber[{i}].events: unknown event {e:?}; expected some of {}",
                EVENTS.join(", ")
            )));
        }
    }
    Ok(file.subscriber)
}

/// `sha256=` + hex HMAC-SHA256 of `body` with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What one derivation pass reads about each CR, once — its revisions as entries name
/// them, its decisions with their log positions — so that each entry's event carries the
/// CR as it stood at that entry: of two approvals in one pass, only the one that completed
/// the sign-offs makes `cr.approved`.
struct AsOf<'a> {
    store: &'a dyn Store,
    book: Option<Arc<crate::domain::policy_book::PolicyBook>>,
    public: &'a str,
    decided: HashMap<String, Option<Decided>>,
    revisions: HashMap<(String, u32), Option<crate::store::StoredRevision>>,
}

/// A CR's decisions in log order, with the position of each.
struct Decided {
    seqs: Vec<u64>,
    decisions: Vec<crate::domain::decision::Decision>,
    current: u32,
}

impl<'a> AsOf<'a> {
    fn new(state: &ServerState, store: &'a dyn Store, public: &'a str) -> AsOf<'a> {
        AsOf {
            store,
            book: state.in_force().ok().map(|f| f.book.clone()),
            public,
            decided: HashMap::new(),
            revisions: HashMap::new(),
        }
    }

    fn decided(&mut self, id: &str) -> Option<&Decided> {
        let store = self.store;
        self.decided
            .entry(id.to_string())
            .or_insert_with(|| {
                // Positions first: decisions read after them hold at least as many.
                let seqs: Vec<u64> = store
                    .decision_entries(id)
                    .ok()?
                    .iter()
                    .map(|e| e.seq)
                    .collect();
                let mut decisions = store.decisions(id).ok()?;
                decisions.truncate(seqs.len());
                let current = store.get(id).ok()??.current.revision;
                Some(Decided {
                    seqs,
                    decisions,
                    current,
                })
            })
            .as_ref()
    }

    fn revision(&mut self, id: &str, n: u32) -> Option<&crate::store::StoredRevision> {
        let store = self.store;
        self.revisions
            .entry((id.to_string(), n))
            .or_insert_with(|| store.revision(id, n).ok().flatten())
            .as_ref()
    }

    /// The CR `id` as of log position `seq`, at `revision` (the current one if `None`),
    /// and its status just before that entry.
    fn cr(&mut self, id: &str, revision: Option<u32>, seq: u64) -> (Value, Option<Status>) {
        let link = format!("{}/v1/change-requests/{id}", self.public);
        let Some((n, decisions, before)) = self.decided(id).map(|d| {
            let upto = d.seqs.partition_point(|s| *s <= seq);
            let before = d.seqs.partition_point(|s| *s < seq);
            (
                revision.unwrap_or(d.current),
                d.decisions[..upto].to_vec(),
                before,
            )
        }) else {
            return (json!({"id": id, "link": link}), None);
        };
        let book = self.book.clone();
        let Some(r) = self.revision(id, n) else {
            return (json!({"id": id, "link": link}), None);
        };
        let evaluate = |decisions: &[crate::domain::decision::Decision]| {
            book.as_ref()
                .map(|b| crate::domain::status::evaluate_in(&r.cr, &r.digest, decisions, b))
        };
        let was = evaluate(&decisions[..before]).map(|e| e.status);
        let status = evaluate(&decisions);
        let cr = json!({
            "id": id,
            "title": r.cr.title,
            "gate": r.cr.gate,
            "revision": r.revision,
            "status": status.as_ref().map(|e| e.status),
            "risk": status.as_ref().map(|e| e.risk.effective),
            "signoffs": status.as_ref().map(|e| json!({"obtained": e.signoffs.obtained(), "required": e.signoffs.required()})),
            "link": link,
        });
        (cr, was)
    }
}

/// The events one entry makes, each with its JSON body.
fn events_of(crs: &mut AsOf<'_>, e: &LogEntry) -> Vec<(&'static str, Value)> {
    let Some(kind) = EntryKind::parse(&e.kind) else {
        return Vec::new();
    };
    let body: Value = serde_json::from_str(&e.body).unwrap_or(Value::Null);
    let id = e.cr_id.as_deref().unwrap_or("");
    let revision_named = |field: &str| body[field].as_u64().and_then(|n| u32::try_from(n).ok());
    let mut cr = |field: &str| crs.cr(id, revision_named(field), e.seq);
    let entry = json!({"seq": e.seq, "hash": e.hash, "kind": e.kind});
    let with = |event: &'static str, mut v: Value| {
        v["event"] = json!(event);
        v["entry"] = entry.clone();
        v["at"] = body["at"].clone();
        (event, v)
    };
    match kind {
        EntryKind::CrSubmitted => vec![with(
            "cr.submitted",
            json!({"change_request": cr("revision").0}),
        )],
        EntryKind::CrRevised => vec![with(
            "cr.revised",
            json!({"change_request": cr("revision").0}),
        )],
        EntryKind::Decision => {
            let (c, was) = cr("cr_revision");
            let decision = json!({
                "principal": body["principal"], "role": body["role"],
                "verdict": body["verdict"], "rationale": body["rationale"],
            });
            let mut out = vec![with(
                "decision.recorded",
                json!({"change_request": c, "decision": decision}),
            )];
            // Only the decision that made the CR approved (rejected) says so.
            let now = c["status"].as_str();
            match (body["verdict"].as_str(), now, was) {
                (_, Some("approved"), Some(Status::Approved))
                | (_, Some("rejected"), Some(Status::Rejected)) => {}
                (Some("approve"), Some("approved"), _) => out.push(with(
                    "cr.approved",
                    json!({"change_request": c, "decision": decision}),
                )),
                (Some("reject"), Some("rejected"), _) => out.push(with(
                    "cr.rejected",
                    json!({"change_request": c, "decision": decision}),
                )),
                _ => {}
            }
            out
        }
        EntryKind::EmergencyAuthorised => vec![with(
            "emergency.authorised",
            json!({"incident": body["incident"], "subject": body["subject"], "environment": body["environment"],
                   "from_version": body["from_version"], "to_version": body["to_version"],
                   "principal": body["principal"], "reason": body["reason"]}),
        )],
        EntryKind::RollbackExecuted => vec![with(
            "rollback.executed",
            json!({"incident": body["incident"], "exit_status": body["exit_status"],
                   "timed_out": body["timed_out"], "principal": body["principal"]}),
        )],
        _ => Vec::new(),
    }
}

/// A Slack message for `v`: one line, and for a CR still pending the command that
/// approves it (signing stays on the reviewer's machine).
fn slack(event: &str, v: &Value) -> Value {
    let c = &v["change_request"];
    let id = c["id"].as_str().unwrap_or_default();
    let mut text = match event {
        "decision.recorded" => format!(
            "*{}* {} {} by {} ({})",
            id,
            v["decision"]["verdict"].as_str().unwrap_or_default(),
            c["title"].as_str().unwrap_or_default(),
            v["decision"]["principal"].as_str().unwrap_or_default(),
            v["decision"]["role"].as_str().unwrap_or_default()
        ),
        "cr.stale" => format!(
            "*{id}* has waited {} h for its sign-offs (reminder {}{}): {}",
            v["waited_hours"],
            v["reminder"],
            if v["escalated"] == true {
                ", to the leads"
            } else {
                ""
            },
            c["title"].as_str().unwrap_or_default()
        ),
        "review.overdue" => format!(
            "*{}*: the post-incident review is {} day(s) overdue",
            v["incident"].as_str().unwrap_or_default(),
            v["days_overdue"]
        ),
        "emergency.authorised" | "rollback.executed" => format!(
            "*{}* {} {}",
            event,
            v["incident"].as_str().unwrap_or_default(),
            v["subject"].as_str().unwrap_or_default()
        ),
        _ => format!(
            "*{id}* {event}: {}",
            c["title"].as_str().unwrap_or_default()
        ),
    };
    if c["status"] == "pending" {
        text.push_str(&format!(
            "\n`tollgate approve {id} --rationale \"...\"` ({}/{} sign-offs)",
            c["signoffs"]["obtained"], c["signoffs"]["required"]
        ));
    }
    json!({"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]})
}

/// One delivery of `event` (with `body`) to each subscriber that wants it, in its
/// format, under the id `id_for(subscriber)`: what log-derived events and timed
/// reminders both queue.
fn fan_out(
    subscribers: &[Subscriber],
    event: &str,
    body: &Value,
    id_for: impl Fn(&str) -> String,
    now: &str,
    out: &mut Vec<NewDelivery>,
) {
    for s in subscribers
        .iter()
        .filter(|s| s.events.is_empty() || s.events.iter().any(|x| x == event))
    {
        let delivery_id = id_for(&s.name);
        let mut body = body.clone();
        body["delivery"] = json!(delivery_id);
        let body = match s.format {
            Format::Json => body,
            Format::Slack => slack(event, &body),
        };
        out.push(NewDelivery {
            delivery_id,
            subscriber: s.name.clone(),
            event: event.to_string(),
            body: body.to_string(),
            created_at: now.to_string(),
        });
    }
}

/// Derives and queues the events of the entries after the cursor (one page). Whether it
/// moved the cursor.
fn derive(
    state: &ServerState,
    store: &dyn Store,
    public: &str,
    subscribers: &[Subscriber],
) -> Result<bool, crate::store::StoreError> {
    let from = store.event_cursor()?;
    let entries = store.log_entries(from, 200)?;
    let Some(last) = entries.last().map(|e| e.seq) else {
        return Ok(false);
    };
    let now = time_text(super::server_now());
    let mut deliveries = Vec::new();
    let mut crs = AsOf::new(state, store, public);
    for e in &entries {
        for (event, body) in events_of(&mut crs, e) {
            fan_out(
                subscribers,
                event,
                &body,
                |s| format!("{}-{s}-{event}", e.seq),
                &now,
                &mut deliveries,
            );
        }
    }
    store.enqueue_events(from, last, &deliveries)
}

/// How long a claimed delivery is this sender's before another may try it (longer than
/// the HTTP timeout: a sender that dies mid-delivery leaves it due again).
const LEASE_SECS: i64 = 60;

/// How often the timed reminders are looked for.
const REMINDERS_EVERY: Duration = Duration::from_secs(300);

/// The reminders due now: `cr.stale` for each pending CR past its review SLA (one per
/// reminder number, so a reminder is queued once, escalated to the leads after the
/// policy's count), `review.overdue` for each post-incident review past its deadline (one
/// per day overdue). Deterministic ids make every replica queue each one once.
fn reminders(
    state: &ServerState,
    store: &dyn Store,
    public: &str,
    subscribers: &[Subscriber],
) -> Result<(), crate::store::StoreError> {
    let Ok(in_force) = state.in_force() else {
        return Ok(());
    };
    let now = super::server_now();
    let now_text = time_text(now);
    let mut found: Vec<(String, &'static str, Value)> = Vec::new();
    if let Some(rules) = &in_force.book.policy().reminders {
        let pages = crate::workflow::queue::SummaryPages::new(store, &in_force.book, None)
            .only(Some("pending"), None)
            .without_cells();
        for page in pages {
            for s in page? {
                let Ok(row) = serde_json::from_str::<Value>(&s.row) else {
                    continue;
                };
                let (Some(created), Some(risk)) = (
                    row["created_at"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()),
                    row["risk"]["effective"].as_str().and_then(|r| {
                        crate::domain::risk::RiskLevel::ALL
                            .iter()
                            .find(|(n, _)| *n == r)
                            .map(|(_, l)| *l)
                    }),
                ) else {
                    continue;
                };
                let waited = (now - created.with_timezone(&chrono::Utc)).num_hours();
                let Some(k) = rules.due(*rules.review_sla_hours.get(risk), waited) else {
                    continue;
                };
                let escalated = k > rules.escalate_after;
                let id = row["id"].as_str().unwrap_or_default().to_string();
                found.push((
                    format!("stale-{id}-{k}"),
                    "cr.stale",
                    json!({
                        "change_request": {"id": id, "title": row["title"], "status": "pending",
                            "risk": risk, "signoffs": row["signoffs"],
                            "link": format!("{public}/v1/change-requests/{id}")},
                        "reminder": k,
                        "waited_hours": waited,
                        "escalated": escalated,
                        "notify": if escalated { json!(["lead"]) } else { row["signoffs"]["missing_roles"].clone() },
                    }),
                ));
            }
        }
    }
    if let Ok(derived) = crate::workflow::exceptions(store) {
        for x in crate::domain::emergency::overdue(&derived.exceptions, now) {
            let days = (now - x.review_due).num_days();
            found.push((
                format!("overdue-{}-{days}", x.incident),
                "review.overdue",
                json!({"incident": x.incident, "opened_by": x.opened_by, "review_due": time_text(x.review_due),
                       "days_overdue": days, "notify": in_force.book.policy().emergency.post_review_roles}),
            ));
        }
    }
    let mut deliveries = Vec::new();
    for (id, event, mut body) in found {
        body["event"] = json!(event);
        body["at"] = json!(now_text);
        fan_out(
            subscribers,
            event,
            &body,
            |s| format!("{id}-{s}"),
            &now_text,
            &mut deliveries,
        );
    }
    if deliveries.is_empty() {
        return Ok(());
    }
    store.enqueue_deliveries(&deliveries)
}

/// Backoff after `attempts` failed attempts: 2 s, 4 s, … up to an hour.
pub fn backoff(attempts: u32) -> chrono::Duration {
    chrono::Duration::seconds(2i64.saturating_pow(attempts.min(12)).min(3600))
}

/// Sends one delivery; the attempt to record.
fn deliver(
    http: &reqwest::blocking::Client,
    s: &Subscriber,
    d: &Delivery,
) -> crate::store::Attempt {
    let sent = http
        .post(&s.url)
        .header("Content-Type", "application/json")
        .header("X-Tollgate-Event", &d.queued.event)
        .header("X-Tollgate-Delivery", &d.queued.delivery_id)
        .header(
            "X-Tollgate-Signature",
            signature(&s.secret, d.queued.body.as_bytes()),
        )
        .body(d.queued.body.clone())
        .send();
    let now = super::server_now();
    let outcome = match sent {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("{} answered {}", s.url, r.status())),
        Err(e) => Err(crate::store::remote::chain(&e)),
    };
    match outcome {
        Ok(()) => crate::store::Attempt {
            delivery_id: d.queued.delivery_id.clone(),
            delivered_at: Some(time_text(now)),
            error: None,
            next_at: time_text(now),
            tried: true,
        },
        Err(why) => crate::store::Attempt {
            delivery_id: d.queued.delivery_id.clone(),
            delivered_at: None,
            error: Some(why),
            next_at: time_text(now + backoff(d.attempts + 1)),
            tried: true,
        },
    }
}

/// Starts the events threads. One derives events from the log (and the timed
/// reminders), claims what is due and records what was sent, four times a second — a
/// few transactions per pass, not a few per decision. Each subscriber has a sender
/// thread of its own that POSTs its share, so one that is slow or hangs (up to the HTTP
/// timeout) holds up only its own deliveries: while its sender is busy nothing more is
/// claimed for it.
///
/// They work on a store handle of their own (`store`: with SQLite a second connection, so
/// their reads never wait for, or hold up, the requests'), and at a lower scheduling
/// priority than the requests: delivery is asynchronous, and on a busy machine it is what
/// yields, never a decision's acknowledgement.
pub fn spawn(
    state: Arc<ServerState>,
    store: Arc<dyn Store>,
    subscribers: Vec<Subscriber>,
    public: String,
) {
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Sent>();
    let lane = Arc::new(Lane::default());
    let mut senders = HashMap::new();
    for s in &subscribers {
        let (batch_tx, batch_rx) = std::sync::mpsc::channel::<Vec<Delivery>>();
        let (mine, done, lane) = (s.clone(), done_tx.clone(), lane.clone());
        let started = std::thread::Builder::new()
            .name(format!("tollgate-events-{}", s.name))
            .spawn(move || send_batches(&mine, &batch_rx, &done, &lane));
        if started.is_ok() {
            senders.insert(s.name.clone(), batch_tx);
        }
    }
    let _ = std::thread::Builder::new()
        .name("tollgate-events".into())
        .spawn(move || {
            yield_to_requests();
            let store = store.as_ref();
            let mut reminded: Option<std::time::Instant> = None;
            // Subscribers whose sender holds a batch.
            let mut busy: HashSet<String> = HashSet::new();
            loop {
                while let Ok(true) = derive(&state, store, &public, &subscribers) {}
                if reminded.is_none_or(|t| t.elapsed() >= REMINDERS_EVERY) {
                    if let Err(e) = reminders(&state, store, &public, &subscribers) {
                        eprintln!("events: reminders: {e}");
                    }
                    reminded = Some(std::time::Instant::now());
                }
                // What the senders finished since the last pass, recorded together.
                let mut attempts = Vec::new();
                while let Ok(sent) = done_rx.try_recv() {
                    busy.remove(&sent.subscriber);
                    attempts.extend(sent.attempts);
                }
                if !attempts.is_empty()
                    && let Err(e) = store.record_attempts(&attempts)
                {
                    eprintln!("events: {e}");
                }
                dispatch(store, &senders, &mut busy);
                std::thread::sleep(PASS_EVERY);
            }
        });
}

/// How long the events threads rest between passes (an event is queued, and handed to
/// its sender, this long after its entry at most).
const PASS_EVERY: Duration = Duration::from_millis(250);

/// What a sender did with one batch.
struct Sent {
    subscriber: String,
    attempts: Vec<crate::store::Attempt>,
}

/// Claims what is due for the subscribers whose sender is idle and hands each its share.
fn dispatch(
    store: &dyn Store,
    senders: &HashMap<String, std::sync::mpsc::Sender<Vec<Delivery>>>,
    busy: &mut HashSet<String>,
) {
    let idle: Vec<String> = senders
        .keys()
        .filter(|name| !busy.contains(*name))
        .cloned()
        .collect();
    if idle.is_empty() {
        return;
    }
    let now = super::server_now();
    let lease = now + chrono::Duration::seconds(LEASE_SECS);
    // Up to a batch for each idle sender (one claim, whoever's deliveries are due).
    let limit = CLAIM * idle.len();
    let due = match store.claim_due(&idle, &time_text(now), &time_text(lease), limit) {
        Ok(due) => due,
        Err(e) => {
            eprintln!("events: {e}");
            return;
        }
    };
    let mut shares: HashMap<String, Vec<Delivery>> = HashMap::new();
    for d in due {
        shares
            .entry(d.queued.subscriber.clone())
            .or_default()
            .push(d);
    }
    for (name, share) in shares {
        // A sender that is gone leaves its share leased: due again after the lease.
        if let Some(sender) = senders.get(&name)
            && sender.send(share).is_ok()
        {
            busy.insert(name);
        }
    }
}

/// The senders take turns while their subscribers answer, so that a burst of events is
/// sent one subscriber after another, as one thread would, rather than all at once on
/// the cores that acknowledge decisions. A sender waits for its turn at most
/// [`Lane::PATIENCE`]: one whose subscriber has started to hang holds the others up
/// that long, no longer; one whose subscriber is failing sends outside the turns.
#[derive(Default)]
struct Lane {
    taken: std::sync::Mutex<bool>,
    freed: std::sync::Condvar,
}

impl Lane {
    const PATIENCE: Duration = Duration::from_secs(1);

    /// Waits for the turn (at most [`Lane::PATIENCE`]); whether it was taken.
    fn enter(&self) -> bool {
        let taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        let (mut taken, _) = self
            .freed
            .wait_timeout_while(taken, Self::PATIENCE, |t| *t)
            .unwrap_or_else(|p| p.into_inner());
        if *taken {
            return false;
        }
        *taken = true;
        true
    }

    fn leave(&self) {
        *self.taken.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.freed.notify_one();
    }
}

/// A subscriber's sender: POSTs each batch in order; after a failure the rest of the
/// batch is put off to the same retry time, untried, rather than each waiting out the
/// timeout in turn.
fn send_batches(
    s: &Subscriber,
    batches: &std::sync::mpsc::Receiver<Vec<Delivery>>,
    done: &std::sync::mpsc::Sender<Sent>,
    lane: &Lane,
) {
    yield_to_requests();
    // Made on this thread (a blocking client runs a runtime of its own, which must not
    // be made on the server's async threads).
    crate::tls::install_crypto_provider();
    let http = match reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            eprintln!(
                "events: {}: cannot make an HTTP client ({e}); nothing is sent to it",
                s.name
            );
            return;
        }
    };
    let mut failing = false;
    while let Ok(batch) = batches.recv() {
        let in_turn = !failing && lane.enter();
        let mut attempts = Vec::with_capacity(batch.len());
        let mut failed: Option<(String, String)> = None;
        for d in &batch {
            let attempt = match &failed {
                Some((why, next_at)) => crate::store::Attempt {
                    delivery_id: d.queued.delivery_id.clone(),
                    delivered_at: None,
                    error: Some(format!("not sent: an earlier delivery failed ({why})")),
                    next_at: next_at.clone(),
                    tried: false,
                },
                None => deliver(&http, s, d),
            };
            if failed.is_none()
                && let Some(why) = &attempt.error
            {
                failed = Some((why.clone(), attempt.next_at.clone()));
            }
            attempts.push(attempt);
        }
        if in_turn {
            lane.leave();
        }
        failing = failed.is_some();
        let sent = Sent {
            subscriber: s.name.clone(),
            attempts,
        };
        if done.send(sent).is_err() {
            return;
        }
    }
}

/// How many due deliveries a sender is given at once, on average (long enough a batch
/// for a burst, short enough that a slow subscriber answers it within the lease).
const CLAIM: usize = 50;

/// Lowers the calling thread's scheduling priority (Linux: `nice` is per thread). Best
/// effort: where it cannot, the thread runs at the normal priority.
fn yield_to_requests() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its integer arguments; the thread id is our own.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_messages_say_what_happened_and_how_to_approve_what_is_pending() {
        let pending = json!({
            "change_request": {"id": "CR-7", "title": "Promote v13", "status": "pending",
                "signoffs": {"obtained": 1, "required": 2}},
            "decision": {"verdict": "approve", "principal": "devi", "role": "risk-reviewer"},
        });
        let m = slack("decision.recorded", &pending);
        let text = m["text"].as_str().unwrap();
        assert!(
            text.starts_with("*CR-7* approve Promote v13 by devi (risk-reviewer)"),
            "{text}"
        );
        assert!(
            text.contains("`tollgate approve CR-7 --rationale \"...\"` (1/2 sign-offs)"),
            "{text}"
        );
        assert_eq!(m["blocks"][0]["text"]["type"], "mrkdwn");
        let mut done = pending.clone();
        done["change_request"]["status"] = json!("approved");
        assert!(
            !slack("cr.approved", &done)["text"]
                .as_str()
                .unwrap()
                .contains("tollgate approve")
        );
    }

    #[test]
    fn the_signature_is_githubs_hmac_convention() {
        // RFC 4231 test case 2 key and data, as `sha256=` + hex.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(backoff(1).num_seconds(), 2);
        assert_eq!(backoff(30).num_seconds(), 3600);
    }
}
