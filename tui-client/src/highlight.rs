//! Syntax highlighting with syntect, for the visible lines only.
//!
//! syntect parses line by line with a state carried from one line to the next. The cache
//! keeps, per line, a hash of its text, the state before and after it, and its colours; a
//! frame walks from a little above the view to its bottom and re-parses only lines whose
//! text or incoming state changed, so an edit costs about one line. A jump into the middle
//! of a huge file starts from a fresh state [`LOOKBACK`] lines up (colours may be off
//! until the context is seen, never slow). Lines longer than [`MAX_LINE`] are left plain.
//! Nothing here runs per keystroke: the app calls [`Highlighter::highlight`] once before
//! each frame.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use ratatui::style::Color;
use ropey::Rope;
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

/// Colours for a run of lines: `lines[i]` belongs to line `first_line + i` and holds
/// (char columns, foreground) pairs in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Highlights {
    pub first_line: usize,
    pub lines: Vec<Vec<(Range<usize>, Color)>>,
}

impl Highlights {
    /// The spans of `line`, if computed.
    pub fn line(&self, line: usize) -> Option<&[(Range<usize>, Color)]> {
        line.checked_sub(self.first_line)
            .and_then(|i| self.lines.get(i))
            .map(Vec::as_slice)
    }
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
    spans: Vec<(Range<usize>, Color)>,
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
            let mut hasher = DefaultHasher::new();
            text.hash(&mut hasher);
            let hash = hasher.finish();
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
                    out.lines.push(c.spans.clone());
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
) -> Vec<(Range<usize>, Color)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_keywords_get_colours_and_edits_reparse_little() {
        let mut h = Highlighter::for_path(Path::new("x.rs")).unwrap();
        let rope = Rope::from_str("fn main() {\n    let s = \"str\";\n}\n");
        let hl = h.highlight(&rope, 0, 10);
        assert_eq!(hl.lines.len(), 4);
        let first = hl.line(0).unwrap();
        assert!(first.len() > 1, "{first:?}");
        let kw = first[0].1;
        let s_line = hl.line(1).unwrap();
        assert!(s_line.iter().any(|(_, c)| *c != kw));
        // Highlighting the same text again reuses every line.
        assert_eq!(h.highlight(&rope, 0, 10), hl);
        assert!(Highlighter::for_path(Path::new("notes.unknownext")).is_none());
    }
}
