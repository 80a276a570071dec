//! Which background request each kind of reply must answer: a reply to a request that was
//! superseded (the user moved on, or asked again) is dropped, in one place.

/// Kinds of request whose replies can go stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The queue (rows, subjects, exceptions).
    Queue,
    /// One CR for the detail screen.
    Detail,
    /// Signing a decision.
    Sign,
    /// An emergency authorisation or its rollback run.
    Emergency,
    /// The decision history.
    History,
    /// Whole-log verification.
    Integrity,
    /// One signed record.
    Record,
    /// Signing a post-incident review.
    Review,
    /// Recording a rollout stage.
    Stage,
}

const KINDS: usize = 9;

impl Kind {
    fn slot(self) -> usize {
        self as usize
    }
}

/// Request ids, increasing, and the latest one issued per kind.
#[derive(Debug, Default, Clone)]
pub struct Requests {
    next: u64,
    latest: [u64; KINDS],
    /// Whether the latest request of each kind still waits for its reply.
    open: [bool; KINDS],
}

impl Requests {
    /// A fresh id not tied to a kind (a reply nobody waits for specifically).
    pub fn any(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// A fresh id that supersedes every earlier request of `kind`.
    pub fn issue(&mut self, kind: Kind) -> u64 {
        let id = self.any();
        self.latest[kind.slot()] = id;
        self.open[kind.slot()] = true;
        id
    }

    /// A reply to `id` arrived: whether it is the one `kind` waits for (then `kind` no
    /// longer waits).
    pub fn settle(&mut self, kind: Kind, id: u64) -> bool {
        let current = self.is_current(kind, id);
        if current {
            self.open[kind.slot()] = false;
        }
        current
    }

    /// Whether the latest request of `kind` is still unanswered.
    pub fn is_open(&self, kind: Kind) -> bool {
        self.open[kind.slot()]
    }

    /// Whether a reply to `id` is the one `kind` waits for.
    pub fn is_current(&self, kind: Kind, id: u64) -> bool {
        self.latest[kind.slot()] == id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_request_of_a_kind_is_current() {
        let mut r = Requests::default();
        let first = r.issue(Kind::Queue);
        let detail = r.issue(Kind::Detail);
        assert!(r.is_current(Kind::Queue, first));
        let second = r.issue(Kind::Queue);
        assert!(!r.is_current(Kind::Queue, first), "superseded");
        assert!(r.is_current(Kind::Queue, second));
        assert!(r.is_current(Kind::Detail, detail), "other kinds untouched");
        assert!(!r.is_current(Kind::Detail, second));
        // Only the current reply settles a kind.
        assert!(r.is_open(Kind::Queue));
        assert!(!r.settle(Kind::Queue, first));
        assert!(
            r.is_open(Kind::Queue),
            "a superseded reply leaves it waiting"
        );
        assert!(r.settle(Kind::Queue, second));
        assert!(!r.is_open(Kind::Queue));
        assert!(r.is_open(Kind::Detail));
    }
}
