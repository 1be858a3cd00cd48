//! The document plus the bookkeeping of local updates: which still have to be sent, which
//! the server has acknowledged, which were made offline.
//!
//! Plain state, no IO; it lives behind one lock so that "compute the sync diff" and "forget
//! the queued updates the diff already carries" happen together:
//!
//! ```text
//!   edit (online, streaming)  -> seq n, bytes queued in the outbox -> sent as Update{n}
//!   edit (offline)            -> seq n, bytes NOT kept (the doc has them); offline += 1
//!   server SyncStep1{sv}      -> diff = everything the server lacks (all of the above that
//!                                never arrived); outbox cleared; SyncStep2{seq m > n}
//!   Ack{m}                    -> everything up to m is stored, whichever way it travelled
//! ```
//!
//! Sequence numbers grow for the life of the client, not per connection, so "acknowledged up
//! to N" stays meaningful across reconnects.

use duet_doc::{DocError, Document};
use std::collections::VecDeque;

pub(crate) struct DocState {
    pub(crate) doc: Document,
    /// Local updates waiting to be written to the socket, with their sequence numbers.
    outbox: VecDeque<(u64, Vec<u8>)>,
    /// The last sequence number handed out.
    last_seq: u64,
    /// The highest sequence number the server acknowledged.
    acked: u64,
    /// Local updates made while no session was streaming, not yet merged by a sync.
    offline: usize,
    /// How many of `offline` the current session's sync diff carries (reported at Live).
    merging: usize,
    /// The current session has sent its sync diff: new local updates go out one by one.
    streaming: bool,
}

/// What to send in answer to the server's state vector.
#[derive(Debug)]
pub(crate) struct SyncAnswer {
    /// Our state vector, for our own SyncStep1.
    pub(crate) state_vector: Vec<u8>,
    /// Everything the server lacks, for SyncStep2.
    pub(crate) seq: u64,
    pub(crate) diff: Vec<u8>,
}

impl DocState {
    pub(crate) fn new(doc: Document) -> Self {
        let mut state = Self {
            doc,
            outbox: VecDeque::new(),
            last_seq: 0,
            acked: 0,
            offline: 0,
            merging: 0,
            streaming: false,
        };
        // A document handed over with edits in it (a file just loaded, say): they are local
        // updates made before any connection and travel with the first sync diff.
        state.collect_local();
        state
    }

    /// Takes the document's new local updates. Returns whether any were queued for sending.
    pub(crate) fn collect_local(&mut self) -> bool {
        let updates = self.doc.take_local_updates();
        if updates.is_empty() {
            return false;
        }
        if self.streaming {
            for update in updates {
                self.last_seq += 1;
                self.outbox.push_back((self.last_seq, update));
            }
            true
        } else {
            // The document itself keeps them; the next sync diff carries them.
            self.last_seq += updates.len() as u64;
            self.offline += updates.len();
            false
        }
    }

    /// Answers the server's state vector. The diff and the cleared outbox are one step:
    /// whatever was queued is in the diff, so nothing is lost and nothing sent twice.
    pub(crate) fn answer_sync(&mut self, server_sv: &[u8]) -> Result<SyncAnswer, DocError> {
        self.collect_local();
        let diff = self.doc.encode_diff(server_sv)?;
        let state_vector = self.doc.state_vector();
        self.outbox.clear();
        if !self.streaming {
            self.merging = self.offline;
            self.streaming = true;
        }
        self.last_seq += 1;
        Ok(SyncAnswer {
            state_vector,
            seq: self.last_seq,
            diff,
        })
    }

    /// The server's answer to our SyncStep1 arrived: the offline updates are merged. Returns
    /// how many.
    pub(crate) fn synced(&mut self) -> usize {
        let merged = std::mem::take(&mut self.merging);
        self.offline = self.offline.saturating_sub(merged);
        merged
    }

    /// The session ended: updates not yet written wait for the next sync diff.
    pub(crate) fn disconnected(&mut self) {
        self.streaming = false;
        self.merging = 0;
        self.outbox.clear();
    }

    pub(crate) fn take_outbox(&mut self) -> Vec<(u64, Vec<u8>)> {
        self.outbox.drain(..).collect()
    }

    /// Records an acknowledgement. A server acknowledging more than we sent is clamped.
    /// Returns the new highest acknowledged seq if it grew.
    pub(crate) fn ack(&mut self, seq: u64) -> Option<u64> {
        let seq = seq.min(self.last_seq);
        (seq > self.acked).then(|| {
            self.acked = seq;
            seq
        })
    }

    /// Sequence numbers handed out and not yet acknowledged (local updates, plus the sync
    /// diff that carries offline ones).
    pub(crate) fn unacked(&self) -> u64 {
        self.last_seq - self.acked
    }

    pub(crate) fn pending_offline(&self) -> usize {
        self.offline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use duet_doc::Utf16Offset;

    fn insert(state: &mut DocState, at: usize, text: &str) -> bool {
        state
            .doc
            .insert(Utf16Offset(at), text)
            .expect("offset inside the text");
        state.collect_local()
    }

    /// A "server" document that applies what the client sends.
    fn server_applies(server: &mut Document, update: &[u8]) {
        server
            .apply_remote_update(update)
            .expect("client sent a valid update");
    }

    #[test]
    fn offline_edits_travel_in_the_diff_exactly_once() {
        let mut server = Document::with_client_id(1);
        let mut state = DocState::new(Document::with_client_id(2));

        assert!(!insert(&mut state, 0, "ab"), "offline: nothing queued");
        assert!(!insert(&mut state, 2, "cd"));
        assert_eq!(state.pending_offline(), 2);
        assert_eq!(state.unacked(), 2);

        let answer = state.answer_sync(&server.state_vector()).expect("valid sv");
        assert_eq!(answer.seq, 3);
        server_applies(&mut server, &answer.diff);
        assert_eq!(server.text(), "abcd");
        assert_eq!(state.pending_offline(), 2, "merged only once synced");
        assert_eq!(state.synced(), 2);
        assert_eq!(state.pending_offline(), 0);

        // Streaming now: each edit is queued with the next seq.
        assert!(insert(&mut state, 4, "e"));
        let out = state.take_outbox();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, 4);
        server_applies(&mut server, &out[0].1);
        assert_eq!(server.text(), "abcde");

        assert_eq!(state.ack(3), Some(3));
        assert_eq!(state.unacked(), 1);
        assert_eq!(state.ack(2), None, "acks never go back");
        assert_eq!(state.ack(99), Some(4), "clamped to what was sent");
        assert_eq!(state.unacked(), 0);
    }

    #[test]
    fn updates_queued_at_a_disconnect_are_in_the_next_diff_not_duplicated() {
        let mut server = Document::with_client_id(1);
        let mut state = DocState::new(Document::with_client_id(2));
        let answer = state.answer_sync(&server.state_vector()).expect("sv");
        server_applies(&mut server, &answer.diff);
        state.synced();

        // Queued but never written before the connection dropped.
        assert!(insert(&mut state, 0, "lost?"));
        state.disconnected();
        assert!(state.take_outbox().is_empty());
        insert(&mut state, 5, "!");
        assert_eq!(state.pending_offline(), 1);

        let answer = state.answer_sync(&server.state_vector()).expect("sv");
        server_applies(&mut server, &answer.diff);
        // Applying the same diff twice must not double the text either.
        server_applies(&mut server, &answer.diff);
        assert_eq!(server.text(), "lost?!");
        assert_eq!(state.synced(), 1);
    }

    #[test]
    fn a_document_with_content_counts_as_offline_edits() {
        let mut doc = Document::with_client_id(2);
        doc.insert(Utf16Offset(0), "loaded from disk")
            .expect("empty doc accepts an insert at 0");
        let mut state = DocState::new(doc);
        assert_eq!(state.pending_offline(), 1);
        let mut server = Document::with_client_id(1);
        let answer = state.answer_sync(&server.state_vector()).expect("sv");
        server_applies(&mut server, &answer.diff);
        assert_eq!(server.text(), "loaded from disk");
    }

    #[test]
    fn a_garbage_state_vector_is_an_error_not_a_panic() {
        let mut state = DocState::new(Document::with_client_id(2));
        insert(&mut state, 0, "x");
        assert!(
            state
                .answer_sync(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x0f])
                .is_err()
        );
        assert_eq!(state.pending_offline(), 1, "nothing lost");
    }
}
