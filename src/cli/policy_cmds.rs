//! The policy in force and its changes: reading it from the log (with a word on stderr
//! when the file beside the store says something else), `init`, `migrate`, and the
//! `policy` subcommands (`show`, `history`, `propose`, `check`, `allowed-signers`).

use super::{CliError, to_json, write_out};
use crate::audit::canonical::sha256_digest;
use crate::audit::log::LogEntry;
use crate::audit::policy_log::extend_book;
use crate::config::Paths;
use crate::domain::change_request::Gate;
use crate::domain::policy::{Policy, parse_policy};
use crate::domain::policy_book::{PolicyBook, PolicyVersion};
use crate::domain::policy_diff::{PolicyChange, diff};
use crate::domain::risk::RiskLevel;
use crate::domain::text::sanitize;
use crate::identity::{Identity, IdentityError, KeyChoice, identify, identify_in_force};
use crate::store::local::LocalStore;
use crate::store::pg::PgStore;
use crate::store::{DecideError, Store, StoreError};
use crate::workflow::{GenesisOutcome, ProposeError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Each notice about the policy file is printed once per command, however often the
/// policy is read.
static FILE_NOTICE: AtomicBool = AtomicBool::new(false);

fn notice_once(text: &str) {
    if !FILE_NOTICE.swap(true, Ordering::SeqCst) {
        eprintln!("{text}");
    }
}

/// Reads and validates a policy file (the file of an unmigrated store, or one to adopt).
pub fn read_policy_file(path: &Path) -> Result<(String, Policy), CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CliError::refused(format!(
                "no policy at {}; install one with `tollgate init --policy FILE` (or `tollgate demo`), or pass --policy FILE",
                path.display()
            ))
        } else {
            CliError::environment(format!("cannot read policy {}: {e}", path.display()))
        }
    })?;
    let policy = parse_policy(&text).map(|(p, _)| p).map_err(|report| {
        let lines: Vec<String> = report
            .errors
            .iter()
            .map(|p| format!("{}: {p}", path.display()))
            .collect();
        CliError::refused(format!(
            "the policy is invalid; fix it and run `tollgate policy check`:\n{}",
            lines.join("\n")
        ))
    })?;
    Ok((text, policy))
}

/// The policy history of the store `paths` names: the server's with `--remote` (cached
/// beside the outbox, so decisions can still be checked and queued offline), else the
/// local log's. A store whose log adopted no policy is judged, read-only, by its file.
pub fn load_book(paths: &Paths) -> Result<PolicyBook, CliError> {
    if let Some(r) = &paths.remote {
        return remote_book(paths, r);
    }
    let store = super::open_store(paths)?;
    local_book(store.as_ref(), paths)
}

/// What `verify` needs besides the log: nothing when the log adopted a policy (verify
/// rebuilds the history itself and names an adoption that does not read, which loading
/// the book would refuse before verify could say where), else the file that judges an
/// unmigrated store.
pub fn book_for_verify(paths: &Paths, store: &dyn Store) -> Result<Option<PolicyBook>, CliError> {
    let entries = store.policy_entries(0)?;
    if entries.is_empty() {
        return load_book(paths).map(Some);
    }
    if paths.remote.is_none()
        && let Ok(Some(book)) = extend_book(None, &entries)
    {
        compare_file(&book, &paths.policy);
    }
    Ok(None)
}

fn book_error(e: crate::audit::policy_log::BookError) -> CliError {
    CliError::environment(e.to_string())
}

/// The local store's history, with a notice when the file beside it differs.
pub fn local_book(store: &dyn Store, paths: &Paths) -> Result<PolicyBook, CliError> {
    let entries = store.policy_entries(0)?;
    match extend_book(None, &entries).map_err(book_error)? {
        Some(book) => {
            // A database has no policy file beside it to compare.
            if paths.database.is_none() {
                compare_file(&book, &paths.policy);
            }
            Ok(book)
        }
        None => {
            let (text, policy) = read_policy_file(&paths.policy)?;
            notice_once(&format!(
                "note: {} predates policy entries in the log: it is judged read-only by {}; `tollgate migrate` records that file as the genesis policy (signing commands do it for you)",
                paths.store.display(),
                paths.policy.display()
            ));
            let digest = sha256_digest(text.as_bytes());
            Ok(PolicyBook::provisional(text, digest, policy))
        }
    }
}

/// Says (once, on stderr) when the file beside the store reads differently from the
/// policy in force. Comment-only edits do not count.
fn compare_file(book: &PolicyBook, file: &Path) {
    if let Some(text) = file_notice(book, file) {
        notice_once(&format!("warning: {text}"));
    }
}

/// What to tell the user about the file beside the store: nothing when it reads the same
/// as the policy in force (or is absent).
pub fn file_notice(book: &PolicyBook, file: &Path) -> Option<String> {
    if book.is_provisional() {
        return None;
    }
    let current = book.current();
    (!file_reads_as_in_force(book, file)?).then(|| {
        format!(
            "{} differs from the policy in force (version {}, entry {}); propose it with `tollgate policy propose {}`, or restore it with `tollgate policy show --text > {}`. The policy in force applies.",
            file.display(),
            current.version,
            current.seq,
            file.display(),
            file.display()
        )
    })
}

fn remote_book(paths: &Paths, r: &crate::config::Remote) -> Result<PolicyBook, CliError> {
    let cache = crate::outbox::Outbox::for_server(&paths.store, &r.url).policy_cache();
    let remote = crate::store::remote::RemoteStore::connect(&r.url, &r.token)?;
    let cached = || -> Option<Vec<LogEntry>> {
        std::fs::read_to_string(&cache)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    };
    // A server that does not answer one quick probe is not retried with backoff when the
    // policy it had is cached: deciding offline stays quick.
    let fetched = if cache.exists() && !remote.reachable() {
        cached().ok_or_else(|| StoreError::Unreachable {
            url: r.url.clone(),
            detail: "no answer, and the cached policy does not read".into(),
        })
    } else {
        remote.policy_entries(0).inspect(|entries| {
            if let Some(dir) = cache.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Ok(json) = serde_json::to_string(entries) {
                let _ = std::fs::write(&cache, json);
            }
        })
    };
    let entries: Vec<LogEntry> = match fetched {
        Ok(entries) => entries,
        Err(e @ StoreError::Unreachable { .. }) => cached().ok_or_else(|| CliError::from(e))?,
        Err(e) => return Err(e.into()),
    };
    extend_book(None, &entries)
        .map_err(book_error)?
        .ok_or_else(|| {
            CliError::environment(format!(
                "the server {} has no policy in its log; its operator runs `tollgate migrate`",
                r.url
            ))
        })
}

/// Turns an identity problem into a refusal.
pub fn identity_error(e: IdentityError) -> CliError {
    CliError::refused(e.to_string())
}

/// The policy in force and the signer, for a command that signs. A local store from
/// before policy entries is migrated first (its file becomes the genesis, signed by this
/// signer), so the first writing command brings it up to date.
pub fn book_for_signing(
    paths: &Paths,
    keys: &KeyChoice,
    now: DateTime<Utc>,
) -> Result<(PolicyBook, Identity), CliError> {
    let book = load_book(paths)?;
    let book = if book.is_provisional() && paths.remote.is_none() {
        migrate_store(paths, keys, now)?
    } else {
        book
    };
    let who =
        identify_in_force(keys, &paths.store, &book, &paths.policy).map_err(identity_error)?;
    Ok((book, who))
}

/// Records the policy file of an unmigrated store as its genesis; returns the new book.
pub fn migrate_store(
    paths: &Paths,
    keys: &KeyChoice,
    now: DateTime<Utc>,
) -> Result<PolicyBook, CliError> {
    let store = LocalStore::open(&paths.store)?;
    let (text, policy) = read_policy_file(&paths.policy)?;
    let who = identify(keys, &paths.store, &policy).map_err(|e| {
        CliError::refused(format!(
            "{} must be migrated (its log predates policy entries), which a principal of {} signs: {e}",
            paths.store.display(),
            paths.policy.display()
        ))
    })?;
    match crate::workflow::migrate(&store, &text, &who, now).map_err(|e| match e {
        DecideError::Refused(r) => {
            CliError::refused(format!("cannot migrate {}: {r}", paths.store.display()))
        }
        other => CliError::from(other),
    })? {
        GenesisOutcome::Adopted(e) => eprintln!(
            "migrated {}: {} recorded as the genesis policy at entry {} ({}), adopted at migration; the {} entries before it are judged by it",
            paths.store.display(),
            paths.policy.display(),
            e.seq,
            e.hash,
            e.seq - 1
        ),
        GenesisOutcome::AlreadyAdopted => {}
    }
    local_book(&store, paths)
}

/// `tollgate migrate`.
pub fn migrate(
    paths: &Paths,
    keys: &KeyChoice,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let store = super::open_store(paths)?;
    if !store.policy_entries(0)?.is_empty() {
        let book = local_book(store.as_ref(), paths)?;
        return write_out(
            out,
            &format!(
                "{} is up to date: policy version {} in force (entry {})\n",
                paths.store_label(),
                book.current().version,
                book.current().seq
            ),
        );
    }
    if paths.database.is_some() {
        // A database is created with its genesis (`init --database`, `store migrate`).
        return Err(CliError::refused(format!(
            "{} has no policy in its log; initialise it with `tollgate --database URL init --policy FILE`",
            paths.store_label()
        )));
    }
    drop(store);
    let book = migrate_store(paths, keys, now)?;
    let g = book.genesis();
    write_out(
        out,
        &format!(
            "genesis: entry {} {}\npin it for auditors: tollgate verify --expect-genesis {}\n",
            g.seq, g.hash, g.hash
        ),
    )
}

/// `tollgate init`: creates the store and records the genesis policy, signed by one of
/// its principals. Nothing is created when anything is refused.
/// What `tollgate init` is asked to set up.
#[derive(Debug, Clone, Copy, Default)]
pub struct InitOptions<'a> {
    /// The policy file to install (`--policy`); the starter policy when `None`.
    pub source: Option<&'a Path>,
    /// Replace a different policy file already beside the store.
    pub replace: bool,
    /// The team server's principal to add (role `server`), with a key made for it.
    pub server_principal: Option<&'a str>,
}

/// The file `init --server-principal` writes the server's key to, beside the store.
pub fn server_key_beside(store: &Path) -> std::path::PathBuf {
    let stem = store
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tollgate".into());
    store.with_file_name(format!("{stem}.server-key"))
}

pub fn init(
    paths: &Paths,
    opts: InitOptions<'_>,
    keys: &KeyChoice,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let InitOptions {
        source,
        replace,
        server_principal,
    } = opts;
    let (text, origin) = match source {
        Some(src) => {
            let text = std::fs::read_to_string(src).map_err(|e| {
                CliError::refused(format!("cannot read policy {}: {e}", src.display()))
            })?;
            (text, src.display().to_string())
        }
        None => (
            crate::demo::POLICY_TOML.to_string(),
            "the starter policy".to_string(),
        ),
    };
    // The server's principal joins the genesis policy with a key made for it now; the
    // key file is written only once the genesis is adopted.
    let server_key = match server_principal {
        None => None,
        Some(id) => {
            crate::domain::reader::check_identifier(id)
                .map_err(|e| CliError::refused(format!("--server-principal: {e}")))?;
            let file = server_key_beside(&paths.store);
            if file.exists() {
                return Err(CliError::refused(format!(
                    "--server-principal: {} already exists; move it away, or add the server to the policy yourself",
                    file.display()
                )));
            }
            let key = crate::audit::keys::Signer::generate(&format!("{id}@tollgate-server"))
                .map_err(|e| CliError::environment(e.to_string()))?;
            Some((id, key, file))
        }
    };
    let text = match &server_key {
        None => text,
        Some((id, key, _)) => format!(
            "{}\n# The team server's own principal: signs the submissions it records for token holders\n# (`tollgate serve --server-key FILE`; every replica gets the same file).\n[[principals]]\nid = \"{id}\"\nname = \"tollgate server\"\nroles = [\"server\"]\nkeys = [\"{}\"]\n",
            text.trim_end(),
            key.public_key_line()
        ),
    };
    let policy = match parse_policy(&text) {
        Ok((p, _)) => p,
        Err(report) => {
            let lines: Vec<String> = report
                .errors
                .iter()
                .map(|p| format!("{origin}: {p}"))
                .collect();
            return Err(CliError::refused(format!(
                "not initialising: the policy is invalid\n{}",
                lines.join("\n")
            )));
        }
    };
    let existing_store: Option<Box<dyn Store>> = match &paths.database {
        Some(url) => match PgStore::open(url) {
            Ok(db) => Some(Box::new(db)),
            Err(crate::store::StoreError::DatabaseNotInitialised { .. }) => None,
            Err(e) => return Err(e.into()),
        },
        None if paths.store.exists() => Some(Box::new(LocalStore::open(&paths.store)?)),
        None => None,
    };
    if let Some(store) = existing_store.filter(|s| s.policy_entries(0).is_ok_and(|e| !e.is_empty()))
    {
        let book = local_book(store.as_ref(), paths)?;
        if *book.policy() == policy {
            return write_out(
                out,
                &format!(
                    "already initialised: {} has policy version {} in force (entry {})\n",
                    paths.store_label(),
                    book.current().version,
                    book.current().seq
                ),
            );
        }
        return Err(CliError::refused(format!(
            "{} already has a policy in force (version {}, entry {}); the file is not the authority: change the policy with `tollgate policy propose {origin}`",
            paths.store_label(),
            book.current().version,
            book.current().seq
        )));
    }
    // A database keeps no policy file beside it: its log is the only copy.
    let existing = std::fs::read_to_string(&paths.policy).ok();
    let write_policy = match &existing {
        _ if paths.database.is_some() => false,
        None => true,
        Some(old) if *old == text => false,
        Some(_) if replace => true,
        Some(_) => {
            return Err(CliError::refused(format!(
                "a different policy already sits at {}; pass --replace-policy to overwrite it with {origin}",
                paths.policy.display()
            )));
        }
    };
    let who = identify(keys, &paths.store, &policy).map_err(|e| {
        CliError::refused(format!(
            "not initialising: the genesis policy is signed by one of its own principals, with a key it lists (--key FILE, or `tollgate keygen` and add the line it prints to your principal in {origin}): {e}"
        ))
    })?;
    crate::domain::policy_change::check_governable(&policy)
        .map_err(|r| CliError::refused(format!("not initialising with {origin}: {r}")))?;
    let (store, version): (Box<dyn Store>, i64) = match &paths.database {
        Some(url) => {
            let db = PgStore::create(url)?;
            let version = db.schema_version()?;
            (Box::new(db), version)
        }
        None => {
            let file = LocalStore::create(&paths.store)?;
            let version = file.schema_version()?;
            (Box::new(file), version)
        }
    };
    let mut msg = format!(
        "store ready at {} (schema version {version})\n",
        paths.store_label(),
    );
    let genesis = match crate::workflow::adopt_genesis(store.as_ref(), &text, &who, now)
        .map_err(CliError::from)?
    {
        GenesisOutcome::Adopted(e) => e,
        GenesisOutcome::AlreadyAdopted => {
            return Err(CliError::refused(
                "another process initialised the store at the same time; run `tollgate policy show`",
            ));
        }
    };
    if let Some((id, key, file)) = &server_key {
        key.write(file)
            .map_err(|e| CliError::environment(e.to_string()))?;
        msg.push_str(&format!(
            "server principal {id} (role server) is in the policy; its key is {} — give it to every replica: tollgate serve --server-key {}\n",
            file.display(),
            file.display()
        ));
    }
    if write_policy {
        super::write_atomically(&paths.policy, &text)?;
        msg.push_str(&format!(
            "installed {origin} at {}\n",
            paths.policy.display()
        ));
    } else if paths.database.is_some() {
        msg.push_str(
            "the policy lives in the database's log only (`tollgate --database URL policy show` prints it)\n",
        );
    } else {
        msg.push_str(&format!("policy unchanged at {}\n", paths.policy.display()));
    }
    msg.push_str(&format!(
        "genesis: {origin} adopted at entry {} ({}), signed by {}\npin it for auditors: tollgate verify --expect-genesis {}\n",
        genesis.seq, genesis.hash, who.principal.id, genesis.hash
    ));
    msg.push_str("next: `tollgate submit CR.json` to add change requests, `tollgate list` to see the queue\n");
    write_out(out, &msg)
}

/// `tollgate policy check [FILE]`.
pub fn check(file: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::refused(format!("cannot read policy {}: {e}", file.display())))?;
    match parse_policy(&text) {
        Ok((policy, warnings)) => {
            let mut msg = String::new();
            for w in &warnings {
                msg.push_str(&format!("{}: warning: {w}\n", file.display()));
            }
            if let Err(r) = crate::domain::policy_change::check_governable(&policy) {
                msg.push_str(&format!(
                    "{}: warning: {} [{}]; before it can be adopted: {}\n",
                    file.display(),
                    r.message,
                    r.rule,
                    r.remedy
                ));
            }
            msg.push_str(&format!(
                "{}: policy OK (version {}, {} principals, {} checklist items)\n",
                file.display(),
                policy.version,
                policy.principals.len(),
                policy.checklist.len()
            ));
            write_out(out, &msg)
        }
        Err(report) => {
            let mut lines: Vec<String> = report
                .errors
                .iter()
                .map(|p| format!("{}: error: {p}", file.display()))
                .collect();
            lines.extend(
                report
                    .warnings
                    .iter()
                    .map(|p| format!("{}: warning: {p}", file.display())),
            );
            lines.push(format!(
                "{} error(s); the policy cannot be used until they are fixed",
                report.errors.len()
            ));
            Err(CliError::refused(lines.join("\n")))
        }
    }
}

/// `policy show --json`.
#[derive(Serialize)]
struct ShowJson<'a> {
    #[serde(flatten)]
    version: &'a PolicyVersion,
    /// True when the log adopted no policy yet (the file judges, read-only).
    unmigrated: bool,
    genesis: Option<EntryRef<'a>>,
    file: FileState,
    policy_signoffs: Vec<String>,
    policy: &'a Policy,
}

#[derive(Serialize)]
struct EntryRef<'a> {
    seq: u64,
    hash: &'a str,
}

#[derive(Serialize)]
struct FileState {
    path: String,
    /// Whether the file reads the same as the policy in force (comments aside).
    matches: bool,
}

fn file_state(book: &PolicyBook, file: &Path) -> FileState {
    FileState {
        path: file.display().to_string(),
        matches: file_reads_as_in_force(book, file).unwrap_or(false),
    }
}

/// Whether the policy file reads the same as the policy in force (comments aside; a
/// file that does not parse reads differently); `None` when there is no file to read.
fn file_reads_as_in_force(book: &PolicyBook, file: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(file).ok()?;
    Some(parse_policy(&text).is_ok_and(|(p, _)| p == *book.policy()))
}

/// `tollgate policy show [--json] [--text]`.
pub fn show(paths: &Paths, json: bool, text: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let book = load_book(paths)?;
    let v = book.current();
    if text {
        return write_out(out, &v.text);
    }
    let file = file_state(&book, &paths.policy);
    let signoffs = book
        .policy()
        .required_signoffs(Gate::Policy, RiskLevel::High);
    let genesis = (!book.is_provisional()).then(|| EntryRef {
        seq: book.genesis().seq,
        hash: &book.genesis().hash,
    });
    if json {
        return write_out(
            out,
            &to_json(&ShowJson {
                version: v,
                unmigrated: book.is_provisional(),
                genesis,
                file,
                policy_signoffs: signoffs,
                policy: book.policy(),
            })?,
        );
    }
    let mut s = String::new();
    if book.is_provisional() {
        s.push_str(&format!(
            "no policy in the log yet: {} judges this store read-only until `tollgate migrate` records it ({})\n",
            paths.policy.display(),
            v.digest
        ));
    } else {
        s.push_str(&format!(
            "policy in force: version {} ({})\nadopted at entry {} ({}){}{}{}\n",
            v.version,
            v.digest,
            v.seq,
            v.hash,
            v.adopted_at
                .map(|t| format!(" on {}", t.format("%Y-%m-%d %H:%M UTC")))
                .unwrap_or_default(),
            v.adopted_by
                .as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default(),
            match (&v.cr_id, v.migration) {
                (Some(cr), _) => format!(", from {cr}"),
                (None, true) => ", genesis adopted at migration".into(),
                (None, false) => ", genesis".into(),
            }
        ));
        let g = book.genesis();
        s.push_str(&format!(
            "genesis: entry {} {} — auditors pin it with `tollgate verify --expect-genesis {}`\n",
            g.seq, g.hash, g.hash
        ));
    }
    s.push_str(&format!(
        "file: {} ({})\n\nprincipals:\n",
        file.path,
        if file.matches {
            "matches"
        } else {
            "DIFFERS from the policy in force; `tollgate policy propose` it to change the policy"
        }
    ));
    let p = book.policy();
    let width = p.principals.iter().map(|x| x.id.len()).max().unwrap_or(0);
    for x in &p.principals {
        s.push_str(&format!(
            "  {:width$}  {}  [{}]  {} key(s)\n",
            x.id,
            sanitize(&x.name),
            x.roles.join(", "),
            x.keys.len()
        ));
    }
    s.push_str(&format!(
        "\non-call: {}\npolicy changes need: {} (never the proposer)\n",
        p.emergency.on_call.join(", "),
        signoffs.join(" + ")
    ));
    if !p.revoked_keys.is_empty() {
        s.push_str(&format!("revoked keys: {}\n", p.revoked_keys.len()));
    }
    write_out(out, &s)
}

/// One adopted version in `policy history`.
#[derive(Serialize)]
struct HistoryRow<'a> {
    #[serde(flatten)]
    version: &'a PolicyVersion,
    /// What changed from the version before (nothing for the genesis).
    changes: Vec<PolicyChange>,
}

/// `tollgate policy history [--json]`.
pub fn history(paths: &Paths, json: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let book = load_book(paths)?;
    if book.is_provisional() {
        return Err(CliError::refused(
            "no policy has been adopted in this store's log yet; `tollgate migrate` records the file as the genesis",
        ));
    }
    let versions = book.versions();
    let rows: Vec<HistoryRow> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| HistoryRow {
            version: v,
            changes: match i.checked_sub(1) {
                Some(prev) => diff(&versions[prev].policy, &v.policy),
                None => Vec::new(),
            },
        })
        .collect();
    if json {
        return write_out(out, &to_json(&rows)?);
    }
    let mut s = String::from("VERSION  ENTRY  ADOPTED               BY       FROM       DIGEST\n");
    for r in &rows {
        let v = r.version;
        s.push_str(&format!(
            "{:<7}  {:<5}  {:<20}  {:<7}  {:<9}  {}\n",
            v.version,
            v.seq,
            v.adopted_at
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default(),
            v.adopted_by.as_deref().unwrap_or("-"),
            match (&v.cr_id, v.migration) {
                (Some(cr), _) => cr.as_str(),
                (None, true) => "migration",
                (None, false) => "genesis",
            },
            v.digest
        ));
        for c in &r.changes {
            s.push_str(&format!("         {}\n", sanitize(&c.to_string())));
        }
    }
    write_out(out, &s)
}

/// `tollgate policy propose FILE [--rationale TEXT] [--revise POL-N]`.
pub fn propose(
    paths: &Paths,
    keys: &KeyChoice,
    file: &Path,
    rationale: Option<&str>,
    revise: Option<&str>,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::refused(format!("cannot read policy {}: {e}", file.display())))?;
    let (book, who) = book_for_signing(paths, keys, now)?;
    let store = super::open_store(paths)?;
    let proposed = crate::workflow::propose_policy(
        store.as_ref(),
        &book,
        &who.principal.id,
        &text,
        rationale.unwrap_or(""),
        revise,
        now,
    )
    .map_err(|e| match e {
        ProposeError::Refused(r) => CliError::refused(format!("{}: refused: {r}", file.display())),
        ProposeError::Store(e) => e.into(),
        ProposeError::NoOutcome => CliError::environment(e.to_string()),
    })?;
    let changes = &proposed.changes;
    let what = match &proposed.outcome {
        crate::store::SubmitOutcome::Created {
            revision, digest, ..
        } => {
            format!("proposed (revision {revision}, {digest})")
        }
        crate::store::SubmitOutcome::Revised {
            revision, digest, ..
        } => format!(
            "revised: now revision {revision} ({digest}); sign-offs on earlier revisions are stale"
        ),
        crate::store::SubmitOutcome::Unchanged { revision, .. } => {
            format!("unchanged, still revision {revision}")
        }
    };
    let mut s = format!(
        "{}: {what} — {} change(s) against policy version {} (in force):\n",
        proposed.id,
        changes.len(),
        book.current().version
    );
    for c in changes {
        s.push_str(&format!("  {}\n", sanitize(&c.to_string())));
    }
    let signoffs = book
        .policy()
        .required_signoffs(Gate::Policy, RiskLevel::High);
    s.push_str(&format!(
        "needs sign-offs: {} (never {}, the proposer); each approves with\n  tollgate approve {} --role {} --rationale \"...\"\n",
        signoffs.join(" + "),
        who.principal.id,
        proposed.id,
        signoffs.first().map_or("", String::as_str)
    ));
    write_out(out, &s)
}

/// `tollgate policy allowed-signers`: every key of the policy in force.
pub fn allowed_signers(paths: &Paths, out: &mut dyn Write) -> Result<(), CliError> {
    let book = load_book(paths)?;
    write_out(out, &crate::audit::keys::allowed_signers(book.policy()))
}

/// Rewrites the policy file beside a local store after an adoption.
pub fn write_adopted(paths: &Paths, adoption: &LogEntry) -> Result<(), CliError> {
    if paths.remote.is_some() {
        return Ok(());
    }
    crate::workflow::write_adopted_policy(&paths.policy, adoption).map_err(|e| {
        CliError::environment(format!(
            "the policy was adopted in the log, but {} could not be rewritten: {e}",
            paths.policy.display()
        ))
    })
}
