//! Running a policy's command (a rollback) without a shell, with a timeout that covers
//! the whole process group and its pipes, streaming its output.
//!
//! What a rollback prints is untrusted and unbounded: it is read as bytes (one invalid
//! UTF-8 byte must not stop the reading, or the command dies of SIGPIPE mid-rollback),
//! digested as it streams, and only a bounded tail is kept for the record.

use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Lines of output kept for the record (the digest covers all of it).
pub const TAIL_LINES: usize = 200;
/// Longest line kept, in bytes; a longer one is cut (the digest still covers it whole).
const MAX_LINE_BYTES: usize = 4096;
/// How long the pipes may stay open after the command itself exited (a background child
/// holding them) before the rest of its process group is killed.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// What a rollback command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// Exit status; `None` when killed or it could not start.
    pub exit_status: Option<i32>,
    /// Whether the timeout killed it.
    pub timed_out: bool,
    /// Run time.
    pub duration: Duration,
    /// The last [`TAIL_LINES`] lines it printed (stdout and stderr in arrival order),
    /// decoded lossily.
    pub output_tail: String,
    /// `sha256:` of every byte it printed, in arrival order.
    pub output_digest: String,
    /// How many bytes it printed.
    pub output_bytes: u64,
    /// Processes it left behind that were killed when it exited (they held its output).
    pub killed_leftovers: bool,
}

/// Lines of output a signed record keeps, and their length bound.
const RECORD_TAIL_LINES: usize = 20;
const RECORD_TAIL_CHARS: usize = 4000;

impl CommandOutcome {
    /// The end of the output a signed record keeps (its last 20 lines, at most 4,000
    /// characters; the digest covers all of it): the same for rollbacks, deployments,
    /// KPI checks and drills.
    pub fn record_tail(&self) -> String {
        let lines: Vec<&str> = self.output_tail.lines().collect();
        let tail = lines[lines.len().saturating_sub(RECORD_TAIL_LINES)..].join("\n");
        crate::domain::text::truncate(&tail, RECORD_TAIL_CHARS)
    }
}

/// Accumulates output: a streaming digest, a byte count and a bounded tail.
struct Output {
    digest: Sha256,
    bytes: u64,
    tail: VecDeque<String>,
}

impl Output {
    fn new() -> Self {
        Output {
            digest: Sha256::new(),
            bytes: 0,
            tail: VecDeque::new(),
        }
    }

    fn take(&mut self, raw: &[u8], on_line: &mut dyn FnMut(&str)) {
        self.digest.update(raw);
        self.bytes += raw.len() as u64;
        let line = String::from_utf8_lossy(raw);
        let line = line.trim_end_matches('\n');
        on_line(line);
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
    }

    fn finish(
        self,
        outcome: (Option<i32>, bool),
        started: Instant,
        leftovers: bool,
    ) -> CommandOutcome {
        CommandOutcome {
            exit_status: outcome.0,
            timed_out: outcome.1,
            duration: started.elapsed(),
            output_tail: self.tail.into_iter().collect::<Vec<_>>().join("\n"),
            output_digest: format!("sha256:{}", hex::encode(self.digest.finalize())),
            output_bytes: self.bytes,
            killed_leftovers: leftovers,
        }
    }
}

/// Reads `stream` to its end as raw lines (each with its `\n`, the last maybe without),
/// long lines cut into pieces, sending each; stops when the receiver is gone.
fn pump(mut stream: impl Read, tx: mpsc::SyncSender<Vec<u8>>) {
    let mut buf = [0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            line.push(b);
            if (b == b'\n' || line.len() >= MAX_LINE_BYTES)
                && tx.send(std::mem::take(&mut line)).is_err()
            {
                return;
            }
        }
    }
    if !line.is_empty() {
        let _ = tx.send(line);
    }
}

/// Runs `argv` (no shell) in its own process group, passing each output line to
/// `on_line` as it arrives. At `timeout` (counted from the start, covering the command,
/// anything it started and its pipes) the whole group is killed.
pub fn run_command(
    argv: &[String],
    timeout: Duration,
    on_line: &mut dyn FnMut(&str),
) -> CommandOutcome {
    let started = Instant::now();
    let mut output = Output::new();
    let Some((program, args)) = argv.split_first() else {
        output.take(b"no command to run", on_line);
        return output.finish((None, false), started, false);
    };
    let mut child = match std::os::unix::process::CommandExt::process_group(
        Command::new(program).args(args),
        0,
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            output.take(format!("cannot start {program}: {e}").as_bytes(), on_line);
            return output.finish((None, false), started, false);
        }
    };
    // Bounded: a command printing faster than we can show it waits for us (its pipe
    // fills), instead of its output piling up in memory.
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(256);
    let mut open_pipes = 0;
    if let Some(s) = child.stdout.take() {
        let tx = tx.clone();
        std::thread::spawn(move || pump(s, tx));
        open_pipes += 1;
    }
    if let Some(s) = child.stderr.take() {
        let tx = tx.clone();
        std::thread::spawn(move || pump(s, tx));
        open_pipes += 1;
    }
    drop(tx);
    let deadline = started + timeout;
    let pgid = child.id();
    let mut status: Option<std::process::ExitStatus> = None;
    let mut exited_at: Option<Instant> = None;
    let mut timed_out = false;
    let mut leftovers = false;
    loop {
        if status.is_none() {
            match child.try_wait() {
                Ok(Some(s)) => {
                    status = Some(s);
                    exited_at = Some(Instant::now());
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
        let now = Instant::now();
        if now >= deadline {
            // The command, anything it started, and whoever holds its pipes.
            timed_out = status.is_none();
            leftovers = status.is_some();
            kill_group(pgid);
            break;
        }
        if let Some(at) = exited_at
            && now >= at + PIPE_GRACE
            && open_pipes > 0
        {
            // The command is done but something it left running holds its output.
            leftovers = true;
            kill_group(pgid);
            break;
        }
        if open_pipes == 0 && status.is_some() {
            break;
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(raw) => output.take(&raw, on_line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => open_pipes = 0,
        }
    }
    if timed_out {
        let _ = child.kill();
        status = child.wait().ok();
    }
    // What was printed before the kill is still in the pipes: drain it briefly (readers of
    // a pipe held by a process outside the group are left behind, not waited for).
    let drain_until = Instant::now() + Duration::from_millis(500);
    while let Ok(raw) = rx.recv_timeout(drain_until.saturating_duration_since(Instant::now())) {
        output.take(&raw, on_line);
    }
    // Anything the command left running in its group is stopped with it.
    if !timed_out && group_alive(pgid) {
        leftovers = true;
        kill_group(pgid);
    }
    let code = if timed_out {
        None
    } else {
        status.and_then(|s| s.code())
    };
    output.finish((code, timed_out), started, leftovers)
}

/// Whether any process is left in the group led by `pid`.
fn group_alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|pid| {
        // SAFETY: signal 0 only checks that the group exists; nothing is delivered.
        unsafe { libc::kill(-pid, 0) == 0 }
    })
}

/// Kills every process in the group led by `pid`.
fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals the process group; no memory is
        // shared, and a stale group id at worst fails with ESRCH.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> (CommandOutcome, Vec<String>) {
        let mut lines = Vec::new();
        let argv = ["sh", "-c", script].map(String::from);
        let o = run_command(&argv, timeout, &mut |l| lines.push(l.to_string()));
        (o, lines)
    }

    #[test]
    fn a_non_utf8_byte_does_not_stop_the_reading() {
        let (o, lines) = sh(
            "printf 'before \\377 byte\\n'; i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done; exit 0",
            Duration::from_secs(30),
        );
        assert_eq!(o.exit_status, Some(0), "{o:?}");
        assert_eq!(lines[0], "before \u{fffd} byte");
        assert_eq!(lines.last().map(String::as_str), Some("line 2999"));
        assert_eq!(o.output_tail.lines().count(), TAIL_LINES);
        assert!(o.output_tail.ends_with("line 2999"));
    }

    #[test]
    fn the_digest_covers_every_byte_and_the_tail_stays_bounded() {
        let (o, _) = sh(
            "head -c 3000000 /dev/zero | tr '\\0' 'x'; echo",
            Duration::from_secs(30),
        );
        assert_eq!(o.output_bytes, 3_000_001);
        let mut want = vec![b'x'; 3_000_000];
        want.push(b'\n');
        assert_eq!(
            o.output_digest,
            crate::audit::canonical::sha256_digest(&want)
        );
        assert!(o.output_tail.len() <= TAIL_LINES * MAX_LINE_BYTES);
    }
}
