//! Routing: one match on method and path.

use super::response::{self, Body};
use super::{HttpState, admin, auth, webhook};
use crate::message::ChannelKind;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::net::IpAddr;

/// What a process's listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// `lull serve`: the webhooks, /admin, /healthz, /readyz and /metrics.
    Everything,
    /// `lull worker`: /healthz, /readyz and /metrics only. Its container's health
    /// check needs the first, and the replies' metrics are counted where they are
    /// sent: in the worker.
    Probes,
}

/// The router.
pub struct Routes {
    state: HttpState,
    serves: Serves,
}

impl Routes {
    /// Builds the router.
    pub fn new(state: HttpState, serves: Serves) -> Self {
        Self { state, serves }
    }

    /// Handles one request from `peer`.
    pub async fn handle(&self, request: Request<Incoming>, peer: IpAddr) -> Response<Body> {
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let method = request.method().clone();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        if self.serves == Serves::Probes && matches!(segments.first(), Some(&("api" | "admin"))) {
            return response::error(
                StatusCode::NOT_FOUND,
                "this is lull worker: webhooks and /admin are served by lull serve",
            );
        }
        match (&method, segments.as_slice()) {
            (_, ["api", name, "webhook"]) => {
                let Some(kind) = ChannelKind::parse(name) else {
                    return response::error(StatusCode::NOT_FOUND, "unknown channel");
                };
                let Some(channel) = self.state.channels.get(&kind) else {
                    return response::error(StatusCode::NOT_FOUND, "channel not configured");
                };
                match method {
                    Method::GET => webhook::handshake(channel.as_ref(), &query),
                    Method::POST => webhook::receive(&self.state, channel.as_ref(), request).await,
                    _ => response::error(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST"),
                }
            }
            (&Method::GET, ["healthz"]) => response::text(StatusCode::OK, "ok"),
            (&Method::GET, ["readyz"]) => self.ready().await,
            (&Method::GET, ["metrics"]) => {
                if let Some(token) = &self.state.metrics_token {
                    if !auth::bearer_is(request.headers(), token) {
                        return response::error(StatusCode::UNAUTHORIZED, "metrics token required");
                    }
                }
                response::with_type(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.state.metrics.render(),
                )
            }
            (&Method::GET | &Method::POST | &Method::DELETE, ["admin", rest @ ..]) => {
                admin::handle(&self.state, rest, &request, peer).await
            }
            _ => response::error(StatusCode::NOT_FOUND, "no such route"),
        }
    }

    /// 200 when webhooks can be stored (PostgreSQL's breaker is closed);
    /// "degraded" when Redis's is open (messages are kept and batched later), or
    /// when the responder fails as a whole (a refused key, an unknown model:
    /// `"responder": "failing"` with its status; batches keep their messages until
    /// it works); 503 while PostgreSQL's breaker is open. The breakers' probes keep
    /// them current, so this asks neither server and answers at once, even when one
    /// of them hangs.
    async fn ready(&self) -> Response<Body> {
        let postgres = !self.state.store.health().is_open();
        let redis = !self.state.redis.is_open();
        let responder = self.state.metrics.responder_health().current();
        let status = match (postgres, redis && responder.is_none()) {
            (true, true) => "ok",
            (true, false) => "degraded",
            (false, _) => "unavailable",
        };
        let code = if postgres {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let up = |ok: bool| if ok { "up" } else { "down" };
        let mut body =
            serde_json::json!({ "status": status, "postgres": up(postgres), "redis": up(redis) });
        if let Some(failing) = responder {
            body["responder"] = "failing".into();
            body["responder_status"] = failing.status.into();
            body["responder_error"] = failing.reason.into();
        }
        response::json(code, &body)
    }
}
