//! The time tollgate runs on: `TOLLGATE_NOW` (RFC 3339) when set — for incident drills
//! and tests that need a deadline or an observation window to pass — else the system
//! clock. Everything that stamps or judges a time reads it here (signers, the server, the
//! store's receipt times), so a drill's simulated clock is one clock, not two.

/// The current time, or `TOLLGATE_NOW` when set. Invalid values are reported, not ignored.
pub fn now() -> Result<chrono::DateTime<chrono::Utc>, ClockError> {
    match std::env::var("TOLLGATE_NOW") {
        Ok(v) if !v.is_empty() => chrono::DateTime::parse_from_rfc3339(&v)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|source| ClockError { value: v, source }),
        _ => Ok(chrono::Utc::now()),
    }
}

/// [`now`], or the system clock when `TOLLGATE_NOW` does not read (every command that
/// signs refuses to start with a bad value first, so this is only a fallback).
pub fn now_or_system() -> chrono::DateTime<chrono::Utc> {
    now().unwrap_or_else(|_| chrono::Utc::now())
}

/// `TOLLGATE_NOW` is set but is not a time.
#[derive(Debug, thiserror::Error)]
#[error("TOLLGATE_NOW={value:?} is not an RFC 3339 time such as 2026-11-27T12:00:00Z ({source})")]
pub struct ClockError {
    /// What it is set to.
    pub value: String,
    /// Why it does not parse.
    #[source]
    pub source: chrono::ParseError,
}
