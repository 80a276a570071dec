//! Who is signing: finding the key, unlocking it, and matching it to a policy principal.
//!
//! The key decides the identity: there is no `--user` flag to lie with. A key the policy
//! does not list cannot sign, and the message says which line to add.

use crate::audit::keys::{Keyring, Signer};
use crate::config;
use crate::domain::policy::{Policy, Principal, parse_policy};
use crate::domain::policy_book::{PolicyBook, PolicyVersion};
use crate::domain::rules::Refusal;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Why no usable identity was found; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No key could be found, read or unlocked.
    #[error("{0}")]
    Key(String),
    /// The key is not listed for any principal of the policy.
    #[error(
        "your key {fingerprint} ({}) is not in the policy; add this line to your principal's keys and run `tollgate policy check`:\n  keys = [\"{line}\"]",
        key_path.display()
    )]
    UnknownKey {
        /// The key's fingerprint.
        fingerprint: String,
        /// Where it was read from.
        key_path: PathBuf,
        /// Its public key line.
        line: String,
    },
    /// The key is listed only in the policy file, which is not the policy in force.
    #[error("refused: {0}")]
    NotInForce(Refusal),
}

impl From<config::NoDataDir> for IdentityError {
    fn from(e: config::NoDataDir) -> Self {
        IdentityError::Key(e.to_string())
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
        return Err(IdentityError::Key(format!(
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
    Err(IdentityError::Key(format!(
        "no signing key: run `tollgate keygen` (creates {}), or pass --key PATH with an OpenSSH ed25519 key",
        own.display()
    )))
}

/// Asks for a passphrase: `TOLLGATE_KEY_PASSPHRASE`, else a no-echo prompt on a terminal.
fn passphrase(path: &Path) -> Result<String, crate::audit::keys::NoPassphrase> {
    use crate::audit::keys::NoPassphrase;
    if let Ok(p) = std::env::var("TOLLGATE_KEY_PASSPHRASE") {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("passphrase for {}: ", path.display()))
            .map_err(NoPassphrase::Prompt);
    }
    Err(NoPassphrase::NoTerminal)
}

/// Loads the key and finds its principal in the policy.
pub fn identify(
    choice: &KeyChoice,
    store: &Path,
    policy: &Policy,
) -> Result<Identity, IdentityError> {
    let key_path = key_path(choice, store)?;
    let signer = Signer::load(&key_path, || passphrase(&key_path))
        .map_err(|e| IdentityError::Key(e.to_string()))?;
    let keyring = Keyring::from_policy(policy).map_err(|e| IdentityError::Key(e.to_string()))?;
    let Some(id) = keyring.principal_of(signer.public_key()) else {
        return Err(IdentityError::UnknownKey {
            fingerprint: signer.fingerprint().to_string(),
            key_path,
            line: signer.public_key_line(),
        });
    };
    let principal = policy
        .principal(id)
        .cloned()
        .ok_or_else(|| IdentityError::Key(format!("principal {id} vanished from the policy")))?;
    Ok(Identity {
        signer,
        principal,
        key_path,
    })
}

/// Finds the signer's principal in the policy in force. A key listed only in the policy
/// file beside the store (an edit nobody adopted) is refused by name: the file grants
/// nothing.
pub fn identify_in_force(
    choice: &KeyChoice,
    store: &Path,
    book: &PolicyBook,
    policy_file: &Path,
) -> Result<Identity, IdentityError> {
    match identify(choice, store, book.policy()) {
        Err(IdentityError::UnknownKey {
            fingerprint,
            key_path,
            line,
        }) if !book.is_provisional() => {
            let in_file = |file_policy: &Policy| {
                ssh_key::PublicKey::from_openssh(&line).is_ok_and(|key| {
                    Keyring::from_policy(file_policy).is_ok_and(|k| k.principal_of(&key).is_some())
                })
            };
            match file_listing(policy_file, in_file) {
                true => Err(IdentityError::NotInForce(not_in_force(
                    &format!("your key {fingerprint}"),
                    book.current(),
                    policy_file,
                ))),
                false => Err(IdentityError::UnknownKey {
                    fingerprint,
                    key_path,
                    line,
                }),
            }
        }
        other => other,
    }
}

/// Whether the policy file at `file` reads and `accepts` holds for it.
fn file_listing(file: &Path, accepts: impl Fn(&Policy) -> bool) -> bool {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| parse_policy(&text).ok())
        .is_some_and(|(p, _)| accepts(&p))
}

fn not_in_force(what: &str, current: &PolicyVersion, file: &Path) -> Refusal {
    Refusal {
        rule: "key-not-in-force",
        message: format!(
            "{what} is listed in {} but not in the policy in force (version {}, entry {}); the file is not the authority",
            file.display(),
            current.version,
            current.seq
        ),
        remedy: format!(
            "propose the file as a policy change (`tollgate policy propose {}`); the key can sign once its sign-offs adopt it",
            file.display()
        ),
    }
}

/// The refusal for a signature by a key the policy in force does not list: named as
/// `key-not-in-force` when the file beside the store lists it (someone edited the file
/// instead of proposing a change), else `unknown-key`. `file_accepts` checks the
/// signature against the file's policy.
pub fn unknown_key_refusal(
    who: &str,
    detail: &str,
    current: &PolicyVersion,
    file: Option<&Path>,
    file_accepts: impl Fn(&Policy) -> bool,
) -> Refusal {
    if let Some(file) = file.filter(|f| file_listing(f, file_accepts)) {
        return not_in_force(&format!("{who}'s signing key"), current, file);
    }
    Refusal {
        rule: "unknown-key",
        message: format!(
            "signature refused: {detail}; {who} has no such key in the policy in force (version {})",
            current.version
        ),
        remedy: "sign with a key the policy in force lists for you (`tollgate policy show`)".into(),
    }
}
