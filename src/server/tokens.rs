//! Bearer tokens for the team server: random 256-bit secrets shown once, stored only as
//! SHA-256 hashes in a TOML file beside the store (`tollgate.tokens.toml`), each mapped to
//! a principal. Tokens never appear in logs or error messages.
//!
//! The file is changed under an exclusive lock (a `.lock` file beside it) and replaced
//! atomically (write a temporary file, fsync, rename), so parallel `token add` runs keep
//! every token and a crash never leaves half a file. The server re-reads it when it
//! changes, so a revoked token stops working at once.

use crate::audit::canonical::sha256_digest;
use crate::domain::reader::{Reader, SHORT_TEXT, index, parse_toml};
use ssh_key::rand_core::{OsRng, RngCore};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::RwLock;
use std::time::SystemTime;

/// Shortest token id prefix `token revoke` accepts.
pub const MIN_ID_CHARS: usize = 8;

/// Why the tokens file could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error(
        "cannot read the tokens file {path} ({source}); create a token with `tollgate token add PRINCIPAL`"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file does not read as a tokens file.
    #[error("{problems}")]
    Invalid {
        /// One line per problem, each naming the file and the field.
        problems: String,
    },
    /// The file could not be written or locked.
    #[error("cannot write the tokens file {path} ({source}); nothing was changed")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The principal is not a valid id.
    #[error("principal: {0}")]
    Principal(#[source] crate::domain::reader::ValueError),
    /// No token has that id.
    #[error("no token with id {0}; `tollgate token list` shows them")]
    NotFound(String),
    /// The id prefix names several tokens, or is too short.
    #[error("{0}")]
    Ambiguous(String),
    /// A thread panicked while holding the server's copy of the tokens.
    #[error("the tokens cache is poisoned (a request handler panicked); restart the server")]
    Poisoned,
}

pub use crate::store::TokenEntry;

fn id_of(sha256: &str) -> String {
    sha256
        .strip_prefix("sha256:")
        .unwrap_or(sha256)
        .chars()
        .take(12)
        .collect()
}

/// The tokens a server accepts.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

/// The tokens file that belongs to the store at `store`.
pub fn tokens_beside(store: &Path) -> PathBuf {
    let stem = store
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tollgate".into());
    store.with_file_name(format!("{stem}.tokens.toml"))
}

impl Tokens {
    /// Reads the tokens file; a missing file means no client can connect, which is said.
    pub fn load(path: &Path) -> Result<Tokens, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Tokens::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Tokens, TokenError> {
        let tree = parse_toml(text).map_err(|p| TokenError::Invalid {
            problems: format!("{}: {p}", path.display()),
        })?;
        let mut r = Reader::new();
        let mut entries = Vec::new();
        if let Some(obj) = r.as_object(&tree, "") {
            r.deny_unknown(obj, "", &["tokens"]);
            if let Some(items) = r.array(obj, "", "tokens", 10_000) {
                for (i, item) in items.iter().enumerate() {
                    let p = index("tokens", i);
                    let Some(t) = r.as_object(item, &p) else {
                        continue;
                    };
                    r.deny_unknown(t, &p, &["principal", "sha256", "label", "created"]);
                    let principal = r.identifier(t, &p, "principal");
                    let hash = r.text(t, &p, "sha256", SHORT_TEXT);
                    let label = r.opt_text(t, &p, "label", crate::domain::reader::OPTIONAL_PROSE);
                    let created = r.opt_text(t, &p, "created", SHORT_TEXT);
                    if let (Some(principal), Some(sha256)) = (principal, hash) {
                        entries.push(TokenEntry {
                            id: id_of(&sha256),
                            sha256,
                            principal,
                            label: label.flatten().unwrap_or_default(),
                            created: created.flatten(),
                        });
                    }
                }
            }
        }
        if !r.is_clean() {
            let lines: Vec<String> = r
                .into_problems()
                .iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect();
            return Err(TokenError::Invalid {
                problems: lines.join("\n"),
            });
        }
        Ok(Tokens { entries })
    }

    /// The principal a presented token belongs to.
    pub fn principal(&self, token: &str) -> Option<&str> {
        let hash = sha256_digest(token.as_bytes());
        self.entries
            .iter()
            .find(|e| e.sha256 == hash)
            .map(|e| e.principal.as_str())
    }

    /// Every token, in the order they were added.
    pub fn entries(&self) -> &[TokenEntry] {
        &self.entries
    }

    fn to_toml(&self) -> String {
        let mut text = String::from(
            "# tollgate server tokens: only SHA-256 hashes; manage with `tollgate token add|list|revoke`.\n",
        );
        for e in &self.entries {
            text.push_str(&format!(
                "\n[[tokens]]\nprincipal = {}\nsha256 = {}\nlabel = {}\n",
                toml::Value::String(e.principal.clone()),
                toml::Value::String(e.sha256.clone()),
                toml::Value::String(e.label.clone()),
            ));
            if let Some(c) = &e.created {
                text.push_str(&format!("created = {}\n", toml::Value::String(c.clone())));
            }
        }
        text
    }
}

/// Runs `change` on the tokens file under an exclusive lock and replaces the file
/// atomically with the result.
fn update<T>(
    path: &Path,
    change: impl FnOnce(&mut Tokens) -> Result<T, TokenError>,
) -> Result<T, TokenError> {
    let write_err = |source: std::io::Error| TokenError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    let mut lock_name = path.as_os_str().to_owned();
    lock_name.push(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(&lock_name))
        .map_err(write_err)?;
    lock.lock().map_err(write_err)?;
    let mut tokens = match std::fs::read_to_string(path) {
        Ok(text) => Tokens::parse(path, &text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Tokens::default(),
        Err(source) => {
            return Err(TokenError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let out = change(&mut tokens)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let written = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(tokens.to_toml().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_err(e));
    }
    // The lock is released when `lock` is dropped, after the rename.
    drop(lock);
    Ok(out)
}

/// Creates a token for `principal`, adds its hash to the tokens file, and returns the
/// token (shown once) with its entry.
pub fn add(
    path: &Path,
    principal: &str,
    label: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(String, TokenEntry), TokenError> {
    crate::domain::reader::check_identifier(principal).map_err(TokenError::Principal)?;
    let (token, entry) = new_token(principal, label, now);
    let added = entry.clone();
    update(path, move |t| {
        t.entries.push(entry);
        Ok(())
    })?;
    Ok((token, added))
}

/// A fresh random token and its entry (the token itself is never stored).
fn new_token(
    principal: &str,
    label: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> (String, TokenEntry) {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = format!("tg_{}", hex::encode(bytes));
    let sha256 = sha256_digest(token.as_bytes());
    let entry = TokenEntry {
        id: id_of(&sha256),
        sha256,
        principal: principal.into(),
        label: label.into(),
        created: Some(crate::audit::log::time_text(now)),
    };
    (token, entry)
}

/// Refuses a token id prefix too short to name a token safely (before anything is read).
fn long_enough(id: &str) -> Result<(), TokenError> {
    if id.chars().count() < MIN_ID_CHARS {
        return Err(TokenError::Ambiguous(format!(
            "give at least {MIN_ID_CHARS} characters of the token id (`tollgate token list` shows them)"
        )));
    }
    Ok(())
}

/// The position of the one token whose id starts with `id`: what `token revoke` names,
/// in the file or in the database.
fn pick(entries: &[TokenEntry], id: &str) -> Result<usize, TokenError> {
    let matching: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.id.starts_with(id))
        .map(|(i, _)| i)
        .collect();
    match matching.as_slice() {
        [] => Err(TokenError::NotFound(id.into())),
        [i] => Ok(*i),
        _ => Err(TokenError::Ambiguous(format!(
            "{id} is the start of {} token ids; give more of it",
            matching.len()
        ))),
    }
}

/// Removes the token whose id starts with `id` (at least [`MIN_ID_CHARS`] characters,
/// naming exactly one); returns it.
pub fn revoke(path: &Path, id: &str) -> Result<TokenEntry, TokenError> {
    long_enough(id)?;
    update(path, |t| {
        let i = pick(&t.entries, id)?;
        Ok(t.entries.remove(i))
    })
}

/// The file's modification time and length when read, and what it held.
type Snapshot = (Option<SystemTime>, u64, Result<Tokens, Arc<TokenError>>);

/// The tokens file as the server uses it: re-read whenever it changes on disk, so a token
/// added or revoked takes effect on the next request.
#[derive(Debug)]
pub struct LiveTokens {
    path: PathBuf,
    state: RwLock<Snapshot>,
}

impl LiveTokens {
    /// Reads the file once; a file that cannot be read stops the server from starting.
    pub fn open(path: &Path) -> Result<LiveTokens, TokenError> {
        let tokens = Tokens::load(path)?;
        let (modified, len) = stamp(path);
        Ok(LiveTokens {
            path: path.to_path_buf(),
            state: RwLock::new((modified, len, Ok(tokens))),
        })
    }

    /// The principal a token belongs to; `Err` when the file became unreadable (then no
    /// token is accepted: a revocation must never be undone by a broken file).
    pub fn principal(&self, token: &str) -> Result<Option<String>, Arc<TokenError>> {
        let (modified, len) = stamp(&self.path);
        let fresh = self
            .state
            .read()
            .map(|s| s.0 == modified && s.1 == len)
            .unwrap_or(false);
        if !fresh {
            let loaded = Tokens::load(&self.path).map_err(Arc::new);
            if let Ok(mut s) = self.state.write() {
                *s = (modified, len, loaded);
            }
        }
        let s = self
            .state
            .read()
            .map_err(|_| Arc::new(TokenError::Poisoned))?;
        match &s.2 {
            Ok(tokens) => Ok(tokens.principal(token).map(str::to_string)),
            Err(e) => Err(e.clone()),
        }
    }
}

fn stamp(path: &Path) -> (Option<SystemTime>, u64) {
    std::fs::metadata(path)
        .map(|m| (m.modified().ok(), m.len()))
        .unwrap_or((None, 0))
}

/// Why a token could not be looked up: no token is accepted meanwhile.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The tokens file became unreadable.
    #[error(transparent)]
    File(Arc<TokenError>),
    /// The database holding the tokens failed.
    #[error(transparent)]
    Database(crate::store::StoreError),
}

/// Where a server reads its tokens: the file beside an SQLite store, or the database
/// every replica shares (so a token added or revoked anywhere holds everywhere at once).
#[derive(Debug)]
pub enum TokenSource {
    /// `tollgate.tokens.toml` beside the store.
    File(LiveTokens),
    /// The `api_tokens` table.
    Database(Arc<crate::store::pg::PgStore>),
}

impl TokenSource {
    /// The principal a token belongs to. Blocking.
    pub fn principal(&self, token: &str) -> Result<Option<String>, LookupError> {
        match self {
            TokenSource::File(live) => live.principal(token).map_err(LookupError::File),
            TokenSource::Database(db) => db
                .token_principal(&sha256_digest(token.as_bytes()))
                .map_err(LookupError::Database),
        }
    }
}

/// Creates a token for `principal` in the database; returns the token (shown once).
pub fn add_to_database(
    db: &crate::store::pg::PgStore,
    principal: &str,
    label: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(String, TokenEntry), DatabaseTokenError> {
    crate::domain::reader::check_identifier(principal)
        .map_err(|e| DatabaseTokenError::Token(TokenError::Principal(e)))?;
    let (token, entry) = new_token(principal, label, now);
    db.add_token(&entry)?;
    Ok((token, entry))
}

/// Removes the database token whose id starts with `id` (at least [`MIN_ID_CHARS`]
/// characters, naming exactly one); returns it.
pub fn revoke_in_database(
    db: &crate::store::pg::PgStore,
    id: &str,
) -> Result<TokenEntry, DatabaseTokenError> {
    long_enough(id).map_err(DatabaseTokenError::Token)?;
    let mut all = db.tokens()?;
    let i = pick(&all, id).map_err(DatabaseTokenError::Token)?;
    let gone = all.swap_remove(i);
    db.delete_token(&gone.id)?;
    Ok(gone)
}

/// Why a database token could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseTokenError {
    /// What was asked cannot be done.
    #[error(transparent)]
    Token(TokenError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}
