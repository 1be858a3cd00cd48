//! Fuzzes the duet protocol decoder: no input may panic or allocate beyond the frame.
//! Run: `cargo fuzz run protocol_decode` (see fuzz/README.md).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = duet_protocol::decode_client(data);
    let _ = duet_protocol::decode_server(data);
});
