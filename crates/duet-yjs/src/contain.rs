//! Running yrs on untrusted input without letting a panic escape or flood the logs.
//!
//! yrs has panicked on malformed input (y-crdt #415) and asserts on 53-bit client ids in debug
//! builds. Every decode and apply of peer bytes runs inside [`contained`]; the panic hook a
//! binary installs with [`install_panic_hook`] logs those panics at debug level instead of
//! printing a backtrace to stderr for each hostile message, and leaves every other panic to
//! the default hook.

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

/// Whether the current thread is inside [`contained`].
pub fn is_contained() -> bool {
    CONTAINED.with(Cell::get)
}

/// Installs a panic hook that keeps contained panics out of stderr.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if is_contained() {
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
        assert!(!is_contained());
    }
}
