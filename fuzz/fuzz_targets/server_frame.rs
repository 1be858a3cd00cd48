//! Fuzzes the server's handling of one WebSocket message of either protocol (y-websocket
//! parsing, awareness translation, duet decoding, update guard, yrs decode + apply).
//! Run: `cargo fuzz run server_frame`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    // libFuzzer's hook aborts on every panic, even a caught one. The server contains panics
    // from yrs on purpose; ours delegates only uncontained panics to libFuzzer's hook, so
    // those (and only those) are reported as crashes.
    init: duet_server::contain::install_panic_hook(),
    |data: &[u8]| {
    duet_server::fuzzing::server_frame(data);
    }
);
