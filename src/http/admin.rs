//! `/admin`: a small page showing what is waiting in Redis and the latest reply
//! batches, and the JSON it reads (`/admin/api/waiting`, `/admin/api/batches`).

use super::response::{self, Body};
use super::routes::HttpState;
use crate::channel::meta::constant_time_eq;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

const PAGE: &str = include_str!("admin.html");
const LIMIT: i64 = 200;

fn authorized(state: &HttpState, request: &Request<Incoming>) -> bool {
    let Some(expected) = &state.admin_token else {
        return true;
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = request.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    bearer
        .map(str::to_owned)
        .or(query)
        .is_some_and(|given| constant_time_eq(given.as_bytes(), expected.expose().as_bytes()))
}

/// Serves the admin routes below `/admin/`.
pub async fn handle(
    state: &HttpState,
    rest: &[&str],
    request: &Request<Incoming>,
) -> Response<Body> {
    if !authorized(state, request) {
        return response::error(StatusCode::UNAUTHORIZED, "admin token required");
    }
    match rest {
        [] | [""] => response::with_type(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        ["api", "waiting"] => match state.batcher.waiting(LIMIT).await {
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
