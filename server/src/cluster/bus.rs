//! The bus: live traffic between the nodes of a cluster that hold copies of the same room.
//!
//! A node publishes each update its room integrates at once (relay never waits for storage or
//! for the bus) and hears the other nodes' updates and awareness for the rooms it has loaded.
//! The bus is allowed to lose, duplicate and reorder: an origin's counters let the receiver
//! see losses ([`crate::cluster::gaps`]), and the log in PostgreSQL repairs them. Nothing on
//! the bus is stored again by its receivers: its origin stores it.
//!
//! [`NoBus`] is the single-node bus: it publishes nowhere and hears nothing.

use crate::cluster::gaps::Seen;
use crate::metrics::Counter;
use crate::store::BoxFuture;
use duet_protocol::RoomName;
use duet_protocol::bus::{Body, Envelope};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// Live traffic between nodes.
pub trait Bus: Send + Sync + 'static {
    /// Sends `body` to the other nodes that hear `room`. Never waits: when the bus is down or
    /// behind, the message is dropped and counted, and its receivers see the gap.
    fn publish(&self, room: &RoomName, body: Body);

    /// Starts hearing `room`'s channels. Resolves once the bus has confirmed the subscription,
    /// so a log read begun after it misses nothing: whatever was published later arrives.
    /// An error means the bus is down now; the room works from the log until
    /// [`BusEvent::Reconnected`].
    fn subscribe(&self, room: &RoomName) -> BoxFuture<'_, Result<(), BusError>>;

    /// Stops hearing `room` (its last local member left).
    fn unsubscribe(&self, room: &RoomName);

    /// Whether the node hears the bus now (for `/healthz`).
    fn connected(&self) -> bool;

    /// The bus's figures for `/metrics`, if it keeps any.
    fn metrics(&self) -> Option<Arc<BusMetrics>> {
        None
    }
}

/// What a bus tells its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// Another node's message for a room this node hears, with the verdict on its counters:
    /// when [`Seen::missed`], read the log past the room's cursor.
    Message {
        room: RoomName,
        envelope: Envelope,
        seen: Seen,
    },
    /// The node stopped hearing the bus: messages are missed until [`BusEvent::Reconnected`].
    Disconnected,
    /// The node hears the bus again after `after` without it, and has subscribed again to
    /// every room it heard: each of them may have missed messages, so read their logs.
    Reconnected { after: Duration },
    /// The node fell behind the bus and dropped messages of these rooms rather than buffer
    /// them without bound: read their logs.
    Lagged { rooms: Vec<RoomName> },
}

/// The bus could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The address is not shown: it may hold a password.
    #[error("the bus address is not valid: {0}")]
    BadAddress(String),
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

/// The single-node bus.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoBus;

impl Bus for NoBus {
    fn publish(&self, _room: &RoomName, _body: Body) {}

    fn subscribe(&self, _room: &RoomName) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn unsubscribe(&self, _room: &RoomName) {}

    /// Nothing to lose: a single node is always whole.
    fn connected(&self) -> bool {
        true
    }
}

/// What a bus counts.
#[derive(Default)]
pub struct BusMetrics {
    /// Messages handed to the bus.
    pub published: Counter,
    /// Messages dropped before reaching the bus (down, or its send queue full).
    pub publish_dropped: Counter,
    /// Messages dropped by the debug-build failpoint.
    pub failpoint_dropped: Counter,
    /// Other nodes' messages heard.
    pub received: Counter,
    /// Gaps and new epochs seen in other nodes' counters (each one sends a room to its log).
    pub gaps: Counter,
    /// Duplicate or stale messages dropped.
    pub duplicates: Counter,
    /// Messages dropped because this node fell behind.
    pub lagged: Counter,
    /// Messages that were not envelopes or named no room.
    pub malformed: Counter,
    /// Connections to the bus re-established.
    pub reconnects: Counter,
}

impl crate::metrics::Section for BusMetrics {
    fn render(&self, out: &mut String) {
        BusMetrics::render(self, out);
    }
}

impl BusMetrics {
    /// Appends the bus's figures in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP duet_bus_messages_total Bus messages by what happened to them.\n# TYPE duet_bus_messages_total counter"
        );
        for (what, c) in [
            ("published", &self.published),
            ("publish_dropped", &self.publish_dropped),
            ("failpoint_dropped", &self.failpoint_dropped),
            ("received", &self.received),
            ("duplicate", &self.duplicates),
            ("lagged", &self.lagged),
            ("malformed", &self.malformed),
        ] {
            let _ = writeln!(
                out,
                "duet_bus_messages_total{{what=\"{what}\"}} {}",
                c.get()
            );
        }
        let _ = writeln!(
            out,
            "# HELP duet_bus_gaps_total Losses seen in other nodes' counters.\n# TYPE duet_bus_gaps_total counter\nduet_bus_gaps_total {}",
            self.gaps.get()
        );
        let _ = writeln!(
            out,
            "# HELP duet_bus_reconnects_total Connections to the bus re-established.\n# TYPE duet_bus_reconnects_total counter\nduet_bus_reconnects_total {}",
            self.reconnects.get()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_single_node_bus_does_nothing_and_is_always_whole() {
        let bus: Arc<dyn Bus> = Arc::new(NoBus);
        let room = RoomName::new("r").unwrap();
        bus.publish(&room, Body::Update(vec![1].into()));
        bus.subscribe(&room).await.unwrap();
        bus.unsubscribe(&room);
        assert!(bus.connected());
        assert!(bus.metrics().is_none());
    }

    #[test]
    fn metrics_render_as_prometheus_text() {
        let m = BusMetrics::default();
        m.published.inc_by(3);
        m.gaps.inc();
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("duet_bus_messages_total{what=\"published\"} 3"));
        assert!(out.contains("duet_bus_gaps_total 1"));
    }
}
