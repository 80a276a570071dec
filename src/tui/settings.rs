//! The TUI's config file: theme, key preset, rebindings, mouse.
//!
//! `~/.config/tollgate/config.toml` (or `$TOLLGATE_HOME/config.toml`, or `--config FILE`):
//!
//! ```toml
//! theme = "dark"        # dark | light | high-contrast | colour-blind | path/to/theme.toml
//! keys = "default"      # default | vim
//! mouse = false
//! refresh_seconds = 5   # how often to look for changes while no live stream is connected
//! [bindings]            # action = ["key", ...] replaces that action's keys
//! approve = ["a", "ctrl-a"]
//! ```
//!
//! Every mistake is reported with the file and key; nothing falls back silently.

use super::keymap::{Action, Key, Keymap, Preset};
use super::theme::{BUILT_IN, Theme};
use crate::config::ConfigFileError;
use crate::domain::reader::{Reader, SHORT_TEXT, child, index, parse_toml, quote};
use std::path::{Path, PathBuf};

/// Everything the config file decides.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The colour theme (monochrome under NO_COLOR).
    pub theme: Theme,
    /// Key bindings.
    pub keymap: Keymap,
    /// Whether mouse reporting is on.
    pub mouse: bool,
    /// How often the screens look for other people's changes while the store's live
    /// stream is not connected (a store that cannot announce them, or a lost stream).
    pub refresh_seconds: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            theme: Theme::dark(),
            keymap: Keymap::preset(Preset::Default),
            mouse: false,
            refresh_seconds: 5,
        }
    }
}

/// The config file path: `$TOLLGATE_HOME/config.toml` or the platform config directory.
pub fn default_path() -> Option<PathBuf> {
    crate::config::config_dir()
        .ok()
        .map(|d| d.join("config.toml"))
}

/// Whether the user asked for no colour (<https://no-color.org>: set and non-empty).
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Loads settings from `path` (absent file = defaults). Errors name the file and key.
pub fn load(path: Option<&Path>, no_color: bool) -> Result<Settings, SettingsError> {
    let mut settings = Settings::default();
    let text = match path {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ConfigFileError::Read {
                    path: p.to_path_buf(),
                    source,
                }
                .into());
            }
        },
        None => None,
    };
    if let Some(text) = text {
        parse_into(&text, path.and_then(Path::parent), &mut settings).map_err(|problems| {
            SettingsError::Config(ConfigFileError::Invalid {
                file: path.map(Path::to_path_buf).unwrap_or_default(),
                problems,
            })
        })?;
    }
    if no_color {
        settings.theme = Theme::monochrome();
    }
    Ok(settings)
}

fn parse_into(
    text: &str,
    dir: Option<&Path>,
    settings: &mut Settings,
) -> Result<(), Vec<crate::domain::reader::Problem>> {
    let tree = parse_toml(text).map_err(|p| vec![p])?;
    let mut r = Reader::new();
    let Some(obj) = r.as_object(&tree, "") else {
        return Err(r.into_problems());
    };
    // `remote`, `token_file`, `source` and `[mlflow]` are read (and checked) by
    // `config::remote_config`.
    r.deny_unknown(
        obj,
        "",
        &[
            "theme",
            "keys",
            "mouse",
            "refresh_seconds",
            "bindings",
            "remote",
            "token_file",
            "source",
            "mlflow",
        ],
    );
    if obj.contains_key("keys") {
        let preset = r.choice(
            obj,
            "",
            "keys",
            &[("default", Preset::Default), ("vim", Preset::Vim)],
        );
        if let Some(p) = preset {
            settings.keymap = Keymap::preset(p);
        }
    }
    if obj.contains_key("mouse")
        && let Some(m) = r.boolean(obj, "", "mouse")
    {
        settings.mouse = m;
    }
    if obj.contains_key("refresh_seconds")
        && let Some(n) = r.integer(obj, "", "refresh_seconds", 1, 3600)
    {
        settings.refresh_seconds = u32::try_from(n).unwrap_or(5);
    }
    if obj.contains_key("theme")
        && let Some(name) = r.text(obj, "", "theme", SHORT_TEXT)
    {
        match load_theme(&name, dir) {
            Ok(t) => settings.theme = t,
            Err(e) => r.problem("theme", e.to_string()),
        }
    }
    if let Some(table) = obj.get("bindings").and_then(|v| r.as_object(v, "bindings")) {
        for (name, keys) in table {
            let path = child("bindings", name);
            let Some(action) = Action::ALL.iter().copied().find(|a| a.name() == name) else {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                r.problem(
                    path,
                    format!("unknown action; expected one of: {}", names.join(", ")),
                );
                continue;
            };
            let Some(items) = r.array_value(keys, &path, 8) else {
                continue;
            };
            let mut parsed = Vec::new();
            for (i, k) in items.iter().enumerate() {
                let p = index(&path, i);
                match k.as_str().map(Key::parse) {
                    Some(Ok(key)) => parsed.push(key),
                    Some(Err(e)) => r.problem(p, e.to_string()),
                    None => r.problem(p, "expected a key name such as \"a\" or \"ctrl-s\""),
                }
            }
            settings.keymap.rebind(action, parsed);
        }
    }
    if r.is_clean() {
        Ok(())
    } else {
        Err(r.into_problems())
    }
}

/// A built-in theme by name, or a theme file (relative paths from the config's directory).
pub fn load_theme(name: &str, dir: Option<&Path>) -> Result<Theme, SettingsError> {
    if let Some(t) = Theme::built_in(name) {
        return Ok(t);
    }
    let path = match dir {
        Some(d) if Path::new(name).is_relative() => d.join(name),
        _ => PathBuf::from(name),
    };
    if !path.exists() {
        let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
        return Err(SettingsError::UnknownTheme {
            name: quote(name),
            expected: names.join(", "),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| SettingsError::ReadTheme {
        path: path.clone(),
        source,
    })?;
    Theme::parse(&text).map_err(|problems| SettingsError::Theme { path, problems })
}

/// Why the config file or a theme cannot be used; each problem names the file and key.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file.
    #[error(transparent)]
    Config(#[from] ConfigFileError),
    /// The theme file exists but cannot be read.
    #[error("cannot read theme {}: {source}", path.display())]
    ReadTheme {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Neither a built-in theme nor a file.
    #[error("unknown theme {name}; expected one of {expected} or the path of a theme file")]
    UnknownTheme {
        /// The name given (quoted).
        name: String,
        /// The built-in names.
        expected: String,
    },
    /// The theme file does not read.
    #[error("the theme file is invalid:\n{}", crate::config::listed(.path, .problems))]
    Theme {
        /// The file.
        path: PathBuf,
        /// Every problem, by key.
        problems: Vec<crate::domain::reader::Problem>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_chooses_theme_preset_mouse_and_bindings() {
        let mut s = Settings::default();
        parse_into(
            "theme = \"light\"\nkeys = \"vim\"\nmouse = true\nrefresh_seconds = 30\n[bindings]\napprove = [\"A\", \"ctrl-a\"]\n",
            None,
            &mut s,
        )
        .unwrap();
        assert_eq!(s.theme.name, "light");
        assert!(s.mouse);
        assert_eq!(s.refresh_seconds, 30);
        assert_eq!(s.keymap.hint(Action::Approve), "A");
        assert_eq!(s.keymap.hint(Action::Back), "esc");
        assert_eq!(s.keymap.keys(Action::Back).len(), 2, "vim adds h");
    }

    #[test]
    fn every_mistake_is_named_with_its_key() {
        let mut s = Settings::default();
        let problems = parse_into(
            "theme = \"solarized\"\nkeys = \"emacs\"\nmouse = \"yes\"\ncolour = 1\nrefresh_seconds = 0\n[bindings]\naprove = [\"a\"]\nreject = [\"hyper-x\"]\n",
            None,
            &mut s,
        )
        .unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "colour",
            "keys",
            "mouse",
            "theme",
            "refresh_seconds",
            "bindings.aprove",
            "bindings.reject[0]",
        ] {
            assert!(paths.contains(&want), "{want} missing from {problems:?}");
        }
    }

    #[test]
    fn no_color_wins_over_the_configured_theme() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "theme = \"high-contrast\"\n").unwrap();
        assert_eq!(
            load(Some(&path), false).unwrap().theme.name,
            "high-contrast"
        );
        assert!(load(Some(&path), true).unwrap().theme.monochrome);
        std::fs::write(&path, "theme = 3\n").unwrap();
        let err = load(Some(&path), false).unwrap_err().to_string();
        assert!(
            err.contains("config.toml: theme: expected a string"),
            "{err}"
        );
    }
}
