//! A request to a fake platform: borrowed while it is answered ([`Call`]), and kept
//! as a [`Received`] record when the fake records everything.

use http::request::Parts;
use http::{HeaderMap, Method, header};
use serde_json::Value;
use std::time::Instant;

/// One request as an [`Api`](super::Api) sees it while answering it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URL path, without the query.
    pub path: &'a str,
    /// Every header.
    pub headers: &'a HeaderMap,
    /// The JSON body; `Null` when there was none or it was not JSON.
    pub body: &'a Value,
}

impl<'a> Call<'a> {
    /// A header's value, if it is text.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The token of an `Authorization: Bearer <token>` header, if not empty.
    pub fn bearer(&self) -> Option<&'a str> {
        self.header(header::AUTHORIZATION.as_str())
            .and_then(|a| a.strip_prefix("Bearer "))
            .filter(|t| !t.is_empty())
    }
}

/// One request a fake received, as recorded.
#[derive(Debug, Clone)]
pub struct Received {
    /// When its body had been read.
    pub at: Instant,
    /// `POST /path HTTP/1.1`.
    pub request_line: String,
    /// The URL path, without the query.
    pub path: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// Every header.
    pub headers: HeaderMap,
    /// The JSON body; `Null` when there was none or it was not JSON.
    pub body: Value,
}

impl Received {
    /// The record of a request whose head is `parts`.
    pub(super) fn new(parts: &Parts, call: &Call) -> Self {
        Self {
            at: Instant::now(),
            request_line: format!("{} {} {:?}", parts.method, parts.uri, parts.version),
            path: call.path.to_owned(),
            authorization: call
                .header(header::AUTHORIZATION.as_str())
                .map(str::to_owned),
            headers: parts.headers.clone(),
            body: call.body.clone(),
        }
    }

    /// A header's value, by case-insensitive name, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
