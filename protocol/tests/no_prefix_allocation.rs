//! Proves that no length prefix makes the decoder allocate more than the frame holds: a
//! counting global allocator watches the largest single allocation while decoding crafted
//! frames that claim gigabytes.
#![allow(unsafe_code)] // a global allocator can only be written with `unsafe impl GlobalAlloc`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; we only record sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn length_prefixes_cannot_allocate_beyond_the_frame() {
    // varint 0xFD = u64 follows.
    let claims_4g_bytes = [2u8, 0, 0xFD, 0, 0, 0, 0, 1, 0, 0, 0];
    // Awareness message: Server Awareness(variant 4) with an entry count of 2^40.
    let claims_many_entries = [4u8, 0xFD, 0, 0, 0, 0, 0, 1, 0, 0];
    // Welcome with a room string claiming 2^31 bytes.
    let claims_long_string = [0u8, 1, 0, 0xFC, 0, 0, 0, 0x80];
    // Bus envelopes: origin "a", epoch, counter, prev 0, then an update claiming 2^40 bytes,
    // and an awareness list claiming 2^40 entries.
    let bus_claims_bytes = [1u8, b'a', 0, 0, 0, 0, 0xFD, 0, 0, 0, 0, 0, 1, 0, 0];
    let bus_claims_entries = [1u8, b'a', 0, 0, 0, 1, 0xFD, 0, 0, 0, 0, 0, 1, 0, 0];
    LARGEST.store(0, Ordering::Relaxed);
    assert!(duet_protocol::codec::decode_bus(&bus_claims_bytes).is_err());
    assert!(duet_protocol::codec::decode_bus(&bus_claims_entries).is_err());
    assert!(duet_protocol::decode_client(&claims_4g_bytes).is_err());
    assert!(duet_protocol::decode_server(&claims_many_entries).is_err());
    assert!(duet_protocol::decode_server(&claims_long_string).is_err());
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest < 64 * 1024,
        "decoder allocated {largest} bytes for a tiny frame"
    );
}
