//! Fuzzes the update guard and yrs decode + apply as a room runs them.
//! Run: `cargo fuzz run yrs_update`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    duet_server::fuzzing::update(data);
});
