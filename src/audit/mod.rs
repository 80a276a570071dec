//! The tamper-evident record: canonical encoding and digests of what was reviewed.

pub mod attestation;
pub mod canonical;
pub mod emergency;
pub mod evidence;
pub mod keys;
pub mod log;
pub mod policy_log;
pub mod record_rules;
pub mod rollout;
pub mod verify;
