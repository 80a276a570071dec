//! Writing long text in the user's own editor (`$VISUAL`, `$EDITOR`, else `vi`), for
//! both faces: the CLI when no `--rationale` is given, the TUI on ctrl-e.

/// Opens the editor on `initial` under a commented template; returns the text with `#`
/// lines removed and surrounding whitespace trimmed.
pub fn edit_rationale(initial: &str, what: &str) -> Result<String, String> {
    let dir = tempfile::Builder::new()
        .prefix("tollgate-rationale")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary file for the editor: {e}"))?;
    let path = dir.path().join("RATIONALE.md");
    let template = format!(
        "{initial}\n# Rationale for {what}.\n# Write why, in a sentence or two. Lines starting with '#' are ignored;\n# an empty rationale cancels the decision.\n"
    );
    std::fs::write(&path, template).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status()
        .map_err(|e| format!("cannot start the editor {editor:?}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "the editor {editor:?} exited with {status}; nothing was signed"
        ));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string())
}
