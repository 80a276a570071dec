//! Who is signing: finding the key, unlocking it, and matching it to a policy principal.
//!
//! The key decides the identity: there is no `--user` flag to lie with. A key the policy
//! does not list cannot sign, and the message says which line to add.

use crate::audit::keys::{Keyring, Signer};
use crate::config;
use crate::domain::policy::{Policy, Principal};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Why no usable identity was found; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdentityError(pub String);

impl From<config::NoDataDir> for IdentityError {
    fn from(e: config::NoDataDir) -> Self {
        IdentityError(e.to_string())
    }
}

/// Where the signing key comes from.
#[derive(Debug, Clone, Default)]
pub struct KeyChoice {
    /// `--key PATH` / `TOLLGATE_KEY`.
    pub key: Option<PathBuf>,
    /// `--as PRINCIPAL` (demo identities).
    pub as_principal: Option<String>,
}

/// The signer and the principal their key belongs to.
pub struct Identity {
    /// The unlocked key.
    pub signer: Signer,
    /// The principal the policy maps the key to.
    pub principal: Principal,
    /// Where the key was read from.
    pub key_path: PathBuf,
}

/// Picks the key file: --key, then --as (demo), then `tollgate keygen`'s key, then
/// `~/.ssh/id_ed25519`.
pub fn key_path(choice: &KeyChoice, store: &Path) -> Result<PathBuf, IdentityError> {
    if let Some(k) = &choice.key {
        return Ok(k.clone());
    }
    if let Some(who) = &choice.as_principal {
        let path = config::demo_keys_dir(store).join(who);
        if path.exists() && crate::domain::reader::check_identifier(who).is_ok() {
            return Ok(path);
        }
        return Err(IdentityError(format!(
            "no demo identity {}: --as works only in stores made by `tollgate demo` (keys in {}); use --key PATH for a real key",
            crate::domain::reader::quote(who),
            config::demo_keys_dir(store).display()
        )));
    }
    let own = config::default_key_path()?;
    if own.exists() {
        return Ok(own);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let ssh = PathBuf::from(home).join(".ssh/id_ed25519");
        if ssh.exists() {
            return Ok(ssh);
        }
    }
    Err(IdentityError(format!(
        "no signing key: run `tollgate keygen` (creates {}), or pass --key PATH with an OpenSSH ed25519 key",
        own.display()
    )))
}

/// Asks for a passphrase: `TOLLGATE_KEY_PASSPHRASE`, else a no-echo prompt on a terminal.
fn passphrase(path: &Path) -> Result<String, String> {
    if let Ok(p) = std::env::var("TOLLGATE_KEY_PASSPHRASE") {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("passphrase for {}: ", path.display()))
            .map_err(|e| format!("cannot read the passphrase: {e}"));
    }
    Err("set TOLLGATE_KEY_PASSPHRASE or run on a terminal to be asked".into())
}

/// Loads the key and finds its principal in the policy.
pub fn identify(
    choice: &KeyChoice,
    store: &Path,
    policy: &Policy,
) -> Result<Identity, IdentityError> {
    let key_path = key_path(choice, store)?;
    let signer = Signer::load(&key_path, || passphrase(&key_path))
        .map_err(|e| IdentityError(e.to_string()))?;
    let keyring = Keyring::from_policy(policy).map_err(IdentityError)?;
    let Some(id) = keyring.principal_of(signer.public_key()) else {
        return Err(IdentityError(format!(
            "your key {} ({}) is not in the policy; add this line to your principal's keys and run `tollgate policy check`:\n  keys = [\"{}\"]",
            signer.fingerprint(),
            key_path.display(),
            signer.public_key_line()
        )));
    };
    let principal = policy
        .principal(id)
        .cloned()
        .ok_or_else(|| IdentityError(format!("principal {id} vanished from the policy")))?;
    Ok(Identity {
        signer,
        principal,
        key_path,
    })
}
