//! The last few queue answers of this replica, reused while the log head is unchanged.
//!
//! A queue answer is a function of the log (its head hash names it, and a policy adoption
//! is itself an entry), this build, and the query: it holds no clock-dependent field
//! (ages and countdowns are computed by whoever reads the rows). So while the head stays
//! where it was, the previous answer to the same query is exactly what evaluating again
//! would produce — the same promise the head-hash ETag makes to a client that gets a 304.
//! Each replica keeps its own few answers; nothing here is state another replica needs.
//! A request with `Cache-Control: no-cache` is answered afresh.

use axum::body::Bytes;
use std::collections::VecDeque;
use std::sync::Mutex;

/// How many answers are kept (the TUI's whole queue, a screenful, a filter or two).
const KEEP: usize = 4;

/// Answers larger than this are not kept (a bound on memory, not a correctness rule).
const LARGEST: usize = 32 * 1024 * 1024;

/// Recent answers, newest last, each under the key it answers.
#[derive(Debug, Default)]
pub struct Answers {
    recent: Mutex<VecDeque<(String, Bytes)>>,
}

impl Answers {
    /// The answer kept under `key`, if any.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let recent = self.recent.lock().ok()?;
        recent
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, body)| body.clone())
    }

    /// Keeps `body` as the answer under `key`, forgetting the oldest beyond [`KEEP`].
    pub fn put(&self, key: String, body: Bytes) {
        if body.len() > LARGEST {
            return;
        }
        if let Ok(mut recent) = self.recent.lock() {
            recent.retain(|(k, _)| *k != key);
            recent.push_back((key, body));
            while recent.len() > KEEP {
                recent.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_few_and_replaces_a_key() {
        let a = Answers::default();
        for i in 0..6 {
            a.put(format!("k{i}"), Bytes::from(format!("body {i}")));
        }
        assert!(a.get("k0").is_none() && a.get("k1").is_none());
        assert_eq!(a.get("k5").as_deref(), Some(&b"body 5"[..]));
        a.put("k5".into(), Bytes::from_static(b"new"));
        assert_eq!(a.get("k5").as_deref(), Some(&b"new"[..]));
        assert_eq!(a.recent.lock().unwrap().len(), KEEP);
    }
}
