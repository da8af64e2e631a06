//! Standard Webhooks signatures as a receiver checks them, written from the spec and independently
//! of `phone_verify::signature`: the fake gateway and the fake events receiver both use it.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use wiremock::Request;

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `v1,` + base64(HMAC-SHA256(key, id.timestamp.body)), the key being the `whsec_` secret's
/// base64 part decoded.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

pub fn header<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request carries a `v1` signature of its body by `secret`, timestamped within 5 minutes.
pub fn signed_by(request: &Request, secret: &str) -> bool {
    let (Some(id), Some(timestamp), Some(signature)) = (
        header(request, "webhook-id"),
        header(request, "webhook-timestamp").and_then(|t| t.parse::<i64>().ok()),
        header(request, "webhook-signature"),
    ) else {
        return false;
    };
    let expected = sign(secret, id, timestamp, &request.body);
    (unix_now() - timestamp).abs() <= 300 && signature.split(' ').any(|s| s == expected)
}
