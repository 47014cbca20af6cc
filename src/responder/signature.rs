//! The signature on every request to a team's bot (RESPONDER=http), so that the
//! bot can refuse forgeries and replays: `X-Lull-Timestamp: <unix seconds>` and
//! `X-Lull-Signature-256: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`,
//! keyed with BOT_SECRET. The timestamp is inside the signed bytes: a bot that
//! refuses old timestamps (five minutes is usual) refuses replays too.

use crate::config::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header with the unix seconds the request was signed at.
pub const TIMESTAMP_HEADER: &str = "x-lull-timestamp";
/// The header with `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-lull-signature-256";

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` keyed with `secret`.
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length: new_from_slice cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `signature` is [`sign`]'s for these bytes (what a bot checks; the
/// tests' fake bot uses it), compared in constant time.
pub fn verify(secret: &Secret, timestamp: i64, body: &[u8], signature: &str) -> bool {
    crate::constant_time::eq(
        sign(secret, timestamp, body).as_bytes(),
        signature.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body_in_hex() {
        let secret = Secret::new("bot-secret");
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"bot-secret",
        //   b"1700000000.{}",hashlib.sha256).hexdigest())'
        assert_eq!(
            sign(&secret, 1_700_000_000, b"{}"),
            "sha256=17a4f42fc02fb814f12916394dba6d6aa51b735dc58f413c42e81bd2f2c760e2"
        );
    }

    #[test]
    fn another_body_time_or_secret_does_not_verify() {
        let secret = Secret::new("bot-secret");
        let signature = sign(&secret, 10, b"body");
        assert!(verify(&secret, 10, b"body", &signature));
        assert!(!verify(&secret, 11, b"body", &signature));
        assert!(!verify(&secret, 10, b"bodY", &signature));
        assert!(!verify(&Secret::new("other"), 10, b"body", &signature));
    }
}
