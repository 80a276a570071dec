//! Review reminders (`[reminders]` in the policy): a CR pending past the review SLA of
//! its effective risk is reminded about every `every_hours`, and after `escalate_after`
//! reminders the reminder goes to the leads. The team server sends them as `cr.stale`
//! events (and `review.overdue` for post-incident reviews past their deadline).

use crate::domain::per_level::{PerLevel, read_per_level};
use crate::domain::reader::Reader;
use serde::Serialize;
use serde_json::{Map, Value};

/// The reminder rules.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reminders {
    /// Hours a CR may wait for its sign-offs, by effective risk.
    pub review_sla_hours: PerLevel<i64>,
    /// Hours between reminders.
    pub every_hours: i64,
    /// Reminders before the leads are told.
    pub escalate_after: i64,
}

impl Reminders {
    /// Which reminder is due for a CR waiting `waited_hours` at `sla_hours`: `None`
    /// within the SLA, else 1, 2, … (one per `every_hours` past it).
    pub fn due(&self, sla_hours: i64, waited_hours: i64) -> Option<i64> {
        (waited_hours >= sla_hours)
            .then(|| (waited_hours - sla_hours) / self.every_hours.max(1) + 1)
    }
}

/// Reads `[reminders]`.
pub(crate) fn read(r: &mut Reader, v: &Value) -> Option<Reminders> {
    let path = "reminders";
    let obj: &Map<String, Value> = r.as_object(v, path)?;
    r.deny_unknown(
        obj,
        path,
        &["review_sla_hours", "every_hours", "escalate_after"],
    );
    let sla = r.required(obj, path, "review_sla_hours").and_then(|v| {
        read_per_level(r, v, "reminders.review_sla_hours", |r, obj, path, key| {
            r.integer(obj, path, key, 1, 24 * 365)
        })
    });
    let every = r.integer(obj, path, "every_hours", 1, 24 * 30);
    let escalate = r.integer(obj, path, "escalate_after", 0, 100);
    Some(Reminders {
        review_sla_hours: sla?,
        every_hours: every?,
        escalate_after: escalate?,
    })
}
