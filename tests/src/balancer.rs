//! A round-robin TCP load balancer on loopback, as a plain load balancer in front of several
//! duet-server nodes would be (no sticky sessions): each new connection goes to the next
//! backend in turn, and a backend that refuses or does not answer is skipped for the one
//! after it, so clients of a dead node reconnect to a live one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long a backend may take to accept before the balancer tries the next one.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

pub struct Balancer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    // A std Mutex: held to read or replace the list, never across an `.await`.
    backends: Mutex<Vec<SocketAddr>>,
    next: AtomicUsize,
    /// Connections each backend took, by its address.
    served: Mutex<Vec<(SocketAddr, u64)>>,
}

impl Shared {
    /// The backends in the order this connection tries them: from the next one in turn.
    fn order(&self) -> Vec<SocketAddr> {
        let backends = self
            .backends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if backends.is_empty() {
            return backends;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % backends.len();
        backends[start..]
            .iter()
            .chain(&backends[..start])
            .copied()
            .collect()
    }

    fn count(&self, backend: SocketAddr) {
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        match served.iter_mut().find(|(addr, _)| *addr == backend) {
            Some((_, n)) => *n += 1,
            None => served.push((backend, 1)),
        }
    }
}

impl Balancer {
    /// Balances connections on a new loopback port over `backends`.
    pub async fn start(backends: Vec<SocketAddr>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            backends: Mutex::new(backends),
            next: AtomicUsize::new(0),
            served: Mutex::new(Vec::new()),
        });
        let state = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    for backend in state.order() {
                        let connected =
                            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend))
                                .await;
                        if let Ok(Ok(mut server)) = connected {
                            state.count(backend);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                    // No backend answered: the client sees its connection closed.
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Replaces the backends (a node added or removed).
    pub fn set_backends(&self, backends: Vec<SocketAddr>) {
        *self
            .shared
            .backends
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = backends;
    }

    /// How many connections each backend took so far.
    pub fn served(&self) -> Vec<(SocketAddr, u64)> {
        self.shared
            .served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
