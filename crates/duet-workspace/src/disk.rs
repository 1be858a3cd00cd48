//! Where an index path lands in the sharer's directory, and the renames and deletions a
//! partner's changes to the index make there (ADR 010).
//!
//! Index paths come from peers, so nothing is written, moved or removed through a path
//! that leaves the shared directory: [`resolve`] refuses what [`check_path`] refuses (`..`,
//! absolute paths, `.git`), and any path through a symbolic link, whose target could be
//! anywhere (the scan never follows links either).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::index::{IndexError, check_path};

/// Why a path of the index cannot be used on the sharer's disk.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error(transparent)]
    BadPath(#[from] IndexError),
    #[error("{path} is a symbolic link: duet writes nothing through links")]
    Symlink { path: PathBuf },
    #[error("{path} is in the way: it is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path} already exists")]
    Exists { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DiskError + '_ {
    move |source| DiskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The path of index path `rel` under `root`, if writing there stays under `root`: every
/// directory on the way that exists is a real directory (no link), and the file, if it
/// exists, is a regular file.
pub fn resolve(root: &Path, rel: &str) -> Result<PathBuf, DiskError> {
    check_path(rel)?;
    let mut at = root.to_path_buf();
    let segments: Vec<&str> = rel.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        at.push(segment);
        let last = i + 1 == segments.len();
        match fs::symlink_metadata(&at) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Nothing further down exists either.
                at.extend(&segments[i + 1..]);
                return Ok(at);
            }
            Err(e) => return Err(io_err(&at)(e)),
            Ok(m) if m.file_type().is_symlink() => return Err(DiskError::Symlink { path: at }),
            Ok(m) if last && !m.is_file() => return Err(DiskError::NotAFile { path: at }),
            Ok(m) if !last && !m.is_dir() => return Err(DiskError::NotADirectory { path: at }),
            Ok(_) => {}
        }
    }
    Ok(at)
}

/// Makes the directories above index path `rel` (checked by [`resolve`]); returns the
/// file's path.
pub fn prepare(root: &Path, rel: &str) -> Result<PathBuf, DiskError> {
    let path = resolve(root, rel)?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    Ok(path)
}

/// Moves the file at index path `from` to `to`, making directories on the way; refuses to
/// replace a file at `to`.
pub fn rename(root: &Path, from: &str, to: &str) -> Result<(), DiskError> {
    let source = resolve(root, from)?;
    let target = resolve(root, to)?;
    if fs::symlink_metadata(&target).is_ok() {
        return Err(DiskError::Exists { path: target });
    }
    prepare(root, to)?;
    fs::rename(&source, &target).map_err(io_err(&source))?;
    remove_empty_dirs(root, &source);
    Ok(())
}

/// Removes the file at index path `rel` (and the directories it leaves empty). A file
/// already gone is not an error.
pub fn remove(root: &Path, rel: &str) -> Result<(), DiskError> {
    let path = resolve(root, rel)?;
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(&path)(e)),
    }
    remove_empty_dirs(root, &path);
    Ok(())
}

/// Removes the now-empty directories between `file` and `root` (git does not track empty
/// directories; a rename or delete should not leave them behind).
fn remove_empty_dirs(root: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn dir(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("duet-disk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("mkdir");
        Dir(d)
    }

    #[test]
    fn paths_stay_in_the_shared_directory() {
        let d = dir("resolve");
        let root = &d.0;
        fs::create_dir_all(root.join("src")).expect("mkdir");
        fs::write(root.join("src/main.rs"), "fn main() {}\n").expect("write");
        fs::write(root.join("plain"), "x").expect("write");
        assert_eq!(
            resolve(root, "src/main.rs").expect("ok"),
            root.join("src/main.rs")
        );
        assert_eq!(
            resolve(root, "new/dir/f.rs").expect("ok"),
            root.join("new/dir/f.rs")
        );
        assert!(matches!(
            resolve(root, "../escape"),
            Err(DiskError::BadPath(_))
        ));
        assert!(matches!(
            resolve(root, ".git/hooks/pre-commit"),
            Err(DiskError::BadPath(_))
        ));
        assert!(matches!(
            resolve(root, "src"),
            Err(DiskError::NotAFile { .. })
        ));
        assert!(matches!(
            resolve(root, "plain/f"),
            Err(DiskError::NotADirectory { .. })
        ));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(std::env::temp_dir(), root.join("out")).expect("link");
            std::os::unix::fs::symlink(root.join("plain"), root.join("alias")).expect("link");
            assert!(matches!(
                resolve(root, "out/evil.sh"),
                Err(DiskError::Symlink { .. })
            ));
            assert!(matches!(
                resolve(root, "alias"),
                Err(DiskError::Symlink { .. })
            ));
        }
    }

    #[test]
    fn renames_and_removals_tidy_up_and_never_overwrite() {
        let d = dir("ops");
        let root = &d.0;
        fs::create_dir_all(root.join("a/b")).expect("mkdir");
        fs::write(root.join("a/b/f.txt"), "f").expect("write");
        fs::write(root.join("g.txt"), "g").expect("write");
        rename(root, "a/b/f.txt", "c/f.txt").expect("rename");
        assert_eq!(fs::read_to_string(root.join("c/f.txt")).expect("read"), "f");
        assert!(!root.join("a").exists(), "empty directories are removed");
        assert!(matches!(
            rename(root, "c/f.txt", "g.txt"),
            Err(DiskError::Exists { .. })
        ));
        assert_eq!(fs::read_to_string(root.join("g.txt")).expect("read"), "g");
        remove(root, "c/f.txt").expect("remove");
        assert!(!root.join("c").exists());
        remove(root, "c/f.txt").expect("gone already is fine");
        assert!(root.exists(), "the root itself stays");
    }
}
