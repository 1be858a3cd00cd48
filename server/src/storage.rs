//! Which store a server keeps its rooms in, chosen in one place: `duet-server` (serving and
//! `rooms ...`) and the editor's embedded server both open their backend here, so a new
//! backend is one more [`StoreChoice`].

use crate::data_dir::{DataDirLock, LockError};
use crate::memory::MemoryStore;
use crate::sqlite::{SqliteAdmin, SqliteOptions, SqliteStore, SqliteStoreError};
use crate::store::{RoomAdmin, Store};
use std::path::PathBuf;
use std::sync::Arc;

/// A backend and its settings.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// Process memory: nothing survives a restart.
    Memory,
    /// One SQLite database in a data directory (durable; acknowledges after fsync).
    Sqlite {
        dir: PathBuf,
        options: SqliteOptions,
    },
    /// A PostgreSQL database that the nodes of a cluster share (ADR 011; acknowledges after
    /// COMMIT). Opened with [`StoreChoice::connect`].
    #[cfg(feature = "cluster")]
    Postgres {
        url: String,
        options: crate::cluster::pg::PgOptions,
    },
}

/// A store opened for serving.
pub struct OpenStore {
    pub store: Arc<dyn Store>,
    /// Held while serving, where the backend has one: one server per data directory, and
    /// admin writes refuse meanwhile.
    pub lock: Option<DataDirLock>,
    /// The PostgreSQL store itself, which a cluster node also needs for more than the `Store`
    /// interface (heads, heartbeats).
    #[cfg(feature = "cluster")]
    pub postgres: Option<Arc<crate::cluster::pg::PgStore>>,
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Sqlite(#[from] SqliteStoreError),
    #[cfg(feature = "cluster")]
    #[error(transparent)]
    Postgres(#[from] crate::cluster::pg::PgError),
    /// [`StoreChoice::open`] was asked for a backend that needs a runtime to connect.
    #[error("{0} is opened with StoreChoice::connect")]
    NeedsRuntime(&'static str),
}

impl OpenStore {
    /// A fresh in-memory store (opening one cannot fail).
    pub fn memory() -> Self {
        Self {
            store: Arc::new(MemoryStore::default()),
            lock: None,
            #[cfg(feature = "cluster")]
            postgres: None,
        }
    }
}

impl StoreChoice {
    /// Opens the store for a server, taking the backend's lock first. (PostgreSQL connects
    /// over the network: [`StoreChoice::connect`].)
    pub fn open(&self) -> Result<OpenStore, OpenError> {
        match self {
            StoreChoice::Memory => Ok(OpenStore::memory()),
            StoreChoice::Sqlite { dir, options } => {
                let lock = DataDirLock::acquire(dir)?;
                let store = SqliteStore::open(dir, options.clone())?;
                tracing::info!(database = %store.path().display(), "rooms are stored durably");
                Ok(OpenStore {
                    store: Arc::new(store),
                    lock: Some(lock),
                    #[cfg(feature = "cluster")]
                    postgres: None,
                })
            }
            #[cfg(feature = "cluster")]
            StoreChoice::Postgres { .. } => Err(OpenError::NeedsRuntime("postgresql")),
        }
    }

    /// Opens the store for a server, any backend (inside a tokio runtime).
    pub async fn connect(&self) -> Result<OpenStore, OpenError> {
        match self {
            #[cfg(feature = "cluster")]
            StoreChoice::Postgres { url, options } => {
                let store =
                    Arc::new(crate::cluster::pg::PgStore::connect(url, options.clone()).await?);
                tracing::info!("rooms are stored in postgresql");
                Ok(OpenStore {
                    store: store.clone(),
                    lock: None,
                    postgres: Some(store),
                })
            }
            _ => self.open(),
        }
    }

    /// Opens the backend's administration (no lock: reads are safe beside a server; take
    /// [`StoreChoice::lock_for_writes`] before writing).
    pub async fn admin(&self) -> Result<Box<dyn RoomAdmin>, OpenError> {
        Ok(match self {
            StoreChoice::Memory => Box::new(MemoryStore::default()),
            StoreChoice::Sqlite { dir, .. } => Box::new(SqliteAdmin::open(dir)?),
            #[cfg(feature = "cluster")]
            StoreChoice::Postgres { url, options } => {
                Box::new(crate::cluster::pg::PgStore::connect(url, options.clone()).await?)
            }
        })
    }

    /// The lock an admin write holds so no server serves (and stores) the room meanwhile;
    /// `None` for a backend without one (PostgreSQL: each admin write is one transaction
    /// beside the running nodes; docs/deploy.md says what that means for loaded rooms).
    pub fn lock_for_writes(&self) -> Result<Option<DataDirLock>, LockError> {
        match self {
            StoreChoice::Memory => Ok(None),
            StoreChoice::Sqlite { dir, .. } => DataDirLock::acquire(dir).map(Some),
            #[cfg(feature = "cluster")]
            StoreChoice::Postgres { .. } => Ok(None),
        }
    }

    /// Where rooms are kept, for people (never the PostgreSQL address: it may hold a password).
    pub fn describe(&self) -> String {
        match self {
            StoreChoice::Memory => "in memory only".into(),
            StoreChoice::Sqlite { dir, .. } => format!("in {}", dir.display()),
            #[cfg(feature = "cluster")]
            StoreChoice::Postgres { .. } => "in postgresql".into(),
        }
    }
}
