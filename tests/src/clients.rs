//! Helpers around the headless client for end-to-end tests.

use crate::eventually;
use duet_client::{Backoff, Client, ClientConfig, Document, Event, RoomName, Utf16Offset};
use std::time::Duration;
use tokio::sync::mpsc;
use yrs::StateVector;
use yrs::updates::decoder::Decode;

/// A client plus its event channel (kept open so the client never sees a closed app).
pub struct TestClient {
    pub client: Client,
    pub events: mpsc::Receiver<Event>,
    pub name: String,
}

/// Starts a client with a fast reconnect backoff.
pub fn start(url: &str, room: &RoomName, name: &str) -> TestClient {
    let mut config = ClientConfig::new(url, room.clone(), name);
    config.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
    };
    let (client, events) = Client::spawn(config, Document::new());
    TestClient {
        client,
        events,
        name: name.to_owned(),
    }
}

impl TestClient {
    pub fn text(&self) -> String {
        self.client.read(|d| d.text())
    }

    pub fn state_vector(&self) -> StateVector {
        let bytes = self.client.read(|d| d.state_vector());
        StateVector::decode_v1(&bytes).unwrap_or_default()
    }

    /// Inserts at a character index (clamped), converting to UTF-16 as the document wants.
    pub fn insert_at_char(&self, char_idx: usize, text: &str) {
        self.client.edit(|d| {
            let c = char_idx.min(d.len_chars());
            let at = d.char_to_utf16(duet_doc::CharIdx(c));
            d.insert(at, text)
                .unwrap_or_else(|e| panic!("insert failed: {e}"));
        });
    }

    /// Deletes `len` characters from character index `from` (clamped).
    pub fn delete_chars(&self, from: usize, len: usize) {
        self.client.edit(|d| {
            let total = d.len_chars();
            let start = from.min(total);
            let end = (start + len).min(total);
            let range: std::ops::Range<Utf16Offset> =
                d.char_to_utf16(duet_doc::CharIdx(start))..d.char_to_utf16(duet_doc::CharIdx(end));
            d.delete(range)
                .unwrap_or_else(|e| panic!("delete failed: {e}"));
        });
    }

    /// Drops every queued event.
    pub fn drain_events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }
}

/// Waits until every client shows the same text and state vector and has nothing unacked.
pub async fn converged(clients: &[TestClient], timeout: Duration) -> anyhow::Result<String> {
    eventually("all clients to converge", timeout, || {
        let first_text = clients[0].text();
        let first_sv = clients[0].state_vector();
        let all = clients.iter().all(|c| {
            c.client.unacked() == 0 && c.text() == first_text && c.state_vector() == first_sv
        });
        all.then_some(first_text)
    })
    .await
    .map_err(|e| {
        let texts: Vec<String> = clients
            .iter()
            .map(|c| format!("{}: {:?} unacked={}", c.name, c.text(), c.client.unacked()))
            .collect();
        e.context(texts.join("\n"))
    })
}
