//! Running a policy's command (a rollback) without a shell, with a timeout that kills the
//! whole process group, streaming its output.

/// What a rollback command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// Exit status; `None` when killed or it could not start.
    pub exit_status: Option<i32>,
    /// Whether the timeout killed it.
    pub timed_out: bool,
    /// Run time.
    pub duration: std::time::Duration,
    /// Everything it printed, stdout and stderr in arrival order.
    pub output: String,
}

/// Runs `argv` (no shell), passing each output line to `on_line` as it arrives and
/// killing the process at `timeout`.
pub fn run_command(
    argv: &[String],
    timeout: std::time::Duration,
    on_line: &mut dyn FnMut(&str),
) -> CommandOutcome {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let started = std::time::Instant::now();
    let Some((program, args)) = argv.split_first() else {
        return CommandOutcome {
            exit_status: None,
            timed_out: false,
            duration: started.elapsed(),
            output: "no command to run".into(),
        };
    };
    // Its own process group, so a timeout kills the command and anything it started.
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
            let line = format!("cannot start {program}: {e}");
            on_line(&line);
            return CommandOutcome {
                exit_status: None,
                timed_out: false,
                duration: started.elapsed(),
                output: line,
            };
        }
    };
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        })
    })
    .collect();
    drop(tx);
    let mut output = String::new();
    let mut timed_out = false;
    let status = loop {
        while let Ok(line) = rx.try_recv() {
            on_line(&line);
            output.push_str(&line);
            output.push('\n');
        }
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= timeout => {
                timed_out = true;
                kill_group(child.id());
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => {
                // Wait for output or for 20 ms, whichever comes first.
                if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(20)) {
                    on_line(&line);
                    output.push_str(&line);
                    output.push('\n');
                }
            }
            Err(_) => break None,
        }
    };
    for r in readers {
        let _ = r.join();
    }
    for line in rx.try_iter() {
        on_line(&line);
        output.push_str(&line);
        output.push('\n');
    }
    CommandOutcome {
        exit_status: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        timed_out,
        duration: started.elapsed(),
        output,
    }
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
