//! A value per risk level — sign-off roles, observation windows, review SLAs — and how a
//! policy table of them (`{ low = …, medium = …, high = … }`) is read.

use crate::domain::change_request::RiskLevel;
use crate::domain::reader::Reader;
use serde::Serialize;
use serde_json::{Map, Value};

/// A value per risk level (sign-off roles, observation hours).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerLevel<T> {
    /// For low-risk changes.
    pub low: T,
    /// For medium-risk changes.
    pub medium: T,
    /// For high-risk changes.
    pub high: T,
}

impl<T> PerLevel<T> {
    /// The value for `level`.
    pub fn get(&self, level: RiskLevel) -> &T {
        match level {
            RiskLevel::Low => &self.low,
            RiskLevel::Medium => &self.medium,
            RiskLevel::High => &self.high,
        }
    }
}

/// Reads `{ low, medium, high }` at `path`, each with `read`; every problem is located.
pub(crate) fn read_per_level<T>(
    r: &mut Reader,
    v: &Value,
    path: &str,
    read: impl Fn(&mut Reader, &Map<String, Value>, &str, &str) -> Option<T>,
) -> Option<PerLevel<T>> {
    let obj = r.as_object(v, path)?;
    r.deny_unknown(obj, path, &["low", "medium", "high"]);
    let low = read(r, obj, path, "low");
    let medium = read(r, obj, path, "medium");
    let high = read(r, obj, path, "high");
    Some(PerLevel {
        low: low?,
        medium: medium?,
        high: high?,
    })
}
