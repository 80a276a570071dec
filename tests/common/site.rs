//! A demo home with its server, for the adversarial tests: correctly signed entries
//! (`ssh-keygen -Y sign -n tollgate` with a demo principal's key) posted straight to the
//! server, or forced straight into the store.

use super::{Home, Server, checklist_of, now_text, ssh_fingerprint, ssh_sign};
use serde_json::{Value, json};
use tollgate::audit::canonical::to_canonical_string;

pub fn http() -> reqwest::blocking::Client {
    tollgate::tls::install_crypto_provider();
    reqwest::blocking::Client::new()
}

/// A demo home with its server and a token per principal it needs.
pub struct Site {
    pub home: Home,
    pub server: Server,
    pub tokens: std::collections::HashMap<&'static str, String>,
}

impl Site {
    pub fn new() -> Site {
        Site::with_tokens(&["lena", "marco", "sofia"])
    }

    /// A demo site whose server accepts a token for each of `who`.
    pub fn with_tokens(who: &[&'static str]) -> Site {
        let home = Home::demo();
        let tokens = who.iter().map(|who| (*who, home.token(who))).collect();
        let server = home.serve("127.0.0.1:0");
        Site {
            home,
            server,
            tokens,
        }
    }

    /// Posts `body` signed by `who` (their demo key, via ssh-keygen) to `path`, with a
    /// token of theirs; the status and the JSON answer.
    pub fn post(&self, path: &str, kind: &str, who: &str, body: &str) -> (u16, Value) {
        let token = &self.tokens[who];
        let sig = ssh_sign(&self.home.demo_key(who), body);
        let r = http()
            .post(format!("{}{path}", self.server.url))
            .bearer_auth(token)
            .json(&json!({"kind": kind, "principal": who, "body": body, "signature": sig}))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// Forces `body`, signed by `who`, into the store past every check; its position.
    pub fn force(&self, kind: &str, cr: Option<&str>, who: &str, body: &str) -> u64 {
        let sig = ssh_sign(&self.home.demo_key(who), body);
        self.home.force_append(kind, cr, who, body, &sig)
    }

    pub fn in_force(&self) -> String {
        self.home.run(&["policy", "show", "--json"]).ok().json()["digest"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A `decision` body by `who` on `cr` as the next entry — a request for changes by
    /// an ops-reviewer with the checklist `show` evaluates, signed now — then `edit`
    /// applied.
    pub fn decision(&self, who: &str, cr: &str, edit: impl FnOnce(&mut Value)) -> String {
        let (seq, prev) = self.home.head();
        let shown = self.home.run(&["show", cr, "--json"]).ok().json();
        let mut v = json!({
            "type": "decision", "format": 1, "seq": seq + 1, "prev": prev,
            "cr_id": cr, "cr_revision": shown["revision"], "cr_digest": shown["digest"],
            "verdict": "request-changes", "role": "ops-reviewer", "rationale": "p99 latency",
            "ticks": [], "checklist": checklist_of(&shown), "principal": who,
            "key_fingerprint": ssh_fingerprint(&self.home.demo_key(who)),
            "policy_digest": self.in_force(), "at": now_text(),
        });
        edit(&mut v);
        to_canonical_string(&v)
    }
}
