//! Running yrs on untrusted input without letting a panic escape: [`contained`] and the panic
//! hook come from `duet_yjs::contain` (re-exported here); what is the server's own is the
//! debug-only failpoint that panics on demand mid-apply.

pub use duet_yjs::contain::{Panicked, contained, install_panic_hook};

/// Debug builds only: a panic on demand in the middle of applying an update, so the end-to-end
/// tests can exercise the containment path (close 1011, room reloaded from storage) without
/// depending on a yrs bug that the guard (`duet-guard`) lets through. Release builds do not contain it.
///
/// `room::apply_update` panics right after yrs applied an update, with the transaction still
/// open (the document is half-changed, as with a real yrs panic), when the process was started
/// with `DUET_FAILPOINT_PANIC_AFTER_APPLY=1` and the update's raw bytes contain
/// `duet-failpoint:panic` (e.g. an update inserting that text).
#[cfg(debug_assertions)]
pub(crate) mod failpoint {
    use std::sync::OnceLock;

    /// The environment variable that arms the failpoint (value `1`), read once per process.
    pub const ENV: &str = "DUET_FAILPOINT_PANIC_AFTER_APPLY";
    /// The bytes an update must contain to trigger it.
    pub const MARKER: &[u8] = b"duet-failpoint:panic";

    /// Unit tests arm the failpoint without the environment (harmless for other tests in
    /// the process: only updates carrying the marker panic).
    #[cfg(test)]
    static ARMED_FOR_TESTS: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    #[cfg(test)]
    pub(crate) fn arm_for_tests() {
        ARMED_FOR_TESTS.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn armed() -> bool {
        #[cfg(test)]
        if ARMED_FOR_TESTS.load(std::sync::atomic::Ordering::Relaxed) {
            return true;
        }
        static ARMED: OnceLock<bool> = OnceLock::new();
        *ARMED.get_or_init(|| std::env::var_os(ENV).is_some_and(|v| v == "1"))
    }

    pub(crate) fn marked(update: &[u8]) -> bool {
        update.windows(MARKER.len()).any(|w| w == MARKER)
    }

    /// Panics if the failpoint is armed and `update` carries the marker.
    pub(crate) fn panic_after_apply(update: &[u8]) {
        if armed() && marked(update) {
            panic!("failpoint {ENV}: panicking after apply, transaction open");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(debug_assertions)]
    #[test]
    fn the_failpoint_marker_is_found_in_a_real_update() {
        use yrs::{ReadTxn, Text, Transact};
        let doc = duet_yjs::doc::new_doc();
        let text = doc.get_or_insert_text(duet_yjs::doc::ROOT_TEXT);
        text.insert(&mut doc.transact_mut(), 0, "x duet-failpoint:panic y");
        let update = doc
            .transact()
            .encode_state_as_update_v1(&yrs::StateVector::default());
        assert!(failpoint::marked(&update));
        assert!(!failpoint::marked(b"duet-failpoint:pani"));
        // Not armed in unit tests: nothing happens.
        if std::env::var_os(failpoint::ENV).is_none() {
            failpoint::panic_after_apply(&update);
        }
    }
}
