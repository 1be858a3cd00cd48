//! Plain yrs documents for wire-level tests (the shape every duet and Yjs client uses), and a
//! raw-protocol join that syncs one into a room.

use crate::raw::RawClient;
use duet_protocol::{ClientMsg, ServerMsg};
use std::time::Duration;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

const T: Duration = Duration::from_secs(10);

/// A document as every room holds it (UTF-16 offsets, the root text).
pub use duet_yjs::doc::{new_doc as doc, text_of};

/// Applies an update the server sent; panics (failing the test) if it is not valid.
pub fn apply(doc: &Doc, update: &[u8]) {
    let u = Update::decode_v1(update).expect("server sent a valid update");
    doc.transact_mut().apply_update(u).expect("applies");
}

/// Joins `room` and completes the initial sync both ways into `doc`. The client's step 2
/// carries `seq`; unless `seq` is 0 this returns once it is acknowledged (everything `doc`
/// had is stored).
pub async fn join(url: &str, room: &str, doc: &Doc, seq: u64) -> anyhow::Result<RawClient> {
    let mut c = RawClient::connect(url, room).await?;
    let ServerMsg::Welcome { .. } = c.recv(T).await? else {
        anyhow::bail!("expected Welcome first")
    };
    let server_sv = c
        .recv_until(T, |m| match m {
            ServerMsg::SyncStep1 { state_vector } => Some(state_vector.0.clone()),
            _ => None,
        })
        .await?;
    let sv = StateVector::decode_v1(&server_sv)?;
    let diff = doc.transact().encode_diff_v1(&sv);
    c.send(&ClientMsg::SyncStep2 {
        seq,
        update: diff.into(),
    })
    .await?;
    c.send(&ClientMsg::SyncStep1 {
        state_vector: doc.transact().state_vector().encode_v1().into(),
    })
    .await?;
    // The ack of our step 2 may come before or after the server's step 2.
    let mut step2 = None;
    let mut acked = seq == 0;
    while step2.is_none() || !acked {
        match c.recv(T).await? {
            ServerMsg::SyncStep2 { update } => step2 = Some(update.0),
            ServerMsg::Ack { seq: s } if s >= seq => acked = true,
            _ => {}
        }
    }
    if let Some(update) = step2 {
        apply(doc, &update);
    }
    Ok(c)
}
