//! Percentiles over latency samples (nearest-rank, so every reported value was observed).

use serde::Serialize;
use std::time::Duration;

/// Summary of a set of durations, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

/// The nearest-rank percentile `p` (0..=100) of sorted `xs`: the smallest value such that at
/// least `p` % of the samples are at or below it.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Summarises nanosecond samples (sorts them in place).
pub fn summarize(ns: &mut [u64]) -> Summary {
    ns.sort_unstable();
    let us = |v: Option<u64>| v.unwrap_or(0) as f64 / 1000.0;
    let mean = if ns.is_empty() {
        0.0
    } else {
        ns.iter().map(|&v| v as f64).sum::<f64>() / ns.len() as f64 / 1000.0
    };
    Summary {
        count: ns.len(),
        p50_us: us(percentile(ns, 50.0)),
        p99_us: us(percentile(ns, 99.0)),
        max_us: us(ns.last().copied()),
        mean_us: mean,
    }
}

pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let xs: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&xs, 50.0), Some(50));
        assert_eq!(percentile(&xs, 99.0), Some(99));
        assert_eq!(percentile(&xs, 100.0), Some(100));
        assert_eq!(percentile(&xs, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        // Ten samples: p99 is the largest, p50 the fifth.
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 99.0), Some(10));
        assert_eq!(percentile(&ten, 50.0), Some(5));
    }

    #[test]
    fn summary_in_microseconds() {
        let mut ns = vec![3000, 1000, 2000];
        let s = summarize(&mut ns);
        assert_eq!(s.count, 3);
        assert_eq!(s.p50_us, 2.0);
        assert_eq!(s.max_us, 3.0);
        assert_eq!(s.mean_us, 2.0);
    }
}
