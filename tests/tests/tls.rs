//! wss:// end to end: a server with a certificate, clients that trust it through a private CA
//! file, and clear refusals for clients that do not.

use duet_client::{Backoff, Client, ClientConfig, ClientError, Document, Event, RoomName};
use duet_e2e::clients::{TestClient, converged};
use duet_e2e::server::ServerProcess;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the TLS test needs the openssl command (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private CA and a certificate it signed for `localhost` and 127.0.0.1, made with the
/// openssl CLI. Returns (CA certificate, server certificate, server key).
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |name: &str| dir.join(name).display().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "2",
                "-subj",
                "/CN=duet test CA",
                "-keyout",
                &p("ca.key"),
                "-out",
                &p("ca.pem"),
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                &p("key.pem"),
                "-out",
                &p("leaf.csr"),
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("leaf.ext"),
        "-out",
        &p("cert.pem"),
    ]);
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

fn client(url: &str, room: &RoomName, name: &str, ca: Option<&Path>) -> TestClient {
    let mut config = ClientConfig::new(url, room.clone(), name);
    config.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
    };
    config.ca_file = ca.map(Path::to_path_buf);
    let (client, events) = Client::spawn(config, Document::new());
    TestClient {
        client,
        events,
        name: name.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sync_over_wss_with_a_private_ca() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("duet-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (ca, cert, key) = private_ca(&dir);
    let server = ServerProcess::start(&[
        "--tls-cert",
        cert.to_str().unwrap_or_default(),
        "--tls-key",
        key.to_str().unwrap_or_default(),
    ])?;
    let url = format!("wss://localhost:{}", server.addr.port());
    let room = RoomName::new("secure")?;
    let a = client(&url, &room, "a", Some(&ca));
    let b = client(&url, &room, "b", Some(&ca));
    a.client.wait_synced(T).await?;
    b.client.wait_synced(T).await?;
    a.insert_at_char(0, "over TLS 🔒");
    let text = converged(&[a, b], T).await?;
    assert_eq!(text, "over TLS 🔒");

    // Without the CA the certificate is not trusted: the client says so and keeps retrying
    // (a network or certificate problem may be fixed on the other side).
    let mut untrusted = client(&url, &room, "c", None);
    let deadline = tokio::time::Instant::now() + T;
    let mut saw_reconnecting = false;
    while tokio::time::Instant::now() < deadline && !saw_reconnecting {
        if let Ok(Some(Event::State(duet_client::ConnState::Reconnecting { .. }))) =
            tokio::time::timeout(Duration::from_millis(200), untrusted.events.recv()).await
        {
            saw_reconnecting = true;
        }
    }
    assert!(
        saw_reconnecting,
        "an untrusted certificate must not connect"
    );
    assert!(untrusted.text().is_empty());

    // A CA file that is not a certificate is refused at once with a clear error.
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate")?;
    let bad = client(&url, &room, "d", Some(&junk));
    let err = bad.client.wait_synced(T).await.expect_err("must fail");
    assert!(matches!(err, ClientError::InvalidCa { .. }), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
