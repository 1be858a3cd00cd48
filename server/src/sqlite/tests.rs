//! Unit tests of the SQLite store.
