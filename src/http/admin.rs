//! `/admin`: a small page showing what is waiting in Redis and the latest reply
//! batches, and the JSON it reads (`/admin/api/waiting`, `/admin/api/batches`).

use super::HttpState;
use super::auth;
use super::response::{self, Body};
use crate::config::Secret;
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::net::IpAddr;

const PAGE: &str = include_str!("admin.html");
const LIMIT: i64 = 200;

/// Who may see the admin pages (they show contacts' ids and the replies' texts).
#[derive(Debug, PartialEq, Eq)]
enum Access {
    Granted,
    /// ADMIN_TOKEN is set and the request did not carry it.
    TokenRequired,
    /// ADMIN_TOKEN is unset and the request came from another machine.
    LoopbackOnly,
}

/// With ADMIN_TOKEN, the token in the `Authorization` header and nothing else (a
/// token in the URL would stay in proxies' logs and browser history); without it,
/// connections from this machine only, so that a published port does not show
/// every conversation to whoever finds it.
fn access(expected: Option<&Secret>, headers: &HeaderMap, peer: IpAddr) -> Access {
    let Some(expected) = expected else {
        return if peer.to_canonical().is_loopback() {
            Access::Granted
        } else {
            Access::LoopbackOnly
        };
    };
    if auth::bearer_is(headers, expected) {
        Access::Granted
    } else {
        Access::TokenRequired
    }
}

/// Serves the admin routes below `/admin/`.
pub async fn handle(
    state: &HttpState,
    rest: &[&str],
    request: &Request<Incoming>,
    peer: IpAddr,
) -> Response<Body> {
    let access = access(state.admin_token.as_ref(), request.headers(), peer);
    // The page itself holds no data: it asks for the token and sends it with each
    // API call, so a browser can open it without a token in the URL.
    if matches!(rest, [] | [""]) && access == Access::TokenRequired {
        return response::with_type(StatusCode::OK, "text/html; charset=utf-8", PAGE);
    }
    match access {
        Access::Granted => {}
        Access::TokenRequired => {
            return response::error(StatusCode::UNAUTHORIZED, "admin token required");
        }
        Access::LoopbackOnly => {
            return response::error(
                StatusCode::FORBIDDEN,
                "ADMIN_TOKEN is not set, so /admin answers only connections from this machine: set it to open /admin beyond",
            );
        }
    }
    match rest {
        [] | [""] => response::with_type(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        ["api", "waiting"] => match state.redis_batches.waiting(LIMIT).await {
            Ok(waiting) => response::json(StatusCode::OK, &waiting),
            Err(error) => {
                tracing::warn!(%error, "admin: Redis unavailable");
                response::error(StatusCode::SERVICE_UNAVAILABLE, "Redis unavailable")
            }
        },
        ["api", "batches"] => match state.store.recent_batches(LIMIT).await {
            Ok(batches) => response::json(StatusCode::OK, &batches),
            Err(error) => {
                tracing::warn!(%error, "admin: database unavailable");
                response::error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
            }
        },
        _ => response::error(StatusCode::NOT_FOUND, "no such admin route"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: [&str; 3] = ["127.0.0.1", "::1", "::ffff:127.0.0.1"];

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP address")
    }

    #[test]
    fn without_a_token_only_this_machine_sees_the_admin_pages() {
        for peer in LOOPBACK {
            assert_eq!(access(None, &HeaderMap::new(), ip(peer)), Access::Granted);
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
        let mut bearer = HeaderMap::new();
        bearer.insert(
            http::header::AUTHORIZATION,
            "Bearer s3cret".parse().unwrap(),
        );
        for peer in ["127.0.0.1", "192.0.2.7"] {
            let peer = ip(peer);
            assert_eq!(access(Some(&token), &bearer, peer), Access::Granted);
            assert_eq!(
                access(Some(&token), &HeaderMap::new(), peer),
                Access::TokenRequired
            );
        }
    }
}
