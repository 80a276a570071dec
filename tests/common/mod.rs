//! Helpers shared by the integration tests: run the real binary against a private
//! TOLLGATE_HOME, and reach the acceptance fixtures the repository keeps.
#![allow(dead_code)]

pub mod on_call;
pub mod pg;
pub mod site;
pub mod tmux;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The acceptance fixtures, as the repository keeps them (`src/demo/fixtures`: the sample
/// CRs, the playbook policy and its README). Tests never read `../shared`; one test
/// (`fixtures_readme.rs`) checks these copies agree with it when it is there.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/demo/fixtures")
}

/// One fixture CR as a JSON tree.
pub fn fixture_json(id: &str) -> Value {
    let path = fixtures().join(format!("{id}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A private tollgate home directory with helpers to run the binary in it.
pub struct Home {
    pub dir: tempfile::TempDir,
    /// The clock every command of this home runs at (`TOLLGATE_NOW`); `None`: the real one.
    pub now: Option<String>,
}

/// What a run printed and how it ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Nothing from the developer's shell reaches a tollgate the tests start: every
/// `TOLLGATE_*` variable is removed (a test then sets what it means to).
pub fn without_tollgate_env(c: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TOLLGATE_") {
            c.env_remove(&name);
        }
    }
    c
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("temp dir"),
            now: None,
        }
    }

    /// A home with the demo store made at `now`, whose commands all run at `now` until the
    /// test moves [`Home::now`] on.
    pub fn demo_at(now: &str) -> Home {
        let mut h = Home::new();
        h.now = Some(now.to_string());
        h.run(&["demo"]).ok();
        h
    }

    /// A home with the demo store (fixtures + playbook policy).
    pub fn demo() -> Home {
        let h = Home::new();
        h.run(&["demo"]).ok();
        h
    }

    /// A home with the demo store copied into a fresh PostgreSQL database (verified
    /// there), and the database's URL.
    pub fn demo_in_database() -> (Home, String) {
        let home = Home::demo();
        let url = pg::database();
        let store = home.store();
        let moved = home.run(&[
            "store",
            "migrate",
            "--from",
            &store.to_string_lossy(),
            "--to",
            &url,
        ]);
        assert!(
            moved.stdout.contains("verify passes on the copy"),
            "{}{}",
            moved.stdout,
            moved.stderr
        );
        (home, url)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn store(&self) -> PathBuf {
        self.path("tollgate.db")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        without_tollgate_env(&mut c);
        c.args(args)
            .env("TOLLGATE_HOME", self.dir.path())
            .env("NO_COLOR", "1");
        if let Some(now) = &self.now {
            c.env("TOLLGATE_NOW", now);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tollgate")
            .into()
    }

    /// Writes a JSON document into the home and returns its path as a string.
    pub fn write_json(&self, name: &str, v: &Value) -> String {
        let p = self.path(name);
        std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
        p.to_string_lossy().into_owned()
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_string_lossy().into_owned()
    }

    /// `list --json` as (id, revision) pairs: what a user would see stored.
    pub fn stored(&self) -> Vec<(String, u64)> {
        let v = self.run(&["list", "--json"]).ok().json();
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap().to_string(),
                    e["revision"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

/// Entries of a fresh demo store's log: the genesis policy and the five sample CRs.
pub const DEMO_ENTRIES: u64 = 1 + 5;

/// Entries a policy change adds: its submission, two lead approvals, the adoption.
pub const POLICY_CHANGE_ENTRIES: u64 = 4;

impl Home {
    /// Changes the demo store's policy the governed way: marco proposes `text`, leads lena
    /// and sofia approve, and the adoption makes it the policy in force. Returns the
    /// proposal's id.
    pub fn adopt_policy(&self, text: &str, rationale: &str) -> String {
        let file = self.write("proposed.policy.toml", text.as_bytes());
        let run = self
            .run(&[
                "--as",
                "marco",
                "policy",
                "propose",
                &file,
                "--rationale",
                rationale,
            ])
            .ok();
        let id = run
            .stdout
            .split(':')
            .next()
            .expect("the proposal's id")
            .to_string();
        for lead in ["lena", "sofia"] {
            self.decide(
                lead,
                "approve",
                &id,
                &["--role", "lead", "--rationale", "agreed"],
            )
            .ok();
        }
        let shown = self.run(&["policy", "show", "--json"]).ok().json();
        assert_eq!(shown["cr_id"], id.as_str(), "{shown}");
        id
    }

    /// `approve ID --role lead` as the demo lead `who`, with a rationale.
    pub fn approve_as_lead(&self, who: &str, id: &str) -> Run {
        self.decide(
            who,
            "approve",
            id,
            &["--role", "lead", "--rationale", "reviewed the change"],
        )
    }

    /// The text of the policy in force.
    pub fn policy_text(&self) -> String {
        self.run(&["policy", "show", "--text"]).ok().stdout
    }
}

impl Home {
    /// `tollgate rollback recommender --env prod` as a demo identity, for `incident`, at
    /// `now` (RFC 3339; the real clock when `None`).
    pub fn rollback(&self, who: &str, incident: &str, now: Option<&str>) -> Run {
        self.rollback_with(who, incident, now, &[])
    }

    /// [`Home::rollback`] with more arguments (`--to 6`, `--from 8`).
    pub fn rollback_with(
        &self,
        who: &str,
        incident: &str,
        now: Option<&str>,
        extra: &[&str],
    ) -> Run {
        let mut args = vec![
            "--as",
            who,
            "rollback",
            "--yes",
            "recommender",
            "--env",
            "prod",
            "--incident",
            incident,
            "--reason",
            "conversion -10% since v8 reached 25% of traffic",
        ];
        args.extend_from_slice(extra);
        let mut c = self.command(&args);
        if let Some(t) = now {
            c.env("TOLLGATE_NOW", t);
        }
        c.stdin(Stdio::null()).output().unwrap().into()
    }

    /// Runs an audit export's `verify.sh` from `cwd` (it checks the files beside it).
    pub fn verify_sh(dir: &Path, cwd: &Path) -> Run {
        Command::new("sh")
            .arg(dir.join("verify.sh"))
            .current_dir(cwd)
            .output()
            .unwrap()
            .into()
    }

    /// Runs a decision command as a demo identity.
    pub fn decide(&self, who: &str, verb: &str, id: &str, extra: &[&str]) -> Run {
        let mut args = vec!["--as", who, verb, id];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// The number of entries `verify --json` checked (and asserts the log verifies).
    pub fn verified_entries(&self) -> u64 {
        let v = self.run(&["verify", "--json"]).ok().json();
        assert_eq!(v["ok"], true, "{v}");
        v["entries"].as_u64().unwrap()
    }
}

/// Asserts a refusal: exit status 1 and every fragment in stderr.
pub fn assert_refusal(run: &Run, fragments: &[&str]) {
    assert_eq!(
        run.code, 1,
        "expected a refusal\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    for f in fragments {
        assert!(
            run.stderr.contains(f),
            "stderr lacks {f:?}:\n{}",
            run.stderr
        );
    }
}

impl Home {
    /// Writes an executable shell script into the home and returns its path.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

/// A `tollgate serve` child process on 127.0.0.1, killed when dropped.
pub struct Server {
    pub url: String,
    pub child: std::process::Child,
}

impl Server {
    /// The address it listens on (what it reported), to restart it on the same port.
    pub fn listen(&self) -> String {
        self.url
            .split("://")
            .nth(1)
            .unwrap_or(&self.url)
            .trim_end_matches('/')
            .to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Home {
    /// Creates a token for `principal` on this home's store.
    pub fn token(&self, principal: &str) -> String {
        let out = self
            .run(&["token", "add", principal, "--label", "test"])
            .ok()
            .stdout;
        out.lines()
            .find(|l| l.starts_with("tg_"))
            .expect("token line")
            .to_string()
    }

    /// The server's access log and errors (appended across restarts).
    pub fn server_log(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("server.log"))
            .expect("server log")
    }

    /// Starts `tollgate serve` on `listen` (use port 0 for any) and waits until it listens.
    pub fn serve(&self, listen: &str) -> Server {
        self.serve_with(listen, &[])
    }

    /// Starts `tollgate serve` on `listen` with `extra` flags (e.g. limits).
    pub fn serve_with(&self, listen: &str, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--listen", listen];
        args.extend_from_slice(extra);
        self.serve_args(&args)
    }

    /// Starts a replica of the team server on the PostgreSQL database at `url`.
    pub fn serve_database(&self, url: &str, listen: &str) -> Server {
        self.serve_args(&["--database", url, "serve", "--listen", listen])
    }

    /// Starts `tollgate ARGS` (a `serve` command) and waits until it listens.
    pub fn serve_args(&self, args: &[&str]) -> Server {
        use std::io::BufRead;
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(self.server_log())
            .spawn()
            .expect("start tollgate serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split(" on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected serve output: {line:?}"))
            .to_string();
        Server { url, child }
    }

    /// Runs the CLI against a server as the holder of `token`.
    pub fn remote(&self, url: &str, token: &str, args: &[&str]) -> Run {
        let mut all = vec!["--remote", url];
        all.extend_from_slice(args);
        self.command(&all)
            .env("TOLLGATE_TOKEN", token)
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    }
}

/// Signs `body` with `ssh-keygen -Y sign -n tollgate` and the private key at `key`, as an
/// adversary with a correct key and a hand-made client would; returns the armored SSHSIG.
pub fn ssh_sign(key: &Path, body: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("body");
    std::fs::write(&file, body).unwrap();
    let out = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "tollgate", "-f"])
        .arg(key)
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen is installed (scripts/test installs openssh-client)");
    assert!(
        out.status.success(),
        "ssh-keygen -Y sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.path().join("body.sig")).unwrap()
}

impl Home {
    /// A new passphrase-less ed25519 key made by `ssh-keygen` in the home, commented with
    /// `name`: its path and its public key line.
    pub fn ssh_keygen(&self, name: &str) -> (PathBuf, String) {
        let key = self.path(name);
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&key)
            .stdin(Stdio::null())
            .output()
            .expect("ssh-keygen is installed (scripts/test installs openssh-client)");
        assert!(
            out.status.success(),
            "ssh-keygen -t ed25519: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = std::fs::read_to_string(self.path(&format!("{name}.pub"))).unwrap();
        (key, line.trim().to_string())
    }
}

/// The `SHA256:…` fingerprint `ssh-keygen -l` prints for a key (private or public file),
/// as an auditor would compute it.
pub fn ssh_fingerprint(key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(key)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen is installed (scripts/test installs openssh-client)");
    assert!(
        out.status.success(),
        "ssh-keygen -l: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("ssh-keygen -l prints bits, fingerprint, comment")
        .to_string()
}

impl Home {
    /// Appends an entry straight into the store's SQLite file, past every check, as an
    /// attacker with write access to the file would (it continues the chain, so only
    /// `verify`'s rules can catch it). Returns its position.
    pub fn force_append(
        &self,
        kind: &str,
        cr_id: Option<&str>,
        principal: &str,
        body: &str,
        signature: &str,
    ) -> u64 {
        let c = rusqlite::Connection::open(self.store()).unwrap();
        let (seq, _): (u64, Option<String>) = c
            .query_row("SELECT seq, hash FROM log_head WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        let hash = tollgate::audit::log::entry_hash(body);
        // Received now, as the store records for what it appends itself.
        let received_at = tollgate::audit::log::time_text(chrono::Utc::now());
        c.execute(
            "INSERT INTO log (seq, kind, cr_id, principal, body, hash, signature, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![seq + 1, kind, cr_id, principal, body, hash, signature, received_at],
        )
        .unwrap();
        c.execute(
            "UPDATE log_head SET seq = ?1, hash = ?2 WHERE id = 1",
            rusqlite::params![seq + 1, hash],
        )
        .unwrap();
        seq + 1
    }

    /// The log head: its position and hash.
    pub fn head(&self) -> (u64, Option<String>) {
        let c = rusqlite::Connection::open(self.store()).unwrap();
        c.query_row("SELECT seq, hash FROM log_head WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    }

    /// A demo principal's private key file.
    pub fn demo_key(&self, who: &str) -> PathBuf {
        self.path(&format!("tollgate.demo-keys/{who}"))
    }
}

/// The current time as bodies hold it (RFC 3339, UTC, microseconds): what a hand-made
/// client signing now would write.
pub fn now_text() -> String {
    tollgate::audit::log::time_text(chrono::Utc::now())
}

/// CR-1045 (churn-predictor 21 → 22 in prod, low risk: one risk-reviewer, 1 h of
/// observation) as `id`, requested by `requester` at `gate`, with the latency evidence it
/// lacks: submitted by CI, one approval approves it.
pub fn low_risk_cr(id: &str, requester: &str, gate: &str) -> Value {
    let mut doc = fixture_json("CR-1045");
    doc["id"] = id.into();
    doc["requester"] = requester.into();
    doc["gate"] = gate.into();
    doc["checks"]
        .as_array_mut()
        .expect("CR-1045 has checks")
        .push(serde_json::json!({"id": "latency", "status": "pass", "detail": "p99 21 ms"}));
    doc
}

impl Home {
    /// Submits [`low_risk_cr`] `id` (requested by jonas) as CI, and has devi approve it.
    pub fn approved_low_risk(&self, id: &str) {
        let file = self.write_json(&format!("{id}.json"), &low_risk_cr(id, "jonas", "model"));
        self.run(&["--as", "ci", "submit", &file]).ok();
        self.approve_low_risk(id);
    }

    /// Devi's approval of a submitted [`low_risk_cr`] `id`, its manual items ticked.
    pub fn approve_low_risk(&self, id: &str) {
        self.decide(
            "devi",
            "approve",
            id,
            &[
                "--tick",
                "privacy",
                "--tick",
                "rollback",
                "--rationale",
                "within 1 %",
            ],
        )
        .ok();
    }
}

/// The checklist a decision on the CR `shown` (the output of `show --json`) records: each
/// item's id and state, as tollgate evaluates it.
/// One checklist item of a `show --json` by id.
pub fn checklist_item<'a>(shown: &'a Value, id: &str) -> &'a Value {
    shown["checklist"]["items"]
        .as_array()
        .expect("show --json lists checklist items")
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no checklist item {id}: {shown}"))
}

pub fn checklist_of(shown: &Value) -> Value {
    Value::Array(
        shown["checklist"]["items"]
            .as_array()
            .expect("show --json lists checklist items")
            .iter()
            .map(|i| serde_json::json!({"id": i["id"], "state": i["state"]}))
            .collect(),
    )
}
