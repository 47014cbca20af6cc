//! `/admin`: the console, one embedded page (`console.html`), and the JSON it reads
//! and acts through, under `/admin/api/` (see [`api`]). `access` decides who gets in
//! and under which name their actions are recorded.
//!
//! Routes: `GET api/conversations?state=`, `GET api/conversations/{id}`,
//! `POST api/conversations/{id}/{flush|drop|pause|resume}`,
//! `POST api/batches/{id}/retry`, `GET api/stats`, `GET api/audit`,
//! `DELETE api/conversations/{id}` (forget a person), and the older
//! `GET api/waiting` and `GET api/batches`.

mod access;
mod api;

use super::HttpState;
use super::response::{self, Body};
use crate::batch::inspect::AgendaFilter;
use access::{Access, access};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::net::IpAddr;

const PAGE: &str = include_str!("console.html");
const LIMIT: i64 = 200;

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
    let actor = match access {
        Access::Granted(actor) => actor,
        Access::TokenRequired => {
            return response::error(StatusCode::UNAUTHORIZED, "admin token required");
        }
        Access::LoopbackOnly => {
            return response::error(
                StatusCode::FORBIDDEN,
                "ADMIN_TOKEN is not set, so /admin answers only connections from this machine: set it to open /admin beyond",
            );
        }
    };
    let query = request.uri().query().unwrap_or_default();
    match (request.method(), rest) {
        (&Method::DELETE, ["api", "conversations", id]) => forget(state, id).await,
        (&Method::POST, ["api", "conversations", id, verb]) => {
            api::action(state, id, verb, query, &actor).await
        }
        (&Method::POST, ["api", "batches", id, "retry"]) => {
            api::action(state, id, "retry", query, &actor).await
        }
        (&Method::GET, [] | [""]) => {
            response::with_type(StatusCode::OK, "text/html; charset=utf-8", PAGE)
        }
        (&Method::GET, ["api", "conversations"]) => api::conversations(state, query).await,
        (&Method::GET, ["api", "conversations", id]) => api::conversation_view(state, id).await,
        (&Method::GET, ["api", "stats"]) => api::stats(state, query).await,
        (&Method::GET, ["api", "audit"]) => api::audit(state, query).await,
        // The agenda's first rows, their counts in one pipeline (not a round trip each).
        (&Method::GET, ["api", "waiting"]) => match state
            .redis_batches
            .agenda_page(AgendaFilter::All, 0, LIMIT as usize)
            .await
        {
            Ok(page) => response::json(StatusCode::OK, &page.rows),
            Err(error) => {
                tracing::warn!(%error, "admin: Redis unavailable");
                response::error(StatusCode::SERVICE_UNAVAILABLE, "Redis unavailable")
            }
        },
        (&Method::GET, ["api", "batches"]) => match state.store.recent_batches(LIMIT).await {
            Ok(batches) => response::json(StatusCode::OK, &batches),
            Err(error) => {
                tracing::warn!(%error, "admin: database unavailable");
                response::error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
            }
        },
        (&Method::GET, _) => response::error(StatusCode::NOT_FOUND, "no such admin route"),
        _ => response::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET, POST for actions, DELETE to forget",
        ),
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
}
