//! Bearer tokens: the admin pages and /metrics take theirs in the
//! `Authorization` header only, never in the URL, where proxies' logs and browser
//! history would keep it.

use crate::config::Secret;
use crate::constant_time;
use http::{HeaderMap, header};

/// Whether the request carries `Authorization: Bearer <expected>` (compared in
/// constant time).
pub fn bearer_is(headers: &HeaderMap, expected: &Secret) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time::eq(given.as_bytes(), expected.expose().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_the_bearer_token_itself_is_accepted() {
        let token = Secret::new("s3cret");
        assert!(bearer_is(&with_authorization("Bearer s3cret"), &token));
        assert!(!bearer_is(&with_authorization("Bearer wrong"), &token));
        assert!(!bearer_is(&with_authorization("Basic s3cret"), &token));
        assert!(!bearer_is(&with_authorization("s3cret"), &token));
        assert!(!bearer_is(&HeaderMap::new(), &token));
    }
}
