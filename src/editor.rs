//! Writing long text in the user's own editor (`$VISUAL`, `$EDITOR`, else `vi`), for
//! both faces: the CLI when no `--rationale` is given, the TUI on ctrl-e.

/// Why the editor gave no text back.
#[derive(Debug, thiserror::Error)]
pub enum EditorError {
    /// No temporary file could be made.
    #[error("cannot create a temporary file for the editor: {0}")]
    TempFile(#[source] std::io::Error),
    /// The temporary file could not be written or read back.
    #[error("cannot {what} {}: {source}", path.display())]
    File {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The editor could not be started.
    #[error("cannot start the editor {editor:?}: {source}")]
    Start {
        /// The command.
        editor: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The editor exited unsuccessfully: nothing is signed.
    #[error("the editor {editor:?} exited with {status}; nothing was signed")]
    Exit {
        /// The command.
        editor: String,
        /// How it ended.
        status: std::process::ExitStatus,
    },
}

/// Opens the editor on `initial` under a commented template; returns the text with `#`
/// lines removed and surrounding whitespace trimmed.
pub fn edit_rationale(initial: &str, what: &str) -> Result<String, EditorError> {
    let dir = tempfile::Builder::new()
        .prefix("tollgate-rationale")
        .tempdir()
        .map_err(EditorError::TempFile)?;
    let path = dir.path().join("RATIONALE.md");
    let template = format!(
        "{initial}\n# Rationale for {what}.\n# Write why, in a sentence or two. Lines starting with '#' are ignored;\n# an empty rationale cancels the decision.\n"
    );
    std::fs::write(&path, template).map_err(|source| EditorError::File {
        what: "write",
        path: path.clone(),
        source,
    })?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status()
        .map_err(|source| EditorError::Start {
            editor: editor.clone(),
            source,
        })?;
    if !status.success() {
        return Err(EditorError::Exit { editor, status });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| EditorError::File {
        what: "read",
        path: path.clone(),
        source,
    })?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string())
}
