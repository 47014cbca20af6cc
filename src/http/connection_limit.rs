//! How many connections the listener holds at once (MAX_CONNECTIONS), and how long
//! a connection may keep one while sending nothing.
//!
//! The default cap is what the open-files limit leaves after everything else the
//! process holds: the PostgreSQL and Redis pools, outbound requests to the platforms
//! and the LLM, and a fixed allowance for the rest. A MAX_CONNECTIONS above that is
//! refused at start rather than clamped: the operator asked for something the
//! process cannot hold, and past it every new descriptor (a database connection, a
//! reply's request) would fail with "Too many open files".

use std::time::Duration;

/// Descriptors kept for what the [`Reserve`] does not count: the listener, stdio,
/// the runtime's epoll and wakers, log files, DNS lookups, probes, migrations.
pub const FIXED_RESERVE: u64 = 64;

/// The smallest cap a default may be, however low the open-files limit.
pub const MIN_CONNECTIONS: usize = 32;

/// How long a connection may take to send a request's headers; hyper starts this
/// timer whenever it waits for a request head, so it also closes a connection that
/// sends nothing after connecting, or nothing after its last response (the
/// keep-alive idle timeout).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What else holds descriptors besides inbound connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserve {
    /// DATABASE_POOL_SIZE.
    pub database_pool: u64,
    /// REDIS_POOL_SIZE (counted twice: a cluster client holds a connection per
    /// node, and reconnects overlap the old socket).
    pub redis_pool: u64,
    /// Outbound requests at once (platform APIs and the LLM).
    pub outbound: u64,
}

impl Reserve {
    /// Every descriptor reserved, [`FIXED_RESERVE`] included.
    pub fn total(&self) -> u64 {
        self.database_pool
            .saturating_add(self.redis_pool.saturating_mul(2))
            .saturating_add(self.outbound)
            .saturating_add(FIXED_RESERVE)
    }
}

/// MAX_CONNECTIONS cannot be held under the open-files limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid MAX_CONNECTIONS: {requested} is more than the open-files limit ({open_files}) leaves \
     after {reserved} descriptors for the pools and outbound requests (at most {allowed}); \
     lower it or unset it, or raise the hard open-files limit (ulimit -Hn, LimitNOFILE=)"
)]
pub struct ConnectionLimitError {
    /// MAX_CONNECTIONS as set.
    pub requested: usize,
    /// The most the limit allows.
    pub allowed: usize,
    /// The soft open-files limit.
    pub open_files: u64,
    /// Descriptors reserved for the rest of the process.
    pub reserved: u64,
}

/// What the listener needs to bound its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// Connections held at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
}

impl ConnectionSettings {
    /// MAX_CONNECTIONS (`requested`), or the default [`default_max_connections`]
    /// derives from the soft open-files limit; refused when above what that limit
    /// leaves.
    pub fn new(
        requested: Option<usize>,
        open_files: u64,
        reserve: Reserve,
    ) -> Result<Self, ConnectionLimitError> {
        let allowed = default_max_connections(open_files, reserve);
        let max_connections = match requested {
            Some(requested) if requested > allowed => {
                return Err(ConnectionLimitError {
                    requested,
                    allowed,
                    open_files,
                    reserved: reserve.total(),
                });
            }
            Some(requested) => requested,
            None => allowed,
        };
        Ok(Self {
            max_connections,
            header_read_timeout: HEADER_READ_TIMEOUT,
        })
    }
}

/// The soft open-files limit minus the [`Reserve`], never below
/// [`MIN_CONNECTIONS`] nor above what a semaphore holds.
pub fn default_max_connections(open_files: u64, reserve: Reserve) -> usize {
    let left = open_files.saturating_sub(reserve.total());
    let most = tokio::sync::Semaphore::MAX_PERMITS as u64;
    left.clamp(MIN_CONNECTIONS as u64, most) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults of a `lull serve`: 16 database, 4 Redis, 32 workers × 2.
    const DEFAULTS: Reserve = Reserve {
        database_pool: 16,
        redis_pool: 4,
        outbound: 64,
    };

    #[test]
    fn the_default_cap_is_the_limit_less_the_pools_and_outbound_requests() {
        assert_eq!(DEFAULTS.total(), 16 + 8 + 64 + FIXED_RESERVE);
        assert_eq!(default_max_connections(1024, DEFAULTS), 1024 - 152);
        assert_eq!(default_max_connections(65_536, DEFAULTS), 65_536 - 152);
        let bigger = Reserve {
            database_pool: 100,
            ..DEFAULTS
        };
        assert_eq!(default_max_connections(1024, bigger), 1024 - 236);
    }

    #[test]
    fn the_default_cap_has_a_floor_and_a_ceiling() {
        assert_eq!(default_max_connections(100, DEFAULTS), MIN_CONNECTIONS);
        assert_eq!(default_max_connections(0, DEFAULTS), MIN_CONNECTIONS);
        assert_eq!(
            default_max_connections(crate::fd_limit::UNLIMITED, DEFAULTS),
            tokio::sync::Semaphore::MAX_PERMITS
        );
    }

    #[test]
    fn max_connections_is_taken_up_to_what_the_limit_leaves_and_refused_above() {
        let settings = ConnectionSettings::new(None, 1024, DEFAULTS).unwrap();
        assert_eq!(settings.max_connections, 872);
        assert_eq!(settings.header_read_timeout, HEADER_READ_TIMEOUT);
        let set = ConnectionSettings::new(Some(872), 1024, DEFAULTS).unwrap();
        assert_eq!(set.max_connections, 872);
        let error = ConnectionSettings::new(Some(873), 1024, DEFAULTS).unwrap_err();
        assert_eq!((error.requested, error.allowed), (873, 872));
        assert!(
            error
                .to_string()
                .starts_with("invalid MAX_CONNECTIONS: 873")
        );
    }
}
