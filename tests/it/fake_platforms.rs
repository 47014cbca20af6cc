//! Local stand-ins for the Telegram Bot API and the Instagram messaging API: each
//! records every request and answers as the real one would (a sent message, or a
//! scripted error), checking the token the way the real one does: Telegram's in the
//! URL path, Instagram's as a bearer token.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// The bot token the fake Telegram accepts.
pub const TELEGRAM_TOKEN: &str = "7000000001:AAFakeTelegramTokenForTests_x-Y";
/// The bot id of [`TELEGRAM_TOKEN`]: our account in Telegram conversations.
pub const BOT_ID: &str = "7000000001";
/// The access token the fake Instagram accepts.
pub const INSTAGRAM_TOKEN: &str = "test-instagram-token";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: std::time::Instant,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

/// A scripted answer to a send.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<u64>,
}

impl Answer {
    /// An HTTP error with a body.
    pub fn error(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.to_owned(),
            retry_after: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Platform {
    Telegram,
    Instagram,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    script: VecDeque<Answer>,
    counter: u64,
}

/// A running fake.
#[derive(Clone)]
pub struct FakeApi {
    /// What the app's `*_API_BASE` should be.
    pub base: String,
    platform: Platform,
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    /// A fake Bot API at `http://127.0.0.1:port`.
    pub async fn telegram() -> Self {
        Self::start(Platform::Telegram, "").await
    }

    /// A fake Instagram API at `http://127.0.0.1:port/v23.0`.
    pub async fn instagram() -> Self {
        Self::start(Platform::Instagram, "/v23.0").await
    }

    async fn start(platform: Platform, path: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            // Telegram numbers a chat's messages in one sequence: start ours far from
            // the tests' inbound ids so that ids never collide.
            counter: 1_000_000,
            ..State::default()
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(platform, state.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            base: format!("http://{addr}{path}"),
            platform,
            state,
        }
    }

    /// Answers the next sends with these, in order; then success again.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.lock().unwrap().script.extend(answers);
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The text sends so far (not typing or seen actions), failed ones included.
    pub fn replies(&self) -> Vec<Seen> {
        let platform = self.platform;
        self.seen()
            .into_iter()
            .filter(|s| is_send(platform, s))
            .collect()
    }
}

fn is_send(platform: Platform, seen: &Seen) -> bool {
    match platform {
        Platform::Telegram => seen.path.ends_with("/sendMessage"),
        Platform::Instagram => seen.body.get("message").is_some(),
    }
}

fn respond(status: u16, body: String, retry_after: Option<u64>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    if let Some(secs) = retry_after {
        r.headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    r
}

async fn handle(
    platform: Platform,
    state: Arc<Mutex<State>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let seen = Seen {
        at: std::time::Instant::now(),
        path,
        authorization,
        body,
    };
    let send = is_send(platform, &seen);
    let (scripted, n) = {
        let mut s = state.lock().unwrap();
        s.seen.push(seen.clone());
        s.counter += 1;
        let scripted = if send { s.script.pop_front() } else { None };
        (scripted, s.counter)
    };
    Ok(match platform {
        Platform::Telegram => telegram(&seen, scripted, n),
        Platform::Instagram => instagram(&seen, scripted, n),
    })
}

/// `POST /bot<token>/<method>`: 401 for another token, 404 for an unknown method.
fn telegram(seen: &Seen, scripted: Option<Answer>, n: u64) -> Response<Full<Bytes>> {
    let error = |code: u16, description: &str| {
        let body = json!({"ok": false, "error_code": code, "description": description});
        respond(code, body.to_string(), None)
    };
    let Some(method) = seen.path.strip_prefix(&format!("/bot{TELEGRAM_TOKEN}/")) else {
        return error(401, "Unauthorized");
    };
    let chat_id = &seen.body["chat_id"];
    if !chat_id.is_i64() && !chat_id.is_string() {
        return error(400, "Bad Request: chat_id is empty");
    }
    match method {
        "sendMessage" => {
            if let Some(answer) = scripted {
                return respond(answer.status, answer.body, answer.retry_after);
            }
            let Some(text) = seen.body["text"].as_str().filter(|t| !t.is_empty()) else {
                return error(400, "Bad Request: message text is empty");
            };
            if text.chars().count() > 4096 {
                return error(400, "Bad Request: message is too long");
            }
            let result = json!({
                "message_id": n,
                "from": {"id": 7000000001u64, "is_bot": true, "first_name": "Example Shop"},
                "chat": {"id": chat_id},
                "date": n,
                "text": text,
            });
            respond(200, json!({"ok": true, "result": result}).to_string(), None)
        }
        "sendChatAction" => respond(200, r#"{"ok":true,"result":true}"#.into(), None),
        _ => error(404, "Not Found"),
    }
}

/// `POST /v23.0/<account>/messages` with `Authorization: Bearer <token>`.
fn instagram(seen: &Seen, scripted: Option<Answer>, n: u64) -> Response<Full<Bytes>> {
    let error = |status: u16, code: u16, message: &str| {
        let body = json!({"error": {"message": message, "type": "IGApiException", "code": code}});
        respond(status, body.to_string(), None)
    };
    if seen.authorization.as_deref() != Some(&format!("Bearer {INSTAGRAM_TOKEN}")) {
        return error(
            401,
            190,
            "Invalid OAuth access token - Cannot parse access token",
        );
    }
    let Some(recipient) = seen.body["recipient"]["id"].as_str() else {
        return error(400, 100, "(#100) The parameter recipient is required");
    };
    if !seen.path.starts_with("/v23.0/") || !seen.path.ends_with("/messages") {
        return error(400, 100, "Unsupported post request");
    }
    if seen.body.get("sender_action").is_some() {
        return respond(200, json!({"recipient_id": recipient}).to_string(), None);
    }
    if let Some(answer) = scripted {
        return respond(answer.status, answer.body, answer.retry_after);
    }
    match seen.body["message"]["text"].as_str() {
        Some(text) if text.len() > 1000 => error(
            400,
            100,
            "(#100) Length of param message[text] must be less than or equal to 1000",
        ),
        Some(text) if !text.is_empty() => respond(
            200,
            json!({"recipient_id": recipient, "message_id": format!("mid.fake{n}")}).to_string(),
            None,
        ),
        _ => error(400, 100, "(#100) Invalid parameter"),
    }
}
