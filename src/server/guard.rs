//! The team server's KPI guard (`serve --kpi-guard`): a thread that, every
//! [`PASS_EVERY`], reads the KPIs of each CR in canary whose reading is due and records
//! the reading signed by the server's own principal — rolling a regressed canary back
//! through the emergency path when that principal is on the on-call roster. The same
//! `workflow::rollout::guard_once` that `tollgate watch` runs.
//!
//! With several replicas each may run it; a reading two replicas take at once is simply
//! recorded twice, and only one guard rollback per reading is ever accepted (the second
//! is refused by the rules, `auto-rollback`).

use super::ServerState;
use std::sync::Arc;
use std::time::Duration;

/// How often the guard looks for due readings (each guard's own interval decides whether
/// a CR is due).
pub const PASS_EVERY: Duration = Duration::from_secs(30);

/// Starts the guard thread: a first pass at once, then one every [`PASS_EVERY`].
pub fn spawn(state: Arc<ServerState>) {
    let _ = std::thread::Builder::new()
        .name("tollgate-kpi-guard".into())
        .spawn(move || {
            loop {
                pass(&state);
                std::thread::sleep(PASS_EVERY);
            }
        });
}

/// One pass; what it did goes to stderr (the server's log).
fn pass(state: &ServerState) {
    let Some(key) = &state.server_key else {
        return;
    };
    let Ok(in_force) = state.in_force() else {
        eprintln!("kpi guard: the policy in force could not be read; trying again");
        return;
    };
    let book = &in_force.book;
    let Some(principal) = book.policy().principal(&key.principal).cloned() else {
        eprintln!(
            "kpi guard: {} is not a principal of the policy in force; not reading",
            key.principal
        );
        return;
    };
    let who = crate::identity::Identity {
        signer: key.key.clone(),
        principal,
        key_path: "serve --server-key".into(),
    };
    let now = super::server_now();
    let due = match crate::workflow::rollout::due_readings(&*state.store, book, now) {
        Ok(due) => due,
        Err(e) => {
            eprintln!("kpi guard: {e}");
            return;
        }
    };
    for id in due {
        match crate::workflow::rollout::guard_once(&*state.store, book, &who, &id, now, &mut |_| {})
        {
            Ok(action) => {
                let rollback = match &action.rollback {
                    None => String::new(),
                    Some(Ok((auth, _))) => format!("; rolled back (log entry {})", auth.seq),
                    Some(Err(e)) => format!("; rollback refused: {e}"),
                };
                eprintln!(
                    "kpi guard: {id} {} (log entry {}){rollback}",
                    action.verdict.as_str(),
                    action.reading.seq
                );
            }
            Err(e) => eprintln!("kpi guard: {id}: {e}"),
        }
    }
}
