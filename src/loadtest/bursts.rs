//! Which reply answered which message: the per-burst accounting of `lull loadtest
//! ingest`.
//!
//! Every message the load test sends has a text unique within its conversation, and
//! lull's built-in responder (`RESPONDER=builtin`, the default) quotes every message
//! of the batch it answers between “ and ”. So each reply the fake Graph API accepted
//! names exactly the messages it answers, whatever batch ids or instances were
//! involved. From that, per burst: answered once and whole, lost, split, a later part
//! first, resent.

use crate::fake_platform::Delivery;
use std::time::Instant;

/// What became of one burst.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BurstOutcome {
    /// When its last message to be answered got its first answer; `None` while a
    /// message is unanswered.
    pub answered_at: Option<Instant>,
    /// Positions (0-based) of its messages no reply quoted.
    pub unanswered: Vec<usize>,
    /// How many replies gave its messages their first answer (1 when whole).
    pub first_answers: usize,
    /// A message answered before an earlier one of the conversation: (this burst's
    /// message, its reply's number, the earlier message as (burst, position), its
    /// reply's number); replies are numbered from 1 in arrival order.
    pub later_first: Option<(usize, usize, (usize, usize), usize)>,
    /// Its messages quoted by more than one reply: (position, how many replies).
    pub answered_again: Vec<(usize, usize)>,
    /// Per message in typing order, the number of the reply that first answered it
    /// (`None`: none did). Where two differ the burst was split there
    /// ([`super::split`]).
    pub first_replies: Vec<Option<usize>>,
}

impl BurstOutcome {
    /// Every message answered, all by one reply, once, in order.
    pub fn passed(&self) -> bool {
        self.unanswered.is_empty()
            && self.first_answers == 1
            && self.later_first.is_none()
            && self.answered_again.is_empty()
    }
}

/// One conversation's bursts matched against the replies it got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    /// One per burst, in sending order.
    pub bursts: Vec<BurstOutcome>,
    /// Replies that quote none of the conversation's messages (another responder
    /// than the built-in one, a fallback or handoff reply).
    pub unattributed: usize,
}

/// The texts between “ and ” in a built-in reply, in order. A quote cut short (a
/// long reply split into parts) is skipped.
pub fn quotes(reply: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = reply;
    while let Some(open) = rest.find('“') {
        let after = &rest[open + '“'.len_utf8()..];
        let Some(close) = after.find('”') else {
            break;
        };
        found.push(&after[..close]);
        rest = &after[close + '”'.len_utf8()..];
    }
    found
}

/// Whether `replies` quote every one of `texts`: the burst is answered. A responder
/// that quotes nothing (not the built-in one) answers the `nth` burst with its
/// `nth` reply, as far as the load test can tell.
pub fn answers_all(replies: &[Delivery], texts: &[String], nth: usize) -> bool {
    let quoted: std::collections::HashSet<&str> =
        replies.iter().flat_map(|r| quotes(&r.text)).collect();
    if quoted.is_empty() {
        return replies.len() >= nth;
    }
    texts.iter().all(|t| quoted.contains(t.as_str()))
}

/// Matches `replies` (in arrival order) against the texts of each burst (in typing
/// order). Texts must be unique within the conversation and hold no ” of their own.
pub fn attribute(bursts: &[Vec<String>], replies: &[Delivery]) -> Attribution {
    // (burst, position) of each text.
    let position: std::collections::HashMap<&str, (usize, usize)> = bursts
        .iter()
        .enumerate()
        .flat_map(|(b, texts)| {
            texts
                .iter()
                .enumerate()
                .map(move |(m, t)| ((t.as_str()), (b, m)))
        })
        .collect();
    // answers[b][m]: the replies (0-based numbers) quoting that message.
    let mut answers: Vec<Vec<Vec<usize>>> =
        bursts.iter().map(|t| vec![Vec::new(); t.len()]).collect();
    let mut unattributed = 0;
    for (r, reply) in replies.iter().enumerate() {
        let mut named = false;
        for quote in quotes(&reply.text) {
            if let Some(&(b, m)) = position.get(quote) {
                answers[b][m].push(r);
                named = true;
            }
        }
        if !named {
            unattributed += 1;
        }
    }
    // The latest first answer among the messages typed so far, and whose it was.
    let mut latest: Option<(usize, (usize, usize))> = None;
    let mut outcomes = Vec::with_capacity(bursts.len());
    for (b, burst) in answers.iter().enumerate() {
        let mut outcome = BurstOutcome::default();
        let mut firsts = Vec::new();
        for (m, by) in burst.iter().enumerate() {
            outcome.first_replies.push(by.first().map(|r| r + 1));
            let Some(&first) = by.first() else {
                outcome.unanswered.push(m);
                continue;
            };
            if by.len() > 1 {
                outcome.answered_again.push((m, by.len()));
            }
            if let Some((earlier_reply, earlier)) = latest
                && first < earlier_reply
                && outcome.later_first.is_none()
            {
                outcome.later_first = Some((m, first + 1, earlier, earlier_reply + 1));
            }
            if latest.is_none_or(|(r, _)| first > r) {
                latest = Some((first, (b, m)));
            }
            firsts.push(first);
        }
        firsts.sort_unstable();
        firsts.dedup();
        outcome.first_answers = firsts.len();
        if outcome.unanswered.is_empty() {
            outcome.answered_at = firsts.last().map(|&r| replies[r].at);
        }
        outcomes.push(outcome);
    }
    Attribution {
        bursts: outcomes,
        unattributed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(burst: &[&str]) -> Vec<String> {
        burst.iter().map(|t| (*t).to_owned()).collect()
    }

    /// A built-in style reply quoting `quoted`.
    fn reply(quoted: &[&str]) -> Delivery {
        let quoted: Vec<String> = quoted.iter().map(|q| format!("“{q}”")).collect();
        Delivery {
            at: Instant::now(),
            text: format!("Thanks! I got your messages: {}.", quoted.join(", ")),
        }
    }

    fn two_bursts() -> Vec<Vec<String>> {
        vec![texts(&["a1", "a2"]), texts(&["b1", "b2"])]
    }

    #[test]
    fn quotes_are_read_in_order_and_a_cut_one_is_skipped() {
        assert_eq!(quotes("got “x”, “y z” and “cut"), ["x", "y z"]);
        assert!(quotes("no quotes").is_empty());
    }

    #[test]
    fn bursts_each_answered_by_one_reply_pass() {
        let a = attribute(&two_bursts(), &[reply(&["a1", "a2"]), reply(&["b1", "b2"])]);
        assert!(a.bursts.iter().all(BurstOutcome::passed), "{a:?}");
        assert_eq!(a.unattributed, 0);
    }

    #[test]
    fn a_message_no_reply_quotes_makes_its_burst_lost() {
        let a = attribute(&two_bursts(), &[reply(&["a1", "a2"]), reply(&["b1"])]);
        assert_eq!(a.bursts[1].unanswered, [1]);
        assert_eq!(a.bursts[1].answered_at, None);
        assert!(a.bursts[0].passed());
    }

    #[test]
    fn a_burst_answered_by_two_replies_is_split() {
        let a = attribute(&two_bursts(), &[reply(&["a1"]), reply(&["a2"])]);
        assert_eq!(a.bursts[0].first_answers, 2);
        assert_eq!(a.bursts[0].later_first, None);
        assert!(!a.bursts[0].passed());
    }

    #[test]
    fn each_message_names_the_reply_that_first_answered_it() {
        let replies = [reply(&["a1"]), reply(&["a1", "a2"]), reply(&["b1"])];
        let a = attribute(&two_bursts(), &replies);
        assert_eq!(a.bursts[0].first_replies, [Some(1), Some(2)]);
        assert_eq!(a.bursts[1].first_replies, [Some(3), None]);
    }

    #[test]
    fn a_later_message_answered_first_is_reported_with_both_replies() {
        let a = attribute(&two_bursts(), &[reply(&["a2"]), reply(&["a1"])]);
        // a2 got reply 1, before a1 (burst 0, position 0) got reply 2.
        assert_eq!(a.bursts[0].later_first, Some((1, 1, (0, 0), 2)));
    }

    #[test]
    fn a_later_burst_answered_before_an_earlier_one_is_a_later_part_first() {
        let a = attribute(&two_bursts(), &[reply(&["b1", "b2"]), reply(&["a1", "a2"])]);
        assert_eq!(a.bursts[0].later_first, None);
        // b1 got reply 1, before a1 (burst 0, position 0) got reply 2.
        assert_eq!(a.bursts[1].later_first, Some((0, 1, (0, 0), 2)));
    }

    #[test]
    fn the_same_reply_sent_twice_is_a_resend_not_a_split() {
        let a = attribute(&two_bursts(), &[reply(&["a1", "a2"]), reply(&["a1", "a2"])]);
        assert_eq!(a.bursts[0].answered_again, [(0, 2), (1, 2)]);
        assert_eq!(a.bursts[0].first_answers, 1);
    }

    #[test]
    fn a_burst_is_answered_once_a_reply_quotes_each_of_its_messages() {
        let burst = texts(&["b1", "b2"]);
        assert!(!answers_all(&[reply(&["a1"]), reply(&["b1"])], &burst, 2));
        assert!(answers_all(&[reply(&["b1"]), reply(&["b2"])], &burst, 2));
        let plain = Delivery {
            at: Instant::now(),
            text: "Hello".into(),
        };
        assert!(answers_all(&[plain.clone(), plain], &burst, 2));
    }

    #[test]
    fn a_reply_quoting_nothing_sent_is_unattributed() {
        let other = Delivery {
            at: Instant::now(),
            text: "Sorry, something went wrong.".into(),
        };
        let a = attribute(&two_bursts(), &[other, reply(&["a1", "a2"])]);
        assert_eq!(a.unattributed, 1);
        assert!(a.bursts[0].passed());
    }
}
