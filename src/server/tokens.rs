//! Bearer tokens for the team server: random 256-bit secrets shown once, stored only as
//! SHA-256 hashes in a TOML file beside the store (`tollgate.tokens.toml`), each mapped to
//! a principal. Tokens never appear in logs or error messages.

use crate::audit::canonical::sha256_digest;
use crate::domain::reader::{Reader, SHORT_TEXT, index, parse_toml};
use ssh_key::rand_core::{OsRng, RngCore};
use std::path::{Path, PathBuf};

/// The tokens a server accepts.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, String)>,
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
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the tokens file {} ({e}); create a token with `tollgate token add PRINCIPAL`",
                path.display()
            )
        })?;
        let tree = parse_toml(&text).map_err(|p| format!("{}: {p}", path.display()))?;
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
                    r.deny_unknown(t, &p, &["principal", "sha256", "label"]);
                    let principal = r.identifier(t, &p, "principal");
                    let hash = r.text(t, &p, "sha256", SHORT_TEXT);
                    let _ = r.opt_text(t, &p, "label", crate::domain::reader::OPTIONAL_PROSE);
                    if let (Some(principal), Some(hash)) = (principal, hash) {
                        entries.push((hash, principal));
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
            return Err(lines.join("\n"));
        }
        Ok(Tokens { entries })
    }

    /// The principal a presented token belongs to.
    pub fn principal(&self, token: &str) -> Option<&str> {
        let hash = sha256_digest(token.as_bytes());
        self.entries
            .iter()
            .find(|(h, _)| *h == hash)
            .map(|(_, p)| p.as_str())
    }
}

/// Creates a token for `principal`, appends its hash to the tokens file, and returns the
/// token (shown once).
pub fn add(path: &Path, principal: &str, label: &str) -> Result<String, String> {
    crate::domain::reader::check_identifier(principal).map_err(|e| format!("principal: {e}"))?;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = format!("tg_{}", hex::encode(bytes));
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "\n[[tokens]]\nprincipal = \"{principal}\"\nsha256 = \"{}\"\nlabel = {}\n",
        sha256_digest(token.as_bytes()),
        toml::Value::String(label.to_string())
    ));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(token)
}
