//! History benchmark (not a test): prints figures, asserts nothing about time.
//!
//!   cargo bench --bench history                    # 1,000,000 log entries
//!   TOLLGATE_BENCH_ENTRIES=100000 cargo bench --bench history
//!
//! With a log of N signed decisions: time to open the History screen (load every
//! decision with its context, sort, draw the first frame), time to apply filters, time to
//! verify the whole chain in the background, and the process's resident memory (now and
//! at its peak since the log was built).

mod support;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::sync::Arc;
use std::time::Instant;
use tollgate::store::local::LocalStore;
use tollgate::store::{VerifyOptions, verify_log};
use tollgate::tui::app::{App, Msg, Signer as Who};
use tollgate::tui::settings::Settings;
use tollgate::tui::{Shared, answer, views};

fn main() {
    let n: usize = std::env::var("TOLLGATE_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, build_secs) = support::store_with_signed_log(dir.path(), n);
    println!("tollgate history benchmark: {n} signed decisions (log built in {build_secs:.1} s)");

    // As on any launch but the first after an upgrade: an earlier reader (a listing, the
    // server, the TUI's own queue) left the queue's summaries cached. A cold cache makes
    // History evaluate every CR first (and read every decision to do it).
    if std::env::var("TOLLGATE_BENCH_COLD").is_err() {
        let t = Instant::now();
        let listed = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["--store", &path.to_string_lossy(), "list", "--json"])
            .env("TOLLGATE_NOW", support::fixed_now().to_rfc3339())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run tollgate list");
        assert!(listed.success(), "tollgate list failed");
        println!(
            "queue summaries cached by `tollgate list` in {:.1} s (TOLLGATE_BENCH_COLD=1 skips this)",
            t.elapsed().as_secs_f64()
        );
    }
    // What opening History costs, apart from building the log above.
    support::reset_peak_rss();
    let store = LocalStore::open(&path).expect("open");
    let now = support::fixed_now();
    let book = support::book_of(&store);
    let policy = book.current().policy.clone();
    let shared = Shared::new(Arc::new(store), book, None, None, None);
    let who = policy.principal("sofia").expect("sofia").clone();
    let mut app = App::new(
        Settings::default(),
        policy.clone(),
        Who::Principal {
            principal: who.clone(),
            fingerprint: "SHA256:bench".into(),
        },
        "bench.db".into(),
        now,
    );
    app.update(Msg::Resize(120, 40));
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).expect("terminal");

    // Open the History screen: the first frame comes at once (verifying, loading)...
    let started = Instant::now();
    let effects = app.run(tollgate::tui::keymap::Action::History);
    terminal.draw(|f| views::draw(f, &app)).expect("draw");
    let first_frame = started.elapsed();
    // ...then the decisions arrive and are drawn.
    let load = effects
        .iter()
        .find(|e| matches!(e, tollgate::tui::app::Effect::LoadHistory(_)))
        .expect("load")
        .clone();
    for msg in answer(&load, &shared, Some(&who), now) {
        app.update(msg);
    }
    terminal.draw(|f| views::draw(f, &app)).expect("draw");
    let table = started.elapsed();
    let rss_after_load = support::status_mib("VmRSS:");
    let peak_load = support::peak_rss_mib();
    let rows = app.history.as_ref().map_or(0, |h| h.visible.len());
    println!(
        "History: first frame                {:>9.1} ms",
        first_frame.as_secs_f64() * 1e3
    );
    println!(
        "History: {rows} decisions on screen  {:>9.1} ms",
        table.as_secs_f64() * 1e3
    );

    for expr in [
        "principal:devi",
        "verdict:approve",
        "risk:high since:2026-01-01 per-language",
        "CR-1044",
    ] {
        let h = app.history.as_mut().expect("history");
        h.filter = expr.to_string();
        let t = Instant::now();
        h.refilter();
        let matches = h.visible.len();
        terminal.draw(|f| views::draw(f, &app)).expect("draw");
        println!(
            "filter {expr:<40} {:>9.1} ms ({matches} matches, refilter + draw)",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    let t = Instant::now();
    let report = verify_log(shared.store.as_ref(), &VerifyOptions::default()).expect("verify");
    assert!(report.ok());
    println!(
        "background chain verification       {:>9.1} s for {} entries ({:.0} entries/s)",
        t.elapsed().as_secs_f64(),
        report.entries,
        report.entries as f64 / t.elapsed().as_secs_f64()
    );
    println!(
        "resident memory with the history loaded {:>6.1} MiB; peak while loading {:.1} MiB, \
         peak with verification {:.1} MiB",
        rss_after_load,
        peak_load,
        support::peak_rss_mib()
    );
}
