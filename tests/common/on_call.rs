//! The on-call path at the keyboard, shared by the end-to-end test (which checks what it
//! records) and `cargo bench --bench emergency` (which times it and counts its keys).

use super::Home;
use super::tmux::Session;
use std::time::{Duration, Instant};

pub const INCIDENT: &str = "INC-2291";
pub const REASON: &str = "conversion -10% since v8 at 25%";

/// The demo store with a policy whose rollback command is a script that prints what it
/// would do.
pub fn home_with_rollback_script() -> Home {
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
    home
}

/// What one run took.
pub struct Run {
    /// Keys pressed, typing included.
    pub keystrokes: usize,
    /// Of those, characters of the incident id and the reason.
    pub typed: usize,
    /// From `!` to "authorised and signed" on screen.
    pub authorised: Duration,
    /// From `!` to the rollback's recorded outcome on screen.
    pub finished: Duration,
    /// The screen at the end.
    pub screen: String,
}

/// From the queue: `!`, the first subject, the incident id, the reason, confirm, `y`.
pub fn roll_back(s: &Session) -> Run {
    s.wait_for("CR-1046");
    let started = Instant::now();
    s.keys(&["!"]);
    s.wait_for("Which model or deployment?");
    s.keys(&["Enter"]);
    s.literal(INCIDENT);
    s.keys(&["Tab"]);
    s.literal(REASON);
    s.keys(&["Enter"]);
    s.wait_for("This will be signed and recorded");
    s.keys(&["y"]);
    s.wait_for("authorised and signed");
    let authorised = started.elapsed();
    let screen = s.wait_for("rollback finished: exit 0");
    let finished = started.elapsed();
    let typed = INCIDENT.len() + REASON.len();
    Run {
        keystrokes: 1 + 1 + INCIDENT.len() + 1 + REASON.len() + 1 + 1,
        typed,
        authorised,
        finished,
        screen,
    }
}
