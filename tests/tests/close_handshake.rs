//! The close handshake by the book (RFC 6455 5.5.1, 7.1.1, 7.4), tried with raw frames on both
//! protocols: a client's close is answered with a close echoing its code, a code that must not
//! appear on the wire gets 1002, a malformed close gets 1002 or 1007, and then the server
//! closes TCP.

use duet_e2e::frames::{OP_CLOSE, RawSocket};
use duet_e2e::server::ServerProcess;
use std::time::Duration;

/// How long the server may take to answer and close TCP (it does so at once).
const T: Duration = Duration::from_secs(3);

const PROTOCOLS: [(&str, &str); 2] = [("duet", duet_protocol::PROTOCOL), ("yjs", "")];

/// Sends `payload` as a close frame and returns the server's close frame and whether it then
/// closed TCP.
async fn close_with(server: &ServerProcess, protocol: &str, payload: &[u8]) -> (Vec<u8>, bool) {
    let mut s = RawSocket::upgrade(server.addr, "/closing", protocol)
        .await
        .expect("upgraded");
    s.send(true, OP_CLOSE, payload).await.expect("sent");
    let out = s.until_tcp_closed(T).await;
    let close = out
        .close()
        .unwrap_or_else(|| panic!("no close frame in answer to {payload:?}: {out:?}"));
    assert_eq!(
        out.frames.last(),
        Some(close),
        "nothing may follow the close frame"
    );
    (close.payload.clone(), out.tcp_closed)
}

fn code_of(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_is_answered_with_its_code_then_tcp_closes() -> anyhow::Result<()> {
    let server = ServerProcess::start(&["--max-handshakes-per-sec", "1000"])?;
    // RFC 6455 7.4.1 and the IANA registry (1012, 1013), 3000-4999 for applications.
    let allowed: [u16; 15] = [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 3999, 4000, 4999,
    ];
    for (what, protocol) in PROTOCOLS {
        for code in allowed {
            let payload = [&code.to_be_bytes()[..], b"bye"].concat();
            let (answer, tcp_closed) = close_with(&server, protocol, &payload).await;
            assert_eq!(code_of(&answer), Some(code), "{what}, close {code}");
            assert!(tcp_closed, "{what}, close {code}: TCP left open");
        }
        // A close without a code is answered with a close without a code (1005 is never sent).
        let (answer, tcp_closed) = close_with(&server, protocol, &[]).await;
        assert_eq!(answer, Vec::<u8>::new(), "{what}, empty close");
        assert!(tcp_closed, "{what}, empty close: TCP left open");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_or_malformed_close_frames_get_1002_or_1007_then_tcp_closes() -> anyhow::Result<()>
{
    let server = ServerProcess::start(&["--max-handshakes-per-sec", "1000"])?;
    // Not allowed on the wire (RFC 6455 7.4.1-7.4.2): unused 0-999, reserved 1004, the
    // never-sent 1005, 1006 and 1015, the unassigned 1016-2999, and nothing from 5000 up.
    // 1014 (IANA "bad gateway") is refused by tungstenite 0.30 as well.
    let forbidden: [u16; 14] = [
        0, 1, 999, 1004, 1005, 1006, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ];
    for (what, protocol) in PROTOCOLS {
        for code in forbidden {
            let payload = [&code.to_be_bytes()[..], b"x"].concat();
            let (answer, tcp_closed) = close_with(&server, protocol, &payload).await;
            assert_eq!(code_of(&answer), Some(1002), "{what}, close {code}");
            assert!(tcp_closed, "{what}, close {code}: TCP left open");
        }
        // A one-byte close payload is malformed (5.5.1).
        let (answer, tcp_closed) = close_with(&server, protocol, &[0x03]).await;
        assert_eq!(code_of(&answer), Some(1002), "{what}, one-byte close");
        assert!(tcp_closed, "{what}, one-byte close");
        // A reason that is not UTF-8 (7.1.6, 8.1).
        let (answer, tcp_closed) =
            close_with(&server, protocol, &[0x03, 0xe8, 0xce, 0xba, 0xff]).await;
        assert_eq!(code_of(&answer), Some(1007), "{what}, non-UTF-8 reason");
        assert!(tcp_closed, "{what}, non-UTF-8 reason");
    }
    Ok(())
}
