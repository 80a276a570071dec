//! Decisions made against a team server that could not (yet) be delivered.
//!
//! Every remote decision is written here *before* it is sent, then delivered; a delivered
//! one is removed. If the server is unreachable the file stays, is shown as unsent, and
//! is delivered later. The decision's content (everything but its chain position) is
//! frozen the first time the server is reached, so every later attempt sends the very
//! same content — the server is idempotent on it, and a decision is recorded exactly once
//! even when a response was lost.

use super::decide::{DecisionRequest, decision_record, sign_with_adoption};
use crate::audit::log::DecisionRecord;
use crate::domain::checklist::Tick;
use crate::domain::decision::Verdict;
use crate::domain::policy_book::PolicyBook;
use crate::domain::rules::{Proposal, check_decision};
use crate::domain::status::evaluate_in;
use crate::identity::Identity;
use crate::store::{Appended, DecideError, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One decision waiting for the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// File name stem.
    pub id: String,
    /// The server it is for.
    pub server: String,
    /// When the reviewer decided (the record's time).
    pub created_at: DateTime<Utc>,
    /// Who decided.
    pub principal: String,
    /// The CR.
    pub cr_id: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Role signed for.
    pub role: String,
    /// Rationale.
    pub rationale: String,
    /// Ticks.
    pub ticks: Vec<Tick>,
    /// The digest the reviewer saw.
    pub expect_digest: Option<String>,
    /// The signed content without `seq` and `prev`, once frozen.
    pub content: Option<Value>,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Why the last attempt did not get through.
    pub last_error: Option<String>,
    /// Set when the CR moved on from the revision the reviewer saw: never delivered, kept
    /// so the reviewer learns of it (`tollgate outbox`), dropped with `outbox --drop`.
    #[serde(default)]
    pub stale: Option<String>,
}

impl Pending {
    /// A new pending decision for `request`.
    pub fn new(
        server: &str,
        principal: &str,
        request: &DecisionRequest,
        at: DateTime<Utc>,
    ) -> Pending {
        Pending {
            id: format!("{}-{}", at.format("%Y%m%dT%H%M%S%6f"), request.cr_id),
            server: server.into(),
            created_at: at,
            principal: principal.into(),
            cr_id: request.cr_id.clone(),
            verdict: request.verdict,
            role: request.role.clone(),
            rationale: request.rationale.clone(),
            ticks: request.ticks.clone(),
            expect_digest: request.expect_digest.clone(),
            content: None,
            attempts: 0,
            last_error: None,
            stale: None,
        }
    }

    fn request(&self) -> DecisionRequest {
        DecisionRequest {
            cr_id: self.cr_id.clone(),
            verdict: self.verdict,
            role: self.role.clone(),
            rationale: self.rationale.clone(),
            ticks: self.ticks.clone(),
            expect_digest: self.expect_digest.clone(),
        }
    }
}

/// The outbox of one server: a directory of JSON files (and `failed/`).
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

/// What happened to one delivery attempt.
#[derive(Debug)]
pub enum Delivery {
    /// Recorded by the server (now, or by an earlier attempt whose answer was lost), with
    /// the policy adoption it completed, if any.
    Delivered(Box<Appended>),
    /// The server refused it for good (a rule); moved to `failed/`.
    Failed(String),
    /// The CR moved on from the revision it was made on: kept, marked stale, never sent.
    Stale(String),
    /// Not reachable now; kept for later.
    Later(String),
}

impl Outbox {
    /// The outbox for `server`, kept beside the local store: `tollgate.outbox/<server>/`.
    pub fn for_server(store: &Path, server: &str) -> Outbox {
        let stem = store
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "tollgate".into());
        let safe: String = server
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Outbox {
            dir: store.with_file_name(format!("{stem}.outbox")).join(safe),
        }
    }

    /// Where the server's policy is cached (for deciding while it is unreachable).
    pub fn policy_cache(&self) -> PathBuf {
        self.dir.join("policy.toml")
    }

    /// Saves (or updates) an item durably: temp file, fsync, rename.
    pub fn put(&self, p: &Pending) -> Result<(), OutboxError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| OutboxError::Io {
            what: "create the outbox",
            path: self.dir.clone(),
            source,
        })?;
        let path = self.dir.join(format!("{}.json", p.id));
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(p).map_err(|e| OutboxError::Io {
            what: "write",
            path: path.clone(),
            source: e.into(),
        })?;
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|source| OutboxError::Io {
            what: "write",
            path,
            source,
        })
    }

    /// Items waiting, oldest first.
    pub fn pending(&self) -> Vec<Pending> {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        let mut items: Vec<Pending> = read
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|t| serde_json::from_str(&t).ok())
            .collect();
        items.sort_by(|a, b| a.id.cmp(&b.id));
        items
    }

    fn remove(&self, p: &Pending) {
        let _ = std::fs::remove_file(self.dir.join(format!("{}.json", p.id)));
    }

    fn fail(&self, p: &Pending) {
        let failed = self.dir.join("failed");
        let _ = std::fs::create_dir_all(&failed);
        let _ = std::fs::rename(
            self.dir.join(format!("{}.json", p.id)),
            failed.join(format!("{}.json", p.id)),
        );
    }

    /// Tries to deliver `p` through `store` (the server), signing as `who`.
    pub fn deliver(
        &self,
        store: &dyn Store,
        book: &PolicyBook,
        who: &Identity,
        p: &mut Pending,
    ) -> Delivery {
        p.attempts += 1;
        let outcome = self.try_deliver(store, book, who, p);
        match &outcome {
            Delivery::Delivered(_) => self.remove(p),
            Delivery::Failed(why) => {
                p.last_error = Some(why.clone());
                let _ = self.put(p);
                self.fail(p);
            }
            Delivery::Stale(why) => {
                p.last_error = Some(why.clone());
                p.stale = Some(why.clone());
                let _ = self.put(p);
            }
            Delivery::Later(why) => {
                p.last_error = Some(why.clone());
                let _ = self.put(p);
            }
        }
        outcome
    }

    /// Removes an item by id (e.g. a stale one the reviewer has dealt with).
    pub fn drop_item(&self, id: &str) -> Result<Pending, OutboxError> {
        let item = self
            .pending()
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| OutboxError::NoSuchItem(crate::domain::reader::quote(id)))?;
        let path = self.dir.join(format!("{}.json", item.id));
        std::fs::remove_file(&path).map_err(|source| OutboxError::Io {
            what: "remove",
            path,
            source,
        })?;
        Ok(item)
    }

    /// Where the digest of each CR last shown from this server is noted, so a decision
    /// made while it is unreachable binds to the revision the reviewer actually saw.
    fn seen_file(&self, cr_id: &str) -> Option<PathBuf> {
        crate::domain::reader::check_identifier(cr_id)
            .ok()
            .map(|()| self.dir.join("seen").join(cr_id))
    }

    /// Notes that `digest` of `cr_id` was shown to the reviewer.
    pub fn note_seen(&self, cr_id: &str, digest: &str) {
        if let Some(path) = self.seen_file(cr_id)
            && let Some(dir) = path.parent()
            && std::fs::create_dir_all(dir).is_ok()
        {
            let _ = std::fs::write(path, digest);
        }
    }

    /// The digest of `cr_id` last shown from this server, if any.
    pub fn seen(&self, cr_id: &str) -> Option<String> {
        let path = self.seen_file(cr_id)?;
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| s.starts_with("sha256:"))
    }

    fn try_deliver(
        &self,
        store: &dyn Store,
        book: &PolicyBook,
        who: &Identity,
        p: &mut Pending,
    ) -> Delivery {
        let later = |e: &StoreError| matches!(e, StoreError::Unreachable { .. });
        if p.content.is_none() {
            // First contact: check the rules against the server's state and freeze the content.
            let cr = match store.get(&p.cr_id) {
                Ok(Some(cr)) => cr,
                Ok(None) => return Delivery::Failed(format!("{} is not on the server", p.cr_id)),
                Err(e) if later(&e) => return Delivery::Later(e.to_string()),
                Err(e) => return Delivery::Failed(e.to_string()),
            };
            // Bound to what the reviewer saw: a decision never lands on a revision they did
            // not review.
            let Some(seen) = &p.expect_digest else {
                return Delivery::Stale(format!(
                    "{} was decided without naming the revision reviewed; review it again",
                    p.cr_id
                ));
            };
            if *seen != cr.current.digest {
                return Delivery::Stale(format!(
                    "{} changed since it was reviewed (you saw {}, it is now revision {}); review it again and decide anew",
                    p.cr_id,
                    crate::domain::status::short_digest(seen),
                    cr.current.revision
                ));
            }
            let decisions = match store.decisions(&p.cr_id) {
                Ok(d) => d,
                Err(e) if later(&e) => return Delivery::Later(e.to_string()),
                Err(e) => return Delivery::Failed(e.to_string()),
            };
            let eval = evaluate_in(&cr.current.cr, &cr.current.digest, &decisions, book);
            let request = p.request();
            let proposal = Proposal {
                principal: &who.principal,
                role: &request.role,
                verdict: request.verdict,
                rationale: &request.rationale,
                ticks: &request.ticks,
            };
            if let Err(r) = check_decision(&cr.current.cr, &eval, book.policy(), &proposal) {
                return Delivery::Failed(format!("refused: {r}"));
            }
            let record = decision_record(
                who,
                &request,
                &cr.current,
                &eval,
                &book.current().digest,
                &crate::store::Head::empty(),
                p.created_at,
            );
            let mut content = match serde_json::to_value(&record) {
                Ok(v) => v,
                Err(e) => return Delivery::Failed(e.to_string()),
            };
            if let Some(obj) = content.as_object_mut() {
                obj.remove("seq");
                obj.remove("prev");
            }
            p.content = Some(content);
            if let Err(e) = self.put(p) {
                return Delivery::Later(e.to_string());
            }
        }
        let content = p.content.clone().unwrap_or(Value::Null);
        let result = store.decide(&p.cr_id, &mut |ctx| {
            let mut body = content.clone();
            body["seq"] = Value::from(ctx.head.seq + 1);
            body["prev"] = ctx
                .head
                .hash
                .clone()
                .map(Value::from)
                .unwrap_or(Value::Null);
            let record: DecisionRecord =
                serde_json::from_value(body).map_err(|e| DecideError::Chain(e.to_string()))?;
            // The adoption a completing approval makes due is built against this context.
            sign_with_adoption(ctx, book, who, &record)
        });
        match result {
            Ok(entry) => Delivery::Delivered(Box::new(entry)),
            Err(DecideError::Store(e)) if later(&e) => Delivery::Later(e.to_string()),
            Err(e @ DecideError::Stale { .. }) => Delivery::Stale(e.to_string()),
            Err(e) => Delivery::Failed(e.to_string()),
        }
    }
}

/// Why the outbox could not keep or drop an item.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// A file operation failed.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No unsent decision has that id (quoted).
    #[error("no unsent decision {0}; `tollgate outbox` lists them")]
    NoSuchItem(String),
}
