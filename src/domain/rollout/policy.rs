//! The policy's tables for what happens after approval: which gates skip the canary,
//! the deployment command per stage, the KPI guard, the rollback-drill requirement and
//! the freeze windows.
//!
//! Every table is optional: a policy without them behaves as before (rollouts are
//! recorded, nothing is run, no drill is required, nothing is frozen).

use crate::domain::argv::{expand_once, read_argv};
use crate::domain::change_request::{Gate, RiskLevel};
use crate::domain::reader::{Reader, SHORT_TEXT, child, index, quote};
use chrono::{DateTime, Datelike, NaiveTime, Utc, Weekday};
use serde::Serialize;
use serde_json::{Map, Value};

/// Placeholders a deployment command may use.
pub const DEPLOY_PLACEHOLDERS: [&str; 7] = [
    "subject",
    "environment",
    "from_version",
    "to_version",
    "stage",
    "traffic",
    "cr",
];

/// Placeholders a KPI check command may use.
pub const KPI_PLACEHOLDERS: [&str; 4] = ["subject", "environment", "to_version", "cr"];

/// The policy's rules after approval (`[rollout]`, `[[kpi]]`, `[drills]`, `[[freeze]]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AfterApproval {
    /// Gates whose approved CRs go straight to `full` (`[rollout] skip_canary`).
    pub skip_canary: Vec<Gate>,
    /// Commands run on each rollout stage (`[[rollout.deploy]]`).
    pub deploy: Vec<ScopedCommand>,
    /// KPI guards (`[[kpi]]`).
    pub kpi: Vec<KpiGuard>,
    /// The rollback-drill requirement (`[drills]`).
    pub drills: Option<DrillRule>,
    /// Freeze windows (`[[freeze]]`).
    pub freezes: Vec<Freeze>,
}

/// A command for a subject and environment (either may be left out to match any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopedCommand {
    /// Subject it applies to; `None` for any.
    pub subject: Option<String>,
    /// Environment it applies to; `None` for any.
    pub environment: Option<String>,
    /// Program and arguments (placeholders filled in when run).
    pub command: Vec<String>,
    /// Killed after this many seconds.
    pub timeout_seconds: i64,
}

impl ScopedCommand {
    /// The argument vector with placeholders filled in (one pass: values are never
    /// expanded again).
    pub fn render(&self, values: &[(&str, &str)]) -> Vec<String> {
        self.command
            .iter()
            .map(|a| expand_once(a, values))
            .collect()
    }

    /// How well it matches (subject counts more than environment); `None` when it does not.
    fn score(&self, subject: &str, environment: &str) -> Option<u8> {
        let s = match &self.subject {
            Some(x) if x == subject => 2,
            Some(_) => return None,
            None => 0,
        };
        let e = match &self.environment {
            Some(x) if x == environment => 1,
            Some(_) => return None,
            None => 0,
        };
        Some(s + e)
    }
}

/// The most specific of `commands` for `subject` in `environment`.
pub fn most_specific<'a, T>(
    items: &'a [T],
    command: impl Fn(&T) -> &ScopedCommand,
    subject: &str,
    environment: &str,
) -> Option<&'a T> {
    items
        .iter()
        .filter_map(|c| command(c).score(subject, environment).map(|s| (s, c)))
        .max_by_key(|(s, _)| *s)
        .map(|(_, c)| c)
}

/// One KPI bound: the reading of `metric` must stay at or above `min` and at or below
/// `max` (either may be left out).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    /// Metric name as the check command prints it (`name=value`).
    pub metric: String,
    /// Lowest acceptable value.
    pub min: Option<f64>,
    /// Highest acceptable value.
    pub max: Option<f64>,
}

/// A KPI guard: a check command for CRs in canary, how often to run it, and the bounds
/// whose breach rolls the canary back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiGuard {
    /// The check command for a subject / environment. It prints one `metric=value` line
    /// per KPI on stdout.
    pub check: ScopedCommand,
    /// Minutes between readings of one CR.
    pub interval_minutes: i64,
    /// The bounds.
    pub thresholds: Vec<Threshold>,
}

/// The drill requirement: an approval at one of `risks`, on one of `gates`, needs a
/// successful rollback drill of the subject, outside production, within `within_days`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrillRule {
    /// Days a drill stays valid.
    pub within_days: i64,
    /// Effective risks it applies to.
    pub risks: Vec<RiskLevel>,
    /// Gates it applies to (every reviewed gate when the policy names none).
    pub gates: Vec<Gate>,
}

/// When a freeze applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FreezeWhen {
    /// From `start` (inclusive) to `end` (exclusive).
    Between {
        /// Start.
        start: DateTime<Utc>,
        /// End.
        end: DateTime<Utc>,
    },
    /// Every week on `days`, from `from` to `to` (UTC, `to` exclusive; `24:00` is the
    /// end of the day).
    Weekly {
        /// Days of the week.
        days: Vec<Weekday>,
        /// Start time of day (UTC).
        from: NaiveTime,
        /// End time of day (UTC); `None` for midnight at the end of the day.
        to: Option<NaiveTime>,
    },
}

/// A freeze window: no rollout to its environments while it holds, except through the
/// emergency gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Freeze {
    /// Short name shown in refusals.
    pub name: String,
    /// Why.
    pub reason: String,
    /// Environments frozen.
    pub environments: Vec<String>,
    /// When.
    pub when: FreezeWhen,
}

impl Freeze {
    /// Whether the window holds at `t` for `environment`.
    pub fn holds(&self, environment: &str, t: DateTime<Utc>) -> bool {
        if !self.environments.iter().any(|e| e == environment) {
            return false;
        }
        match &self.when {
            FreezeWhen::Between { start, end } => *start <= t && t < *end,
            FreezeWhen::Weekly { days, from, to } => {
                let time = t.time();
                days.contains(&t.weekday()) && *from <= time && to.is_none_or(|to| time < to)
            }
        }
    }

    /// The window in words, for refusals: `holiday-freeze (2026-12-20T00:00:00Z –
    /// 2027-01-04T00:00:00Z, prod): year-end`.
    pub fn describe(&self) -> String {
        let when = match &self.when {
            FreezeWhen::Between { start, end } => format!(
                "{} – {}",
                start.format("%Y-%m-%dT%H:%M:%SZ"),
                end.format("%Y-%m-%dT%H:%M:%SZ")
            ),
            FreezeWhen::Weekly { days, from, to } => format!(
                "every {} {}–{} UTC",
                days.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                from.format("%H:%M"),
                to.map_or("24:00".to_string(), |t| t.format("%H:%M").to_string())
            ),
        };
        format!(
            "{} ({when}, {}): {}",
            self.name,
            self.environments.join(", "),
            self.reason
        )
    }
}

impl AfterApproval {
    /// The deployment command for `subject` in `environment`.
    pub fn deploy_command(&self, subject: &str, environment: &str) -> Option<&ScopedCommand> {
        most_specific(&self.deploy, |c| c, subject, environment)
    }

    /// The KPI guard for `subject` in `environment`.
    pub fn kpi_guard(&self, subject: &str, environment: &str) -> Option<&KpiGuard> {
        most_specific(&self.kpi, |g| &g.check, subject, environment)
    }

    /// The first freeze window holding for `environment` at `t`.
    pub fn frozen(&self, environment: &str, t: DateTime<Utc>) -> Option<&Freeze> {
        self.freezes.iter().find(|f| f.holds(environment, t))
    }
}

const ENVIRONMENTS: [(&str, &str); 3] = [("dev", "dev"), ("staging", "staging"), ("prod", "prod")];

/// Reads the after-approval tables of a policy's top-level table.
pub(crate) fn read(r: &mut Reader, obj: &Map<String, Value>) -> Option<AfterApproval> {
    let mut ok = true;
    let mut out = AfterApproval::default();
    if let Some(v) = obj.get("rollout") {
        match read_rollout(r, v) {
            Some((skip, deploy)) => {
                out.skip_canary = skip;
                out.deploy = deploy;
            }
            None => ok = false,
        }
    }
    if let Some(v) = obj.get("kpi") {
        match read_kpi(r, v) {
            Some(k) => out.kpi = k,
            None => ok = false,
        }
    }
    if let Some(v) = obj.get("drills") {
        match read_drills(r, v) {
            Some(d) => out.drills = Some(d),
            None => ok = false,
        }
    }
    if let Some(v) = obj.get("freeze") {
        match read_freezes(r, v) {
            Some(f) => out.freezes = f,
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_scoped(
    r: &mut Reader,
    obj: &Map<String, Value>,
    path: &str,
    placeholders: &[&str],
) -> Option<ScopedCommand> {
    let subject = r.opt_text(obj, path, "subject", SHORT_TEXT);
    let environment = match obj.get("environment") {
        None => Some(None),
        Some(e) => r
            .choice_value(e, &child(path, "environment"), &ENVIRONMENTS)
            .map(|e| Some(e.to_string())),
    };
    let command = read_argv(r, obj, path, placeholders);
    let timeout_seconds = match obj.get("timeout_seconds") {
        None => Some(300),
        Some(_) => r.integer(obj, path, "timeout_seconds", 1, 3600),
    };
    Some(ScopedCommand {
        subject: subject?,
        environment: environment?,
        command: command?,
        timeout_seconds: timeout_seconds?,
    })
}

fn read_rollout(r: &mut Reader, v: &Value) -> Option<(Vec<Gate>, Vec<ScopedCommand>)> {
    let path = "rollout";
    let obj = r.as_object(v, path)?;
    r.deny_unknown(obj, path, &["skip_canary", "deploy"]);
    let skip = match obj.get("skip_canary") {
        None => Some(Vec::new()),
        Some(_) => r
            .identifier_list(obj, path, "skip_canary", 10)
            .and_then(|names| {
                let mut gates = Vec::new();
                for (i, n) in names.iter().enumerate() {
                    match Gate::parse(n) {
                        Some(g) if g != Gate::Policy => gates.push(g),
                        _ => {
                            r.problem(
                                index("rollout.skip_canary", i),
                                format!(
                                    "unknown gate {}; expected data, model, deployment or emergency",
                                    quote(n)
                                ),
                            );
                            return None;
                        }
                    }
                }
                Some(gates)
            }),
    };
    let deploy = match obj.get("deploy") {
        None => Some(Vec::new()),
        Some(v) => {
            let items = r.array_value(v, "rollout.deploy", 100)?;
            let mut out = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                let p = index("rollout.deploy", i);
                let Some(o) = r.as_object(item, &p) else {
                    ok = false;
                    continue;
                };
                r.deny_unknown(
                    o,
                    &p,
                    &["subject", "environment", "command", "timeout_seconds"],
                );
                match read_scoped(r, o, &p, &DEPLOY_PLACEHOLDERS) {
                    Some(c) => out.push(c),
                    None => ok = false,
                }
            }
            ok.then_some(out)
        }
    };
    Some((skip?, deploy?))
}

fn read_kpi(r: &mut Reader, v: &Value) -> Option<Vec<KpiGuard>> {
    let items = r.array_value(v, "kpi", 100)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = index("kpi", i);
        let Some(o) = r.as_object(item, &p) else {
            ok = false;
            continue;
        };
        r.deny_unknown(
            o,
            &p,
            &[
                "subject",
                "environment",
                "command",
                "timeout_seconds",
                "interval_minutes",
                "thresholds",
            ],
        );
        let check = read_scoped(r, o, &p, &KPI_PLACEHOLDERS);
        let interval = match o.get("interval_minutes") {
            None => Some(10),
            Some(_) => r.integer(o, &p, "interval_minutes", 1, 24 * 60),
        };
        let thresholds = read_thresholds(r, o, &p);
        match (check, interval, thresholds) {
            (Some(check), Some(interval_minutes), Some(thresholds)) => out.push(KpiGuard {
                check,
                interval_minutes,
                thresholds,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_thresholds(r: &mut Reader, o: &Map<String, Value>, path: &str) -> Option<Vec<Threshold>> {
    let items = r.array(o, path, "thresholds", 50)?;
    let tpath = child(path, "thresholds");
    if items.is_empty() {
        r.problem(
            &tpath,
            "expected at least one bound, e.g. { metric = \"conversion\", min = 0.95 }",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = index(&tpath, i);
        let Some(t) = r.as_object(item, &p) else {
            ok = false;
            continue;
        };
        r.deny_unknown(t, &p, &["metric", "min", "max"]);
        let metric = r.identifier(t, &p, "metric");
        let mut bound = |key: &str| match t.get(key) {
            None => Some(None),
            Some(_) => r.number(t, &p, key).map(Some),
        };
        let (min, max) = (bound("min"), bound("max"));
        let (Some(metric), Some(min), Some(max)) = (metric, min, max) else {
            ok = false;
            continue;
        };
        if min.is_none() && max.is_none() {
            r.problem(&p, "expected min, max or both");
            ok = false;
            continue;
        }
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            r.problem(&p, format!("min {lo} is above max {hi}"));
            ok = false;
            continue;
        }
        out.push(Threshold { metric, min, max });
    }
    ok.then_some(out)
}

fn read_drills(r: &mut Reader, v: &Value) -> Option<DrillRule> {
    let path = "drills";
    let obj = r.as_object(v, path)?;
    r.deny_unknown(obj, path, &["within_days", "risks", "gates"]);
    let within_days = r.integer(obj, path, "within_days", 1, 3660);
    let risks = r.array(obj, path, "risks", 3).and_then(|items| {
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let level = r.choice_value(
                item,
                &index("drills.risks", i),
                &[
                    ("low", RiskLevel::Low),
                    ("medium", RiskLevel::Medium),
                    ("high", RiskLevel::High),
                ],
            )?;
            out.push(level);
        }
        Some(out)
    });
    let gates = match obj.get("gates") {
        None => Some(Gate::REVIEWED.to_vec()),
        Some(_) => r.identifier_list(obj, path, "gates", 3).and_then(|names| {
            let mut gates = Vec::new();
            for (i, n) in names.iter().enumerate() {
                match Gate::parse(n).filter(|g| Gate::REVIEWED.contains(g)) {
                    Some(g) => gates.push(g),
                    None => {
                        r.problem(
                            index("drills.gates", i),
                            format!(
                                "unknown gate {}; expected data, model or deployment",
                                quote(n)
                            ),
                        );
                        return None;
                    }
                }
            }
            Some(gates)
        }),
    };
    Some(DrillRule {
        within_days: within_days?,
        risks: risks?,
        gates: gates?,
    })
}

fn read_freezes(r: &mut Reader, v: &Value) -> Option<Vec<Freeze>> {
    let items = r.array_value(v, "freeze", 100)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = index("freeze", i);
        let Some(o) = r.as_object(item, &p) else {
            ok = false;
            continue;
        };
        r.deny_unknown(
            o,
            &p,
            &["name", "reason", "environments", "start", "end", "weekly"],
        );
        let name = r.identifier(o, &p, "name");
        let reason = r.text(o, &p, "reason", SHORT_TEXT);
        let environments = r.array(o, &p, "environments", 3).and_then(|items| {
            let mut envs = Vec::new();
            for (j, e) in items.iter().enumerate() {
                envs.push(
                    r.choice_value(e, &index(&child(&p, "environments"), j), &ENVIRONMENTS)?
                        .to_string(),
                );
            }
            Some(envs)
        });
        let when = read_when(r, o, &p);
        match (name, reason, environments, when) {
            (Some(name), Some(reason), Some(environments), Some(when)) => out.push(Freeze {
                name,
                reason,
                environments,
                when,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_time(
    r: &mut Reader,
    o: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Option<DateTime<Utc>> {
    let text = r.text(o, path, key, SHORT_TEXT)?;
    match DateTime::parse_from_rfc3339(&text) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(e) => {
            r.problem(
                child(path, key),
                format!("expected an RFC 3339 time such as \"2026-12-20T00:00:00Z\" (a quoted string), found {} ({e})", quote(&text)),
            );
            None
        }
    }
}

fn read_when(r: &mut Reader, o: &Map<String, Value>, path: &str) -> Option<FreezeWhen> {
    match (
        o.get("weekly"),
        o.contains_key("start") || o.contains_key("end"),
    ) {
        (Some(_), true) => {
            r.problem(path, "expected either start and end, or weekly, not both");
            None
        }
        (None, true) => {
            let start = read_time(r, o, path, "start");
            let end = read_time(r, o, path, "end");
            let (start, end) = (start?, end?);
            if end <= start {
                r.problem(child(path, "end"), "expected a time after start");
                return None;
            }
            Some(FreezeWhen::Between { start, end })
        }
        (Some(w), false) => {
            let wpath = child(path, "weekly");
            let w = r.as_object(w, &wpath)?;
            r.deny_unknown(w, &wpath, &["days", "from", "to"]);
            let days = r.array(w, &wpath, "days", 7).and_then(|items| {
                let mut days = Vec::new();
                for (j, d) in items.iter().enumerate() {
                    days.push(r.choice_value(
                        d,
                        &index(&child(&wpath, "days"), j),
                        &[
                            ("mon", Weekday::Mon),
                            ("tue", Weekday::Tue),
                            ("wed", Weekday::Wed),
                            ("thu", Weekday::Thu),
                            ("fri", Weekday::Fri),
                            ("sat", Weekday::Sat),
                            ("sun", Weekday::Sun),
                        ],
                    )?);
                }
                Some(days)
            });
            let mut clock = |key: &str, default: &str| -> Option<Option<NaiveTime>> {
                let text = match w.get(key) {
                    None => default.to_string(),
                    Some(_) => r.text(w, &wpath, key, SHORT_TEXT)?,
                };
                if text == "24:00" {
                    return Some(None);
                }
                match NaiveTime::parse_from_str(&text, "%H:%M") {
                    Ok(t) => Some(Some(t)),
                    Err(_) => {
                        r.problem(
                            child(&wpath, key),
                            format!(
                                "expected a UTC time of day such as \"18:00\", found {}",
                                quote(&text)
                            ),
                        );
                        None
                    }
                }
            };
            let from = clock("from", "00:00");
            let to = clock("to", "24:00");
            let from = from?.unwrap_or(NaiveTime::MIN);
            Some(FreezeWhen::Weekly {
                days: days?,
                from,
                to: to?,
            })
        }
        (None, false) => {
            r.problem(
                path,
                "expected start and end (RFC 3339), or weekly = { days = [\"fri\"], from = \"16:00\", to = \"24:00\" }",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::policy::parse_policy;
    use chrono::{DateTime, Utc};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// The demo policy without its own after-approval tables, plus `tables`.
    fn errors_with(tables: &str) -> Vec<String> {
        let base = crate::demo::POLICY_TOML
            .split("# ---- After approval")
            .next()
            .unwrap_or_default();
        let text = format!("{base}\n{tables}");
        match parse_policy(&text) {
            Ok(_) => vec![],
            Err(r) => r.errors.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn the_demo_freezes_hold_when_and_where_they_say() {
        let p = crate::demo::policy();
        let after = &p.after;
        // Friday 16:00 UTC on, prod only; the year-end window from 21 December.
        assert!(after.frozen("prod", t("2026-11-27T16:00:00Z")).is_some());
        assert!(after.frozen("prod", t("2026-11-27T15:59:59Z")).is_none());
        assert!(after.frozen("prod", t("2026-11-28T00:00:00Z")).is_none());
        assert!(after.frozen("staging", t("2026-11-27T17:00:00Z")).is_none());
        let year_end = after.frozen("prod", t("2026-12-22T09:00:00Z")).unwrap();
        assert_eq!(year_end.name, "year-end");
        assert!(after.frozen("prod", t("2027-01-04T00:00:00Z")).is_none());
        assert_eq!(
            after.freezes[1].describe(),
            "friday-evening (every Fri 16:00–24:00 UTC, prod): no prod changes before the weekend"
        );
    }

    #[test]
    fn a_reading_regresses_past_a_bound_and_is_an_error_without_its_metric() {
        use crate::domain::rollout::{ReadingVerdict, derive_verdict};
        let p = crate::demo::policy();
        let v = |pairs: &[(&str, f64)]| -> Vec<(String, f64)> {
            pairs.iter().map(|(m, x)| (m.to_string(), *x)).collect()
        };
        let read = |ok, values: &[(&str, f64)]| {
            derive_verdict(&p, "recommender", "prod", ok, &v(values)).unwrap()
        };
        let good = [("conversion_rate", 0.035), ("p99_latency_ms", 120.0)];
        assert_eq!(read(true, &good).0, ReadingVerdict::Ok);
        let (verdict, breaches) = read(
            true,
            &[("conversion_rate", 0.02), ("p99_latency_ms", 300.0)],
        );
        assert_eq!(verdict, ReadingVerdict::Regressed);
        assert_eq!(
            breaches,
            [
                "conversion_rate 0.02 < min 0.031",
                "p99_latency_ms 300 > max 250"
            ]
        );
        assert_eq!(
            read(true, &[("conversion_rate", 0.035)]).0,
            ReadingVerdict::Error
        );
        assert_eq!(read(false, &good).0, ReadingVerdict::Error);
        assert!(derive_verdict(&p, "churn-predictor", "prod", true, &v(&good)).is_none());
    }

    #[test]
    fn bad_after_approval_tables_are_named_with_their_keys() {
        let errors = errors_with(
            r#"
[rollout]
skip_canary = ["policy"]

[[rollout.deploy]]
command = ["kubectl", "rollout", "{version}"]

[[kpi]]
command = ["cat", "kpi"]
thresholds = [{ metric = "conversion", min = 2, max = 1 }]

[[freeze]]
name = "half"
reason = "no end"
environments = ["prod"]
start = "2026-12-21T00:00:00Z"
"#,
        );
        let has = |prefix: &str| errors.iter().any(|e| e.starts_with(prefix));
        assert!(
            has("rollout.skip_canary[0]: unknown gate \"policy\""),
            "{errors:?}"
        );
        assert!(
            has("rollout.deploy[0].command[2]: unknown placeholder {version}"),
            "{errors:?}"
        );
        assert!(
            has("kpi[0].thresholds[0]: min 2 is above max 1"),
            "{errors:?}"
        );
        assert!(has("freeze[0].end: missing"), "{errors:?}");
        // The demo's own tables read cleanly.
        assert!(errors_with("").is_empty());
    }
}
