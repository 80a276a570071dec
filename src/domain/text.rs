//! Making untrusted text safe to show.
//!
//! Change requests come from CI pipelines and people outside the reviewer's control. A
//! title carrying `ESC [ 2 J` could wipe the screen, an OSC 8 sequence could disguise a
//! link, and a right-to-left override could make `fraud-v13` read as something else.
//! Everything a CR says passes through [`sanitize`] before any face (CLI or TUI) prints it.

/// True for invisible formatting characters that change how neighbouring text renders:
/// bidi embeddings/overrides/isolates, zero-width characters and the BOM.
pub fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}'   // zero-width space/joiners, LRM, RLM
        | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}' // bidi isolates
        | '\u{FEFF}'              // BOM / zero-width no-break space
    )
}

/// Replaces control characters, escape sequences and bidi/zero-width formatting with
/// visible, inert text so a string can be written to a terminal as it stands.
///
/// - an ESC-introduced sequence (CSI, OSC, ...) is dropped whole and replaced by `�`;
/// - newlines and tabs become spaces (one line in, one line out), unless `keep_newlines`;
/// - other C0/C1 controls and DEL become `�`;
/// - invisible formatting characters are removed.
pub fn sanitize_with(s: &str, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                skip_escape_sequence(&mut chars);
                out.push('\u{FFFD}');
            }
            // The 8-bit forms of CSI and OSC/DCS/SOS/PM/APC: some terminals act on them.
            '\u{9b}' => {
                skip_csi(&mut chars);
                out.push('\u{FFFD}');
            }
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => {
                skip_string(&mut chars);
                out.push('\u{FFFD}');
            }
            '\n' if keep_newlines => out.push('\n'),
            '\n' | '\r' | '\t' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    continue;
                }
                out.push(' ');
            }
            c if c.is_control() => out.push('\u{FFFD}'),
            c if is_invisible_format(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// [`sanitize_with`] for single-line display (tables, titles, status lines).
pub fn sanitize(s: &str) -> String {
    sanitize_with(s, false)
}

/// Consumes the rest of an escape sequence after ESC so none of its payload is shown.
fn skip_escape_sequence(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.peek().copied() {
        // CSI: parameters and intermediates up to a final byte in @..~
        Some('[') => {
            chars.next();
            skip_csi(chars);
        }
        // OSC, DCS, SOS, PM, APC: up to BEL or ST (ESC \)
        Some(']' | 'P' | 'X' | '^' | '_') => {
            chars.next();
            skip_string(chars);
        }
        // Two-character sequences such as ESC c (reset) or ESC 7.
        Some(_) => {
            chars.next();
        }
        None => {}
    }
}

/// The rest of a control sequence: parameters and intermediates up to a final byte.
fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if ('@'..='~').contains(&c) {
            break;
        }
    }
}

/// The rest of a control string (OSC, DCS, ...): up to BEL, ST (ESC \ or U+9C) or ESC.
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            '\u{7}' | '\u{9c}' => break,
            '\u{1b}' => {
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                break;
            }
            _ => {}
        }
    }
}

/// `n` and the noun in the right number: `1 signature`, `2 signatures`, `1 entry`.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// How the verified log is summed up everywhere: `10 entries, 1 signature`.
pub fn entries_and_signatures(entries: impl Into<u64>, signatures: impl Into<u64>) -> String {
    format!(
        "{}, {}",
        count(entries, "entry", "entries"),
        count(signatures, "signature", "signatures")
    )
}

/// Shortens `s` to at most `max` characters, marking the cut with `…`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// A compact age for tables: `45m`, `7h`, `3d`, `5w` (never negative).
pub fn compact_age(
    since: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let minutes = (now - since).num_minutes().max(0);
    match minutes {
        m if m < 60 => format!("{m}m"),
        m if m < 48 * 60 => format!("{}h", m / 60),
        m if m < 14 * 24 * 60 => format!("{}d", m / (24 * 60)),
        m => format!("{}w", m / (7 * 24 * 60)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_with_their_number() {
        assert_eq!(entries_and_signatures(1u64, 1u64), "1 entry, 1 signature");
        assert_eq!(
            entries_and_signatures(10u64, 0u64),
            "10 entries, 0 signatures"
        );
        assert_eq!(count(2u64, "decision", "decisions"), "2 decisions");
    }
    use chrono::{TimeZone, Utc};

    #[test]
    fn ages_are_compact() {
        let t = Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap();
        assert_eq!(compact_age(t, t + chrono::Duration::minutes(5)), "5m");
        assert_eq!(compact_age(t, t + chrono::Duration::hours(30)), "30h");
        assert_eq!(compact_age(t, t + chrono::Duration::days(5)), "5d");
        assert_eq!(compact_age(t, t + chrono::Duration::days(30)), "4w");
        assert_eq!(compact_age(t, t - chrono::Duration::days(1)), "0m");
    }

    #[test]
    fn escape_sequences_never_survive() {
        let hostile = "fraud\u{1b}[2J\u{1b}]8;;http://evil\u{7}link\u{1b}]8;;\u{1b}\\ v13\u{1b}c";
        let clean = sanitize(hostile);
        assert!(!clean.contains('\u{1b}'), "{clean:?}");
        assert!(!clean.contains('\u{7}'));
        assert!(!clean.contains("http://evil"));
        assert!(clean.starts_with("fraud"));
        assert!(clean.contains("link"));
        assert!(clean.contains(" v13"));
    }

    #[test]
    fn controls_bidi_and_newlines_are_neutralised() {
        assert_eq!(sanitize("a\r\nb\tc"), "a b c");
        assert_eq!(
            sanitize("x\u{0}y\u{7f}z\u{9b}"),
            "x\u{FFFD}y\u{FFFD}z\u{FFFD}"
        );
        assert_eq!(sanitize("abc\u{202e}fed\u{200b}"), "abcfed");
        assert_eq!(sanitize_with("one\ntwo", true), "one\ntwo");
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
