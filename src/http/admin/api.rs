//! `/admin/api/`: the console's JSON. Lists, one conversation, actions, stats and
//! the audit; [`status_of`] is the one place a console error becomes an HTTP status.

use super::super::HttpState;
use super::super::response::{self, Body};
use crate::batch::inspect::{AgendaFilter, AgendaRow};
use crate::console::{self, ConsoleError};
use crate::handoff::{PauseRequest, Trigger};
use crate::message::Conversation;
use crate::store::ConversationLine;
use http::{Response, StatusCode};
use std::collections::HashMap;

/// Rows per page unless `per_page` says otherwise (at most [`MAX_PER_PAGE`]).
const PER_PAGE: usize = 50;
const MAX_PER_PAGE: usize = 500;

/// The HTTP status and the message of a console error; internals are logged, not
/// told.
pub(super) fn status_of(error: &ConsoleError) -> (StatusCode, String) {
    match error {
        ConsoleError::UnknownConversation(_) | ConsoleError::UnknownBatch(_) => {
            (StatusCode::NOT_FOUND, error.to_string())
        }
        ConsoleError::NotApplicable(_) => (StatusCode::CONFLICT, error.to_string()),
        ConsoleError::BadRequest(_) => (StatusCode::BAD_REQUEST, error.to_string()),
        ConsoleError::Store(_) | ConsoleError::Redis(_) => {
            tracing::warn!(%error, "admin: store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "database or Redis unavailable; try again".into(),
            )
        }
    }
}

/// A JSON answer, or the error's.
fn answer(result: Result<impl serde::Serialize, ConsoleError>) -> Response<Body> {
    match result {
        Ok(value) => response::json(StatusCode::OK, &value),
        Err(error) => {
            let (status, message) = status_of(&error);
            response::error(status, &message)
        }
    }
}

/// The query string as a map (later values win).
pub(super) fn query(raw: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect()
}

fn number<T: std::str::FromStr>(
    q: &HashMap<String, String>,
    key: &str,
) -> Result<Option<T>, ConsoleError> {
    q.get(key)
        .map(|v| {
            v.parse()
                .map_err(|_| ConsoleError::BadRequest(format!("{key} must be a number")))
        })
        .transpose()
}

/// The conversation a path segment names.
pub(super) fn conversation(segment: &str) -> Result<Conversation, ConsoleError> {
    super::percent_decoded(segment)
        .as_deref()
        .and_then(Conversation::parse)
        .ok_or_else(|| {
            ConsoleError::BadRequest(
                "name the conversation as {channel}:{account}:{contact}".into(),
            )
        })
}

/// A row of a list, with who answers its conversation.
#[derive(serde::Serialize)]
struct Row<T> {
    #[serde(flatten)]
    row: T,
    mode: console::Mode,
}

/// Rows of `T` with their conversation's mode, read in one query for the page.
async fn with_modes<T>(
    state: &HttpState,
    rows: Vec<T>,
    conversation: impl Fn(&T) -> &str,
) -> Result<Vec<Row<T>>, ConsoleError> {
    let ids: Vec<String> = rows.iter().map(|r| conversation(r).to_owned()).collect();
    let modes = console::modes_of(&state.store, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let mode = modes
                .get(conversation(&row))
                .copied()
                .unwrap_or(console::Mode::Bot);
            Row { row, mode }
        })
        .collect())
}

/// `GET conversations?state=waiting|in_flight|all|failed|recent|paused&page=&per_page=`.
pub(super) async fn conversations(state: &HttpState, raw_query: &str) -> Response<Body> {
    answer(list(state, &query(raw_query)).await)
}

async fn list(
    state: &HttpState,
    q: &HashMap<String, String>,
) -> Result<serde_json::Value, ConsoleError> {
    let page = number::<usize>(q, "page")?.unwrap_or(0);
    let per_page = number::<usize>(q, "per_page")?
        .unwrap_or(PER_PAGE)
        .clamp(1, MAX_PER_PAGE);
    let offset = page * per_page;
    let which = q.get("state").map_or("waiting", String::as_str);
    let filter = match which {
        "waiting" => Some(AgendaFilter::Waiting),
        "in_flight" => Some(AgendaFilter::InFlight),
        "all" => Some(AgendaFilter::All),
        "failed" | "recent" | "paused" => None,
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "state {other:?}: expected waiting, in_flight, all, failed, recent or paused"
            )));
        }
    };
    let now_ms = crate::time::now_ms();
    if let Some(filter) = filter {
        let agenda = state
            .redis_batches
            .agenda_page(filter, offset, per_page)
            .await?;
        let rows = with_modes(state, agenda.rows, |r: &AgendaRow| &r.conversation).await?;
        return Ok(serde_json::json!({
            "state": which, "page": page, "per_page": per_page, "now_ms": now_ms,
            "on_agenda": agenda.on_agenda, "more": agenda.more, "rows": rows,
        }));
    }
    let (offset, limit) = (offset as i64, per_page as i64 + 1);
    if which == "paused" {
        let mut rows = state.store.paused_conversations(offset, limit).await?;
        let more = rows.len() > per_page;
        rows.truncate(per_page);
        let rows: Vec<Row<_>> = rows
            .into_iter()
            .map(|row| Row {
                row,
                mode: console::Mode::Human,
            })
            .collect();
        return Ok(serde_json::json!({
            "state": which, "page": page, "per_page": per_page, "now_ms": now_ms,
            "more": more, "rows": rows,
        }));
    }
    let mut rows = if which == "failed" {
        state.store.failed_batches(offset, limit).await
    } else {
        state.store.recent_conversations(offset, limit).await
    }
    .map_err(ConsoleError::from)?;
    let more = rows.len() > per_page;
    rows.truncate(per_page);
    let rows = with_modes(state, rows, |r: &ConversationLine| &r.conversation).await?;
    Ok(serde_json::json!({
        "state": which, "page": page, "per_page": per_page, "now_ms": now_ms,
        "more": more, "rows": rows,
    }))
}

/// `GET conversations/{id}`: the transcript, Redis state, mode, replies, actions.
pub(super) async fn conversation_view(state: &HttpState, segment: &str) -> Response<Body> {
    let view = async {
        let c = conversation(segment)?;
        console::inspect(&state.store, &state.redis_batches, &c).await
    };
    answer(
        view.await
            .map(|view| serde_json::json!({ "now_ms": crate::time::now_ms(), "view": view })),
    )
}

/// `POST conversations/{id}/{flush|drop|pause|resume}` and `POST batches/{id}/retry`.
pub(super) async fn action(
    state: &HttpState,
    target: &str,
    verb: &str,
    raw_query: &str,
    actor: &str,
) -> Response<Body> {
    let (store, redis, handoff) = (&state.store, &state.redis_batches, &state.handoff);
    let q = query(raw_query);
    let result = async {
        match verb {
            "retry" => console::retry(store, redis, target, actor).await,
            "flush" => console::flush(store, redis, &conversation(target)?, actor).await,
            "drop" => console::drop_collecting(store, redis, &conversation(target)?, actor).await,
            "pause" => {
                let request = PauseRequest {
                    by: actor.to_owned(),
                    minutes: number::<f64>(&q, "minutes")?,
                    reason: q.get("reason").cloned(),
                    trigger: Trigger::Operator,
                };
                let c = conversation(target)?;
                console::pause(store, redis, handoff, &c, request).await
            }
            "resume" => {
                let c = conversation(target)?;
                console::resume(store, redis, handoff, &c, actor).await
            }
            other => Err(ConsoleError::BadRequest(format!("no action {other:?}"))),
        }
    };
    answer(result.await)
}

/// `GET stats?since=24h` or `?from=&to=` (RFC 3339).
pub(super) async fn stats(state: &HttpState, raw_query: &str) -> Response<Body> {
    let q = query(raw_query);
    let result = async {
        let (from, to) = console::stats_range(
            q.get("since").map(String::as_str),
            q.get("from").map(String::as_str),
            q.get("to").map(String::as_str),
            chrono::Utc::now(),
        )?;
        Ok::<_, ConsoleError>(state.store.stats(from, to).await?)
    };
    answer(result.await)
}

/// `GET audit`: the newest console actions.
pub(super) async fn audit(state: &HttpState, raw_query: &str) -> Response<Body> {
    let q = query(raw_query);
    let result = async {
        let limit = number::<i64>(&q, "limit")?.unwrap_or(100).clamp(1, 1000);
        let conversation = q.get("conversation").map(String::as_str);
        Ok::<_, ConsoleError>(state.store.recent_actions(conversation, limit).await?)
    };
    answer(result.await)
}
