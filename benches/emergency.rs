//! Emergency rollback at the keyboard (not a test): prints figures, asserts nothing about
//! time. The real binary in tmux, as `tests/tui_tmux.rs` drives it: `!`, pick the model,
//! type the incident id and the reason, confirm, `y`; then the rollback command runs.
//! Prints the keystrokes it took and, over several runs, the time from `!` to the recorded
//! authorisation and to the recorded rollback outcome (tmux round trips included).
//!
//!   cargo bench --bench emergency            # TOLLGATE_BENCH_RUNS=5 by default

#[path = "../tests/common/mod.rs"]
mod common;

use common::Home;
use common::tmux::Session;
use std::time::{Duration, Instant};

fn one_run() -> (usize, usize, Duration, Duration) {
    let home = Home::demo();
    let script = home.script(
        "rollback.sh",
        "echo \"helm rollback $1 to $2\"\necho 'rollback complete'",
    );
    let mut text = home.policy_text();
    text.push_str(&format!(
        "\n[[emergency.rollback]]\ncommand = [\"{}\", \"{{subject}}\", \"{{to_version}}\"]\ntimeout_seconds = 60\n",
        script.display()
    ));
    home.adopt_policy(&text, "run the rollback script on every emergency");

    let s = Session::tollgate(&home, &[], "--as lena");
    s.wait_for("CR-1046");
    let incident = "INC-2291";
    let reason = "conversion -10% since v8 at 25%";
    let started = Instant::now();
    s.keys(&["!"]);
    s.wait_for("Which model or deployment?");
    s.keys(&["Enter"]);
    s.literal(incident);
    s.keys(&["Tab"]);
    s.literal(reason);
    s.keys(&["Enter"]);
    s.wait_for("This will be signed and recorded");
    s.keys(&["y"]);
    s.wait_for("authorised and signed");
    let authorised = started.elapsed();
    s.wait_for("rollback finished: exit 0");
    let finished = started.elapsed();
    // `!`, enter (the first subject), the id, tab, the reason, enter, `y`.
    let keystrokes = 1 + 1 + incident.len() + 1 + reason.len() + 1 + 1;
    let ex = home.run(&["exceptions", "--json"]).ok().json();
    assert_eq!(
        ex[0]["incident"], incident,
        "the authorisation was recorded"
    );
    assert_eq!(ex[0]["rollbacks"][0]["outcome"]["exit_status"], 0);
    (
        keystrokes,
        incident.len() + reason.len(),
        authorised,
        finished,
    )
}

fn main() {
    let runs: usize = std::env::var("TOLLGATE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut authorised = Vec::new();
    let mut finished = Vec::new();
    let mut keys = (0, 0);
    for _ in 0..runs {
        let (k, typed, a, f) = one_run();
        keys = (k, typed);
        authorised.push(a.as_secs_f64());
        finished.push(f.as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "emergency rollback from the keyboard: {} keystrokes ({} of them typing the incident id and reason)",
        keys.0, keys.1
    );
    println!(
        "over {runs} runs, median {:.2} s from `!` to the recorded authorisation, {:.2} s to the recorded rollback outcome (max {:.2} s / {:.2} s)",
        median(&mut authorised),
        median(&mut finished),
        authorised.last().copied().unwrap_or_default(),
        finished.last().copied().unwrap_or_default(),
    );
}
