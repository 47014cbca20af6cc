//! What every sender shares about failed HTTP requests: an error's whole chain as one
//! line, classified for the retry loop, with nothing secret in it.

use super::SendError;
use crate::config::Secret;

/// No response: timeouts and connection failures are worth retrying; a request that
/// could not even be built will not improve.
///
/// The URL is stripped before the error is rendered (reqwest prints it, and the
/// Telegram bot token is part of it), and every `secrets` value still found in the
/// text is replaced by `***`.
pub fn transport_error(error: reqwest::Error, secrets: &[&Secret]) -> SendError {
    let retryable = !error.is_builder();
    let message = redact(chain(&error.without_url()), secrets);
    SendError::classified(retryable, None, None, message, None)
}

/// An error and its sources, `a: b: c`, as reqwest puts the useful part in the sources.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `text` with every non-empty secret replaced by `***`.
pub fn redact(mut text: String, secrets: &[&Secret]) -> String {
    for secret in secrets {
        let value = secret.expose();
        if !value.is_empty() && text.contains(value) {
            text = text.replace(value, "***");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_replaces_every_occurrence_of_every_secret() {
        let token = Secret::new("123:abc");
        let other = Secret::new("abc");
        assert_eq!(
            redact("url /bot123:abc/x and 123:abc".into(), &[&token]),
            "url /bot***/x and ***"
        );
        assert_eq!(
            redact("abc then 123:abc".into(), &[&token, &other]),
            "*** then ***"
        );
        assert_eq!(redact("nothing".into(), &[&Secret::new("")]), "nothing");
    }

    #[test]
    fn chain_joins_the_sources() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("outer")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(chain(&error), "outer: inner");
    }
}
