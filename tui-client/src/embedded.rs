//! The in-process server: when no `--server` is given and nothing answers at the default
//! address, `duet` serves the room itself so one command is enough on one machine. Rooms
//! are stored in the user's data directory (`$XDG_DATA_HOME/duet`, else
//! `~/.local/share/duet`), in the same SQLite store `duet-server --data-dir` uses, so a
//! room outlives the editor that hosted it.
//!
//! The seam is [`probe`] and [`host`]; everything about the server stays in `duet-server`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use duet_server::data_dir::DataDirLock;
use duet_server::sqlite::{SqliteOptions, SqliteStore};
use duet_server::store::{MemoryStore, Store};

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

/// Opens the store in `dir`, or falls back to memory saying why.
fn open_store(dir: Option<PathBuf>) -> (Arc<dyn Store>, Storage, Option<DataDirLock>) {
    let Some(dir) = dir else {
        return (
            Arc::new(MemoryStore::default()),
            Storage::Memory("neither XDG_DATA_HOME nor HOME is set".into()),
            None,
        );
    };
    let opened = DataDirLock::acquire(&dir)
        .map_err(|e| e.to_string())
        .and_then(|lock| {
            SqliteStore::open(&dir, SqliteOptions::default())
                .map(|store| (store, lock))
                .map_err(|e| format!("cannot open the rooms in {}: {e}", dir.display()))
        });
    match opened {
        Ok((store, lock)) => (Arc::new(store), Storage::Dir(dir), Some(lock)),
        Err(why) => (Arc::new(MemoryStore::default()), Storage::Memory(why), None),
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
    let (store, storage, lock) = open_store(dir);
    let server = duet_server::Server::bind_with_store(config, store).await?;
    Ok(Hosted {
        handle: server.spawn(),
        storage,
        _lock: lock,
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
