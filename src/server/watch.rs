//! `GET /v1/watch`: the log head as Server-Sent Events, so a client (the TUI) hears of a
//! change the moment it is recorded instead of asking every few seconds.
//!
//! One thread per server listens to the store ([`crate::store::HeadListener`]: on
//! PostgreSQL the notification every replica's append sends, on SQLite the file's data
//! version) and publishes the head on a watch channel every open stream reads. The
//! thread starts with the first watcher and stops a few seconds after the last one left,
//! so a server nobody watches holds no extra connection.
//!
//! A stream sends `event: head` with `{"seq":…,"hash":…}` at once (the head as it is),
//! then each newer head, and a comment every [`KEEP_ALIVE`] (or half the idle timeout,
//! if shorter) so proxies and the connection's idle timeout leave it open and the client
//! can tell a dead server.

use crate::store::{Head, Store};
use axum::response::sse::{Event, KeepAlive, Sse};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How often an idle stream sends a keep-alive comment, at most.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long the listening thread waits before it looks whether anyone still watches.
const LOOK_FOR_WATCHERS: Duration = Duration::from_secs(5);

/// The head as this server last heard it, for every open stream.
pub struct Heads {
    tx: watch::Sender<Option<Head>>,
    /// Whether the listening thread runs; changed only with this lock held, so a
    /// watcher arriving as the thread leaves either keeps it or starts a new one.
    running: Mutex<bool>,
}

impl Default for Heads {
    fn default() -> Self {
        Heads {
            tx: watch::channel(None).0,
            running: Mutex::new(false),
        }
    }
}

impl Heads {
    /// A receiver of every new head, starting the listening thread if none runs. A
    /// watcher subscribes before it reads the head it starts from, so nothing recorded in
    /// between is missed.
    pub fn subscribe(self: &Arc<Self>, store: &Arc<dyn Store>) -> watch::Receiver<Option<Head>> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        if !*running {
            *running = true;
            let (heads, store) = (self.clone(), store.clone());
            let spawned = std::thread::Builder::new()
                .name("tollgate-watch".into())
                .spawn(move || heads.listen(store.as_ref()));
            if spawned.is_err() {
                *running = false;
            }
        }
        rx
    }

    /// Listens until no watcher is left. A listener that fails, or cannot be made (the
    /// database restarting), is made again a second later; a store that cannot announce
    /// changes at all is looked at every few seconds instead.
    fn listen(&self, store: &dyn Store) {
        loop {
            let mut listener = match store.head_listener() {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("tollgate serve: watch: {e}; trying again");
                    std::thread::sleep(Duration::from_secs(1));
                    if self.leave_if_unwatched() {
                        return;
                    }
                    continue;
                }
            };
            // Whatever moved before the listener was made.
            if let Ok(head) = store.recorded_head() {
                self.publish(head);
            }
            loop {
                let heard = match listener.as_mut() {
                    Some(l) => l.wait(LOOK_FOR_WATCHERS),
                    None => {
                        std::thread::sleep(LOOK_FOR_WATCHERS);
                        store.recorded_head().map(Some)
                    }
                };
                match heard {
                    Ok(Some(head)) => self.publish(head),
                    Ok(None) => {}
                    Err(e) => {
                        eprintln!("tollgate serve: watch: {e}; listening again");
                        std::thread::sleep(Duration::from_secs(1));
                        break;
                    }
                }
                if self.leave_if_unwatched() {
                    return;
                }
            }
            if self.leave_if_unwatched() {
                return;
            }
        }
    }

    fn publish(&self, head: Head) {
        self.tx.send_if_modified(|h| {
            let newer = h.as_ref().is_none_or(|old| *old != head);
            if newer {
                *h = Some(head);
            }
            newer
        });
    }

    /// True (and the thread marked stopped) when no stream is open.
    fn leave_if_unwatched(&self) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if self.tx.receiver_count() == 0 {
            *running = false;
            // The next watcher starts from the store, not from what this thread saw.
            self.tx.send_replace(None);
            return true;
        }
        false
    }
}

fn event(head: &Head) -> Event {
    Event::default()
        .event("head")
        .id(head.seq.to_string())
        .json_data(head)
        .unwrap_or_else(|_| Event::default().comment("unserialisable head"))
}

/// The stream of heads for one watcher: `now` first, then each newer one.
pub fn stream(
    rx: watch::Receiver<Option<Head>>,
    now: Head,
    keep_alive: Duration,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>> + use<>> {
    let items = futures_util::stream::unfold(
        (rx, Some(now.clone()), now),
        |(mut rx, first, mut last)| async move {
            if let Some(h) = first {
                return Some((Ok(event(&h)), (rx, None, last)));
            }
            loop {
                // What was published already counts (it may be newer than `now`), then
                // each change.
                let seen = rx.borrow_and_update().clone();
                if let Some(h) = seen.filter(|h| *h != last && h.seq >= last.seq) {
                    last = h.clone();
                    return Some((Ok(event(&h)), (rx, None, last)));
                }
                rx.changed().await.ok()?;
            }
        },
    );
    Sse::new(items).keep_alive(KeepAlive::new().interval(keep_alive))
}
