//! MLflow's webhook deliveries, checked before anything is read from them: the HMAC
//! MLflow signs each delivery with (`X-MLflow-Signature: v1,BASE64` over
//! `DELIVERY_ID.TIMESTAMP.BODY` with the webhook's secret), a timestamp within five
//! minutes of the server's clock (`X-MLflow-Timestamp`, Unix seconds), and a delivery id
//! (`X-MLflow-Delivery-Id`) never seen before — so a captured delivery cannot be played
//! again. Only then is the event read: which model version to import. The ids seen are
//! kept in the store ([`crate::store::Store::receive_delivery`]) for [`REMEMBER_SECS`],
//! so every replica refuses a replay, also after a restart.

use base64ct::Encoding as _;
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};

/// How far a delivery's timestamp may be from the server's clock.
pub const MAX_AGE_SECS: i64 = 300;

/// Why a delivery was refused (answered 401; nothing is imported).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A header is missing.
    #[error("the delivery has no {0} header")]
    Missing(&'static str),
    /// The signature is not the secret's over this delivery.
    #[error("the signature does not match the webhook secret over this delivery")]
    BadSignature,
    /// Too old or from the future.
    #[error("the delivery is timestamped {0}, more than {MAX_AGE_SECS} s from the server's clock")]
    Stale(String),
    /// Seen before.
    #[error("delivery {0} was already received")]
    Replayed(String),
}

/// How long a delivery id is remembered: a replay later than this is stale anyway (its
/// timestamp was within [`MAX_AGE_SECS`] of its first receipt, and must be again).
pub const REMEMBER_SECS: i64 = 2 * MAX_AGE_SECS;

/// The sender's name for its delivery ids in the store.
pub const SOURCE: &str = "mlflow";

/// A delivery whose signature and timestamp hold; its id is still to be checked as new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentic {
    /// `X-MLflow-Delivery-Id`.
    pub delivery_id: String,
}

/// The headers of a delivery.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    /// `X-MLflow-Delivery-Id`.
    pub delivery_id: Option<&'a str>,
    /// `X-MLflow-Timestamp`.
    pub timestamp: Option<&'a str>,
    /// `X-MLflow-Signature`.
    pub signature: Option<&'a str>,
}

/// Checks a delivery's signature, then its timestamp; the caller checks that its id is
/// new ([`crate::store::Store::receive_delivery`]).
pub fn check(
    secret: &str,
    h: Headers<'_>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Authentic, Refused> {
    let id = h
        .delivery_id
        .ok_or(Refused::Missing("X-MLflow-Delivery-Id"))?;
    let ts = h.timestamp.ok_or(Refused::Missing("X-MLflow-Timestamp"))?;
    let sig = h.signature.ok_or(Refused::Missing("X-MLflow-Signature"))?;
    let given = sig
        .strip_prefix("v1,")
        .and_then(|b| base64ct::Base64::decode_vec(b).ok())
        .ok_or(Refused::BadSignature)?;
    // Constant-time comparison.
    delivery_mac(secret, id, ts, body)
        .ok_or(Refused::BadSignature)?
        .verify_slice(&given)
        .map_err(|_| Refused::BadSignature)?;
    let when: i64 = ts.parse().map_err(|_| Refused::Stale(ts.to_string()))?;
    if (now.timestamp() - when).abs() > MAX_AGE_SECS {
        return Err(Refused::Stale(ts.to_string()));
    }
    Ok(Authentic {
        delivery_id: id.to_string(),
    })
}

/// The model version an event names, when it is one tollgate imports
/// ([`super::mlflow::WEBHOOK_EVENTS`]); `None` for any other event (acknowledged, ignored).
pub fn version_of(body: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let (entity, action) = (v["entity"].as_str()?, v["action"].as_str()?);
    if !super::mlflow::WEBHOOK_EVENTS.contains(&(entity, action)) {
        return None;
    }
    let data = &v["data"];
    Some((
        data["name"].as_str()?.to_string(),
        data["version"].as_str()?.to_string(),
    ))
}

/// MLflow's MAC of a delivery: HMAC-SHA256 with the secret over `ID.TIMESTAMP.BODY`.
fn delivery_mac(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
) -> Option<hmac::Hmac<sha2::Sha256>> {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// Signs a delivery as MLflow does (for tests and for checking a secret by hand).
pub fn sign(secret: &str, delivery_id: &str, timestamp: &str, body: &[u8]) -> String {
    match delivery_mac(secret, delivery_id, timestamp, body) {
        Some(mac) => format!(
            "v1,{}",
            base64ct::Base64::encode_string(&mac.finalize().into_bytes())
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_600_000, 0).unwrap_or_default()
    }

    #[test]
    fn a_delivery_is_taken_only_signed_with_the_secret_and_fresh() {
        let body = br#"{"entity":"model_version_tag","action":"set","data":{"name":"m","version":"3","key":"tollgate.status","value":"pending"}}"#;
        let ts = now().timestamp().to_string();
        let good = sign("s3cret", "d-1", &ts, body);
        let h = |id, ts, sig| Headers {
            delivery_id: Some(id),
            timestamp: Some(ts),
            signature: Some(sig),
        };
        assert_eq!(
            check("s3cret", h("d-1", &ts, &good), body, now()),
            Ok(Authentic {
                delivery_id: "d-1".into()
            })
        );
        let d2 = sign("s3cret", "d-2", &ts, body);
        assert_eq!(
            check("other", h("d-2", &ts, &d2), body, now()),
            Err(Refused::BadSignature)
        );
        let old = (now().timestamp() - 301).to_string();
        let d3 = sign("s3cret", "d-3", &old, body);
        assert_eq!(
            check("s3cret", h("d-3", &old, &d3), body, now()),
            Err(Refused::Stale(old.clone()))
        );
        // The body is what is signed: one byte changed is refused.
        let mut tampered = body.to_vec();
        tampered[20] = b'X';
        let d4 = sign("s3cret", "d-4", &ts, body);
        assert_eq!(
            check("s3cret", h("d-4", &ts, &d4), &tampered, now()),
            Err(Refused::BadSignature)
        );
        assert_eq!(version_of(body), Some(("m".into(), "3".into())));
        assert_eq!(
            version_of(br#"{"entity":"registered_model","action":"created","data":{"name":"m"}}"#),
            None
        );
    }
}
