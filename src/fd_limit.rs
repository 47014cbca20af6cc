//! The open-files limit (RLIMIT_NOFILE): every connection, pooled database or
//! Redis connection and outbound request holds a file descriptor.
//!
//! Many systems start processes with a soft limit of 1,024 and a much higher hard
//! limit; a server that keeps the soft one runs out of descriptors long before it
//! runs out of anything else. [`raise_open_files`] lifts the soft limit to the hard
//! one, as far as the process may without privileges.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// A limit of "unlimited" (RLIM_INFINITY), as the numbers below show it.
pub const UNLIMITED: u64 = u64::MAX;

/// The soft and hard open-files limits of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The limit in force (descriptors this process may hold); [`UNLIMITED`] for none.
    pub soft: u64,
    /// The ceiling the soft limit may be raised to; [`UNLIMITED`] for none.
    pub hard: u64,
}

/// Why the soft limit could not be raised.
#[derive(Debug, thiserror::Error)]
#[error("could not raise the open-files limit from {} to {}: {source}", .was.soft, .was.hard)]
pub struct FdLimitError {
    /// The limits as they were (and still are).
    pub was: OpenFiles,
    /// What setrlimit said.
    pub source: std::io::Error,
}

/// The current limits.
pub fn open_files() -> OpenFiles {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    OpenFiles {
        soft: current.unwrap_or(UNLIMITED),
        hard: maximum.unwrap_or(UNLIMITED),
    }
}

/// Raises the soft limit to the hard one and logs both (fields `soft`, `hard`, and
/// `was`, the soft limit before); returns the limits now in force.
pub fn raise_open_files() -> Result<OpenFiles, FdLimitError> {
    let was = open_files();
    if was.soft < was.hard {
        let hard = (was.hard != UNLIMITED).then_some(was.hard);
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: hard,
                maximum: hard,
            },
        )
        .map_err(|errno| FdLimitError {
            was,
            source: errno.into(),
        })?;
    }
    let now = open_files();
    tracing::info!(
        soft = now.soft,
        hard = now.hard,
        was = was.soft,
        "open-files limit"
    );
    Ok(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let now = raise_open_files().unwrap();
        assert_eq!(now.soft, now.hard);
        assert_eq!(open_files(), now);
    }
}
