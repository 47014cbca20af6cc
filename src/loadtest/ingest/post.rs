//! Delivering one webhook as Meta does: signed, POSTed, and redelivered with backoff
//! while lull answers a 5xx or cannot be reached. With several lull instances (the
//! chaos run), each redelivery goes to the next one, as a load balancer would send it.

use crate::channel::meta::SIGNATURE_HEADER;
use crate::channel::transport::chain;
use crate::config::Secret;
use crate::loadtest::retry::Backoff;
use crate::loadtest::webhook::sign;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What became of one webhook.
#[derive(Debug)]
pub(super) enum Delivered {
    /// Answered 200 with this JSON, after `retries` redeliveries; `latency` is the
    /// accepted POST's.
    Accepted {
        answer: Value,
        latency: Duration,
        retries: u32,
    },
    /// Refused in a way a platform does not retry (a 4xx, a 200 that is not JSON).
    Refused { reason: String },
    /// Still refused with a 5xx or undeliverable when the retry time ran out.
    GaveUp { reason: String, retries: u32 },
}

/// One attempt's outcome.
enum Attempt {
    Answered(Value),
    Retryable(String),
    Final(String),
}

/// POSTs webhooks to one or more lull instances.
pub(super) struct Poster {
    client: reqwest::Client,
    /// `…/api/whatsapp/webhook` of each instance.
    urls: Vec<String>,
    secret: Option<Secret>,
    backoff: Backoff,
    /// POSTs made, redeliveries included.
    pub(super) sent: AtomicU64,
    /// Redeliveries made.
    pub(super) retries: AtomicU64,
}

impl Poster {
    pub(super) fn new(
        client: reqwest::Client,
        urls: Vec<String>,
        secret: Option<Secret>,
        backoff: Backoff,
    ) -> Self {
        Self {
            client,
            urls,
            secret,
            backoff,
            sent: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// How many lull instances it POSTs to.
    pub(super) fn instances(&self) -> usize {
        self.urls.len()
    }

    /// Delivers `body`: first to instance `lane` (modulo their number), each
    /// redelivery to the next one.
    pub(super) async fn deliver(&self, lane: usize, body: &[u8]) -> Delivered {
        let first = Instant::now();
        let mut retries = 0;
        loop {
            let url = &self.urls[(lane + retries as usize) % self.urls.len()];
            let started = Instant::now();
            let reason = match self.attempt(url, body).await {
                Attempt::Answered(answer) => {
                    return Delivered::Accepted {
                        answer,
                        latency: started.elapsed(),
                        retries,
                    };
                }
                Attempt::Final(reason) => return Delivered::Refused { reason },
                Attempt::Retryable(reason) => reason,
            };
            let next = retries + 1;
            let Some(delay) = self
                .backoff
                .next(next, first.elapsed(), rand::random::<f64>())
            else {
                return Delivered::GaveUp { reason, retries };
            };
            tokio::time::sleep(delay).await;
            retries = next;
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn attempt(&self, url: &str, body: &[u8]) -> Attempt {
        let mut request = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, sign(secret, body));
        }
        let response = request.body(body.to_vec()).send().await;
        self.sent.fetch_add(1, Ordering::Relaxed);
        // Not delivered (refused, reset, timed out): Meta tries again later.
        let response = match response {
            Ok(response) => response,
            Err(error) => return Attempt::Retryable(chain(&error)),
        };
        let status = response.status();
        let text = match response.text().await {
            Ok(text) => text,
            Err(error) => return Attempt::Retryable(chain(&error)),
        };
        if status.is_server_error() {
            return Attempt::Retryable(format!("answered {status}: {text}"));
        }
        if status != reqwest::StatusCode::OK {
            return Attempt::Final(format!("answered {status}: {text}"));
        }
        match serde_json::from_str(&text) {
            Ok(answer) => Attempt::Answered(answer),
            Err(_) => Attempt::Final(format!("answered 200 with {text}")),
        }
    }
}
