//! Typed reading of untrusted documents (change requests, policy files) that collects
//! *every* problem with the exact path where it was found.
//!
//! serde stops at the first error and loses the path inside flattened structs; a person
//! fixing a CI-generated document wants the whole list at once, each with the field it
//! concerns and what was expected. Both JSON and TOML inputs are read as a
//! [`serde_json::Value`] tree, so one set of rules serves both formats.

use serde_json::{Map, Value};
use std::fmt;

/// One thing wrong with a document: where, and what was expected instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Location inside the document, e.g. `$.metrics[0].baseline` or `signoffs.model.high[2]`.
    pub path: String,
    /// What was expected and what was found, phrased for the person fixing the input.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Length rules for a text field; chosen per field so oversized input is refused early.
#[derive(Debug, Clone, Copy)]
pub struct TextRule {
    /// Maximum length in characters.
    pub max_chars: usize,
    /// Whether an empty (or all-whitespace) value is accepted.
    pub allow_empty: bool,
}

/// Short, single-purpose text such as a title or a version label.
pub const SHORT_TEXT: TextRule = TextRule {
    max_chars: 200,
    allow_empty: false,
};
/// Free prose such as a summary, an impact analysis or a rollback plan.
pub const LONG_TEXT: TextRule = TextRule {
    max_chars: 8_000,
    allow_empty: false,
};
/// Prose that a producer may legitimately leave empty (check details, rationales).
pub const OPTIONAL_PROSE: TextRule = TextRule {
    max_chars: 8_000,
    allow_empty: true,
};

/// Longest identifier accepted for CR ids, principal ids, check ids and the like.
pub const MAX_ID_CHARS: usize = 64;

/// Checks an identifier: safe in file names, URLs and terminals.
///
/// Ids end up in paths (exports), URLs (the HTTP API) and on screen, so only a small,
/// unambiguous alphabet is allowed: ASCII letters, digits, `.`, `_`, `-`, starting with a
/// letter or digit, at most [`MAX_ID_CHARS`] characters.
pub fn check_identifier(id: &str) -> Result<(), ValueError> {
    if id.is_empty() {
        return Err(ValueError::EmptyId);
    }
    if id.chars().count() > MAX_ID_CHARS {
        return Err(ValueError::IdTooLong(id.chars().count()));
    }
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !first_ok || !rest_ok {
        return Err(ValueError::IdAlphabet(quote(id)));
    }
    Ok(())
}

/// Why a value cannot go where it was meant to (an id, a command argument, a version).
/// Quoted values are already escaped for a terminal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// An empty identifier.
    #[error("expected a non-empty identifier")]
    EmptyId,
    /// An identifier longer than [`MAX_ID_CHARS`] (its length).
    #[error("expected an identifier of at most {MAX_ID_CHARS} characters, found {0}")]
    IdTooLong(usize),
    /// Characters outside the identifier alphabet (the quoted value).
    #[error(
        "expected an identifier of ASCII letters, digits, '.', '_' or '-' starting with a letter or digit, found {0}"
    )]
    IdAlphabet(String),
    /// An empty command argument.
    #[error("expected a non-empty value")]
    EmptyArgument,
    /// A command argument a command would read as an option (the quoted value).
    #[error("{0} starts with '-', so a command would read it as an option")]
    ReadsAsOption(String),
    /// A brace or control character in a command argument (the quoted value).
    #[error("{0} holds a brace or a control character, which are not allowed")]
    ForbiddenCharacter(String),
    /// A version outside the version alphabet or too long (the quoted value).
    #[error(
        "expected a version of at most {MAX_VERSION_CHARS} ASCII letters, digits, '.', '_', '-', '+', ':' or '@' starting with a letter or digit, found {0}"
    )]
    Version(String),
}

/// Longest version label accepted.
pub const MAX_VERSION_CHARS: usize = 128;

/// Checks a value that may end up as one argument of a command tollgate runs (a subject,
/// an environment): it must not read as an option (a leading `-`) or hold a placeholder
/// (`{`, `}`) or a control character.
pub fn check_argument(value: &str) -> Result<(), ValueError> {
    if value.trim().is_empty() {
        return Err(ValueError::EmptyArgument);
    }
    if value.starts_with('-') {
        return Err(ValueError::ReadsAsOption(quote(value)));
    }
    if value.chars().any(|c| {
        c.is_control() || c == '{' || c == '}' || crate::domain::text::is_invisible_format(c)
    }) {
        return Err(ValueError::ForbiddenCharacter(quote(value)));
    }
    Ok(())
}

/// Checks a version label (`7`, `3.4`, `v2.1.0-rc.1`, `git:4f2c9e1`): it reaches rollback
/// commands as an argument, so only a conservative alphabet is allowed — ASCII letters,
/// digits, `.`, `_`, `-`, `+`, `:`, `@`, starting with a letter or digit.
pub fn check_version(value: &str) -> Result<(), ValueError> {
    let first_ok = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | ':' | '@'));
    if !first_ok || !rest_ok || value.len() > MAX_VERSION_CHARS {
        return Err(ValueError::Version(quote(value)));
    }
    Ok(())
}

/// A JSON object that names one member twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{path}: the name appears twice in one object (line {line}, column {column}); each member name must be unique (RFC 7493)"
)]
pub struct DuplicateName {
    /// Where, as `$.subject.name`.
    pub path: String,
    /// Line of the second occurrence's value.
    pub line: usize,
    /// Column there.
    pub column: usize,
}

/// Refuses a JSON text that gives one object the same member name twice, naming the path
/// (`$.subject.name`). serde_json keeps the last of them while a person reading the raw
/// file may see the first; I-JSON (RFC 7493) forbids them, and so does tollgate for every
/// document it accepts or signs. Syntax errors are left to the caller's parser.
pub fn check_no_duplicate_names(text: &str) -> Result<(), DuplicateName> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;
    struct Walk<'f> {
        path: String,
        found: &'f RefCell<Option<String>>,
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq
                .next_element_seed(Walk {
                    path: index(&self.path, i),
                    found: self.found,
                })?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = child(&self.path, &key);
                if !seen.insert(key) {
                    *self.found.borrow_mut() = Some(path);
                    return Err(serde::de::Error::custom("duplicate member name"));
                }
                map.next_value_seed(Walk {
                    path,
                    found: self.found,
                })?;
            }
            Ok(())
        }
    }
    let found = RefCell::new(None);
    let mut d = serde_json::Deserializer::from_str(text);
    let result = Walk {
        path: "$".into(),
        found: &found,
    }
    .deserialize(&mut d);
    match (result, found.into_inner()) {
        (Err(e), Some(path)) => Err(DuplicateName {
            path,
            line: e.line(),
            column: e.column(),
        }),
        _ => Ok(()),
    }
}

/// Quotes untrusted text for an error message: JSON-style escaping keeps control
/// characters and escape sequences out of the terminal, and long values are shortened.
pub fn quote(s: &str) -> String {
    const MAX: usize = 40;
    let shown: String = s.chars().take(MAX).collect();
    let mut out = String::from("\"");
    for c in shown.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
            out.push(c);
        } else if c.is_control() || crate::domain::text::is_invisible_format(c) {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.push('"');
    if s.chars().count() > MAX {
        out.push('…');
    }
    out
}

/// Describes a JSON value's kind for "found ..." messages.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {}", quote(s)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Joins a parent path and an object key.
pub fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Joins a parent path and an array index.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Accumulates problems while typed values are pulled out of a document tree.
///
/// Every accessor returns `None` after recording a problem, so callers can keep reading
/// the rest of the document and report everything in one pass.
#[derive(Debug, Default)]
pub struct Reader {
    problems: Vec<Problem>,
}

impl Reader {
    /// Starts with no problems recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem at `path`.
    pub fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// True when nothing has been recorded.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Hands over what was found, in document order.
    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// Expects `v` to be an object.
    pub fn as_object<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            other => {
                self.problem(
                    path,
                    format!("expected an object, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// A required field: records "missing" when absent.
    pub fn required<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v Value> {
        match obj.get(key) {
            Some(v) => Some(v),
            None => {
                self.problem(child(path, key), "missing required field");
                None
            }
        }
    }

    /// Records every key of `obj` that is not in `known`; used where a typo would
    /// otherwise silently drop a setting (policy files).
    pub fn deny_unknown(&mut self, obj: &Map<String, Value>, path: &str, known: &[&str]) {
        for key in obj.keys() {
            if !known.contains(&key.as_str()) {
                self.problem(
                    child(path, key),
                    format!("unknown key; expected one of: {}", known.join(", ")),
                );
            }
        }
    }

    /// Checks a string value against a length rule.
    pub fn text_value(&mut self, v: &Value, path: &str, rule: TextRule) -> Option<String> {
        let Value::String(s) = v else {
            self.problem(path, format!("expected a string, found {}", describe(v)));
            return None;
        };
        let chars = s.chars().count();
        if chars > rule.max_chars {
            self.problem(
                path,
                format!(
                    "expected at most {} characters, found {chars}; move long material to an artifact link",
                    rule.max_chars
                ),
            );
            return None;
        }
        if !rule.allow_empty && s.trim().is_empty() {
            self.problem(path, "expected a non-empty string");
            return None;
        }
        Some(s.clone())
    }

    /// A required text field.
    pub fn text(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        key: &str,
        rule: TextRule,
    ) -> Option<String> {
        let v = self.required(obj, path, key)?;
        self.text_value(v, &child(path, key), rule)
    }

    /// An optional text field: absent or null gives `Some(None)`.
    pub fn opt_text(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        key: &str,
        rule: TextRule,
    ) -> Option<Option<String>> {
        match obj.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.text_value(v, &child(path, key), rule).map(Some),
        }
    }

    /// Checks an identifier value (see [`check_identifier`]).
    pub fn identifier_value(&mut self, v: &Value, path: &str) -> Option<String> {
        let Value::String(s) = v else {
            self.problem(
                path,
                format!("expected an identifier string, found {}", describe(v)),
            );
            return None;
        };
        match check_identifier(s) {
            Ok(()) => Some(s.clone()),
            Err(msg) => {
                self.problem(path, msg.to_string());
                None
            }
        }
    }

    /// A required identifier field.
    pub fn identifier(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<String> {
        let v = self.required(obj, path, key)?;
        self.identifier_value(v, &child(path, key))
    }

    /// A finite number. JSON cannot carry NaN or infinities, but TOML can, and a
    /// producer may send them as strings; both are refused here.
    pub fn number_value(&mut self, v: &Value, path: &str) -> Option<f64> {
        match v {
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.is_finite() => Some(f),
                _ => {
                    self.problem(path, format!("expected a finite number, found {n}"));
                    None
                }
            },
            Value::String(s)
                if matches!(
                    s.trim().to_ascii_lowercase().as_str(),
                    "nan" | "inf" | "-inf" | "infinity" | "-infinity" | "+inf"
                ) =>
            {
                self.problem(
                    path,
                    format!(
                        "expected a finite number, found {}: NaN and infinities are not allowed",
                        describe(v)
                    ),
                );
                None
            }
            other => {
                self.problem(
                    path,
                    format!("expected a finite number, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// A required finite number field.
    pub fn number(&mut self, obj: &Map<String, Value>, path: &str, key: &str) -> Option<f64> {
        let v = self.required(obj, path, key)?;
        self.number_value(v, &child(path, key))
    }

    /// A required whole number within `min..=max`.
    pub fn integer(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let v = self.required(obj, path, key)?;
        let p = child(path, key);
        match v.as_i64() {
            Some(i) if (min..=max).contains(&i) => Some(i),
            Some(i) => {
                self.problem(
                    p,
                    format!("expected a whole number from {min} to {max}, found {i}"),
                );
                None
            }
            None => {
                self.problem(p, format!("expected a whole number, found {}", describe(v)));
                None
            }
        }
    }

    /// A required boolean field.
    pub fn boolean(&mut self, obj: &Map<String, Value>, path: &str, key: &str) -> Option<bool> {
        let v = self.required(obj, path, key)?;
        match v {
            Value::Bool(b) => Some(*b),
            other => {
                self.problem(
                    child(path, key),
                    format!("expected true or false, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// An array value with at most `max_len` entries.
    pub fn array_value<'v>(
        &mut self,
        v: &'v Value,
        path: &str,
        max_len: usize,
    ) -> Option<&'v Vec<Value>> {
        match v {
            Value::Array(items) if items.len() <= max_len => Some(items),
            Value::Array(items) => {
                self.problem(
                    path,
                    format!("expected at most {max_len} entries, found {}", items.len()),
                );
                None
            }
            other => {
                self.problem(
                    path,
                    format!("expected an array, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// A required array field.
    pub fn array<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        path: &str,
        key: &str,
        max_len: usize,
    ) -> Option<&'v Vec<Value>> {
        let v = self.required(obj, path, key)?;
        self.array_value(v, &child(path, key), max_len)
    }

    /// One of a fixed set of string values, mapped to its typed form.
    pub fn choice_value<T: Copy>(
        &mut self,
        v: &Value,
        path: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        match v {
            Value::String(s) => match options.iter().find(|(n, _)| n == s) {
                Some((_, t)) => Some(*t),
                None => {
                    self.problem(
                        path,
                        format!("expected one of {}, found {}", names.join(", "), quote(s)),
                    );
                    None
                }
            },
            other => {
                self.problem(
                    path,
                    format!(
                        "expected one of {}, found {}",
                        names.join(", "),
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    /// A required field holding one of a fixed set of string values.
    pub fn choice<T: Copy>(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        key: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let v = self.required(obj, path, key)?;
        self.choice_value(v, &child(path, key), options)
    }

    /// A required array of identifiers, each unique.
    pub fn identifier_list(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        key: &str,
        max_len: usize,
    ) -> Option<Vec<String>> {
        let items = self.array(obj, path, key, max_len)?;
        self.identifier_items(items, &child(path, key))
    }

    /// Identifiers from an already-extracted array, each unique.
    pub fn identifier_items(&mut self, items: &[Value], path: &str) -> Option<Vec<String>> {
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let p = index(path, i);
            match self.identifier_value(item, &p) {
                Some(s) if out.contains(&s) => {
                    self.problem(p, format!("duplicate entry {}", quote(&s)));
                    ok = false;
                }
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// Parses TOML text into the JSON tree a [`Reader`] walks; a syntax error becomes a
/// problem located by line and column.
pub fn parse_toml(text: &str) -> Result<Value, Problem> {
    let table: toml::Table = toml::from_str(text).map_err(|e| Problem {
        path: syntax_location(text, &e),
        message: format!("invalid TOML: {}", e.message()),
    })?;
    Ok(toml_to_json(toml::Value::Table(table)))
}

/// "line L, column C" of a TOML syntax error.
pub fn syntax_location(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {col}")
        }
        None => "(file)".into(),
    }
}

/// Converts a TOML tree into the JSON tree the [`Reader`] walks. Non-finite floats become
/// strings so they are refused with a clear message instead of turning into `null`.
pub fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_refuse_path_separators_control_characters_and_overlong_values() {
        assert!(check_identifier("CR-1042").is_ok());
        assert!(check_identifier("a.b_c-9").is_ok());
        for bad in [
            "",
            "../etc",
            "a/b",
            "a\\b",
            "x\u{1b}[2J",
            "-lead",
            ".hidden",
            "tab\there",
        ] {
            assert!(check_identifier(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(check_identifier(&"x".repeat(64)).is_ok());
        assert!(check_identifier(&"x".repeat(65)).is_err());
    }

    #[test]
    fn quoting_escapes_terminal_control_sequences() {
        let q = quote("ok\u{1b}[31mred\u{202e}");
        assert!(!q.contains('\u{1b}'));
        assert!(!q.contains('\u{202e}'));
        assert!(q.contains("\\u{001b}"));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let doc = json!({"a": "x", "n": "NaN", "list": [1, "two"]});
        let obj = doc.as_object().unwrap();
        let mut r = Reader::new();
        r.number(obj, "$", "n");
        r.text(obj, "$", "missing", SHORT_TEXT);
        r.identifier_list(obj, "$", "list", 10);
        let problems = r.into_problems();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["$.n", "$.missing", "$.list[0]"]);
        assert!(problems[0].message.contains("NaN"));
    }
}
