//! `lull healthcheck`: the container's health check. It asks the running
//! service's `/healthz` over loopback and succeeds only on its `ok`, so the image
//! needs no shell tricks, curl or wget (Debian's `/bin/sh` is dash, which has no
//! `/dev/tcp`).

use std::net::IpAddr;
use std::time::Duration;

/// Why the service does not count as healthy.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Nothing answered (not listening yet, stopped, or too slow).
    #[error("no answer from {url}: {reason}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// Why not.
        reason: String,
    },
    /// It answered, but not `200 ok`.
    #[error("{url} answered {status}: {body}")]
    Unhealthy {
        /// What was asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
}

/// The health URL of a service listening on `host:port`, as seen from its own
/// machine: an unspecified address (listening on all of them) is asked on loopback.
pub fn healthz_url(host: &str, port: u16) -> String {
    match host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() && ip.is_ipv4() => format!("http://127.0.0.1:{port}/healthz"),
        Ok(ip) if ip.is_unspecified() => format!("http://[::1]:{port}/healthz"),
        Ok(IpAddr::V6(ip)) => format!("http://[{ip}]:{port}/healthz"),
        Ok(IpAddr::V4(ip)) => format!("http://{ip}:{port}/healthz"),
        Err(_) => format!("http://{host}:{port}/healthz"),
    }
}

/// Asks `url` once, within `timeout`.
pub async fn probe(url: &str, timeout: Duration) -> Result<(), ProbeError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let unreachable = |reason: String| ProbeError::Unreachable {
        url: url.to_owned(),
        reason,
    };
    // Loopback, always: an HTTP_PROXY or ALL_PROXY in the container's environment
    // must not take the probe elsewhere.
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| unreachable(e.without_url().to_string()))?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    if status == 200 && body.trim() == "ok" {
        return Ok(());
    }
    Err(ProbeError::Unhealthy {
        url: url.to_owned(),
        status,
        body: body.chars().take(200).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_listening_everywhere_is_asked_on_loopback() {
        assert_eq!(
            healthz_url("0.0.0.0", 8000),
            "http://127.0.0.1:8000/healthz"
        );
        assert_eq!(healthz_url("::", 8000), "http://[::1]:8000/healthz");
        assert_eq!(healthz_url("[::]", 8000), "http://[::1]:8000/healthz");
    }

    #[test]
    fn a_service_on_one_address_is_asked_there() {
        assert_eq!(healthz_url("10.0.0.5", 80), "http://10.0.0.5:80/healthz");
        assert_eq!(healthz_url("fd00::5", 80), "http://[fd00::5]:80/healthz");
        assert_eq!(
            healthz_url("lull.internal", 80),
            "http://lull.internal:80/healthz"
        );
    }
}
