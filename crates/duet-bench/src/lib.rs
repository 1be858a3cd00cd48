//! What `duet-bench` shares with the end-to-end tests: the real editing traces, loaded and
//! pre-encoded as yrs updates. The load generator itself is the binary (`main.rs`).

pub mod trace;
