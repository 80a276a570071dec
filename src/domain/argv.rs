//! Commands a policy names (rollbacks, deployments, KPI checks) as argument vectors with
//! `{placeholders}`: read from the policy with every problem located, and filled in
//! without a shell, so a value taken from a change request can never inject syntax.

use crate::domain::reader::{Reader, SHORT_TEXT, child, index};
use serde_json::{Map, Value};

/// Fills `{name}` placeholders in one left-to-right pass: text a value brings in is never
/// expanded again, so a CR field holding `{incident}` stays literal. Unknown names stay
/// as written.
pub fn expand_once(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let filled = after.find('}').and_then(|close| {
            let name = &after[..close];
            values
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v, close))
        });
        match filled {
            Some((value, close)) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A command's argument vector (`command = [...]` in `obj`): at least the program, each
/// argument short text, placeholders only from `placeholders`. Shared by every table
/// that names a command (rollbacks, deployments, KPI checks).
pub fn read_argv(
    r: &mut Reader,
    obj: &Map<String, Value>,
    path: &str,
    placeholders: &[&str],
) -> Option<Vec<String>> {
    r.array(obj, path, "command", 64).and_then(|args| {
        let cpath = child(path, "command");
        if args.is_empty() {
            r.problem(&cpath, "expected at least the program to run, e.g. [\"helm\", \"rollback\", \"{subject}\"]");
            return None;
        }
        let mut out = Vec::new();
        for (j, a) in args.iter().enumerate() {
            let apath = index(&cpath, j);
            let arg = r.text_value(a, &apath, SHORT_TEXT)?;
            let mut rest = arg.as_str();
            while let Some(start) = rest.find('{') {
                let Some(end) = rest[start..].find('}') else { break };
                let name = &rest[start + 1..start + end];
                if !placeholders.contains(&name) {
                    r.problem(
                        &apath,
                        format!(
                            "unknown placeholder {{{name}}}; expected one of {}",
                            placeholders.iter().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(", ")
                        ),
                    );
                    return None;
                }
                rest = &rest[start + end + 1..];
            }
            out.push(arg);
        }
        Some(out)
    })
}
