//! `/admin`: a small page showing what is waiting in Redis and the latest reply
//! batches, and the JSON it reads (`/admin/api/waiting`, `/admin/api/batches`); and
//! `DELETE /admin/api/conversations/{conversation}`, which forgets a person.

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
        ["api", "conversations", id] if request.method() == http::Method::DELETE => {
            forget(state, id).await
        }
        _ if request.method() != http::Method::GET => {
            response::error(StatusCode::METHOD_NOT_ALLOWED, "use GET")
        }
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

/// `DELETE /admin/api/conversations/{channel}:{account}:{contact}`: erases that
/// person's messages, replies and Redis keys (see [`crate::forget`]); 404 when
/// nothing of it was found, 200 with the counts.
async fn forget(state: &HttpState, id: &str) -> Response<Body> {
    let id = percent_decoded(id);
    let Some(conversation) = id.as_deref().and_then(crate::message::Conversation::parse) else {
        return response::error(
            StatusCode::BAD_REQUEST,
            "name the conversation as {channel}:{account}:{contact}",
        );
    };
    match crate::forget::forget(&state.store, &state.redis_batches, &conversation).await {
        Ok(report) if !report.found() => response::error(
            StatusCode::NOT_FOUND,
            &format!("nothing stored for conversation {conversation}"),
        ),
        Ok(report) => {
            if let Some(batch) = report.claimed_batch.clone() {
                let (store, lease) = (state.store.clone(), state.redis_batches.policy().lease);
                tokio::spawn(async move {
                    let swept =
                        crate::forget::sweep_claimed_batch(&store, &conversation, &batch, lease);
                    if let Err(error) = swept.await {
                        tracing::warn!(%error, "forgotten conversation: its last batch not swept");
                    }
                });
            }
            response::json(StatusCode::OK, &report)
        }
        Err(error) => {
            tracing::warn!(%error, "admin: conversation not forgotten");
            response::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database or Redis unavailable; try again (forgetting twice is safe)",
            )
        }
    }
}

/// A path segment with its `%XX` escapes decoded; `None` when they do not make UTF-8.
fn percent_decoded(segment: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(segment.len());
    let mut rest = segment.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        let escaped = (byte == b'%')
            .then(|| tail.get(..2))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(decoded) => {
                bytes.push(decoded);
                rest = &tail[2..];
            }
            None => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: [&str; 3] = ["127.0.0.1", "::1", "::ffff:127.0.0.1"];

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP address")
    }

    #[test]
    fn a_conversation_in_the_path_may_come_with_its_colons_escaped() {
        assert_eq!(
            percent_decoded("whatsapp%3A1%3a2").as_deref(),
            Some("whatsapp:1:2")
        );
        assert_eq!(
            percent_decoded("telegram:1:-5").as_deref(),
            Some("telegram:1:-5")
        );
        assert_eq!(percent_decoded("a%zz%4").as_deref(), Some("a%zz%4"));
        assert_eq!(percent_decoded("%ff"), None);
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
