//! Whether a burst answered by two or more replies was split by lull or by the
//! time its messages took to reach it.
//!
//! lull's contract (`BATCH_WINDOW_SECONDS`) is that a batch is not claimed before the
//! window has passed since lull stored its last message. So when a message was
//! stored more than a window after the previous one was POSTed (the sender paused, a
//! redelivery after a refused connection took that long, or lull was slow to store
//! it), lull may rightly have answered the messages before it already: a split
//! there is the window at work, not a violation. A split anywhere else is.

use std::time::{Duration, Instant};

/// When one message of a burst was sent and stored, as the load test saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageTimes {
    /// When its first POST started (redeliveries come later).
    pub posted: Instant,
    /// When its webhook was answered as stored; `None` when it never was.
    pub stored: Option<Instant>,
}

/// Two messages of a burst, next to each other among those answered, whose first
/// answers came from different replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boundary {
    /// The earlier message's position (0-based).
    pub earlier: usize,
    /// The later message's position (0-based).
    pub later: usize,
    /// From the earlier message's first POST to the later one stored; `None` when
    /// the later one was never answered as stored.
    pub gap: Option<Duration>,
}

impl Boundary {
    /// `message 2 stored 4 ms after message 1 was POSTed` (positions from 1).
    pub fn line(&self) -> String {
        let (earlier, later) = (self.earlier + 1, self.later + 1);
        match self.gap {
            Some(gap) => format!(
                "message {later} stored {} ms after message {earlier} was POSTed",
                gap.as_millis()
            ),
            None => format!("message {later} (after message {earlier}) never answered as stored"),
        }
    }
}

/// How a burst was answered, as far as splits go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Every message answered was first answered by the same reply.
    Whole,
    /// Split only where the later message was stored more than the window after the
    /// earlier one was POSTed: lull kept its contract.
    AtLongGaps,
    /// Split at this boundary, though the later message was stored within the window.
    Violation(Boundary),
}

/// Classifies a burst from the reply that first answered each of its messages
/// (typing order, `None` for unanswered, as [`super::bursts::BurstOutcome`] has them)
/// and its messages' `times` (same order). The first boundary not explained by the
/// window is the one reported.
pub fn classify(
    first_replies: &[Option<usize>],
    times: &[MessageTimes],
    window: Duration,
) -> Split {
    // An unanswered message is the "lost" verdict's business: the boundary runs
    // between the answered messages either side of it.
    let answered: Vec<(usize, usize)> = first_replies
        .iter()
        .enumerate()
        .filter_map(|(m, reply)| reply.map(|r| (m, r)))
        .collect();
    let mut split = false;
    for pair in answered.windows(2) {
        let ((earlier, earlier_reply), (later, later_reply)) = (pair[0], pair[1]);
        if earlier_reply == later_reply {
            continue;
        }
        split = true;
        let gap = match (times.get(earlier), times.get(later)) {
            (Some(e), Some(l)) => l.stored.map(|s| s.saturating_duration_since(e.posted)),
            _ => None,
        };
        if gap.is_none_or(|gap| gap <= window) {
            return Split::Violation(Boundary {
                earlier,
                later,
                gap,
            });
        }
    }
    if split {
        Split::AtLongGaps
    } else {
        Split::Whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_millis(200);

    /// Messages POSTed at `posted` ms and stored `stored` ms after the first POST.
    fn times(messages: &[(u64, Option<u64>)]) -> Vec<MessageTimes> {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        messages
            .iter()
            .map(|&(posted, stored)| MessageTimes {
                posted: at(posted),
                stored: stored.map(at),
            })
            .collect()
    }

    #[test]
    fn a_burst_answered_by_one_reply_is_whole_however_slow_its_messages() {
        let slow = times(&[(0, Some(5)), (900, Some(950))]);
        assert_eq!(classify(&[Some(1), Some(1)], &slow, WINDOW), Split::Whole);
    }

    #[test]
    fn a_split_at_a_gap_longer_than_the_window_is_explained() {
        // Message 2 stored 250 ms after message 1 was POSTed.
        let paused = times(&[(0, Some(5)), (240, Some(250)), (255, Some(260))]);
        let firsts = [Some(1), Some(2), Some(2)];
        assert_eq!(classify(&firsts, &paused, WINDOW), Split::AtLongGaps);
    }

    #[test]
    fn a_split_at_a_short_gap_is_a_violation() {
        let quick = times(&[(0, Some(5)), (6, Some(10)), (11, Some(15))]);
        let firsts = [Some(1), Some(2), Some(2)];
        let boundary = Boundary {
            earlier: 0,
            later: 1,
            gap: Some(Duration::from_millis(10)),
        };
        assert_eq!(
            classify(&firsts, &quick, WINDOW),
            Split::Violation(boundary)
        );
    }

    #[test]
    fn a_burst_split_at_two_boundaries_one_short_is_a_violation() {
        // Long gap before message 2, short one before message 3.
        let once_paused = times(&[(0, Some(5)), (240, Some(250)), (255, Some(260))]);
        let firsts = [Some(1), Some(2), Some(3)];
        let boundary = Boundary {
            earlier: 1,
            later: 2,
            gap: Some(Duration::from_millis(20)),
        };
        assert_eq!(
            classify(&firsts, &once_paused, WINDOW),
            Split::Violation(boundary)
        );
    }

    #[test]
    fn a_gap_of_exactly_the_window_does_not_explain_a_split() {
        let on_the_edge = times(&[(0, Some(5)), (150, Some(200))]);
        assert!(matches!(
            classify(&[Some(1), Some(2)], &on_the_edge, WINDOW),
            Split::Violation(_)
        ));
    }

    #[test]
    fn a_split_before_a_message_never_reported_stored_is_a_violation() {
        let unstored = times(&[(0, Some(5)), (300, None)]);
        let boundary = Boundary {
            earlier: 0,
            later: 1,
            gap: None,
        };
        assert_eq!(
            classify(&[Some(1), Some(2)], &unstored, WINDOW),
            Split::Violation(boundary)
        );
    }

    #[test]
    fn a_boundary_reads_with_positions_from_one_and_its_gap_in_ms() {
        let quick = Boundary {
            earlier: 1,
            later: 2,
            gap: Some(Duration::from_micros(4_700)),
        };
        assert_eq!(
            quick.line(),
            "message 3 stored 4 ms after message 2 was POSTed"
        );
        let unstored = Boundary { gap: None, ..quick };
        assert_eq!(
            unstored.line(),
            "message 3 (after message 2) never answered as stored"
        );
    }

    #[test]
    fn the_boundary_skips_an_unanswered_message() {
        // Message 2 was never answered; messages 1 and 3 were, by different replies.
        let quick = times(&[(0, Some(5)), (6, Some(10)), (11, Some(15))]);
        let boundary = Boundary {
            earlier: 0,
            later: 2,
            gap: Some(Duration::from_millis(15)),
        };
        assert_eq!(
            classify(&[Some(1), None, Some(2)], &quick, WINDOW),
            Split::Violation(boundary)
        );
    }
}
