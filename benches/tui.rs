//! TUI benchmark (not a test): prints figures, asserts nothing about time.
//!
//!   cargo bench --bench tui                       # 100,000 CRs
//!   TOLLGATE_BENCH_CRS=20000 cargo bench --bench tui
//!
//! With N change requests in a local store: time to the first frame (the screen is up,
//! loading), time until the queue is on screen, time per filter keystroke (update + draw),
//! and the process's peak resident memory.

mod support;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::sync::Arc;
use std::time::Instant;
use tollgate::store::local::LocalStore;
use tollgate::tui::app::{App, Msg, Signer};
use tollgate::tui::settings::Settings;
use tollgate::tui::{Shared, answer, answer_with, views};

fn main() {
    let n = support::cr_count(100_000);
    let now = support::fixed_now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, built) = support::synthetic_store(dir.path(), n, now);
    println!("tollgate TUI benchmark: {n} change requests (store built in {built:.1} s)");

    // Start-up as `tollgate` does it: open the store, read the policy in force from its
    // log, build the app, draw.
    let started = Instant::now();
    let store = LocalStore::open(&path).expect("open");
    let book = support::book_of(&store);
    let policy = book.current().policy.clone();
    let who = policy.principal("devi").expect("devi").clone();
    let shared = Shared::new(Arc::new(store), book, None, None, None);
    let mut app = App::new(
        Settings::default(),
        policy,
        Signer::Principal {
            principal: who.clone(),
            fingerprint: "SHA256:bench".into(),
        },
        "bench.db".into(),
        now,
    );
    app.update(Msg::Resize(120, 40));
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).expect("terminal");
    let load = app.load_queue();
    terminal.draw(|f| views::draw(f, &app)).expect("draw");
    let first_frame = started.elapsed();
    for reply in answer(&load, &shared, Some(&who), now) {
        app.update(reply);
    }
    terminal.draw(|f| views::draw(f, &app)).expect("draw");
    let queue_frame = started.elapsed();
    println!(
        "first frame (screen up, loading)   {:>8.1} ms",
        first_frame.as_secs_f64() * 1e3
    );
    println!(
        "queue on screen ({} rows)      {:>8.1} ms   (summary cache cold: every CR evaluated and cached)",
        app.queue.rows.len(),
        queue_frame.as_secs_f64() * 1e3
    );
    // The next launch reads the cache: reload into an empty queue, as a new session would;
    // its first page is on screen before the rest is read.
    app.queue.set_rows(Vec::new());
    let warm = Instant::now();
    let reload = app.load_queue();
    let mut first_rows = None;
    let replies = answer_with(&reload, &shared, Some(&who), now, &mut |m| {
        app.update(m);
        terminal.draw(|f| views::draw(f, &app)).expect("draw");
        first_rows.get_or_insert((warm.elapsed(), app.queue.rows.len()));
    });
    for reply in replies {
        app.update(reply);
    }
    terminal.draw(|f| views::draw(f, &app)).expect("draw");
    if let Some((t, n)) = first_rows {
        println!(
            "first rows on screen, cache warm   {:>8.1} ms   ({n} rows; the rest follow)",
            t.as_secs_f64() * 1e3
        );
    }
    println!(
        "queue on screen, cache warm        {:>8.1} ms",
        warm.elapsed().as_secs_f64() * 1e3
    );

    // Filter keystrokes: '/' then a query, one character at a time, each update + draw.
    app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('/'),
        KeyModifiers::NONE,
    )));
    let mut times = Vec::new();
    let mut updates = Vec::new();
    for c in "fraud 12".chars() {
        let t = Instant::now();
        app.update(Msg::Key(KeyEvent::new(
            KeyCode::Char(c),
            KeyModifiers::NONE,
        )));
        updates.push(t.elapsed().as_secs_f64() * 1e3);
        terminal.draw(|f| views::draw(f, &app)).expect("draw");
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "filter keystroke, update only       {} ms per key",
        updates
            .iter()
            .map(|u| format!("{u:.1}"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let max = times.iter().cloned().fold(0.0, f64::max);
    println!(
        "filter keystroke (update + draw)    {mean:>8.1} ms mean, {max:.1} ms max over {} keys ({} matches for \"fraud 12\")",
        times.len(),
        app.queue.visible.len()
    );
    println!(
        "resident memory, queue loaded      {:>8.1} MiB (peak {:.1} MiB, which includes building the store and the cold evaluation in this process)",
        support::status_mib("VmRSS:"),
        support::peak_rss_mib()
    );
}
