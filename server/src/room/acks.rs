//! The acknowledgement pipeline: the room's appends in flight, in order, and the updates that
//! needed no append waiting behind them, so each author is acknowledged only once everything
//! before its update is stored ("acknowledged means stored"; acks are cumulative).
//!
//! The task feeds the store's answers back in the order the appends were made (appends of one
//! room reach the log in call order), so the oldest waiting append is always the one answered.
//! Once one append failed, nothing more is acknowledged: an ack covers every earlier seq.

use crate::store::{Seq, StoreError};
use std::collections::VecDeque;
use std::time::Instant;

/// One update waiting for its acknowledgement.
#[derive(Debug)]
pub(super) struct Waiting {
    pub author: u64,
    /// The author's own number for it (duet clients), `None` for Yjs clients (no acks).
    pub seq: Option<u64>,
    pub arrived: Instant,
    /// Bytes appended (0 for an update that needed no append).
    pub bytes: usize,
    /// What the store said: `Ok(Some(seq))` stored at `seq`, `Ok(None)` nothing to store.
    result: Option<Result<Option<Seq>, StoreError>>,
}

/// An update whose turn came: what the store said about it, in order.
pub(super) struct Settled {
    pub waiting: Waiting,
    pub result: Result<Option<Seq>, StoreError>,
}

#[derive(Debug, Default)]
pub(super) struct Acks {
    waiting: VecDeque<Waiting>,
    /// Why the room stopped acknowledging (an append failed).
    failed: Option<String>,
}

impl Acks {
    /// An update handed to the store.
    pub fn appended(&mut self, author: u64, seq: Option<u64>, arrived: Instant, bytes: usize) {
        self.waiting.push_back(Waiting {
            author,
            seq,
            arrived,
            bytes,
            result: None,
        });
    }

    /// An update with nothing new to store: acknowledged once the appends before it are
    /// ([`Acks::next_settled`]).
    pub fn unchanged(&mut self, author: u64, seq: Option<u64>, arrived: Instant) {
        self.waiting.push_back(Waiting {
            author,
            seq,
            arrived,
            bytes: 0,
            result: Some(Ok(None)),
        });
    }

    /// The store's answer to the oldest append still waiting.
    pub fn stored(&mut self, result: Result<Seq, StoreError>) {
        match self.waiting.iter_mut().find(|w| w.result.is_none()) {
            Some(w) => w.result = Some(result.map(Some)),
            None => tracing::error!("a store answer arrived with no append waiting for it"),
        }
    }

    /// The next answered update at the front, in order.
    pub fn next_settled(&mut self) -> Option<Settled> {
        if self.waiting.front().is_none_or(|w| w.result.is_none()) {
            return None;
        }
        let mut waiting = self.waiting.pop_front()?;
        let result = waiting.result.take()?;
        Some(Settled { waiting, result })
    }

    /// Stops acknowledging, for good.
    pub fn fail(&mut self, why: String) {
        self.failed.get_or_insert(why);
    }

    /// Why the room refuses writes, once an append failed.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Appends still waiting for the store.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.waiting.iter().filter(|w| w.result.is_none()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(acks: &mut Acks) -> Vec<(u64, Option<u64>)> {
        std::iter::from_fn(|| acks.next_settled())
            .map(|s| (s.waiting.author, s.waiting.seq))
            .collect()
    }

    #[test]
    fn an_update_with_nothing_to_store_waits_for_the_appends_before_it() {
        let now = Instant::now();
        let mut acks = Acks::default();
        acks.appended(1, Some(1), now, 10);
        acks.unchanged(2, Some(7), now);
        assert!(order(&mut acks).is_empty(), "behind 1's append");
        acks.appended(1, Some(2), now, 10);
        assert_eq!(acks.in_flight(), 2);
        acks.stored(Ok(Seq(4)));
        assert_eq!(order(&mut acks), [(1, Some(1)), (2, Some(7))]);
        acks.stored(Ok(Seq(5)));
        assert_eq!(order(&mut acks), [(1, Some(2))]);
        acks.unchanged(3, None, now);
        assert_eq!(order(&mut acks), [(3, None)]);
        assert_eq!(acks.in_flight(), 0);
    }
}
