//! Fuzzes the server's handling of one WebSocket message of either protocol (y-websocket
//! parsing, awareness translation, duet decoding, update guard, yrs decode + apply).
//! Run: `cargo fuzz run server_frame`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    duet_server::fuzzing::server_frame(data);
});
