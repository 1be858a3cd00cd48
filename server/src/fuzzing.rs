//! Entry points for the fuzz targets in `fuzz/` (not part of the public API).
//!
//! They run untrusted bytes through exactly what the server does with a frame before any
//! room state is shared: the y-websocket frame parser and awareness translation, the duet
//! decoder, the update guard, and decode + apply on a throwaway document.

use crate::doc::{apply_update, new_doc};

/// Handles `frame` as the server would handle one binary WebSocket message of either protocol.
pub fn server_frame(frame: &[u8]) {
    if let Ok(messages) = duet_yjs::wire::parse_frame(frame) {
        for msg in messages {
            match msg {
                duet_yjs::wire::YMsg::SyncStep2(update) | duet_yjs::wire::YMsg::Update(update) => {
                    let _ = apply_update(&new_doc(), update, true);
                }
                duet_yjs::wire::YMsg::Awareness(body) => {
                    if let Ok(entries) = duet_yjs::wire::decode_awareness(body) {
                        for e in entries {
                            if let Some(json) = e.json {
                                let state = duet_yjs::awareness::peer_state_from_json(&json);
                                let _ = duet_yjs::awareness::peer_state_to_json(&state);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if let Ok(duet_protocol::ClientMsg::Update { update, .. }) = duet_protocol::decode_client(frame)
    {
        let _ = apply_update(&new_doc(), &update, true);
    }
}

/// Applies `update` to a throwaway document through the guard, as a room does.
pub fn update(update: &[u8]) {
    let _ = apply_update(&new_doc(), update, false);
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_points_accept_anything() {
        super::server_frame(&[0, 2, 3, 1, 2, 3]);
        super::server_frame(&[]);
        super::update(&[0x80, 0x80, 0x80, 0x80, 0x01]);
    }
}
