//! How the app applies the replies of background work (loads, signing, the emergency
//! flow, history): each is checked against the request it answers, then handed to the
//! screen it is for.

use super::app::{App, Signer};
use super::messages::{Connection, Effect, Level, Msg};
use super::requests::Kind;
use super::screens::Screen;
use super::screens::decide::{Field, rationale_area};
use super::screens::emergency::AUTHORISED;

impl App {
    /// Applies one reply message.
    pub(super) fn apply_reply(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Head(_, result) => {
                self.loading = self.loading.saturating_sub(1);
                match result {
                    Ok(head) => {
                        self.connection = self.connection.answered();
                        let changed = self.last_head.as_ref().is_some_and(|h| *h != head);
                        self.last_head = Some(head);
                        if changed || self.unsent > 0 {
                            return self.refresh();
                        }
                    }
                    Err(e) => {
                        if e.is_unreachable() {
                            self.connection = Connection::Offline;
                        }
                    }
                }
                vec![]
            }
            Msg::Pushed(head) => {
                self.connection = self.connection.answered();
                // Not taken as `last_head`: the reload it causes brings the head its rows
                // were read at (the first load of the session stays the first).
                if self.last_head.as_ref() != Some(&head) {
                    self.behind = true;
                    if !self.requests.is_open(Kind::Queue) {
                        return self.refresh();
                    }
                }
                vec![]
            }
            Msg::Live(on) => {
                self.live = on;
                if on {
                    self.connection = self.connection.answered();
                    return vec![];
                }
                // The stream was lost: look at once (the server may be gone), then now
                // and then until it is back.
                let id = self.requests.any();
                vec![Effect::CheckHead(id)]
            }
            Msg::QueueFirst(id, rows) => {
                // Only onto an empty queue: a refresh keeps the whole queue it has until
                // the whole new one arrives.
                if self.requests.is_current(Kind::Queue, id) && self.queue.rows.is_empty() {
                    self.queue.set_rows(rows);
                }
                vec![]
            }
            Msg::Queue(id, result) => {
                if !self.reply(Kind::Queue, id) {
                    return vec![];
                }
                match result {
                    Ok(data) => {
                        // Nothing is "new" at the first load of the session.
                        let first_load = self.last_head.is_none();
                        if data.head.is_some() {
                            self.last_head = data.head;
                        }

                        self.connection = self.connection.answered();
                        self.subjects = data.subjects;
                        self.exceptions = data.exceptions;
                        // What newly waits for this reviewer, said once, when someone
                        // else's change arrives (not at the first load).
                        let before: std::collections::HashSet<&str> = self
                            .queue
                            .rows
                            .iter()
                            .filter(|r| r.needs_me)
                            .map(|r| r.id.as_str())
                            .collect();
                        let fresh: Vec<String> = data
                            .rows
                            .iter()
                            .filter(|r| r.needs_me && !before.contains(r.id.as_str()))
                            .map(|r| {
                                format!(
                                    "{} waiting for you ({})",
                                    r.id,
                                    r.my_role.as_deref().unwrap_or("sign-off")
                                )
                            })
                            .collect();
                        self.queue.set_rows(data.rows);
                        if !first_load && !fresh.is_empty() && self.message.is_none() {
                            let more = match fresh.len() {
                                1 => String::new(),
                                n => format!(" (and {} more)", n - 1),
                            };
                            self.say(Level::Info, format!("{}{more}", fresh[0]));
                        }
                    }
                    Err(e) => {
                        if e.is_unreachable() {
                            self.connection = Connection::Offline;
                        }
                        self.say(Level::Error, format!("cannot load the queue: {e}"));
                    }
                }
                vec![]
            }
            Msg::Detail(id, result) => {
                if !self.reply(Kind::Detail, id) {
                    return vec![];
                }
                match result {
                    Ok(d) => {
                        self.detail.loaded(d);
                        if let Some(verdict) = self.detail.pending.take()
                            && self.screen == Screen::Detail
                        {
                            return self.start_decision(verdict);
                        }
                    }
                    Err(e) => self.say(Level::Error, e.to_string()),
                }
                vec![]
            }
            Msg::Unsent(n) => {
                let delivered = self.unsent.saturating_sub(n);
                self.unsent = n;
                if delivered == 0 {
                    return vec![];
                }
                self.say(
                    Level::Info,
                    format!(
                        "delivered {delivered} unsent decision{} to the server",
                        if delivered == 1 { "" } else { "s" }
                    ),
                );
                // The open CR may be one of them: show it as the server now has it.
                match self
                    .detail
                    .id
                    .clone()
                    .filter(|_| self.screen == Screen::Detail)
                {
                    Some(id) => vec![self.load_detail(id)],
                    None => vec![],
                }
            }

            Msg::Signed(id, result) => {
                if !self.reply(Kind::Sign, id) {
                    return vec![];
                }
                match result {
                    Ok(line) => {
                        self.decide = None;
                        self.screen = Screen::Detail;
                        self.say(Level::Info, line);
                        let cr = self.detail.id.clone().unwrap_or_default();
                        vec![self.load_detail(cr), self.load_queue()]
                    }
                    Err(e) => {
                        if let Some(form) = self.decide.as_mut() {
                            form.signing = false;
                            form.error = Some(e.to_string());
                        }
                        vec![]
                    }
                }
            }
            Msg::Edited(result) => {
                match (result, self.decide.as_mut()) {
                    (Ok(text), Some(form)) => {
                        form.rationale = rationale_area(&text);
                        form.focus = Field::Rationale;
                    }
                    (Err(e), _) => self.say(Level::Error, e.to_string()),
                    _ => {}
                }
                vec![]
            }
            Msg::Authorised(id, result) => {
                if !self.reply(Kind::Emergency, id) {
                    return vec![];
                }
                let Some(form) = self.emergency.as_mut() else {
                    return vec![];
                };
                match form.authorised(result) {
                    Some((request, hash)) => {
                        self.say(Level::Info, AUTHORISED);
                        let id = self.requests.issue(Kind::Emergency);
                        vec![self.load_queue(), Effect::RunRollback(id, request, hash)]
                    }
                    None => vec![self.load_queue()],
                }
            }
            Msg::RollbackOutput(line) => {
                if let Some(form) = self.emergency.as_mut() {
                    form.output_line(&line);
                }
                vec![]
            }
            Msg::RollbackDone(id, result) => {
                if !self.reply(Kind::Emergency, id) {
                    return vec![];
                }
                if let Some(form) = self.emergency.as_mut() {
                    form.finished(result);
                }
                vec![self.load_queue()]
            }
            Msg::History(id, result) => {
                if !self.reply(Kind::History, id) {
                    return vec![];
                }
                match (result, self.history.as_mut()) {
                    (Ok(data), Some(h)) => h.loaded(data),
                    (Err(e), _) => self.say(Level::Error, format!("cannot load the history: {e}")),
                    _ => {}
                }
                vec![]
            }
            Msg::Integrity(id, result) => {
                if !self.reply(Kind::Integrity, id) {
                    return vec![];
                }
                if let Some(h) = self.history.as_mut() {
                    h.verified(result);
                }
                vec![]
            }
            Msg::Reviewed(id, result) => {
                if !self.reply(Kind::Review, id) {
                    return vec![];
                }
                match self.exceptions_screen.reviewed(result) {
                    Some(line) => {
                        self.say(Level::Info, line);
                        vec![self.load_queue()]
                    }
                    None => vec![],
                }
            }
            Msg::StageRecorded(id, result) => {
                if !self.reply(Kind::Stage, id) {
                    return vec![];
                }
                self.detail.stage = None;
                match result {
                    Ok(line) => self.say(Level::Info, line),
                    Err(e) => self.say(Level::Error, e.to_string()),
                }
                let mut effects = vec![self.load_queue()];
                if let Some(cr) = self.detail.id.clone() {
                    effects.push(self.load_detail(cr));
                }
                effects
            }
            Msg::Record(id, result) => {
                if !self.reply(Kind::Record, id) {
                    return vec![];
                }
                match (result, self.history.as_mut()) {
                    (Ok(r), Some(h)) => h.show_record(r),
                    (Err(e), _) => self.say(Level::Error, e.to_string()),
                    _ => {}
                }
                vec![]
            }
            Msg::Policy(policy, version, seq) => {
                self.policy = policy;
                if let Signer::Principal { principal, .. } = &mut self.signer {
                    match self.policy.principal(&principal.id) {
                        Some(p) => *principal = p.clone(),
                        None => {
                            self.signer = Signer::ReadOnly(format!(
                                "your principal is not in policy version {version}: read-only"
                            ));
                        }
                    }
                }
                self.say(
                    Level::Info,
                    format!("policy version {version} is now in force (log entry {seq})"),
                );
                vec![]
            }
            Msg::Tick | Msg::Resize(..) | Msg::Notice(..) | Msg::Mouse(_) | Msg::Key(_) => vec![],
        }
    }
}
