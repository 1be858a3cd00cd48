//! The in-process server: when no `--server` is given and nothing answers at the default
//! address, `duet` serves the room itself so one command is enough on one machine. Rooms
//! are stored in the user's data directory (`$XDG_DATA_HOME/duet`, else
//! `~/.local/share/duet`), in the same SQLite store `duet-server --data-dir` uses, so a
//! room outlives the editor that hosted it.
//!
//! The seam is [`probe`] and [`host`]; everything about the server stays in `duet-server`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use duet_server::data_dir::DataDirLock;
use duet_server::storage::{OpenError, OpenStore, StoreChoice};

/// True if something accepts TCP connections at `addr`.
pub async fn probe(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(400),
            tokio::net::TcpStream::connect(addr)
        )
        .await,
        Ok(Ok(_))
    )
}

/// The user's data directory for duet: `$XDG_DATA_HOME/duet`, else
/// `$HOME/.local/share/duet`; `None` when neither variable is set.
pub fn data_dir() -> Option<PathBuf> {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    non_empty("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("duet"))
}

/// Where the hosted server keeps its rooms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// In this SQLite data directory.
    Dir(PathBuf),
    /// In memory only, and why.
    Memory(String),
}

impl Storage {
    /// What the editor says when it hosts: short enough for one message row (the home
    /// directory written as `~`).
    pub fn hosting_note(&self, server: &str, home: Option<&Path>) -> String {
        let kept = match self {
            Storage::Dir(d) => format!("rooms kept in {}", home_relative(d, home)),
            Storage::Memory(why) => format!("rooms kept in memory only ({why})"),
        };
        format!("hosting the server at {server} ({kept})")
    }
}

/// `path` with `home` written as `~`.
fn home_relative(path: &Path, home: Option<&Path>) -> String {
    match home.filter(|h| !h.as_os_str().is_empty()) {
        Some(home) => match path.strip_prefix(home) {
            Ok(rest) => format!("~/{}", rest.display()),
            Err(_) => path.display().to_string(),
        },
        None => path.display().to_string(),
    }
}

/// A server running inside this process.
pub struct Hosted {
    handle: duet_server::ServerHandle,
    pub storage: Storage,
    // Held while serving: one server per data directory.
    _lock: Option<DataDirLock>,
}

impl std::fmt::Debug for Hosted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosted")
            .field("addr", &self.handle.local_addr())
            .field("storage", &self.storage)
            .finish()
    }
}

/// Opens the store in `dir` as `duet-server --data-dir` would (the same `StoreChoice`), or
/// falls back to memory saying why.
fn open_store(dir: Option<PathBuf>) -> (OpenStore, Storage) {
    let Some(dir) = dir else {
        let why = "neither XDG_DATA_HOME nor HOME is set".into();
        return (OpenStore::memory(), Storage::Memory(why));
    };
    let choice = StoreChoice::Sqlite {
        dir: dir.clone(),
        options: Default::default(),
    };
    match choice.open() {
        Ok(opened) => (opened, Storage::Dir(dir)),
        Err(OpenError::Lock(e)) => (OpenStore::memory(), Storage::Memory(e.to_string())),
        Err(e) => {
            let why = format!("cannot open the rooms in {}: {e}", dir.display());
            (OpenStore::memory(), Storage::Memory(why))
        }
    }
}

/// Starts the server on `addr`, storing rooms in the user's data directory (in memory
/// when that cannot be used; [`Hosted::storage`] says which).
pub async fn host(addr: SocketAddr) -> std::io::Result<Hosted> {
    host_in(addr, data_dir()).await
}

/// [`host`] with rooms in `dir` (`None`: in memory).
pub async fn host_in(addr: SocketAddr, dir: Option<PathBuf>) -> std::io::Result<Hosted> {
    let config = duet_server::ServerConfig {
        listen: addr,
        ..Default::default()
    };
    let (opened, storage) = open_store(dir);
    let server = duet_server::Server::bind_with_store(config, opened.store).await?;
    Ok(Hosted {
        handle: server.spawn(),
        storage,
        _lock: opened.lock,
    })
}

impl Hosted {
    /// Stops the server, closing its connections (the others keep editing offline) and
    /// letting the store finish writing.
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosting_note_fits_a_message_row_whole() {
        // The case: HOME deep in /tmp, the data directory under it.
        let home = Path::new("/tmp/duet-editor-home-2271939/home");
        let note = Storage::Dir(home.join(".local/share/duet"))
            .hosting_note("ws://127.0.0.1:7070", Some(home));
        assert_eq!(
            note,
            "hosting the server at ws://127.0.0.1:7070 (rooms kept in ~/.local/share/duet)"
        );
        assert!(note.chars().count() <= 100, "{note}");
        // Outside HOME the path stays whole (the message row fits it by eliding its middle).
        let elsewhere =
            Storage::Dir(PathBuf::from("/srv/duet")).hosting_note("ws://h:1", Some(home));
        assert!(
            elsewhere.ends_with("(rooms kept in /srv/duet)"),
            "{elsewhere}"
        );
        let memory = Storage::Memory("HOME is not set".into()).hosting_note("ws://h:1", None);
        assert!(memory.contains("memory only (HOME is not set)"), "{memory}");
    }

    #[tokio::test]
    async fn rooms_go_to_the_data_directory_and_a_busy_one_means_memory() {
        let dir = std::env::temp_dir().join(format!("duet-embedded-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let first = host_in(any, Some(dir.clone())).await.unwrap();
        assert_eq!(first.storage, Storage::Dir(dir.clone()));
        // The directory is locked by the first: the second says why it keeps rooms in memory.
        let second = host_in(any, Some(dir.clone())).await.unwrap();
        assert!(
            matches!(&second.storage, Storage::Memory(why) if why.contains("in use")),
            "{:?}",
            second.storage
        );
        second.shutdown().await;
        first.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
