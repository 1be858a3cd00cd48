//! Reading the sharer's directory: which files a workspace shares, and which it lists but
//! will not open. Ignore rules are git's (`.gitignore`, `.git/info/exclude`, the global
//! excludes file), plus `.ignore` and `.duetignore` in the same syntax, read whether or not
//! the directory is a git repository; `.git` itself is never shared.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::index::{FileKind, check_path};

/// How much of a file is read to tell text from binary.
const SNIFF_BYTES: usize = 8 * 1024;

/// What to share.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Files larger than this are listed as [`FileKind::TooBig`].
    pub max_file_bytes: u64,
    /// At most this many files are listed; the rest are reported in [`Scan::truncated`].
    pub max_files: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            // The server's default document limit is larger; a file bigger than this is
            // rarely one a pair edits by hand (logs, data, generated code).
            max_file_bytes: 4 << 20,
            max_files: 20_000,
        }
    }
}

/// One file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// Relative to the scanned directory, `/`-separated.
    pub path: String,
    pub kind: FileKind,
    pub size: u64,
}

/// Something the scan passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub why: String,
}

/// The result of a scan.
#[derive(Debug, Default, Clone)]
pub struct Scan {
    /// Sorted by path.
    pub files: Vec<Scanned>,
    /// Unreadable entries and names the index cannot hold (not UTF-8, say).
    pub skipped: Vec<Skipped>,
    /// Files left out past [`ScanOptions::max_files`].
    pub truncated: usize,
}

/// Scans `dir` for the files to share.
pub fn scan(dir: &Path, opts: &ScanOptions) -> Scan {
    let mut out = Scan::default();
    let walker = ignore::WalkBuilder::new(dir)
        .hidden(false)
        .require_git(false)
        .add_custom_ignore_filename(".duetignore")
        .filter_entry(|e| e.file_name() != ".git")
        .sort_by_file_path(|a, b| a.cmp(b))
        .build();
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                out.skipped.push(Skipped {
                    path: dir.to_path_buf(),
                    why: e.to_string(),
                });
                continue;
            }
        };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue; // directories, symlinks, sockets
        }
        let full = entry.path();
        let Some(path) = relative(dir, full) else {
            out.skipped.push(Skipped {
                path: full.to_path_buf(),
                why: "the name is not UTF-8 or not a plain relative path".into(),
            });
            continue;
        };
        if out.files.len() >= opts.max_files {
            out.truncated += 1;
            continue;
        }
        match classify(full, opts) {
            Ok((kind, size)) => out.files.push(Scanned { path, kind, size }),
            Err(e) => out.skipped.push(Skipped {
                path: full.to_path_buf(),
                why: e.to_string(),
            }),
        }
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// `full` relative to `dir`, `/`-separated, if the index can hold it.
fn relative(dir: &Path, full: &Path) -> Option<String> {
    let rel = full.strip_prefix(dir).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    let path = parts?.join("/");
    check_path(&path).ok()?;
    Some(path)
}

/// Text, binary or too big, and the size; reads at most [`SNIFF_BYTES`].
fn classify(path: &Path, opts: &ScanOptions) -> std::io::Result<(FileKind, u64)> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    if size > opts.max_file_bytes {
        return Ok((FileKind::TooBig, size));
    }
    let mut head = Vec::with_capacity(SNIFF_BYTES.min(size as usize));
    file.by_ref()
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)?;
    let text = !head.contains(&0)
        && match std::str::from_utf8(&head) {
            Ok(_) => true,
            // Cut inside a character at the end of the sniffed part: still text.
            Err(e) => e.error_len().is_none() && head.len() == SNIFF_BYTES,
        };
    Ok((
        if text {
            FileKind::Text
        } else {
            FileKind::Binary
        },
        size,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tree(name: &str, files: &[(&str, &[u8])]) -> Dir {
        let dir = std::env::temp_dir().join(format!("duet-scan-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, bytes) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, bytes).expect("write");
        }
        Dir(dir)
    }

    fn listed(s: &Scan) -> Vec<(&str, FileKind)> {
        s.files.iter().map(|f| (f.path.as_str(), f.kind)).collect()
    }

    #[test]
    fn ignore_rules_binary_files_and_the_size_cap() {
        let big = vec![b'x'; 2000];
        let d = tree(
            "rules",
            &[
                ("src/main.rs", b"fn main() {}\n"),
                ("README.md", "h\u{e9}llo\n".as_bytes()),
                (".gitignore", b"target/\n*.log\n"),
                (".duetignore", b"secret.txt\n"),
                ("target/debug/app", b"\x7fELF\0\0"),
                ("run.log", b"log\n"),
                ("secret.txt", b"pw\n"),
                ("logo.png", b"\x89PNG\r\n\x1a\n\0\0"),
                ("latin1.txt", b"caf\xe9\n"),
                ("data/big.csv", &big),
                (".git/config", b"[core]\n"),
                (".env.example", b"A=1\n"),
            ],
        );
        let s = scan(
            &d.0,
            &ScanOptions {
                max_file_bytes: 1000,
                ..ScanOptions::default()
            },
        );
        assert_eq!(
            listed(&s),
            [
                (".duetignore", FileKind::Text),
                (".env.example", FileKind::Text),
                (".gitignore", FileKind::Text),
                ("README.md", FileKind::Text),
                ("data/big.csv", FileKind::TooBig),
                ("latin1.txt", FileKind::Binary),
                ("logo.png", FileKind::Binary),
                ("src/main.rs", FileKind::Text),
            ]
        );
        assert!(s.skipped.is_empty(), "{:?}", s.skipped);
        assert_eq!(s.files[4].size, 2000);
    }

    #[test]
    fn a_character_cut_by_the_sniffed_prefix_is_still_text() {
        let mut text = vec![b'a'; SNIFF_BYTES - 1];
        text.extend_from_slice("\u{e9}tude\n".as_bytes());
        let d = tree("cut", &[("a.txt", &text)]);
        assert_eq!(
            listed(&scan(&d.0, &ScanOptions::default())),
            [("a.txt", FileKind::Text)]
        );
    }

    #[test]
    fn the_file_count_is_capped_and_says_so() {
        let files: Vec<(String, Vec<u8>)> = (0..10)
            .map(|i| (format!("f{i}.txt"), b"x".to_vec()))
            .collect();
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        let d = tree("cap", &refs);
        let s = scan(
            &d.0,
            &ScanOptions {
                max_files: 4,
                ..ScanOptions::default()
            },
        );
        assert_eq!(s.files.len(), 4);
        assert_eq!(s.truncated, 6);
    }
}
