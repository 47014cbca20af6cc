//! Who may use `/admin`, and who they are for the audit.
//!
//! `ADMIN_TOKEN` is one token, or `label:secret` pairs separated by commas
//! (`alice:s3cret,bob:0ther`): the label of the secret presented names the operator
//! in `console_actions`. A single token without a colon is labelled `admin`. With
//! no ADMIN_TOKEN, only connections from this machine get in, labelled `loopback`.

use crate::config::Secret;
use crate::constant_time;
use http::{HeaderMap, header};
use std::net::IpAddr;

/// Who may see the admin pages (they show contacts' ids and the replies' texts).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Access {
    /// In, as this operator.
    Granted(String),
    /// ADMIN_TOKEN is set and the request did not carry one of its secrets.
    TokenRequired,
    /// ADMIN_TOKEN is unset and the request came from another machine.
    LoopbackOnly,
}

/// `(label, secret)` pairs of an ADMIN_TOKEN value.
fn pairs(token: &str) -> Vec<(&str, &str)> {
    if !token.contains(':') {
        return vec![("admin", token)];
    }
    token
        .split(',')
        .filter_map(|pair| pair.trim().split_once(':'))
        .filter(|(label, secret)| !label.is_empty() && !secret.is_empty())
        .collect()
}

/// With ADMIN_TOKEN, one of its secrets in the `Authorization` header and nothing
/// else (a token in the URL would stay in proxies' logs and browser history);
/// without it, connections from this machine only, so that a published port does
/// not show every conversation to whoever finds it. Every secret is compared, in
/// constant time, so the time taken does not tell which label came close.
pub(super) fn access(expected: Option<&Secret>, headers: &HeaderMap, peer: IpAddr) -> Access {
    let Some(expected) = expected else {
        return if peer.to_canonical().is_loopback() {
            Access::Granted("loopback".into())
        } else {
            Access::LoopbackOnly
        };
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        return Access::TokenRequired;
    };
    let mut granted = None;
    for (label, secret) in pairs(expected.expose()) {
        if constant_time::eq(given.as_bytes(), secret.as_bytes()) && granted.is_none() {
            granted = Some(label.to_owned());
        }
    }
    granted.map_or(Access::TokenRequired, Access::Granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: [&str; 3] = ["127.0.0.1", "::1", "::ffff:127.0.0.1"];

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP address")
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("Bearer {token}").parse().unwrap();
        headers.insert(header::AUTHORIZATION, value);
        headers
    }

    #[test]
    fn without_a_token_only_this_machine_sees_the_admin_pages() {
        for peer in LOOPBACK {
            assert_eq!(
                access(None, &HeaderMap::new(), ip(peer)),
                Access::Granted("loopback".into())
            );
        }
        for peer in ["192.0.2.7", "172.17.0.1", "2001:db8::1", "::ffff:192.0.2.7"] {
            assert_eq!(
                access(None, &HeaderMap::new(), ip(peer)),
                Access::LoopbackOnly,
                "{peer}"
            );
        }
    }

    #[test]
    fn with_a_token_only_the_token_opens_them_from_anywhere() {
        let token = Secret::new("s3cret");
        for peer in ["127.0.0.1", "192.0.2.7"] {
            let peer = ip(peer);
            let granted = access(Some(&token), &bearer("s3cret"), peer);
            assert_eq!(granted, Access::Granted("admin".into()));
            for wrong in [HeaderMap::new(), bearer("s3cre"), bearer("s3cret2")] {
                assert_eq!(access(Some(&token), &wrong, peer), Access::TokenRequired);
            }
        }
    }

    #[test]
    fn each_labelled_secret_opens_them_as_its_label() {
        let token = Secret::new("alice:a-secret, bob:b-secret");
        let peer = ip("192.0.2.7");
        assert_eq!(
            access(Some(&token), &bearer("a-secret"), peer),
            Access::Granted("alice".into())
        );
        assert_eq!(
            access(Some(&token), &bearer("b-secret"), peer),
            Access::Granted("bob".into())
        );
        for wrong in ["alice", "alice:a-secret", "", "c-secret"] {
            assert_eq!(
                access(Some(&token), &bearer(wrong), peer),
                Access::TokenRequired
            );
        }
    }
}
