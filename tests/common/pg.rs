//! A throwaway PostgreSQL cluster per test binary: `initdb` and `pg_ctl` in a temporary
//! directory, listening only on a Unix socket in that directory (no port to race for),
//! each test in a database of its own. As root the cluster runs as the `postgres` system
//! user the package creates (`initdb` refuses root). A watcher process stops the cluster
//! and removes its directory when the test binary exits, however it exits.
//!
//! The binaries come from `TOLLGATE_PG_BIN` (scripts/test sets it), else the newest
//! `/usr/lib/postgresql/*/bin`, else `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running cluster.
pub struct Cluster {
    /// Holds the socket, the data directory and the server log.
    pub base: PathBuf,
    bin: PathBuf,
    /// Run the server's tools as this user (`runuser -u`), when the tests run as root.
    run_as: Option<String>,
    /// The watcher that stops the cluster once this process is gone (it outlives us).
    watcher: Option<std::process::Child>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The test binary's cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::start)
}

/// A fresh, empty database on the test binary's cluster: its connection URL.
pub fn database() -> String {
    cluster().database()
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TOLLGATE_PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let found = Command::new("pg_config").arg("--bindir").output();
    match found {
        Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        _ => panic!(
            "these tests need PostgreSQL's server binaries (initdb, pg_ctl): run the tests with scripts/test (it installs them on first use), or\n  apt-get install postgresql\n(or set TOLLGATE_PG_BIN to the directory holding initdb)"
        ),
    }
}

impl Cluster {
    fn start() -> Cluster {
        let bin = bin_dir();
        let root = unsafe { libc::geteuid() } == 0;
        let base = tempfile::Builder::new()
            .prefix("tg-pg-")
            .tempdir()
            .expect("a temporary directory for the cluster")
            .keep();
        let run_as = root.then(|| "postgres".to_string());
        if root {
            let user = std::ffi::CString::new("postgres").unwrap();
            let pw = unsafe { libc::getpwnam(user.as_ptr()) };
            assert!(
                !pw.is_null(),
                "running as root, the tests start PostgreSQL as the `postgres` system user, which does not exist: apt-get install postgresql creates it"
            );
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            std::os::unix::fs::chown(&base, Some(uid), Some(gid)).expect("chown the cluster dir");
        }
        let mut cluster = Cluster {
            base,
            bin,
            run_as,
            watcher: None,
        };
        cluster.watcher = Some(cluster.watch_parent());
        let data = cluster.data();
        cluster.tool(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        cluster.pg_ctl(&["start", "-w", "-t", "60"]);
        cluster
    }

    fn data(&self) -> PathBuf {
        self.base.join("data")
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres:///{db}?host={}&user=postgres",
            self.base.to_string_lossy()
        )
    }

    /// Creates a fresh database; returns its URL.
    pub fn database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .expect("connect to the test cluster");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a test database");
        self.url(&name)
    }

    /// `pg_ctl ARGS` on this cluster (start, stop, restart), waiting for it.
    pub fn pg_ctl(&self, args: &[&str]) {
        let data = self.data().to_string_lossy().into_owned();
        let log = self.base.join("server.log").to_string_lossy().into_owned();
        let options = format!(
            "-k {} -c listen_addresses='' -c max_connections=300 -c fsync=off",
            self.base.to_string_lossy()
        );
        let mut full: Vec<&str> = vec!["-D", &data, "-l", &log, "-o", &options];
        full.extend_from_slice(args);
        self.tool("pg_ctl", &full);
    }

    /// Runs one of PostgreSQL's tools as the cluster's user; panics with its output if
    /// it fails.
    fn tool(&self, name: &str, args: &[&str]) {
        let exe = self.bin.join(name);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .current_dir(&self.base)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{name} {args:?} failed:\n{}{}\nserver log: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.base.join("server.log")).unwrap_or_default()
        );
    }

    /// Starts a detached watcher that stops the cluster and removes its directory once
    /// this test process has gone.
    fn watch_parent(&self) -> std::process::Child {
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; {pg_ctl} -D {data} stop -m immediate >/dev/null 2>&1; rm -rf {base}",
            pid = std::process::id(),
            pg_ctl = shell_quote(&self.bin.join("pg_ctl")),
            data = shell_quote(&self.data()),
            base = shell_quote(&self.base),
        );
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", "sh", "-c", &script]);
                c
            }
            None => {
                let mut c = Command::new("sh");
                c.args(["-c", &script]);
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the cluster's watcher")
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', "'\\''"))
}
