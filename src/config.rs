//! Where tollgate keeps things, with explicit overrides for scripts and tests.
//!
//! Precedence, highest first: command-line flag (`--store`, `--policy`), environment
//! variable (`TOLLGATE_STORE`, `TOLLGATE_POLICY`), `TOLLGATE_HOME` (a directory holding
//! everything, handy for demos and tests), then the platform's data directory
//! (`~/.local/share/tollgate` on Linux). The policy lives beside its store:
//! `tollgate.db` → `tollgate.policy.toml`.

use directories::ProjectDirs;
use std::path::{Path, PathBuf};

/// File name of the store inside a data directory.
pub const STORE_FILE: &str = "tollgate.db";

/// A team server to use instead of the local store.
#[derive(Clone, PartialEq, Eq)]
pub struct Remote {
    /// Server URL, e.g. `https://tollgate.example.com`.
    pub url: String,
    /// Bearer token (never printed).
    pub token: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish()
    }
}

/// Connections set once in `config.toml`, so a reviewer need not pass flags to every
/// command: the team server (`remote = "URL"`, `token_file = "PATH"`; `--remote`,
/// `TOLLGATE_REMOTE`, `--token-file` and `TOLLGATE_TOKEN` override it), the source of CRs
/// (`source = "mlflow=URL"`; `--source`, `TOLLGATE_SOURCE` override it) and the MLflow tag
/// convention (`[mlflow]` with `status_tag`, `pending`, `alias`, `environment`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteConfig {
    /// Server URL.
    pub url: Option<String>,
    /// File holding the bearer token (relative paths from the config file's directory).
    pub token_file: Option<PathBuf>,
    /// `KIND=URL` of a CR source.
    pub source: Option<String>,
    /// How MLflow versions awaiting review are marked.
    pub mlflow: crate::sources::mlflow::Convention,
}

/// A CR source to read before a command runs and to write decisions back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlflowSource {
    /// MLflow base URL.
    pub url: String,
    /// Tag and alias convention.
    pub convention: crate::sources::mlflow::Convention,
}

/// Reads the server settings from a config file (absent file: none). Only `remote` and
/// `token_file` are read here, so a theme problem does not stop the CLI; the TUI checks
/// the whole file. Errors name the file and the key.
pub fn remote_config(path: &Path) -> Result<RemoteConfig, ConfigFileError> {
    use crate::domain::reader::{Reader, SHORT_TEXT, TextRule, parse_toml};
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RemoteConfig::default()),
        Err(source) => {
            return Err(ConfigFileError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let invalid = |problems| ConfigFileError::Invalid {
        file: path.to_path_buf(),
        problems,
    };
    let tree = parse_toml(&text).map_err(|p| invalid(vec![p]))?;
    let mut r = Reader::new();
    let url_rule = TextRule {
        max_chars: 2_000,
        allow_empty: false,
    };
    let mut mlflow = crate::sources::mlflow::Convention::default();
    let (url, token_file, source) = match r.as_object(&tree, "") {
        Some(obj) => {
            if let Some(table) = obj.get("mlflow").and_then(|v| r.as_object(v, "mlflow")) {
                r.deny_unknown(
                    table,
                    "mlflow",
                    &["status_tag", "pending", "alias", "environment"],
                );
                for (key, slot) in [
                    ("status_tag", &mut mlflow.status_tag),
                    ("pending", &mut mlflow.pending),
                    ("alias", &mut mlflow.alias),
                    ("environment", &mut mlflow.environment),
                ] {
                    if let Some(Some(v)) = r.opt_text(table, "mlflow", key, SHORT_TEXT) {
                        *slot = v;
                    }
                }
            }
            (
                r.opt_text(obj, "", "remote", url_rule).flatten(),
                r.opt_text(obj, "", "token_file", SHORT_TEXT).flatten(),
                r.opt_text(obj, "", "source", url_rule).flatten(),
            )
        }
        None => (None, None, None),
    };
    if !r.is_clean() {
        return Err(invalid(r.into_problems()));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    Ok(RemoteConfig {
        url,
        token_file: token_file.map(|t| dir.join(t)),
        source,
        mlflow,
    })
}

/// Why the config file cannot be used; each problem names the file and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// It exists but cannot be read.
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It does not read as a config file.
    #[error("the config file is invalid; fix it or remove it:\n{}", listed(.file, .problems))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Every problem, by key.
        problems: Vec<crate::domain::reader::Problem>,
    },
}

/// `file: problem` lines, for messages about a TOML file.
pub fn listed(file: &Path, problems: &[crate::domain::reader::Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {p}", file.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Resolved locations for one invocation.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The SQLite store (also where demo keys and the outbox are found).
    pub store: PathBuf,
    /// The policy TOML file.
    pub policy: PathBuf,
    /// The team server, when `--remote` is given: it then replaces the local store and
    /// its policy.
    pub remote: Option<Remote>,
    /// The MLflow registry CRs are read from and decisions written back to, if any.
    pub mlflow: Option<MlflowSource>,
    /// A PostgreSQL database (`--database`) that replaces the SQLite file as the store.
    pub database: Option<String>,
}

impl Paths {
    /// The store as messages name it: the database (password hidden) or the file.
    pub fn store_label(&self) -> String {
        match &self.database {
            Some(url) => crate::store::pg::redact(url),
            None => self.store.display().to_string(),
        }
    }
}

/// Why no location could be worked out.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot find a data directory for tollgate (no home directory?); pass --store PATH, or set TOLLGATE_STORE or TOLLGATE_HOME"
)]
pub struct NoDataDir;

pub use crate::clock::{ClockError, now};

/// The policy file that belongs to the store at `store`.
pub fn policy_beside(store: &Path) -> PathBuf {
    let stem = store
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tollgate".into());
    store.with_file_name(format!("{stem}.policy.toml"))
}

/// The default data directory: `TOLLGATE_HOME`, else the platform's.
pub fn data_dir() -> Result<PathBuf, NoDataDir> {
    if let Some(home) = std::env::var_os("TOLLGATE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    ProjectDirs::from("", "", "tollgate")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or(NoDataDir)
}

/// The directory for the user's own tollgate files (their signing key): `TOLLGATE_HOME`,
/// else the platform's config directory (`~/.config/tollgate` on Linux).
pub fn config_dir() -> Result<PathBuf, NoDataDir> {
    if let Some(home) = std::env::var_os("TOLLGATE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    ProjectDirs::from("", "", "tollgate")
        .map(|d| d.config_dir().to_path_buf())
        .ok_or(NoDataDir)
}

/// Where `tollgate keygen` puts the user's key by default.
pub fn default_key_path() -> Result<PathBuf, NoDataDir> {
    Ok(config_dir()?.join("id_ed25519"))
}

/// Where `tollgate demo` keeps the demo principals' keys: beside the store,
/// `tollgate.db` → `tollgate.demo-keys/`. Demo only: real keys belong to their owners.
pub fn demo_keys_dir(store: &Path) -> PathBuf {
    let stem = store
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tollgate".into());
    store.with_file_name(format!("{stem}.demo-keys"))
}

/// Resolves the store and policy paths. `store` and `policy` are the flag values
/// (clap has already folded in `TOLLGATE_STORE` / `TOLLGATE_POLICY`).
pub fn resolve(store: Option<PathBuf>, policy: Option<PathBuf>) -> Result<Paths, NoDataDir> {
    let store = match store {
        Some(s) => s,
        None => data_dir()?.join(STORE_FILE),
    };
    let policy = policy.unwrap_or_else(|| policy_beside(&store));
    Ok(Paths {
        store,
        policy,
        remote: None,
        mlflow: None,
        database: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_sits_beside_its_store() {
        assert_eq!(
            policy_beside(Path::new("/data/team.db")),
            PathBuf::from("/data/team.policy.toml")
        );
        let p = resolve(Some("/x/tollgate.db".into()), None).unwrap();
        assert_eq!(p.policy, PathBuf::from("/x/tollgate.policy.toml"));
        let p = resolve(Some("/x/a.db".into()), Some("/etc/p.toml".into())).unwrap();
        assert_eq!(p.policy, PathBuf::from("/etc/p.toml"));
    }
}
