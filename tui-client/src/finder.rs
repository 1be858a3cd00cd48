//! The fuzzy file finder's matching: which paths a query picks and in what order. Pure and
//! allocation-light (a path that does not match costs one scan and no allocation), so
//! filtering 5,000 paths fits well inside a keystroke's frame (measured in
//! `cargo bench -p duet --bench editor`).
//!
//! A path matches when the query's characters appear in it in order, ignoring case. Among
//! matches, the better ones have the query's characters together, at the starts of words
//! (after `/`, `_`, `-`, `.`, a space, or a lower-to-upper case change), and in the file's
//! own name rather than its directories; then shorter paths, then alphabetical order.
//! The match is placed greedily (first from the left to find where it can end, then from
//! that end back to the left, which keeps it tight), as fzf's first algorithm does.

/// How well a path matched, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub score: i32,
    /// Char indices of the path that the query's characters matched, increasing.
    pub positions: Vec<usize>,
}

fn fold(c: char) -> char {
    if c.is_ascii() {
        c.to_ascii_lowercase()
    } else {
        c.to_lowercase().next().unwrap_or(c)
    }
}

fn is_word_start(prev: Option<char>, c: char) -> bool {
    match prev {
        None => true,
        Some(p) => {
            matches!(p, '/' | '_' | '-' | '.' | ' ') || (p.is_lowercase() && c.is_uppercase())
        }
    }
}

/// Scores `path` against `query`; `None` if it does not match. An empty query matches
/// everything equally.
pub fn score(query: &str, path: &str) -> Option<Match> {
    let q: Vec<char> = query
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(fold)
        .collect();
    if q.is_empty() {
        return Some(Match {
            score: 0,
            positions: Vec::new(),
        });
    }
    // Forward: the earliest place the whole query can end.
    let mut qi = 0;
    let mut end = None;
    for (i, c) in path.chars().enumerate() {
        if fold(c) == q[qi] {
            qi += 1;
            if qi == q.len() {
                end = Some(i);
                break;
            }
        }
    }
    let end = end?;
    // Backward from there: the latest start, so the match is as tight as greedy gets.
    let chars: Vec<char> = path.chars().collect();
    let mut positions = vec![0; q.len()];
    let mut qi = q.len();
    let mut i = end + 1;
    while qi > 0 {
        i -= 1;
        if fold(chars[i]) == q[qi - 1] {
            qi -= 1;
            positions[qi] = i;
        }
    }
    let base_start = chars.iter().rposition(|&c| c == '/').map_or(0, |p| p + 1);
    let mut total: i32 = 0;
    let mut prev_pos: Option<usize> = None;
    for &p in &positions {
        let mut s = 16;
        let prev_char = p.checked_sub(1).map(|j| chars[j]);
        if prev_pos.is_some_and(|pp| pp + 1 == p) {
            s += 24;
        } else if let Some(pp) = prev_pos {
            // A gap costs, a little per char skipped.
            s -= ((p - pp - 1) as i32).min(12);
        }
        if is_word_start(prev_char, chars[p]) {
            s += 20;
        }
        if p == base_start {
            s += 30;
        }
        if p >= base_start {
            s += 8;
        }
        total += s;
        prev_pos = Some(p);
    }
    total -= (chars.len() as i32) / 8;
    Some(Match {
        score: total,
        positions,
    })
}

/// The indices of `paths` that match `query`, best first (then shorter, then by path),
/// at most `limit` of them, with their matches; and how many matched in all.
pub fn rank<'a>(
    query: &str,
    paths: impl IntoIterator<Item = &'a str>,
    limit: usize,
) -> (Vec<(usize, Match)>, usize) {
    let paths: Vec<&str> = paths.into_iter().collect();
    let mut hits: Vec<(usize, Match)> = paths
        .iter()
        .enumerate()
        .filter_map(|(i, p)| score(query, p).map(|m| (i, m)))
        .collect();
    let matched = hits.len();
    hits.sort_by(|(a, ma), (b, mb)| {
        mb.score
            .cmp(&ma.score)
            .then(paths[*a].len().cmp(&paths[*b].len()))
            .then(paths[*a].cmp(paths[*b]))
    });
    hits.truncate(limit);
    (hits, matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(query: &str, paths: &[&str]) -> Vec<String> {
        rank(query, paths.iter().copied(), 10)
            .0
            .into_iter()
            .map(|(i, _)| paths[i].to_owned())
            .collect()
    }

    #[test]
    fn subsequences_match_in_order_ignoring_case() {
        assert!(score("mn", "src/main.rs").is_some());
        assert!(score("MAIN", "src/main.rs").is_some());
        assert!(score("nm", "src/main.rs").is_none());
        assert!(score("x", "src/main.rs").is_none());
        assert_eq!(
            score("mai", "src/main.rs").map(|m| m.positions),
            Some(vec![4, 5, 6])
        );
        // Tight, not the first letters found.
        assert_eq!(score("ab", "a/x/ab").map(|m| m.positions), Some(vec![4, 5]));
        assert_eq!(score("", "anything").map(|m| m.score), Some(0));
        assert_eq!(
            score("\u{c9}t\u{e9}", "docs/\u{e9}t\u{e9}.md").map(|m| m.positions),
            Some(vec![5, 6, 7])
        );
    }

    #[test]
    fn file_names_words_and_runs_rank_first() {
        assert_eq!(
            order("main", &["src/domain/lib.rs", "src/main.rs", "main/zzz.rs"]),
            ["src/main.rs", "main/zzz.rs", "src/domain/lib.rs"]
        );
        assert_eq!(
            order("b.t", &["a.txt", "b.txt", "c.txt"]),
            ["b.txt"],
            "the finder's test: 'b.t' picks the second of three files"
        );
        assert_eq!(
            order("fb", &["foobar.rs", "foo_bar.rs"]),
            ["foo_bar.rs", "foobar.rs"]
        );
        assert_eq!(order("rs", &["b/x.rs", "a/x.rs"]), ["a/x.rs", "b/x.rs"]);
    }

    #[test]
    fn rank_counts_every_match_and_keeps_the_best() {
        let paths: Vec<String> = (0..50).map(|i| format!("src/file{i:02}.rs")).collect();
        let (hits, matched) = rank("file", paths.iter().map(String::as_str), 5);
        assert_eq!(matched, 50);
        assert_eq!(hits.len(), 5);
        let (none, matched) = rank("zzz", paths.iter().map(String::as_str), 5);
        assert!(none.is_empty() && matched == 0);
    }
}
