//! The in-process server: when no `--server` is given and nothing answers at the default
//! address, `duet` serves the room itself so one command is enough on one machine.
//!
//! The seam is [`probe`] and [`host`]; everything about the server stays in `duet-server`.

use std::net::SocketAddr;
use std::time::Duration;

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

/// A server running inside this process.
pub struct Hosted {
    handle: duet_server::ServerHandle,
}

impl std::fmt::Debug for Hosted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosted")
            .field("addr", &self.handle.local_addr())
            .finish()
    }
}

/// Starts the server on `addr`.
// FIXME(lead): rooms are kept in memory (`Server::bind`); store them in the user's data
// directory once the server offers a file store (`bind_with_store`).
pub async fn host(addr: SocketAddr) -> std::io::Result<Hosted> {
    let config = duet_server::ServerConfig {
        listen: addr,
        ..Default::default()
    };
    let server = duet_server::Server::bind(config).await?;
    Ok(Hosted {
        handle: server.spawn(),
    })
}

impl Hosted {
    /// Stops the server, closing its connections (the others keep editing offline).
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }
}
