//! Gap detection on the bus: which messages of an origin a receiver missed on one channel.
//!
//! The bus delivers at most once (Redis pub/sub drops messages when a subscriber lags or the
//! connection breaks). Every envelope names its origin's epoch, its counter (one sequence per
//! origin and epoch, across all rooms) and `prev`, the origin's previous counter on the same
//! channel (see `duet_protocol::bus`). So per channel and origin a receiver keeps the last
//! (epoch, counter) it heard and judges each new message against it:
//!
//! ```text
//!   last (e, 17)   next (e, 23, prev 17)  -> Next       (18..22 went to other channels)
//!   last (e, 17)   next (e, 23, prev 20)  -> Gap 18..=20 (20 certainly lost, maybe 18, 19)
//!   last (e, 17)   next (e, 23, prev 0)   -> Next       (the origin began this channel anew)
//!   last (e, 17)   next (e+1, 2, prev 0)  -> NewEpoch   (the origin restarted)
//!   last (e, 17)   next (e, 17 or less)   -> Duplicate  (drop it)
//!   last (e, 17)   next (e-1, ...)        -> Stale      (a late message of a past run)
//! ```
//!
//! Pure and synchronous: the bus feeds it, the cluster acts on the verdicts (a gap or a new
//! epoch makes the room read the log past its cursor).

use duet_protocol::bus::NodeId;
use std::collections::HashMap;
use std::hash::Hash;

/// The verdict on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The first message heard from this origin on this channel: nothing to compare with.
    First,
    /// Nothing was missed since the origin's previous message here.
    Next,
    /// Messages of this channel with counters in `after + 1 ..= upto` were missed; at least
    /// `upto` (the message's `prev`) certainly was.
    Gap { after: u64, upto: u64 },
    /// The origin restarted: its counters began anew, and what it relayed but had not stored
    /// before may be gone from every node but the log.
    NewEpoch { old: u64 },
    /// Heard before (or overtaken): nothing new.
    Duplicate,
    /// From an epoch older than one already heard from the origin.
    Stale,
}

impl Seen {
    /// Whether the receiver should read the log: something may have been missed.
    pub fn missed(self) -> bool {
        matches!(self, Seen::Gap { .. } | Seen::NewEpoch { .. })
    }
}

#[derive(Debug, Clone, Copy)]
struct Last {
    epoch: u64,
    counter: u64,
}

/// What a receiver heard last per channel `K` (a room's channel, say) and origin.
#[derive(Debug)]
pub struct Gaps<K> {
    last: HashMap<K, HashMap<NodeId, Last>>,
}

impl<K> Default for Gaps<K> {
    fn default() -> Self {
        Self {
            last: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> Gaps<K> {
    /// Judges a message `(epoch, counter, prev)` of `origin` on `channel` and remembers it
    /// unless it was a duplicate or stale.
    pub fn observe(
        &mut self,
        channel: K,
        origin: &NodeId,
        epoch: u64,
        counter: u64,
        prev: u64,
    ) -> Seen {
        let origins = self.last.entry(channel).or_default();
        let Some(last) = origins.get_mut(origin) else {
            origins.insert(origin.clone(), Last { epoch, counter });
            return Seen::First;
        };
        let seen = if epoch < last.epoch {
            return Seen::Stale;
        } else if epoch > last.epoch {
            Seen::NewEpoch { old: last.epoch }
        } else if counter <= last.counter {
            return Seen::Duplicate;
        } else if prev == last.counter || prev == 0 {
            Seen::Next
        } else if prev > last.counter {
            Seen::Gap {
                after: last.counter,
                upto: prev,
            }
        } else {
            // `prev` below what we heard last: the origin's link skips a message we did hear,
            // which a well-behaved origin never does. Read the log rather than trust either.
            Seen::Gap {
                after: prev,
                upto: last.counter,
            }
        };
        *last = Last { epoch, counter };
        seen
    }

    /// Forgets a channel (the node stopped hearing it): the next message there is a `First`.
    pub fn forget(&mut self, channel: &K) {
        self.last.remove(channel);
    }

    /// Forgets an origin everywhere (its heartbeat went stale and it was written off).
    pub fn forget_origin(&mut self, origin: &NodeId) {
        self.last.retain(|_, origins| {
            origins.remove(origin);
            !origins.is_empty()
        });
    }

    /// Channels remembered (for tests and metrics).
    pub fn channels(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    /// `(channel, origin, epoch, counter, prev)`
    type Msg<'a> = (&'a str, &'a str, u64, u64, u64);

    /// Feeds messages in order and returns the verdicts.
    fn run(messages: &[Msg]) -> Vec<Seen> {
        let mut gaps = Gaps::default();
        messages
            .iter()
            .map(|&(ch, origin, epoch, counter, prev)| {
                gaps.observe(ch.to_owned(), &node(origin), epoch, counter, prev)
            })
            .collect()
    }

    #[test]
    fn verdicts() {
        use Seen::*;
        let table: &[(&str, &[Msg], &[Seen])] = &[
            (
                "in order on one channel",
                &[
                    ("r", "a", 1, 1, 0),
                    ("r", "a", 1, 2, 1),
                    ("r", "a", 1, 3, 2),
                ],
                &[First, Next, Next],
            ),
            (
                "counters of other channels in between are not gaps",
                &[
                    ("r", "a", 1, 2, 0),
                    ("s", "a", 1, 3, 0),
                    ("r", "a", 1, 4, 2),
                ],
                &[First, First, Next],
            ),
            (
                "a lost message",
                &[
                    ("r", "a", 1, 1, 0),
                    ("r", "a", 1, 3, 2),
                    ("r", "a", 1, 4, 3),
                ],
                &[First, Gap { after: 1, upto: 2 }, Next],
            ),
            (
                "several lost, with other channels' counters among them",
                &[("r", "a", 1, 5, 0), ("r", "a", 1, 20, 12)],
                &[First, Gap { after: 5, upto: 12 }],
            ),
            (
                "the origin began the channel anew (it reloaded the room)",
                &[
                    ("r", "a", 1, 5, 0),
                    ("r", "a", 1, 9, 0),
                    ("r", "a", 1, 10, 9),
                ],
                &[First, Next, Next],
            ),
            (
                "the origin restarted",
                &[
                    ("r", "a", 1, 40, 0),
                    ("r", "a", 2, 1, 0),
                    ("r", "a", 2, 2, 1),
                ],
                &[First, NewEpoch { old: 1 }, Next],
            ),
            (
                "duplicates and a late message of a past run",
                &[
                    ("r", "a", 2, 3, 0),
                    ("r", "a", 2, 3, 0),
                    ("r", "a", 2, 2, 0),
                    ("r", "a", 1, 9, 8),
                    ("r", "a", 2, 4, 3),
                ],
                &[First, Duplicate, Duplicate, Stale, Next],
            ),
            (
                "origins are judged apart",
                &[
                    ("r", "a", 1, 1, 0),
                    ("r", "b", 1, 7, 0),
                    ("r", "a", 1, 2, 1),
                ],
                &[First, First, Next],
            ),
            (
                "a link below what was heard is read as a gap",
                &[("r", "a", 1, 5, 0), ("r", "a", 1, 8, 3)],
                &[First, Gap { after: 3, upto: 5 }],
            ),
        ];
        for (name, messages, expected) in table {
            assert_eq!(run(messages), *expected, "{name}");
        }
    }

    #[test]
    fn every_dropped_message_is_named_by_the_next_one_heard() {
        // One origin publishing 1..=30 on one channel; every third message is lost.
        let mut gaps = Gaps::default();
        let a = node("a");
        let mut named = Vec::new();
        let mut prev = 0;
        for counter in 1..=31u64 {
            if counter % 3 != 0
                && let Seen::Gap { after, upto } = gaps.observe("r", &a, 1, counter, prev)
            {
                named.extend(after + 1..=upto);
            }
            prev = counter;
        }
        let dropped: Vec<u64> = (1..=31).filter(|c| c % 3 == 0).collect();
        assert_eq!(named, dropped);
    }

    #[test]
    fn forgetting() {
        let mut gaps = Gaps::default();
        let (a, b) = (node("a"), node("b"));
        gaps.observe("r", &a, 1, 1, 0);
        gaps.observe("s", &a, 1, 2, 0);
        gaps.observe("s", &b, 1, 1, 0);
        gaps.forget(&"r");
        assert_eq!(gaps.observe("r", &a, 1, 9, 7), Seen::First);
        gaps.forget_origin(&a);
        assert_eq!(gaps.channels(), 1, "s still hears b");
        assert_eq!(gaps.observe("s", &a, 1, 10, 2), Seen::First);
        assert_eq!(gaps.observe("s", &b, 1, 3, 1), Seen::Next);
    }

    #[test]
    fn only_gaps_and_new_epochs_send_a_receiver_to_the_log() {
        assert!(Seen::Gap { after: 1, upto: 2 }.missed());
        assert!(Seen::NewEpoch { old: 1 }.missed());
        for seen in [Seen::First, Seen::Next, Seen::Duplicate, Seen::Stale] {
            assert!(!seen.missed(), "{seen:?}");
        }
    }
}
