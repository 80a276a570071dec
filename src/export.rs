//! The audit export: for one CR or a date range, a report that answers the playbook's
//! self-check (who approved and when, artifacts, risk and validation evidence, exact
//! versions, rollback plan and the rollback result in staging from the last recorded
//! drill, the rollout, exceptions), plus everything an
//! auditor needs to check it without tollgate: the log lines and an allowed_signers file.

use crate::audit::keys::allowed_signers;
use crate::audit::log::{EntryKind, LogEntry, VerifyReport};
use crate::audit::policy_log::Keyrings;
use crate::domain::emergency::Exception;
use crate::domain::policy_book::{PolicyBook, PolicyVersion};
use crate::domain::status::{Evaluation, evaluate_in};
use crate::store::{Store, StoredCr};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use std::fmt::Write;

/// What to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One change request.
    Cr(String),
    /// CRs with a decision or submission in these days (UTC, inclusive), and the
    /// exceptions opened in them.
    Range {
        /// First day.
        since: NaiveDate,
        /// Last day.
        until: NaiveDate,
    },
}

/// The export's parts, ready to be written as files.
#[derive(Debug, Clone)]
pub struct AuditExport {
    /// `report.md`.
    pub markdown: String,
    /// `report.json`.
    pub json: Value,
    /// `entries.jsonl`: the log entries behind the report.
    pub entries: Vec<LogEntry>,
    /// `allowed_signers` for `ssh-keygen -Y verify`: the keys of the policy in force.
    pub allowed_signers: String,
    /// Every policy version the entries were judged by: `policies/vN.toml` (the adopted
    /// text) and `policies/vN.allowed_signers` (its keys).
    pub policies: Vec<PolicyFiles>,
}

/// One policy version as the export ships it.
#[derive(Debug, Clone)]
pub struct PolicyFiles {
    /// Version number (1 for the genesis, or for the file of an unmigrated store).
    pub version: u32,
    /// The adopted text, verbatim (it hashes to the adoption's `policy_digest`).
    pub text: String,
    /// Its keys, one `allowed_signers` line each.
    pub allowed_signers: String,
}

/// The script an auditor runs in the export directory (needs jq, sha256sum, cmp and
/// ssh-keygen). Each signed entry is checked against the keys of the policy version in
/// force at its position, which the script reads from the signed `policy-adopted` entries.
pub const VERIFY_SCRIPT: &str = r#"#!/bin/sh
# Checks every entry in entries.jsonl:
#  - the chain: positions 1, 2, 3... without a gap, each body's seq its position and its
#    prev the hash of the entry before; count, first and last hash as report.json says;
#  - the body hashes to the entry's hash;
#  - each signed entry's SSHSIG verifies for its principal (namespace tollgate) against the
#    keys of the policy version in force at that entry, taken from the signed
#    policy-adopted entries themselves (an adoption is signed under the version it
#    replaces, the genesis under itself; entries before a migration genesis under it);
#  - policies/vN.toml and policies/vN.allowed_signers are exactly what version N's
#    policy-adopted entry recorded.
# Needs jq, sha256sum, cmp and ssh-keygen. Exit status 0 only if everything checks out.
set -u
cd "$(dirname "$0")" || { echo "cannot enter the directory of $0"; exit 1; }
for f in entries.jsonl report.json policies; do
  [ -e "$f" ] || { echo "$f is missing: run verify.sh inside a complete export"; exit 1; }
done
for tool in jq sha256sum cmp ssh-keygen; do
  command -v "$tool" > /dev/null 2>&1 || { echo "$tool is needed and not installed"; exit 1; }
done
fail=0
work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT
# The version in force before the first adoption: the genesis (a store migrated from
# before policy entries), or the policy file of a store never migrated.
first=$(jq -c 'select(.kind == "policy-adopted")' entries.jsonl | head -n 1)
if [ -n "$first" ]; then
  printf '%s' "$first" | jq -r .body | jq -j .allowed_signers > "$work/signers.1"
else
  cp policies/v1.allowed_signers "$work/signers.1" || exit 1
fi
ver=1
want=1
prev=null
count=0
first_hash=
while IFS= read -r line; do
  seq=$(printf '%s' "$line" | jq -r .seq)
  kind=$(printf '%s' "$line" | jq -r .kind)
  hash=$(printf '%s' "$line" | jq -r .hash)
  printf '%s' "$line" | jq -j .body > "$work/body"
  [ "sha256:$(sha256sum "$work/body" | cut -c1-64)" = "$hash" ] || { echo "entry $seq: hash mismatch"; fail=1; }
  # The chain: positions without gaps, each entry linking to the one before it.
  body_seq=$(jq -r .seq "$work/body")
  [ "$seq" = "$want" ] && [ "$body_seq" = "$want" ] || { echo "entry $want: missing or out of place (found entry $seq, signed as $body_seq)"; fail=1; }
  [ "$(jq -r .prev "$work/body")" = "$prev" ] || { echo "entry $seq: does not link to the entry before it (broken chain)"; fail=1; }
  want=$((seq + 1))
  prev=$hash
  count=$((count + 1))
  [ -n "$first_hash" ] || first_hash=$hash
  new=$ver
  if [ "$kind" = policy-adopted ]; then
    new=$(jq -r .version "$work/body")
    [ "$new" = 1 ] && ver=1
    jq -j .allowed_signers "$work/body" > "$work/signers.$new"
    jq -j .policy_text "$work/body" > "$work/adopted.toml"
    cmp -s "$work/adopted.toml" "policies/v$new.toml" || { echo "entry $seq: policies/v$new.toml is not the policy this entry adopted"; fail=1; }
    cmp -s "$work/signers.$new" "policies/v$new.allowed_signers" || { echo "entry $seq: policies/v$new.allowed_signers are not the keys this entry adopted"; fail=1; }
  fi
  if [ "$(printf '%s' "$line" | jq -r .signature)" != null ]; then
    printf '%s' "$line" | jq -j .signature > "$work/body.sig"
    ssh-keygen -Y verify -f "$work/signers.$ver" -I "$(printf '%s' "$line" | jq -r .principal)" -n tollgate -s "$work/body.sig" < "$work/body" > /dev/null \
      || { echo "entry $seq: bad signature under policy version $ver"; fail=1; }
  fi
  ver=$new
done < entries.jsonl
# The chain as report.json states it: nothing cut, nothing added.
[ "$count" = "$(jq -r .chain.count report.json)" ] || { echo "entries.jsonl holds $count entries, report.json says $(jq -r .chain.count report.json)"; fail=1; }
[ "$first_hash" = "$(jq -r '.chain.first_hash // ""' report.json)" ] || { echo "the first entry is not the one report.json names"; fail=1; }
[ "$prev" = "$(jq -r '.chain.last_hash // "null"' report.json)" ] || { echo "the last entry is not the one report.json names"; fail=1; }
[ $fail = 0 ] && echo "all $count entries verified, chain intact"
exit $fail
"#;

fn md(s: &str) -> String {
    // Sanitised and with Markdown table/emphasis characters neutralised.
    crate::domain::text::sanitize(s)
        .replace('|', "\\|")
        .replace('*', "\\*")
        .replace('_', "\\_")
        .replace('`', "'")
}

/// For text inside `code spans`: only backticks need neutralising there.
fn code(s: &str) -> String {
    crate::domain::text::sanitize(s).replace('`', "'")
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Why an audit export could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The selected CR is not in the store (quoted id).
    #[error("no change request {0}")]
    NoSuchCr(String),
}

/// Builds the export. `chain` is the result of verifying the whole log.
pub fn build(
    store: &dyn Store,
    book: &PolicyBook,
    selection: &Selection,
    chain: &VerifyReport,
    exceptions: &[Exception],
    now: DateTime<Utc>,
) -> Result<AuditExport, ExportError> {
    let in_range = |t: DateTime<Utc>| match selection {
        Selection::Cr(_) => true,
        Selection::Range { since, until } => {
            let d = t.date_naive();
            d >= *since && d <= *until
        }
    };
    let crs: Vec<StoredCr> = match selection {
        Selection::Cr(id) => vec![
            store
                .get(id)?
                .ok_or_else(|| ExportError::NoSuchCr(crate::domain::reader::quote(id)))?,
        ],
        Selection::Range { .. } => {
            // CRs decided on in the period, found in one pass over the decisions.
            let mut decided = std::collections::HashSet::new();
            let mut after = 0;
            loop {
                let page = store.decision_summaries(after, 50_000)?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                decided.extend(page.into_iter().filter(|d| in_range(d.at)).map(|d| d.cr_id));
            }
            store
                .list()?
                .into_iter()
                .filter(|c| in_range(c.first_submitted_at) || decided.contains(&c.current.cr.id))
                .collect()
        }
    };
    let keyrings = Keyrings::new(book);
    // One pass over the log collects every entry about the CRs in scope, and the policy
    // adoptions that judged them.
    let mut adoptions: Vec<LogEntry> = Vec::new();
    let mut by_cr: std::collections::HashMap<String, Vec<LogEntry>> = crs
        .iter()
        .map(|c| (c.current.cr.id.clone(), Vec::new()))
        .collect();
    let mut after = 0;
    loop {
        let page = store.log_entries(after, 10_000)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in page {
            if e.kind == EntryKind::PolicyAdopted.as_str() {
                adoptions.push(e.clone());
            }
            if let Some(list) = e.cr_id.as_ref().and_then(|id| by_cr.get_mut(id)) {
                list.push(e);
            }
        }
    }
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut md_out = String::new();
    let mut json_crs = Vec::new();
    let mut related_ids: Vec<String> = Vec::new();
    // What happened after approval: stages, readings, rollbacks and the subjects' drills.
    let operations = store.emergency_entries()?;
    let mut after = crate::audit::rollout::derive(&operations);
    for cr in &crs {
        crate::workflow::rollout::add_readings(store, &mut after, &cr.current.cr.id)?;
    }
    let mut drill_seqs: Vec<u64> = Vec::new();
    let selection_text = match selection {
        Selection::Cr(id) => format!("change request {}", md(id)),
        Selection::Range { since, until } => format!("{since} to {until} (UTC)"),
    };
    let _ = writeln!(md_out, "# tollgate audit report\n");
    let _ = writeln!(md_out, "- Scope: {selection_text}");
    let _ = writeln!(md_out, "- Generated: {}", time(now));
    let chain_text = match &chain.first_bad {
        None => format!(
            "verified — {} entries, {} signatures, head entry {} `{}`",
            chain.entries,
            chain.signatures,
            chain.head.seq,
            chain.head.hash.as_deref().unwrap_or("-")
        ),
        Some(bad) => format!(
            "**BROKEN at entry {}: {} — {}**; nothing from that entry on can be trusted",
            bad.seq,
            bad.problem,
            md(&bad.detail)
        ),
    };
    let _ = writeln!(md_out, "- Audit log: {chain_text}");
    let _ = writeln!(md_out, "- Change requests: {}\n", crs.len());

    for cr in &crs {
        let c = &cr.current.cr;
        let decisions = store.decisions(&c.id)?;
        let eval: Evaluation = evaluate_in(c, &cr.current.digest, &decisions, book);
        let logged: Vec<LogEntry> = by_cr.remove(&c.id).unwrap_or_default();
        let decision_entries: Vec<&LogEntry> =
            logged.iter().filter(|e| e.kind == "decision").collect();
        let _ = writeln!(md_out, "## {} — {}\n", md(&c.id), md(&c.title));
        let s = &c.subject;
        let _ = writeln!(
            md_out,
            "- Gate: {} · Subject: {} {} {} → {} ({})",
            c.gate,
            md(&s.kind),
            md(&s.name),
            s.from_version
                .as_deref()
                .map(md)
                .unwrap_or_else(|| "(new)".into()),
            md(&s.to_version),
            s.environment.as_str()
        );
        let _ = writeln!(
            md_out,
            "- Requester: {} · Owner: {} · On-call: {}",
            md(&c.requester),
            md(&c.owner),
            md(&c.on_call)
        );
        let _ = writeln!(
            md_out,
            "- Status: **{}** · revision {} of {} · content digest `{}` · first submitted {}\n",
            eval.status,
            cr.current.revision,
            cr.revision_count,
            cr.current.digest,
            time(cr.first_submitted_at)
        );
        let r = &eval.risk;
        let reasons: Vec<String> = r.reasons.iter().map(|x| md(&x.to_string())).collect();
        let _ = writeln!(
            md_out,
            "### Risk rating\n\nEffective **{}** (computed {}, declared {}); because {}. Requester's rationale: {}. Observation window {} h.\n",
            r.effective,
            r.computed,
            r.declared,
            if reasons.is_empty() {
                "no factor".into()
            } else {
                reasons.join("; ")
            },
            md(c.risk.rationale.trim_end_matches('.')),
            eval.observation_hours
        );
        let _ = writeln!(
            md_out,
            "### Approvals and decisions\n\nRequired sign-offs: {} — obtained {}/{}.\n",
            eval.signoffs.required_roles().join(", "),
            eval.signoffs.obtained(),
            eval.signoffs.required()
        );
        let _ = writeln!(
            md_out,
            "| When | Who | Role | Verdict | Revision | Counts | Signature | Log entry | Rationale |"
        );
        let _ = writeln!(md_out, "|---|---|---|---|---|---|---|---|---|");
        let mut json_decisions = Vec::new();
        for (d, e) in decisions.iter().zip(&decision_entries) {
            let counted = eval.counted.iter().any(|x| x == d);
            let why_not = eval
                .discounted
                .iter()
                .find(|x| &x.decision == d)
                .map(|x| x.reason.clone());
            let signature = match (&e.principal, &e.signature) {
                (Some(_), Some(_)) => match keyrings.verify(e) {
                    Ok(fp) => format!("valid ({fp}, policy v{})", book.in_force_at(e.seq).version),
                    Err(x) => format!("INVALID: {x}"),
                },
                _ => "missing".into(),
            };
            let revision = crate::audit::log::DecisionRecord::parse(&e.body)
                .map(|r| r.cr_revision)
                .unwrap_or(0);
            let _ = writeln!(
                md_out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                time(d.at),
                md(&d.principal),
                md(&d.role),
                d.verdict,
                revision,
                if counted {
                    "yes".to_string()
                } else {
                    format!("no — {}", why_not.as_deref().unwrap_or("superseded"))
                },
                signature,
                e.seq,
                md(&d.rationale)
            );
            json_decisions.push(json!({
                "seq": e.seq, "hash": e.hash, "at": d.at, "principal": d.principal, "role": d.role,
                "verdict": d.verdict, "cr_revision": revision, "cr_digest": d.cr_digest,
                "counts": counted, "not_counted_because": why_not, "signature": signature,
                "rationale": d.rationale, "ticks": d.ticks,
            }));
        }
        if decisions.is_empty() {
            let _ = writeln!(md_out, "| — | — | — | no decisions yet | | | | | |");
        }
        let _ = writeln!(md_out, "\n### Validation evidence\n");
        let _ = writeln!(md_out, "| Item | Kind | Blocking | State | Evidence |");
        let _ = writeln!(md_out, "|---|---|---|---|---|");
        for item in &eval.checklist.items {
            let evidence = if item.automated {
                item.detail.as_deref().map(md).unwrap_or_default()
            } else {
                item.ticked_by
                    .iter()
                    .map(|t| {
                        format!(
                            "ticked by {}{}",
                            md(&t.principal),
                            t.note
                                .as_deref()
                                .map(|n| format!(": {}", md(n)))
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let _ = writeln!(
                md_out,
                "| {} | {} | {} | {} | {} |",
                md(&item.label),
                if item.automated {
                    "automated"
                } else {
                    "manual"
                },
                if item.blocking { "yes" } else { "no" },
                item.state.as_str(),
                evidence
            );
        }
        for ev in &eval.checklist.other_evidence {
            let _ = writeln!(
                md_out,
                "| {} | automated (no checklist item) | no | {} | {} |",
                md(&ev.id),
                format!("{:?}", ev.status).to_lowercase(),
                ev.detail.as_deref().map(md).unwrap_or_default()
            );
        }
        let _ = writeln!(md_out, "\n### Artifacts\n");
        for a in &c.artifacts {
            let _ = writeln!(
                md_out,
                "- {}: {} — <{}>",
                md(&a.kind),
                md(&a.title),
                md(&a.url)
            );
        }
        let v = &c.versions;
        let _ = writeln!(
            md_out,
            "\n### Exact versions\n\n- code `{}`\n- data `{}`\n- config `{}`\n- seed {}\n",
            code(&v.code),
            code(&v.data),
            code(&v.config),
            v.seed.map(|x| x.to_string()).unwrap_or_else(|| "—".into())
        );
        let _ = writeln!(
            md_out,
            "### Rollback plan\n\n{}\n\nTested: **{}**\n",
            md(&c.plan.rollback),
            if c.plan.rollback_tested { "yes" } else { "NO" }
        );
        let drill = after.last_drill(&s.name);
        let _ = writeln!(md_out, "### Rollback result in staging\n");
        let _ = match drill {
            Some(d) => {
                drill_seqs.push(d.seq);
                writeln!(
                    md_out,
                    "Last drill of {}: {}, by {}, {} — **{}** in {:.1} s (target {} min); output `{}`; log entry {}.\n",
                    md(&d.subject),
                    d.environment,
                    md(&d.principal),
                    time(d.at),
                    if d.outcome.succeeded() {
                        "succeeded"
                    } else {
                        "FAILED"
                    },
                    d.outcome.duration_ms as f64 / 1000.0,
                    book.policy().emergency.rollback_target_minutes,
                    code(&d.output_digest),
                    d.seq
                )
            }
            None => writeln!(
                md_out,
                "No drill recorded for {}: the rollback is tested only by the requester's word above.\n",
                md(&s.name)
            ),
        };
        let rollout = after.of(&c.id);
        let _ = writeln!(md_out, "### Rollout\n");
        match rollout.filter(|r| !r.stages.is_empty()) {
            None => {
                let _ = writeln!(md_out, "No rollout stage recorded.\n");
            }
            Some(r) => {
                for st in &r.stages {
                    let _ = writeln!(
                        md_out,
                        "- {} {} % by {}, {}{} (log entry {})",
                        st.stage.as_str(),
                        st.traffic,
                        md(&st.principal),
                        time(st.at),
                        if st.happened() {
                            ""
                        } else {
                            " — deployment FAILED"
                        },
                        st.seq
                    );
                }
                let regressed = r
                    .readings
                    .iter()
                    .filter(|x| x.verdict == crate::domain::rollout::ReadingVerdict::Regressed)
                    .count();
                let _ = writeln!(
                    md_out,
                    "- KPI readings: {} ({} regressed)",
                    r.readings.len(),
                    regressed
                );
                if let Some(b) = &r.rolled_back {
                    let _ = writeln!(
                        md_out,
                        "- rolled back under {} by {}, {} (log entry {})",
                        md(&b.incident),
                        md(&b.principal),
                        time(b.at),
                        b.seq
                    );
                }
                let _ = writeln!(md_out);
            }
        }
        let related: Vec<&Exception> = exceptions
            .iter()
            .filter(|x| {
                x.rollbacks
                    .iter()
                    .any(|r| r.subject == s.name && r.environment == s.environment.as_str())
            })
            .collect();
        let _ = writeln!(md_out, "### Exceptions\n");
        if related.is_empty() {
            let _ = writeln!(
                md_out,
                "None recorded for {}@{}.\n",
                md(&s.name),
                s.environment.as_str()
            );
        }
        for x in &related {
            let _ = writeln!(md_out, "{}", exception_md(x, now));
            related_ids.push(x.id.clone());
        }
        json_crs.push(json!({
            "id": c.id, "title": c.title, "gate": c.gate, "subject": c.subject, "requester": c.requester,
            "owner": c.owner, "on_call": c.on_call, "status": eval.status, "revision": cr.current.revision,
            "digest": cr.current.digest, "first_submitted_at": cr.first_submitted_at, "risk": eval.risk,
            "signoffs": { "required": eval.signoffs.required_roles(), "obtained": eval.signoffs.obtained() },
            "decisions": json_decisions, "checklist": eval.checklist, "artifacts": c.artifacts,
            "versions": c.versions, "plan": c.plan,
            "exceptions": related.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
            "rollback_drill": drill, "rollout": rollout,
        }));
        entries.extend(logged);
    }

    // Range exports also list the exceptions opened in the range, with their entries.
    let scoped_exceptions: Vec<&Exception> = match selection {
        Selection::Cr(_) => Vec::new(),
        Selection::Range { .. } => exceptions
            .iter()
            .filter(|x| in_range(x.opened_at))
            .collect(),
    };
    if !scoped_exceptions.is_empty() {
        let _ = writeln!(md_out, "## Emergency exceptions in the period\n");
        for x in &scoped_exceptions {
            let _ = writeln!(md_out, "{}", exception_md(x, now));
        }
    }
    let emergency = operations;
    let wanted: Vec<&Exception> = match selection {
        Selection::Cr(_) => exceptions
            .iter()
            .filter(|x| related_ids.contains(&x.id))
            .collect(),
        Selection::Range { .. } => scoped_exceptions.clone(),
    };
    for e in emergency {
        let body: Value = serde_json::from_str(&e.body).unwrap_or(Value::Null);
        let incident = body["incident"].as_str().unwrap_or("");
        if wanted.iter().any(|x| x.incident == incident) || drill_seqs.contains(&e.seq) {
            entries.push(e);
        }
    }
    // Every adoption up to the last entry exported: the auditor's script follows them
    // to know which keys were in force at each entry.
    let last = entries.iter().map(|e| e.seq).max().unwrap_or(0);
    entries.extend(adoptions.into_iter().filter(|a| a.seq <= last));
    entries.sort_by_key(|e| e.seq);
    entries.dedup_by_key(|e| e.seq);
    // The entries the report is about; entries.jsonl holds the whole chain from the first
    // entry up to the last of them, so an auditor checks every link and that nothing is
    // missing, with nothing but the files.
    let relevant: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    let entries = store.log_entries(0, usize::try_from(last).unwrap_or(usize::MAX))?;
    // The versions in force up to the last entry exported (at least the genesis).
    let judged_by: Vec<&PolicyVersion> = book
        .versions()
        .iter()
        .filter(|v| v.seq <= last.max(book.genesis().seq))
        .map(|v| &**v)
        .collect();
    let policies: Vec<PolicyFiles> = judged_by
        .iter()
        .map(|v| PolicyFiles {
            version: v.version.max(1),
            text: v.text.clone(),
            allowed_signers: allowed_signers(&v.policy),
        })
        .collect();
    let _ = writeln!(
        md_out,
        "## Policy versions
"
    );
    let _ = writeln!(
        md_out,
        "Each entry is judged by the policy in force when it was appended. `policies/vN.toml` is
the text version N adopted; `policies/vN.allowed_signers` its keys.
"
    );
    let _ = writeln!(
        md_out,
        "| Version | Adopted at entry | By | From | Digest |"
    );
    let _ = writeln!(md_out, "|---|---|---|---|---|");
    for v in &judged_by {
        let _ = writeln!(
            md_out,
            "| {} | {} | {} | {} | `{}` |",
            v.version,
            v.seq,
            md(v.adopted_by.as_deref().unwrap_or("—")),
            md(v.cr_id.as_deref().unwrap_or(if v.migration {
                "genesis (migration)"
            } else {
                "genesis"
            })),
            v.digest
        );
    }
    let _ = writeln!(md_out);

    let _ = writeln!(
        md_out,
        "## Verifying this report independently\n\n\
         The files beside this report are everything needed, with no tollgate installed:\n\n\
         - `entries.jsonl`: the log from entry 1 to the last of the {} entries behind this report ({} entries); each `body` is the exact signed text.\n\
         - `allowed_signers`: the public keys of the policy in force now, scoped to the `tollgate` namespace.\n\
         - `policies/`: each policy version the entries were judged by (`vN.toml`, `vN.allowed_signers`).\n\
         - `verify.sh`: checks every link of the chain (each entry's `seq` follows the one before\n  \
         and its `prev` is that entry's hash), the count and first/last hashes against\n  \
         `report.json`, each entry's hash with `sha256sum` and each signature with\n  \
         `ssh-keygen -Y verify -f policies/vN.allowed_signers -I PRINCIPAL -n tollgate -s body.sig < body`,\n  \
         N being the policy version in force at that entry.\n\n\
         A chain that verifies may still have been cut after its last entry: compare the last\n\
         hash with a head noted elsewhere (`tollgate verify --expect-head`).\n",
        relevant.len(),
        entries.len()
    );

    let json = json!({
        "format": "tollgate/audit-report/v1",
        "generated_at": now,
        "scope": match selection {
            Selection::Cr(id) => json!({"cr": id}),
            Selection::Range { since, until } => json!({"since": since, "until": until}),
        },
        "audit_log": chain,
        "change_requests": json_crs,
        "exceptions": wanted,
        "entries": relevant,
        "chain": {
            "count": entries.len(),
            "first_hash": entries.first().map(|e| e.hash.clone()),
            "last_seq": entries.last().map(|e| e.seq),
            "last_hash": entries.last().map(|e| e.hash.clone()),
        },
        "policies": judged_by.iter().map(|v| json!({
            "version": v.version, "seq": v.seq, "hash": v.hash, "digest": v.digest,
            "adopted_by": v.adopted_by, "cr_id": v.cr_id, "migration": v.migration,
            "file": format!("policies/v{}.toml", v.version.max(1)),
        })).collect::<Vec<_>>(),
    });
    Ok(AuditExport {
        markdown: md_out,
        json,
        entries,
        allowed_signers: allowed_signers(book.policy()),
        policies,
    })
}

fn exception_md(x: &Exception, now: DateTime<Utc>) -> String {
    let mut out = format!(
        "- Incident **{}**: opened by {} at {} — {}; expires {}; review due {}; state {:?}\n",
        md(&x.incident),
        md(&x.opened_by),
        time(x.opened_at),
        md(&x.reason),
        time(x.expires_at),
        time(x.review_due),
        x.state(now)
    );
    for r in &x.rollbacks {
        let outcome = match &r.outcome {
            Some(o) => format!(
                "command exit {} in {} ms{}",
                o.exit_status.map_or("—".into(), |c| c.to_string()),
                o.duration_ms,
                if o.timed_out { " (timed out)" } else { "" }
            ),
            None => "no command run".into(),
        };
        let _ = writeln!(
            out,
            "  - rollback {}@{} {} → {} authorised by {} at {}; {}",
            md(&r.subject),
            r.environment,
            md(&r.from_version),
            md(&r.to_version),
            md(&r.principal),
            time(r.at),
            outcome
        );
    }
    if let Some(rv) = &x.review {
        let _ = writeln!(
            out,
            "  - post-incident review by {} at {}: root cause: {}; follow-ups: {}; policy changes: {}",
            md(&rv.principal),
            time(rv.at),
            md(&rv.root_cause),
            md(&rv.follow_ups),
            md(&rv.policy_changes)
        );
    }
    out
}
