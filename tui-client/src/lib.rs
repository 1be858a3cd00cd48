//! duet, the collaborative terminal editor, as a library: the binary in `main.rs` is glue.
//!
//! Code map: [`action`] and [`keymap`] (input to intent), [`editor`] (the pure editing core
//! over a [`buffer::TextBuffer`]), [`text`] (graphemes and display widths), [`app`] (state
//! and events, headless), [`render`] (drawing, takes `&View`), [`run`] and [`term`] (the
//! event loop and the terminal), [`highlight`] (syntect on its own thread), [`file`],
//! `embedded` (the in-process server, behind the default feature `embedded-server`),
//! [`cli`] (the join commands), [`finder`] (the file finder's fuzzy matching); workspaces
//! (`duet share`, `duet join`) live in [`app::workspace`] and the sharer's disk in
//! `app/sharer.rs`.

// Tests may unwrap: a panic there is a failed test, which is what we want.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod action;
pub mod app;
pub mod buffer;
pub mod cli;
pub mod clipboard;
pub mod color;
pub mod doc_buffer;
pub mod editor;
#[cfg(feature = "embedded-server")]
pub mod embedded;
pub mod file;
pub mod finder;
pub mod highlight;
pub mod keymap;
pub mod render;
pub mod run;
pub mod state;
pub mod term;
pub mod text;
