//! Whether the responder is failing as a whole: the last outage (a refused key,
//! an unknown model) until a reply is generated again. Shared by the worker, which
//! reports, and `/readyz`, which shows it. Kept in memory: each process knows its
//! own responder.

use std::sync::Mutex;

/// The responder's last outage, if it has not answered since.
#[derive(Debug, Default)]
pub struct ResponderHealth {
    failing: Mutex<Option<Failing>>,
}

/// An outage, as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    /// The HTTP status, when there was one.
    pub status: Option<u16>,
    /// The responder's message (no secret, no URL).
    pub reason: String,
}

impl ResponderHealth {
    /// The responder refused a request as it will refuse every one.
    pub fn failing(&self, status: Option<u16>, reason: &str) {
        if let Ok(mut failing) = self.failing.lock() {
            *failing = Some(Failing {
                status,
                reason: reason.to_owned(),
            });
        }
    }

    /// The responder generated a reply (or refused one batch only): it works.
    pub fn ok(&self) {
        if let Ok(mut failing) = self.failing.lock() {
            *failing = None;
        }
    }

    /// The outage, while it lasts.
    pub fn current(&self) -> Option<Failing> {
        self.failing.lock().ok().and_then(|f| f.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_lasts_until_the_responder_works_again() {
        let health = ResponderHealth::default();
        assert_eq!(health.current(), None);
        health.failing(Some(401), "HTTP 401: bad key");
        assert_eq!(health.current().unwrap().status, Some(401));
        health.ok();
        assert_eq!(health.current(), None);
    }
}
