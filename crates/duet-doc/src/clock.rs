//! The clock the undo manager groups edits by, made safe for yrs.
//!
//! yrs' `UndoManager` computes `now - last_change` in `u64` (overflow panic in debug
//! builds if the wall clock steps back) and treats a timestamp of 0 as "no previous
//! change". [`Monotonic`] wraps any clock so that neither can happen: readings never go
//! backwards and start at 1.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use yrs::sync::time::{Clock, Timestamp};

/// A clock that never goes backwards and never reads 0.
pub(crate) struct Monotonic {
    inner: Arc<dyn Clock>,
    last: AtomicU64,
}

impl Monotonic {
    pub(crate) fn new(inner: Arc<dyn Clock>) -> Self {
        Self {
            inner,
            last: AtomicU64::new(1),
        }
    }
}

impl Clock for Monotonic {
    fn now(&self) -> Timestamp {
        let reading = self.inner.now().max(1);
        let previous = self.last.fetch_max(reading, Ordering::Relaxed);
        previous.max(reading)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_backwards_and_never_reads_zero() {
        let readings = Arc::new(std::sync::Mutex::new(vec![0u64, 50, 10, 70].into_iter()));
        let source = readings.clone();
        let clock = Monotonic::new(Arc::new(move || {
            source
                .lock()
                .map(|mut it| it.next().unwrap_or(0))
                .unwrap_or(0)
        }));
        let seen: Vec<_> = (0..4).map(|_| clock.now()).collect();
        assert_eq!(seen, [1, 50, 50, 70]);
    }
}
