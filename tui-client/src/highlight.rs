//! Syntax highlighting with syntect, for the visible lines only, off the input path.
//!
//! syntect parses line by line with a state carried from one line to the next. The cache
//! keeps, per line, a hash of its text, the state before and after it, and its colours; a
//! pass walks from a little above the view to its bottom and re-parses only lines whose
//! text or incoming state changed, so an edit costs about one line. A jump into the middle
//! of a huge file starts from a fresh state [`LOOKBACK`] lines up (colours may be off
//! until the context is seen, never slow). Lines longer than [`MAX_LINE`] are left plain.
//!
//! [`Highlighter`] is the synchronous core. [`Background`] runs it on its own thread: the
//! app sends the rope (a cheap clone) and the view, keeps drawing with the colours it has,
//! and draws again when new ones arrive. Colours are matched to lines by the hash of the
//! line's text, so a line that moved (Enter above it) keeps its colours and a line that
//! changed is drawn plain until its colours come back: a keystroke never waits for
//! syntect.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, OnceLock, mpsc};

use ratatui::style::Color;
use ropey::{Rope, RopeSlice};
use syntect::highlighting::{
    HighlightIterator, HighlightState, Highlighter as SynHighlighter, Theme, ThemeSet,
};
use syntect::parsing::{ParseState, ScopeStack, SyntaxReference, SyntaxSet};

/// Lines parsed above the view when no cached state reaches it.
pub const LOOKBACK: usize = 200;
/// Lines longer than this (in chars) are not highlighted.
pub const MAX_LINE: usize = 4000;
/// The cache is dropped when it grows past this many lines.
const MAX_CACHED: usize = 20_000;

/// The colours of one line: (char columns, foreground) pairs in order.
pub type Spans = Vec<(Range<usize>, Color)>;

/// Colours for a run of lines: `lines[i]` belongs to line `first_line + i` and holds the
/// [`line_hash`] of the text it was computed for, and its spans.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Highlights {
    pub first_line: usize,
    pub lines: Vec<(u64, Spans)>,
}

impl Highlights {
    /// The spans computed for `line` when its text still hashes to `hash`; else those of
    /// another line of the run with that text (the line moved since). `None`: draw plain.
    pub fn line(&self, line: usize, hash: u64) -> Option<&[(Range<usize>, Color)]> {
        let exact = line
            .checked_sub(self.first_line)
            .and_then(|i| self.lines.get(i))
            .filter(|(h, _)| *h == hash);
        exact
            .or_else(|| self.lines.iter().find(|(h, _)| *h == hash))
            .map(|(_, spans)| spans.as_slice())
    }

    /// True when nothing has been computed.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// The hash that ties colours to a line's text (chunk boundaries do not matter).
pub fn line_hash(line: RopeSlice<'_>) -> u64 {
    let mut hasher = DefaultHasher::new();
    for chunk in line.chunks() {
        hasher.write(chunk.as_bytes());
    }
    hasher.finish()
}

fn syntaxes() -> &'static SyntaxSet {
    static SET: OnceLock<SyntaxSet> = OnceLock::new();
    SET.get_or_init(SyntaxSet::load_defaults_newlines)
}

fn theme() -> &'static Theme {
    static THEME: OnceLock<Theme> = OnceLock::new();
    THEME.get_or_init(|| {
        let mut set = ThemeSet::load_defaults();
        set.themes
            .remove("base16-ocean.dark")
            .or_else(|| set.themes.into_values().next())
            .unwrap_or_default()
    })
}

#[derive(Clone)]
struct Cached {
    hash: u64,
    before: (ParseState, HighlightState),
    after: (ParseState, HighlightState),
    spans: Spans,
}

/// The highlighter of one file.
pub struct Highlighter {
    syntax: &'static SyntaxReference,
    cache: HashMap<usize, Cached>,
}

impl std::fmt::Debug for Highlighter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Highlighter")
            .field("syntax", &self.syntax.name)
            .field("cached_lines", &self.cache.len())
            .finish()
    }
}

impl Highlighter {
    /// A highlighter for the language of `path`'s extension; `None` for plain text.
    pub fn for_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?;
        let syntax = syntaxes().find_syntax_by_extension(ext)?;
        if syntax.name == "Plain Text" {
            return None;
        }
        Some(Self {
            syntax,
            cache: HashMap::new(),
        })
    }

    fn fresh(&self) -> (ParseState, HighlightState) {
        let h = SynHighlighter::new(theme());
        (
            ParseState::new(self.syntax),
            HighlightState::new(&h, ScopeStack::new()),
        )
    }

    /// Colours for lines `top..top + height` of `rope`.
    pub fn highlight(&mut self, rope: &Rope, top: usize, height: usize) -> Highlights {
        if self.cache.len() > MAX_CACHED {
            self.cache.clear();
        }
        let h = SynHighlighter::new(theme());
        let end = (top + height).min(rope.len_lines());
        let start = top.saturating_sub(LOOKBACK);
        let mut state = match start.checked_sub(1).and_then(|l| self.cache.get(&l)) {
            Some(c) => c.after.clone(),
            None => self.fresh(),
        };
        let mut out = Highlights {
            first_line: top,
            lines: Vec::with_capacity(end.saturating_sub(top)),
        };
        let mut text = String::new();
        for line in start..end {
            text.clear();
            let slice = rope.line(line);
            let too_long = slice.len_chars() > MAX_LINE;
            if !too_long {
                for chunk in slice.chunks() {
                    text.push_str(chunk);
                }
            }
            let hash = line_hash(slice);
            let reuse = self
                .cache
                .get(&line)
                .is_some_and(|c| c.hash == hash && c.before == state);
            if !reuse {
                let before = state.clone();
                let spans = if too_long {
                    Vec::new()
                } else {
                    parse_line(&text, &mut state, &h)
                };
                self.cache.insert(
                    line,
                    Cached {
                        hash,
                        before,
                        after: state.clone(),
                        spans,
                    },
                );
            }
            if let Some(c) = self.cache.get(&line) {
                if reuse {
                    state = c.after.clone();
                }
                if line >= top {
                    out.lines.push((hash, c.spans.clone()));
                }
            }
        }
        out
    }
}

fn parse_line(
    text: &str,
    state: &mut (ParseState, HighlightState),
    h: &SynHighlighter<'_>,
) -> Spans {
    let Ok(ops) = state.0.parse_line(text, syntaxes()) else {
        return Vec::new();
    };
    let mut spans = Vec::new();
    let mut col = 0;
    for (style, piece) in HighlightIterator::new(&mut state.1, &ops, text, h) {
        let n = piece.chars().count();
        let c = style.foreground;
        spans.push((col..col + n, Color::Rgb(c.r, c.g, c.b)));
        col += n;
    }
    spans
}

/// What the app asks the background highlighter for.
struct Request {
    rope: Rope,
    top: usize,
    height: usize,
}

/// A [`Highlighter`] on its own thread. Requests are coalesced (only the newest one is
/// worked on); each answer wakes the event loop through `wake`.
pub struct Background {
    requests: mpsc::Sender<Request>,
    answers: mpsc::Receiver<Highlights>,
    /// Requests sent and not yet answered.
    in_flight: usize,
    /// The view of the last request, to skip asking twice for the same thing.
    last: Option<(usize, usize)>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl Background {
    /// Starts the thread for `highlighter`; `None` if the thread cannot be started (the
    /// editor then simply has no colours).
    pub fn start(mut highlighter: Highlighter, wake: Arc<tokio::sync::Notify>) -> Option<Self> {
        let (req_tx, req_rx) = mpsc::channel::<Request>();
        let (ans_tx, ans_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("duet-highlight".into())
            .spawn(move || {
                // Ends when the app drops its sender.
                while let Ok(mut req) = req_rx.recv() {
                    let mut skipped = 0;
                    while let Ok(newer) = req_rx.try_recv() {
                        req = newer;
                        skipped += 1;
                    }
                    let hl = highlighter.highlight(&req.rope, req.top, req.height);
                    // One answer per request, so the app can count what is in flight.
                    for _ in 0..skipped {
                        if ans_tx.send(Highlights::default()).is_err() {
                            return;
                        }
                    }
                    if ans_tx.send(hl).is_err() {
                        return;
                    }
                    wake.notify_one();
                }
            })
            .ok()?;
        Some(Self {
            requests: req_tx,
            answers: ans_rx,
            in_flight: 0,
            last: None,
        })
    }

    /// Asks for the colours of `top..top + height` of `rope`, unless `changed` is false
    /// and the view is the one asked for last.
    pub fn request(&mut self, rope: &Rope, top: usize, height: usize, changed: bool) {
        if !changed && self.last == Some((top, height)) {
            return;
        }
        let req = Request {
            rope: rope.clone(),
            top,
            height,
        };
        if self.requests.send(req).is_ok() {
            self.in_flight += 1;
            self.last = Some((top, height));
        }
    }

    /// The newest colours that arrived since the last call, if any.
    pub fn poll(&mut self) -> Option<Highlights> {
        let mut newest = None;
        while let Ok(hl) = self.answers.try_recv() {
            self.in_flight = self.in_flight.saturating_sub(1);
            // Placeholders answer coalesced requests: they carry nothing.
            if !hl.is_empty() || self.in_flight == 0 {
                newest = Some(hl);
            }
        }
        newest
    }

    /// True while a request is not answered yet.
    pub fn busy(&self) -> bool {
        self.in_flight > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_keywords_get_colours_and_edits_reparse_little() {
        let mut h = Highlighter::for_path(Path::new("x.rs")).unwrap();
        let rope = Rope::from_str("fn main() {\n    let s = \"str\";\n}\n");
        let hl = h.highlight(&rope, 0, 10);
        assert_eq!(hl.lines.len(), 4);
        let hash = |l: usize| line_hash(rope.line(l));
        let first = hl.line(0, hash(0)).unwrap();
        assert!(first.len() > 1, "{first:?}");
        let kw = first[0].1;
        let s_line = hl.line(1, hash(1)).unwrap();
        assert!(s_line.iter().any(|(_, c)| *c != kw));
        // Highlighting the same text again reuses every line.
        assert_eq!(h.highlight(&rope, 0, 10), hl);
        assert!(Highlighter::for_path(Path::new("notes.unknownext")).is_none());
    }

    #[test]
    fn colours_follow_a_line_that_moved_and_the_background_thread_answers() {
        let mut h = Highlighter::for_path(Path::new("x.rs")).unwrap();
        let rope = Rope::from_str("fn main() {}\nlet x = 1;\n");
        let hl = h.highlight(&rope, 0, 10);
        // Enter at the top: "let x = 1;" is now line 2, and still finds its colours.
        let moved = Rope::from_str("\nfn main() {}\nlet x = 1;\n");
        let hash = line_hash(moved.line(2));
        assert_eq!(hl.line(2, hash), hl.line(1, line_hash(rope.line(1))));
        assert!(hl.line(2, hash).is_some());
        // A changed line is drawn plain until its colours come.
        assert!(
            hl.line(1, line_hash(Rope::from_str("fn main() {}x").line(0)))
                .is_none()
        );

        let wake = Arc::new(tokio::sync::Notify::new());
        let mut bg = Background::start(h, wake).unwrap();
        bg.request(&moved, 0, 10, true);
        bg.request(&moved, 0, 10, false); // the same view, unchanged: not asked again
        assert!(bg.busy());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let got = loop {
            if let Some(hl) = bg.poll() {
                break hl;
            }
            assert!(std::time::Instant::now() < deadline, "no answer");
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        assert!(!bg.busy());
        assert_eq!(got.lines.len(), 4);
        assert!(got.line(1, line_hash(moved.line(1))).is_some());
    }
}
