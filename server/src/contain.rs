//! Running yrs on untrusted input without letting a panic escape or flood the logs.
//!
//! yrs has panicked on malformed input (y-crdt #415) and asserts on 53-bit client ids in debug
//! builds. Every decode and apply of wire bytes runs inside [`contained`]; the panic hook
//! installed by the binary logs those panics at debug level instead of printing a backtrace
//! to stderr for each hostile message, and leaves every other panic to the default hook.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

thread_local! {
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
}

/// A contained panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("panicked while handling client input")]
pub struct Panicked;

/// Runs `f`, turning a panic into `Err(Panicked)`.
pub fn contained<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    let outer = CONTAINED.with(|c| c.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f)).map_err(|_| Panicked);
    CONTAINED.with(|c| c.set(outer));
    result
}

/// Installs a panic hook that keeps contained panics out of stderr.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if CONTAINED.with(Cell::get) {
            tracing::debug!(panic = %info, "contained a panic while handling client input");
        } else {
            default(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors_and_the_flag_resets() {
        assert_eq!(contained(|| 1), Ok(1));
        assert_eq!(contained(|| -> i32 { panic!("boom") }), Err(Panicked));
        assert!(!CONTAINED.with(Cell::get));
    }

    /// A 25-byte update that passes the guard and makes yrs 0.28.1 panic while applying it, in
    /// debug and release builds alike: one string block of client 7 at clock 2^31 + 1 (yrs
    /// computes `local_clock as i32 - clock as i32`, gets a positive "offset" and integrates the
    /// block without the Skip that should fill clocks 0..2^31), then a delete of client 7's
    /// clocks 0..1. `ClientBlockList::find_index(0)` walks left of the first block: `mid - 1`
    /// underflows (debug: overflow panic; release: index out of bounds). The block is already
    /// integrated when it panics, so the document is left changed: the room must reload it.
    /// `tests/tests/hardening.rs` sends the same bytes to a real server.
    #[test]
    fn a_real_update_makes_yrs_panic_mid_apply_and_leaves_the_document_changed() {
        use crate::room::{ApplyError, apply_update, new_doc};
        use yrs::{ReadTxn, Transact};
        let bad = include_bytes!("../../fuzz/regressions/yrs_apply-panic-find-index-1.bin");
        assert_eq!(
            crate::guard::check_update_v1(bad),
            Ok(()),
            "passes the guard"
        );
        let doc = new_doc();
        let result = apply_update(&doc, bad, false);
        assert!(
            matches!(result, Err(ApplyError::Panicked)),
            "yrs no longer panics on this input ({result:?}): the end-to-end 1011 test in \
             tests/tests/hardening.rs needs another panicking input"
        );
        let sv = doc.transact().state_vector();
        assert!(
            sv.get(&yrs::block::ClientID::new(7)) > 0,
            "the half-applied block stays in the document"
        );
        assert!(!CONTAINED.with(Cell::get));
    }
}
