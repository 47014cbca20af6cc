//! Every Redis key name lull uses, built in this one place.
//!
//! Standalone with one shard, the names are the seed's:
//! `conv:{channel}:{account}:{contact}:msgs` and `conv:deadlines`. In a Redis
//! Cluster, or with more than one shard, every key of a conversation and its shard's
//! agenda carry the same hash tag, `conv:{N}:…`, so each script touches one slot.
//!
//! Invariant 9 of docs/design.md: a script touches keys of one hash slot only.

use crate::message::Conversation;

/// The key layout: prefix, shard count, and whether hash tags are needed.
#[derive(Debug, Clone)]
pub struct KeySpace {
    prefix: String,
    shards: u16,
    tagged: bool,
}

/// The keys of one conversation, plus the agenda it is scheduled on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationKeys {
    /// Agenda member: `{channel}:{account}:{contact}`.
    pub member: String,
    /// LIST of recent messages.
    pub history: String,
    /// LIST: the batch being collected.
    pub msgs: String,
    /// LIST: the claimed batch.
    pub inflight: String,
    /// STRING: unix ms the collecting batch is due.
    pub deadline: String,
    /// STRING: claim token.
    pub lock: String,
    /// HASH: batch id, start times, claim and supersede counts.
    pub state: String,
    /// STRING: exists while a human agent has the conversation (handoff); holds
    /// the pause time. Same hash tag as the others, so the scripts read it.
    pub mode: String,
    /// ZSET: the shard's agenda.
    pub agenda: String,
}

impl KeySpace {
    /// `tagged` must be true against a Redis Cluster; more than one shard implies it.
    pub fn new(prefix: impl Into<String>, shards: u16, cluster: bool) -> Self {
        let shards = shards.max(1);
        Self {
            prefix: prefix.into(),
            shards,
            tagged: cluster || shards > 1,
        }
    }

    /// Number of agenda shards.
    pub fn shards(&self) -> u16 {
        self.shards
    }

    /// The key prefix (for admin listings).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Which shard a conversation lives on: a stable FNV-1a hash of its id.
    pub fn shard_of(&self, member: &str) -> u16 {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in member.bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        (hash % u32::from(self.shards)) as u16
    }

    fn base(&self, shard: u16) -> String {
        if self.tagged {
            format!("{}{{{}}}:", self.prefix, shard)
        } else {
            self.prefix.clone()
        }
    }

    /// The agenda ZSET of one shard.
    pub fn agenda(&self, shard: u16) -> String {
        format!("{}deadlines", self.base(shard))
    }

    /// Every agenda, one per shard.
    pub fn agendas(&self) -> Vec<(u16, String)> {
        (0..self.shards).map(|s| (s, self.agenda(s))).collect()
    }

    /// The keys of a conversation given its agenda member id.
    pub fn for_member(&self, member: &str) -> ConversationKeys {
        let shard = self.shard_of(member);
        let base = format!("{}{}:", self.base(shard), member);
        ConversationKeys {
            member: member.to_owned(),
            history: format!("{base}history"),
            msgs: format!("{base}msgs"),
            inflight: format!("{base}inflight"),
            deadline: format!("{base}deadline"),
            lock: format!("{base}lock"),
            state: format!("{base}state"),
            mode: format!("{base}mode"),
            agenda: self.agenda(shard),
        }
    }

    /// The keys of a conversation.
    pub fn conversation(&self, conversation: &Conversation) -> ConversationKeys {
        self.for_member(&conversation.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ChannelKind;

    fn maria() -> Conversation {
        Conversation::new(ChannelKind::WhatsApp, "123456789012345", "15550002222")
    }

    #[test]
    fn one_standalone_shard_keeps_the_seed_names() {
        let keys = KeySpace::new("conv:", 1, false).conversation(&maria());
        assert_eq!(keys.msgs, "conv:whatsapp:123456789012345:15550002222:msgs");
        assert_eq!(
            keys.history,
            "conv:whatsapp:123456789012345:15550002222:history"
        );
        assert_eq!(
            keys.deadline,
            "conv:whatsapp:123456789012345:15550002222:deadline"
        );
        assert_eq!(keys.lock, "conv:whatsapp:123456789012345:15550002222:lock");
        assert_eq!(keys.agenda, "conv:deadlines");
        assert_eq!(keys.member, "whatsapp:123456789012345:15550002222");
    }

    #[test]
    fn cluster_keys_of_a_conversation_share_their_agendas_hash_tag() {
        let space = KeySpace::new("conv:", 8, true);
        let keys = space.conversation(&maria());
        let shard = space.shard_of(&keys.member);
        let tag = format!("conv:{{{shard}}}:");
        for key in [
            &keys.msgs,
            &keys.history,
            &keys.inflight,
            &keys.deadline,
            &keys.lock,
            &keys.state,
            &keys.mode,
            &keys.agenda,
        ] {
            assert!(key.starts_with(&tag), "{key} lacks {tag}");
        }
    }

    #[test]
    fn conversations_spread_over_every_shard() {
        let space = KeySpace::new("conv:", 4, true);
        let mut seen = [false; 4];
        for contact in 0..100 {
            seen[space.shard_of(&format!("whatsapp:1:{contact}")) as usize] = true;
        }
        assert_eq!(seen, [true; 4]);
    }
}
