//! Signing keys and OpenSSH signatures (SSHSIG, namespace `tollgate`).
//!
//! Decisions are signed with plain OpenSSH ed25519 keys so reviewers can use the key they
//! already have (`~/.ssh/id_ed25519`, passphrase-protected or not) and an auditor can check
//! any record with `ssh-keygen -Y verify` and an `allowed_signers` file, without tollgate.
//! All cryptography comes from RustCrypto's `ssh-key` (ed25519-dalek underneath).

use crate::domain::policy::Policy;
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};
use std::path::{Path, PathBuf};

/// The SSHSIG namespace of every tollgate signature; a signature made for another purpose
/// (e.g. git commits, namespace `git`) never verifies as a tollgate decision.
pub const NAMESPACE: &str = "tollgate";

/// Why no passphrase could be had for an encrypted key.
#[derive(Debug, thiserror::Error)]
pub enum NoPassphrase {
    /// Read unattended (a server key, demo keys): no one can be asked.
    #[error("{0}")]
    Unattended(&'static str),
    /// Neither `TOLLGATE_KEY_PASSPHRASE` nor a terminal to ask on.
    #[error("set TOLLGATE_KEY_PASSPHRASE or run on a terminal to be asked")]
    NoTerminal,
    /// The prompt failed.
    #[error("cannot read the passphrase: {0}")]
    Prompt(#[source] std::io::Error),
}

impl From<&'static str> for NoPassphrase {
    fn from(why: &'static str) -> Self {
        NoPassphrase::Unattended(why)
    }
}

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read key {path}: {source}")]
    Read {
        /// Key path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file is not an OpenSSH private key.
    #[error(
        "{path} is not an OpenSSH private key ({detail}); use an ed25519 key made by `tollgate keygen` or `ssh-keygen -t ed25519`"
    )]
    Format {
        /// Key path.
        path: PathBuf,
        /// Parser detail.
        detail: String,
    },
    /// The key is not ed25519.
    #[error(
        "{path} is a {algorithm} key; tollgate signs with ed25519 keys only (`ssh-keygen -t ed25519`)"
    )]
    Algorithm {
        /// Key path.
        path: PathBuf,
        /// The key's algorithm.
        algorithm: String,
    },
    /// The passphrase did not decrypt the key.
    #[error("wrong passphrase for {path}")]
    Passphrase {
        /// Key path.
        path: PathBuf,
    },
    /// The key is encrypted and no passphrase could be obtained.
    #[error("{path} is passphrase-protected: {reason}")]
    NeedPassphrase {
        /// Key path.
        path: PathBuf,
        /// Why none could be had, and how to provide one.
        #[source]
        reason: NoPassphrase,
    },
    /// Writing a new key failed.
    #[error("cannot write key {path}: {detail}")]
    Write {
        /// Key path.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Signing failed (should not happen with a valid key).
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A decrypted ed25519 key ready to sign.
#[derive(Clone)]
pub struct Signer {
    key: PrivateKey,
    fingerprint: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl Signer {
    fn from_key(key: PrivateKey) -> Signer {
        let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        Signer { key, fingerprint }
    }

    /// Creates a new random ed25519 key.
    pub fn generate(comment: &str) -> Result<Signer, KeyError> {
        let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        key.set_comment(comment);
        Ok(Signer::from_key(key))
    }

    /// A key derived from a fixed seed, so demos, screenshots, benchmarks and tests are
    /// reproducible. Never use one as a real identity: anyone with the seed can sign.
    pub fn from_seed(seed: [u8; 32], comment: &str) -> Result<Signer, KeyError> {
        let pair = ssh_key::private::Ed25519Keypair::from_seed(&seed);
        let key = PrivateKey::new(ssh_key::private::KeypairData::from(pair), comment)
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        Ok(Signer::from_key(key))
    }

    /// Loads an OpenSSH private key; `passphrase` is asked only if the key is encrypted.
    pub fn load(
        path: &Path,
        passphrase: impl FnOnce() -> Result<String, NoPassphrase>,
    ) -> Result<Signer, KeyError> {
        let text = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.into(),
            source,
        })?;
        let key = PrivateKey::from_openssh(&text).map_err(|e| KeyError::Format {
            path: path.into(),
            detail: e.to_string(),
        })?;
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(KeyError::Algorithm {
                path: path.into(),
                algorithm: key.algorithm().to_string(),
            });
        }
        let key = if key.is_encrypted() {
            let pass = passphrase().map_err(|reason| KeyError::NeedPassphrase {
                path: path.into(),
                reason,
            })?;
            key.decrypt(pass.as_bytes())
                .map_err(|_| KeyError::Passphrase { path: path.into() })?
        } else {
            key
        };
        Ok(Signer::from_key(key))
    }

    /// Writes the private key (mode 0600) and its `.pub` beside it. Refuses to replace an
    /// existing file: losing a key means losing the ability to sign as that person.
    pub fn write(&self, path: &Path) -> Result<(), KeyError> {
        let fail = |detail: String| KeyError::Write {
            path: path.into(),
            detail,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        }
        let pem = self
            .key
            .to_openssh(LineEnding::LF)
            .map_err(|e| fail(e.to_string()))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                fail("a key already exists there; keep it, or move it away first".into())
            } else {
                fail(e.to_string())
            }
        })?;
        use std::io::Write;
        file.write_all(pem.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| fail(e.to_string()))?;
        // `id.key` → `id.key.pub`, as ssh-keygen names it (and as keygen says).
        let mut pub_path = path.as_os_str().to_owned();
        pub_path.push(".pub");
        std::fs::write(&pub_path, format!("{}\n", self.public_key_line()))
            .map_err(|e| fail(e.to_string()))
    }

    /// The OpenSSH public key line (`ssh-ed25519 AAAA... comment`) for the policy.
    pub fn public_key_line(&self) -> String {
        // Encoding a valid in-memory ed25519 public key cannot fail.
        self.key.public_key().to_openssh().unwrap_or_default()
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// `SHA256:...` fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Signs `msg` with the bare ed25519 key (64 bytes, no SSHSIG envelope): what a DSSE
    /// envelope carries (`tollgate attest`), checkable with any ed25519 library.
    pub fn sign_raw(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        use signature::Signer as _;
        let pair = self
            .key
            .key_data()
            .ed25519()
            .ok_or_else(|| KeyError::Sign("not an ed25519 key".into()))?;
        let sig: ssh_key::Signature = pair
            .try_sign(msg)
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        Ok(sig.as_bytes().to_vec())
    }

    /// Signs `msg` and returns the armored SSHSIG (`-----BEGIN SSH SIGNATURE-----`).
    pub fn sign(&self, msg: &[u8]) -> Result<String, KeyError> {
        let sig = self
            .key
            .sign(NAMESPACE, HashAlg::Sha512, msg)
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        sig.to_pem(LineEnding::LF)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }
}

/// Whether `sig` is `key`'s bare ed25519 signature over `msg` (see [`Signer::sign_raw`]).
pub fn verify_raw(key: &PublicKey, msg: &[u8], sig: &[u8]) -> bool {
    use signature::Verifier as _;
    let Some(public) = key.key_data().ed25519() else {
        return false;
    };
    ssh_key::Signature::new(Algorithm::Ed25519, sig.to_vec())
        .is_ok_and(|sig| public.verify(msg, &sig).is_ok())
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not an armored SSHSIG.
    #[error("not an OpenSSH signature ({0})")]
    Malformed(String),
    /// Signed for another purpose.
    #[error("signature namespace is {0:?}, expected \"tollgate\"")]
    Namespace(String),
    /// Made by a key the signer does not own.
    #[error("signed by key {0}, which the policy does not list for this principal")]
    UnknownKey(String),
    /// The signature does not match the content.
    #[error("bad signature: the content is not what was signed")]
    Bad,
}

/// A key line of a policy that the policy parser let through (it checks the shape only)
/// but that is not a valid OpenSSH public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{which}: not a valid OpenSSH public key ({detail})")]
pub struct KeyLineError {
    /// Where it is, e.g. `principal devi key 0` or `revoked key 1`.
    pub which: String,
    /// What the OpenSSH parser said.
    pub detail: String,
}

/// The public keys the policy lists, parsed once, per principal.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<(String, PublicKey)>,
}

impl Keyring {
    /// Parses every key in the policy. Keys were format-checked by the policy parser;
    /// one that still fails to parse is reported as a problem with its principal.
    pub fn from_policy(policy: &Policy) -> Result<Keyring, KeyLineError> {
        let mut keys = Vec::new();
        for p in &policy.principals {
            for (i, line) in p.keys.iter().enumerate() {
                let key = parse_line(line, || format!("principal {} key {i}", p.id))?;
                // One key, one principal (the policy parser says so too; this also
                // catches one key written two ways).
                if let Some((owner, _)) = keys
                    .iter()
                    .find(|(_, k): &&(String, PublicKey)| k.key_data() == key.key_data())
                {
                    return Err(KeyLineError {
                        which: format!("principal {} key {i}", p.id),
                        detail: format!(
                            "the same key is listed for {owner}; each key belongs to one principal"
                        ),
                    });
                }
                keys.push((p.id.clone(), key));
            }
        }
        Ok(Keyring { keys })
    }

    /// The principal owning `key`, if the policy lists it.
    pub fn principal_of(&self, key: &PublicKey) -> Option<&str> {
        self.keys
            .iter()
            .find(|(_, k)| k.key_data() == key.key_data())
            .map(|(id, _)| id.as_str())
    }

    /// Every `(principal, key)` of the policy.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &PublicKey)> {
        self.keys.iter().map(|(id, k)| (id.as_str(), k))
    }

    /// Verifies an armored SSHSIG over `msg` as made by one of `principal`'s keys; returns
    /// the signing key's fingerprint.
    pub fn verify(
        &self,
        principal: &str,
        msg: &[u8],
        armored: &str,
    ) -> Result<String, SignatureError> {
        let sig =
            SshSig::from_pem(armored).map_err(|e| SignatureError::Malformed(e.to_string()))?;
        // The version is the one envelope field the signature does not cover; pin it so
        // every stored byte of a signature is either signed or checked.
        if sig.version() != SshSig::VERSION {
            return Err(SignatureError::Malformed(format!(
                "signature format version {}, expected {}",
                sig.version(),
                SshSig::VERSION
            )));
        }
        // The decoder tolerates some malformed length prefixes; require the stored bytes to
        // be exactly the canonical encoding of what was parsed.
        let canonical = sig
            .to_pem(LineEnding::LF)
            .map_err(|e| SignatureError::Malformed(e.to_string()))?;
        if armor_payload(&canonical) != armor_payload(armored) {
            return Err(SignatureError::Malformed(
                "signature encoding is not canonical (altered bytes)".into(),
            ));
        }

        if sig.namespace() != NAMESPACE {
            return Err(SignatureError::Namespace(sig.namespace().to_string()));
        }
        let signer = PublicKey::new(sig.public_key().clone(), "");
        let fingerprint = signer.fingerprint(HashAlg::Sha256).to_string();
        let owned = self
            .keys
            .iter()
            .any(|(id, k)| id == principal && k.key_data() == sig.public_key());
        if !owned {
            return Err(SignatureError::UnknownKey(fingerprint));
        }
        signer
            .verify(NAMESPACE, msg, &sig)
            .map_err(|_| SignatureError::Bad)?;
        Ok(fingerprint)
    }
}

fn parse_line(line: &str, which: impl FnOnce() -> String) -> Result<PublicKey, KeyLineError> {
    PublicKey::from_openssh(line).map_err(|e| KeyLineError {
        which: which(),
        detail: e.to_string(),
    })
}

/// The `SHA256:...` fingerprint of each of the policy's revoked keys, in order.
pub fn revoked_fingerprints(policy: &Policy) -> Result<Vec<String>, KeyLineError> {
    policy
        .revoked_keys
        .iter()
        .enumerate()
        .map(|(i, r)| {
            parse_line(&r.key, || format!("revoked key {i}"))
                .map(|k| k.fingerprint(HashAlg::Sha256).to_string())
        })
        .collect()
}

/// Every key line of a policy, revoked ones included, parses as an OpenSSH public key:
/// what a writer checks before adopting a policy (the policy parser checks the lines'
/// shape only). Returns the policy's keyring.
pub fn check_policy_keys(policy: &Policy) -> Result<Keyring, KeyLineError> {
    let keyring = Keyring::from_policy(policy)?;
    revoked_fingerprints(policy)?;
    Ok(keyring)
}

/// The base64 payload of an armored signature, whatever its line width.
fn armor_payload(armored: &str) -> String {
    armored
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

/// The `allowed_signers` file for `ssh-keygen -Y verify`: one line per principal key,
/// restricted to the tollgate namespace.
pub fn allowed_signers(policy: &Policy) -> String {
    let mut out = String::new();
    for p in &policy.principals {
        for key in &p.keys {
            // Keep only "algorithm base64": a comment could contain anything.
            let mut parts = key.split_whitespace();
            if let (Some(algo), Some(blob)) = (parts.next(), parts.next()) {
                out.push_str(&format!(
                    "{} namespaces=\"{NAMESPACE}\" {algo} {blob}\n",
                    p.id
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo;

    fn policy_with(id: &str, line: &str) -> Policy {
        let mut p = demo::policy();
        p.principals.iter_mut().find(|x| x.id == id).unwrap().keys = vec![line.to_string()];
        p
    }

    #[test]
    fn a_signature_verifies_only_for_its_owner_its_content_and_its_namespace() {
        let devi = Signer::generate("devi").unwrap();
        let policy = policy_with("devi", &devi.public_key_line());
        let ring = Keyring::from_policy(&policy).unwrap();
        let sig = devi.sign(b"approve CR-1042").unwrap();
        assert_eq!(
            ring.verify("devi", b"approve CR-1042", &sig).unwrap(),
            devi.fingerprint()
        );
        assert_eq!(
            ring.verify("devi", b"approve CR-1043", &sig),
            Err(SignatureError::Bad)
        );
        assert!(matches!(
            ring.verify("kai", b"approve CR-1042", &sig),
            Err(SignatureError::UnknownKey(_))
        ));
        let other = devi
            .key
            .sign("git", HashAlg::Sha512, b"approve CR-1042")
            .unwrap();
        let other = other.to_pem(LineEnding::LF).unwrap();
        assert_eq!(
            ring.verify("devi", b"approve CR-1042", &other),
            Err(SignatureError::Namespace("git".into()))
        );
        assert!(matches!(
            ring.verify("devi", b"x", "garbage"),
            Err(SignatureError::Malformed(_))
        ));
        assert_eq!(ring.principal_of(devi.public_key()), Some("devi"));
    }

    #[test]
    fn keys_are_written_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/id_ed25519");
        let s = Signer::generate("me").unwrap();
        s.write(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = Signer::generate("me").unwrap().write(&path).unwrap_err();
        assert!(again.to_string().contains("already exists"));
        let loaded = Signer::load(&path, || Err("no prompt".into())).unwrap();
        assert_eq!(loaded.fingerprint(), s.fingerprint());
    }

    #[test]
    fn allowed_signers_lines_are_scoped_to_the_namespace() {
        let s = Signer::generate("devi@laptop \"quoted\"").unwrap();
        let policy = policy_with("devi", &s.public_key_line());
        let text = allowed_signers(&policy);
        assert!(
            text.starts_with("devi namespaces=\"tollgate\" ssh-ed25519 AAAA"),
            "{text}"
        );
        assert!(!text.contains("quoted"));
        assert_eq!(text.lines().count(), 1);
    }
}
