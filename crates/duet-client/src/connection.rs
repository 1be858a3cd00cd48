//! The connection loop: connect, run a session, and on a disconnect wait and try again,
//! until the application closes the client or the server says retrying is pointless.

use crate::handshake::{self, Failure};
use crate::session::{End, Session};
use crate::shared::Shared;
use crate::{ClientConfig, ClientError, ConnState};
use rand::rngs::StdRng;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{
    Connector, MaybeTlsStream, WebSocketStream, connect_async_tls_with_config,
};
use tokio_util::sync::CancellationToken;

/// tungstenite has no handshake timeout of its own.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Matches the protocol codec's own decode limit: a bigger message could not be decoded.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Smaller than tungstenite's 128 KiB default; large messages still arrive, in more reads.
const READ_BUFFER_BYTES: usize = 16 * 1024;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Runs until cancelled or a fatal error; leaves the state at [`ConnState::Stopped`].
pub(crate) async fn run(shared: Arc<Shared>, config: ClientConfig, cancel: CancellationToken) {
    let color = config.effective_color();
    let room = config.room.to_string();
    let mut rng: StdRng = rand::make_rng();
    let mut attempt: u32 = 0;
    let mut reason: String;
    loop {
        shared.set_state(ConnState::Connecting);
        let connected = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            connected = connect(&config) => connected,
        };
        match connected {
            Ok(mut ws) => {
                tracing::debug!(url = handshake::url(&config), "connected");
                let session = Session::new(&shared, &room, &config.name, &color);
                match session.run(&mut ws, &cancel).await {
                    End::Closed => break,
                    End::Fatal(error) => {
                        shared.fail(error);
                        break;
                    }
                    End::Lost { was_live, why } => {
                        if was_live {
                            attempt = 0;
                        }
                        reason = why;
                    }
                }
            }
            Err(Failure::Fatal(error)) => {
                shared.fail(error);
                break;
            }
            Err(Failure::Retry(why)) => {
                tracing::debug!(url = handshake::url(&config), why, "connect failed");
                reason = why;
            }
        }
        attempt = attempt.saturating_add(1);
        let retry_in = config.backoff.delay(attempt, &mut rng);
        shared.set_state(ConnState::Reconnecting {
            attempt,
            retry_in,
            reason: std::mem::take(&mut reason),
        });
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(retry_in) => {}
        }
    }
    shared.set_state(ConnState::Stopped);
    shared.events.close();
}

async fn connect(config: &ClientConfig) -> Result<Ws, Failure> {
    let request = handshake::request(config).map_err(Failure::Fatal)?;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let connector = if config.server.starts_with("wss://") {
        Some(tls_connector(config).map_err(Failure::Fatal)?)
    } else {
        None
    };
    let connecting = connect_async_tls_with_config(request, Some(ws_config), true, connector);
    let (ws, response) = match timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => {
            return Err(Failure::Retry(format!(
                "no handshake within {CONNECT_TIMEOUT:?}"
            )));
        }
        Ok(Err(e)) => return Err(handshake::classify(config, e)),
        Ok(Ok(connected)) => connected,
    };
    handshake::check_response(config, &response)?;
    Ok(ws)
}

/// TLS for `wss://`: the system's roots, plus the certificates of `config.ca_file`.
fn tls_connector(config: &ClientConfig) -> Result<Connector, ClientError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system root rustls cannot parse is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = &config.ca_file {
        let bad = |reason: String| ClientError::InvalidCa {
            path: path.display().to_string(),
            reason,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificate in the file".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|e| ClientError::InvalidCa {
        path: String::new(),
        reason: e.to_string(),
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Connector::Rustls(std::sync::Arc::new(tls)))
}
