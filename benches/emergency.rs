//! Emergency rollback at the keyboard (not a test): prints figures, asserts nothing about
//! time. The real binary in tmux on the path `tests/tui_tmux.rs` checks (`!`, pick the
//! model, the incident id, the reason, confirm, `y`; then the rollback command runs).
//! Prints the keystrokes it took and, over several runs, the time from `!` to the recorded
//! authorisation and to the recorded rollback outcome (tmux round trips included).
//!
//!   cargo bench --bench emergency            # TOLLGATE_BENCH_RUNS=5 by default

#[path = "../tests/common/mod.rs"]
mod common;

use common::on_call::{INCIDENT, home_with_rollback_script, roll_back};
use common::tmux::Session;

fn main() {
    let runs: usize = std::env::var("TOLLGATE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let (mut authorised, mut finished, mut keys) = (Vec::new(), Vec::new(), (0, 0));
    for _ in 0..runs {
        let home = home_with_rollback_script();
        let s = Session::tollgate(&home, &[], "--as lena");
        let run = roll_back(&s);
        let ex = home.run(&["exceptions", "--json"]).ok().json();
        assert_eq!(
            ex[0]["incident"], INCIDENT,
            "the authorisation was recorded"
        );
        assert_eq!(ex[0]["rollbacks"][0]["outcome"]["exit_status"], 0);
        keys = (run.keystrokes, run.typed);
        authorised.push(run.authorised.as_secs_f64());
        finished.push(run.finished.as_secs_f64());
    }
    authorised.sort_by(f64::total_cmp);
    finished.sort_by(f64::total_cmp);
    println!(
        "emergency rollback from the keyboard: {} keystrokes ({} of them typing the incident id and reason)",
        keys.0, keys.1
    );
    println!(
        "over {runs} runs: median {:.2} s from `!` to the recorded authorisation (max {:.2} s), {:.2} s to the recorded rollback outcome (max {:.2} s)",
        authorised[runs / 2],
        authorised[runs - 1],
        finished[runs / 2],
        finished[runs - 1],
    );
}
