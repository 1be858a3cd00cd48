//! Files on disk: loading (refusing binary and non-UTF-8 files with a clear reason),
//! atomic saving (temp file in the same directory, permissions kept, then rename) and the
//! backup kept when the room's version replaces the local file.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why a file cannot be edited.
#[derive(Debug)]
pub enum LoadError {
    Io(io::Error),
    Binary,
    NotUtf8 { valid_up_to: usize },
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Io(e) => write!(f, "{e}"),
            LoadError::Binary => write!(f, "it looks like a binary file (it holds NUL bytes)"),
            LoadError::NotUtf8 { valid_up_to } => {
                write!(
                    f,
                    "it is not UTF-8 text (invalid byte at offset {valid_up_to})"
                )
            }
        }
    }
}

/// Reads `path` as text. A missing file is an empty new file (`Ok(None)`).
pub fn load(path: &Path) -> Result<Option<String>, LoadError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LoadError::Io(e)),
    };
    if bytes.iter().take(64 * 1024).any(|b| *b == 0) {
        return Err(LoadError::Binary);
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| LoadError::NotUtf8 {
            valid_up_to: e.utf8_error().valid_up_to(),
        })
}

/// Writes `chunks` to `path` atomically: readers see the old file or the new one, never
/// half of it. The file keeps its permissions; a new file gets the default ones.
pub fn save_atomic<'a>(path: &Path, chunks: impl Iterator<Item = &'a str>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let tmp = dir.join(format!(".{name}.duet-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        for c in chunks {
            f.write_all(c.as_bytes())?;
        }
        f.sync_all()?;
        if let Ok(meta) = fs::metadata(path) {
            fs::set_permissions(&tmp, meta.permissions())?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// What identifies a version of a file on disk: its modification time and length. A
/// change by git or another editor changes it (a rewrite within the clock's resolution
/// that keeps the length is the rare miss).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
}

/// The stamp of the file at `path`; `None` when there is no file.
pub fn stamp(path: &Path) -> Option<Stamp> {
    let meta = fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// A path for the backup of `path` that does not exist yet: `FILE.duet-backup`, then
/// `FILE.duet-backup.1`, ...
pub fn backup_path(path: &Path) -> PathBuf {
    let base = format!("{}.duet-backup", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("duet-file-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn saves_atomically_and_keeps_permissions() {
        let d = tmp_dir("save");
        let p = d.join("a.txt");
        fs::write(&p, "old").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        }
        save_atomic(&p, ["new ", "text"].into_iter()).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new text");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o640
            );
        }
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "no temp file left");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn refuses_binary_and_non_utf8() {
        let d = tmp_dir("load");
        let p = d.join("b");
        fs::write(&p, b"ab\0c").unwrap();
        assert!(matches!(load(&p), Err(LoadError::Binary)));
        fs::write(&p, b"ab\xffc").unwrap();
        assert!(matches!(
            load(&p),
            Err(LoadError::NotUtf8 { valid_up_to: 2 })
        ));
        assert!(matches!(load(&d.join("missing")), Ok(None)));
        fs::write(&p, "ok").unwrap();
        assert_eq!(
            backup_path(&p),
            PathBuf::from(format!("{}.duet-backup", p.display()))
        );
        let _ = fs::remove_dir_all(&d);
    }
}
