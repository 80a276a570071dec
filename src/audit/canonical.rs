//! Canonical JSON and content digests.
//!
//! A sign-off is bound to the exact CR content that was reviewed, so the same content
//! must always produce the same bytes, whatever order its producer wrote keys in and
//! whatever map type serde_json was built with. Rules:
//!
//! - object keys sorted by their UTF-8 bytes, no whitespace anywhere;
//! - strings escaped as serde_json escapes them (`"`, `\`, control characters);
//! - integers as integers; other numbers in their shortest round-trip form (ryu), so a
//!   value parses back to the identical `f64`.
//!
//! The digest is `sha256:` followed by the lowercase hex SHA-256 of those bytes.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The canonical encoding of `value`.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_value(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(v, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        // Numbers, booleans and null have one serde_json rendering each.
        other => out.push_str(&other.to_string()),
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push_str(&Value::String(s.to_owned()).to_string());
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The digest of `value`'s canonical encoding.
pub fn digest(value: &Value) -> String {
    sha256_digest(to_canonical_string(value).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_whitespace_do_not_change_the_encoding() {
        let a: Value =
            serde_json::from_str(r#"{ "b": 1, "a": {"y": [1, 2.5], "x": "q\"" } }"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":"q\"","y":[1,2.5]},"b":1}"#).unwrap();
        assert_eq!(
            to_canonical_string(&a),
            r#"{"a":{"x":"q\"","y":[1,2.5]},"b":1}"#
        );
        assert_eq!(digest(&a), digest(&b));
    }

    #[test]
    fn any_content_change_changes_the_digest() {
        let a = json!({"metrics": [{"baseline": 0.611}]});
        let b = json!({"metrics": [{"baseline": 0.612}]});
        assert_ne!(digest(&a), digest(&b));
        assert!(digest(&a).starts_with("sha256:"));
        assert_eq!(digest(&a).len(), "sha256:".len() + 64);
    }

    #[test]
    fn floats_round_trip_exactly() {
        let v = json!({"x": 0.1, "y": 1e-7, "z": 41.5});
        let back: Value = serde_json::from_str(&to_canonical_string(&v)).unwrap();
        assert_eq!(back, v);
    }
}
