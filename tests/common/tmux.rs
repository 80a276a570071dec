//! The real binary on a real terminal: each session runs in its own tmux server (a
//! private `-L` socket, killed with the session), with a clean environment, so nothing from
//! the developer's shell (`TOLLGATE_*`, `NO_COLOR`, a running tmux) changes what is tested.

use super::Home;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server with one 120x40 (or chosen size) window running a shell command.
pub struct Session {
    socket: String,
}

/// `tmux -L SOCKET` with no environment but PATH: the client and the server it starts.
fn tmux(socket: &str) -> Command {
    let mut c = Command::new("tmux");
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["-L", socket, "-f", "/dev/null"]);
    c
}

/// Single-quotes `s` for the shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Session {
    /// `tollgate ARGS` in `home` (with extra environment), then `EXIT=<status>`; the window
    /// stays open afterwards so the screen can be read.
    pub fn tollgate(home: &Home, env: &[(&str, &str)], args: &str) -> Session {
        let line = format!(
            "{} {args}; echo EXIT=$?; sleep 600",
            quote(env!("CARGO_BIN_EXE_tollgate"))
        );
        Session::shell(home, env, &line, (120, 40))
    }

    /// Runs `line` under `sh -c` in a window of `size`, in a clean environment: PATH, a
    /// private HOME and TOLLGATE_HOME (both `home`), TERM, a UTF-8 locale, then `env`.
    pub fn shell(home: &Home, env: &[(&str, &str)], line: &str, size: (u16, u16)) -> Session {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = format!("tg-{}-{n}", std::process::id());
        let dir = home.dir.path().display().to_string();
        let mut vars = vec![
            format!("PATH={}", std::env::var("PATH").unwrap_or_default()),
            format!("HOME={dir}"),
            format!("TOLLGATE_HOME={dir}"),
            "TERM=xterm-256color".to_string(),
            "LANG=C.UTF-8".to_string(),
        ];
        vars.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        let vars: Vec<String> = vars.iter().map(|v| quote(v)).collect();
        let cmd = format!("env -i {} sh -c {}", vars.join(" "), quote(line));
        let ok = tmux(&socket)
            .args(["new-session", "-d", "-s", "t", "-x"])
            .arg(size.0.to_string())
            .arg("-y")
            .arg(size.1.to_string())
            .arg(&cmd)
            .status()
            .expect("tmux is installed (scripts/test installs it)")
            .success();
        assert!(ok, "tmux new-session failed");
        Session { socket }
    }

    /// The visible screen as text.
    pub fn screen(&self) -> String {
        let out = tmux(&self.socket)
            .args(["capture-pane", "-t", "t", "-p"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The visible screen with its attributes as escape sequences (`capture-pane -e`).
    pub fn screen_with_attributes(&self) -> String {
        let out = tmux(&self.socket)
            .args(["capture-pane", "-t", "t", "-p", "-e"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A tmux format evaluated for the pane, e.g. `#{alternate_on}`.
    pub fn pane_format(&self, format: &str) -> String {
        let out = tmux(&self.socket)
            .args(["display-message", "-p", "-t", "t", format])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Polls the screen until `text` appears.
    pub fn wait_for(&self, text: &str) -> String {
        self.wait_until(&format!("{text:?}"), |s| s.contains(text))
    }

    /// Polls the screen until `done` holds for it (20 s at most).
    pub fn wait_until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(40));
        }
    }

    /// Keys by tmux name (`Enter`, `C-s`, `q`).
    pub fn keys(&self, keys: &[&str]) {
        let ok = tmux(&self.socket)
            .args(["send-keys", "-t", "t"])
            .args(keys)
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux send-keys {keys:?}");
    }

    /// Text typed as it stands.
    pub fn literal(&self, text: &str) {
        let ok = tmux(&self.socket)
            .args(["send-keys", "-t", "t", "-l", text])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux send-keys -l {text:?}");
    }

    /// Resizes the window.
    pub fn resize(&self, width: u16, height: u16) {
        let ok = tmux(&self.socket)
            .args(["resize-window", "-t", "t", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux resize-window");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = tmux(&self.socket).arg("kill-server").status();
    }
}

/// The pid written to `file` by a session's command, once it is there.
pub fn wait_for_pid(file: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
