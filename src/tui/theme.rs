//! Themes: TOML files in `themes/` (built in), or a file of the user's own.
//!
//! A theme error is reported with its file and key and stops the app: silently falling
//! back to another palette would hide that risk colours are not what the user set up.
//! `NO_COLOR` switches to a monochrome theme that uses bold, dim and reverse video only.

use crate::domain::reader::{Problem, Reader, parse_toml};
use crate::domain::risk::RiskLevel;
use ratatui::style::{Color, Modifier, Style};

/// Built-in themes: (name, TOML text).
pub const BUILT_IN: [(&str, &str); 4] = [
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
    (
        "colour-blind",
        include_str!("../../themes/colour-blind.toml"),
    ),
];

const COLOR_KEYS: [&str; 18] = [
    "fg",
    "bg",
    "muted",
    "accent",
    "border",
    "title",
    "selected_fg",
    "selected_bg",
    "risk_low",
    "risk_medium",
    "risk_high",
    "pass",
    "fail",
    "pending",
    "better",
    "worse",
    "warning",
    "error",
];

/// Colours and styles for every screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    /// Theme name.
    pub name: String,
    /// Monochrome (NO_COLOR): styles use modifiers only.
    pub monochrome: bool,
    colors: [Color; 18],
}

#[derive(Clone, Copy)]
enum C {
    Fg,
    Bg,
    Muted,
    Accent,
    Border,
    Title,
    SelectedFg,
    SelectedBg,
    RiskLow,
    RiskMedium,
    RiskHigh,
    Pass,
    Fail,
    Pending,
    Better,
    Worse,
    Warning,
    Error,
}

fn parse_color(s: &str) -> Option<Color> {
    let s = s.trim().to_ascii_lowercase();
    if let Some(hex) = s.strip_prefix('#') {
        if hex.len() != 6 {
            return None;
        }
        let v = u32::from_str_radix(hex, 16).ok()?;
        return Some(Color::Rgb((v >> 16) as u8, (v >> 8) as u8, v as u8));
    }
    Some(match s.as_str() {
        "reset" => Color::Reset,
        "black" => Color::Black,
        "red" => Color::Red,
        "green" => Color::Green,
        "yellow" => Color::Yellow,
        "blue" => Color::Blue,
        "magenta" => Color::Magenta,
        "cyan" => Color::Cyan,
        "gray" | "grey" => Color::Gray,
        "darkgray" | "darkgrey" => Color::DarkGray,
        "white" => Color::White,
        _ => return None,
    })
}

impl Theme {
    /// Parses a theme file.
    pub fn parse(text: &str) -> Result<Theme, Vec<Problem>> {
        let tree = parse_toml(text).map_err(|p| vec![p])?;
        let mut r = Reader::new();
        let Some(obj) = r.as_object(&tree, "") else {
            return Err(r.into_problems());
        };
        r.deny_unknown(obj, "", &["name", "colors"]);
        let name = r.text(obj, "", "name", crate::domain::reader::SHORT_TEXT);
        let mut colors = [Color::Reset; 18];
        if let Some(table) = r
            .required(obj, "", "colors")
            .and_then(|v| r.as_object(v, "colors"))
        {
            let known = &COLOR_KEYS;
            r.deny_unknown(table, "colors", known);
            for (i, key) in known.iter().enumerate() {
                let Some(text) = r.text(table, "colors", key, crate::domain::reader::SHORT_TEXT)
                else {
                    continue;
                };
                match parse_color(&text) {
                    Some(c) => colors[i] = c,
                    None => r.problem(
                        format!("colors.{key}"),
                        format!(
                            "expected a colour such as \"#88c0d0\", \"reset\" or a basic name (red, yellow, gray, ...), found {}",
                            crate::domain::reader::quote(&text)
                        ),
                    ),
                }
            }
        }
        match name {
            Some(name) if r.is_clean() => Ok(Theme {
                name,
                monochrome: false,
                colors,
            }),
            _ => Err(r.into_problems()),
        }
    }

    /// A built-in theme by name.
    pub fn built_in(name: &str) -> Option<Theme> {
        BUILT_IN
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, text)| Theme::parse(text).ok())
    }

    /// The default dark theme.
    pub fn dark() -> Theme {
        // The built-in files are compiled in and covered by tests.
        Theme::built_in("dark").unwrap_or_else(Theme::monochrome)
    }

    /// The NO_COLOR theme.
    pub fn monochrome() -> Theme {
        Theme {
            name: "monochrome".into(),
            monochrome: true,
            colors: [Color::Reset; 18],
        }
    }

    fn c(&self, which: C) -> Color {
        self.colors[which as usize]
    }

    fn fg(&self, which: C) -> Style {
        if self.monochrome {
            Style::default()
        } else {
            Style::default().fg(self.c(which))
        }
    }

    /// Normal text.
    pub fn text(&self) -> Style {
        let s = self.fg(C::Fg);
        if self.monochrome {
            s
        } else {
            s.bg(self.c(C::Bg))
        }
    }

    /// Secondary text (labels, hints).
    pub fn muted(&self) -> Style {
        if self.monochrome {
            Style::default().add_modifier(Modifier::DIM)
        } else {
            self.fg(C::Muted)
        }
    }

    /// Highlighted text (keys in hints, active tab).
    pub fn accent(&self) -> Style {
        self.fg(C::Accent).add_modifier(Modifier::BOLD)
    }

    /// Borders.
    pub fn border(&self) -> Style {
        self.fg(C::Border)
    }

    /// Titles and headings.
    pub fn title(&self) -> Style {
        self.fg(C::Title).add_modifier(Modifier::BOLD)
    }

    /// The selected row.
    pub fn selected(&self) -> Style {
        if self.monochrome {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
                .fg(self.c(C::SelectedFg))
                .bg(self.c(C::SelectedBg))
                .add_modifier(Modifier::BOLD)
        }
    }

    /// A risk rating.
    pub fn risk(&self, level: RiskLevel) -> Style {
        match level {
            RiskLevel::Low => self.fg(C::RiskLow),
            RiskLevel::Medium => self.fg(C::RiskMedium),
            RiskLevel::High => self.fg(C::RiskHigh).add_modifier(Modifier::BOLD),
        }
    }

    /// A passing check.
    pub fn pass(&self) -> Style {
        self.fg(C::Pass)
    }

    /// A failing check.
    pub fn fail(&self) -> Style {
        self.fg(C::Fail).add_modifier(Modifier::BOLD)
    }

    /// A pending or missing check.
    pub fn pending(&self) -> Style {
        self.fg(C::Pending)
    }

    /// A metric that moved the right way.
    pub fn better(&self) -> Style {
        self.fg(C::Better)
    }

    /// A metric that moved the wrong way.
    pub fn worse(&self) -> Style {
        self.fg(C::Worse).add_modifier(Modifier::BOLD)
    }

    /// Warnings (read-only mode, stale sign-offs).
    pub fn warning(&self) -> Style {
        self.fg(C::Warning).add_modifier(Modifier::BOLD)
    }

    /// Errors and refusals.
    pub fn error(&self) -> Style {
        self.fg(C::Error).add_modifier(Modifier::BOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_theme_parses() {
        for (name, text) in BUILT_IN {
            let t = Theme::parse(text).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(t.name, name);
        }
    }

    #[test]
    fn theme_errors_name_the_key() {
        let text = BUILT_IN[0]
            .1
            .replace("risk_high = \"#e06c75\"", "risk_high = \"crimson\"")
            .replace("fail = ", "fial = ");
        let problems = Theme::parse(&text).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"colors.fial"), "{problems:?}");
        assert!(paths.contains(&"colors.fail"), "{problems:?}");
        assert!(paths.contains(&"colors.risk_high"), "{problems:?}");
    }

    #[test]
    fn monochrome_uses_modifiers_not_colours() {
        let t = Theme::monochrome();
        assert_eq!(t.risk(RiskLevel::High).fg, None);
        assert!(t.selected().add_modifier.contains(Modifier::REVERSED));
    }
}
