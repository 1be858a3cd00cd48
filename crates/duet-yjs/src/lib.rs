//! Yjs as duet speaks it, in one IO-free place: the y-websocket wire ([`wire`]: y-protocols
//! sync, awareness and auth messages over [`lib0`]), the translation between the awareness
//! JSON Yjs editor bindings write and duet's typed cursors ([`awareness`]), and the documents
//! every duet and Yjs client edits ([`doc`]: the root text and UTF-16 offsets).
//!
//! The server, the load generator and the end-to-end tests all use it; duet's own protocol
//! (`duet.vN`) stays in `duet-protocol`. Decoding yrs structures from peer bytes runs inside
//! [`contain::contained`], since yrs has panicked (and asserts) on malformed input.

// Tests may unwrap: a panic there is a failed test, which is what we want.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod awareness;
pub mod contain;
pub mod doc;
pub mod wire;

/// lib0's encoding (the reader and writer live with the update guard, which walks updates
/// with them and may depend on nothing else).
pub use duet_guard::lib0;
