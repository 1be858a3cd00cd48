//! The part of Redis's protocol (RESP2) the bus speaks, over one plain TCP connection owned by
//! the task that uses it: `AUTH`, `SELECT`, `PUBLISH` (pipelined), `SUBSCRIBE`,
//! `UNSUBSCRIBE`, `PING`, and the replies and pushes they bring.
//!
//! Why not a client crate: `redis` (1.8) runs every connection through a task of its own, so
//! an edit crossing nodes took two more task hops (room -> publisher -> the crate's driver ->
//! Redis -> the crate's pub/sub driver -> listener -> room), measured as most of the
//! cross-node latency beyond Redis's own round trip (ADR 011); and it brought 32 crates. What
//! the bus needs of the protocol is this file.
//!
//! Replies are parsed from a buffer filled by `read_buf` (cancel-safe: a task may wait on
//! the socket in a `select!` beside other work and lose nothing), with every length checked
//! before anything is allocated for it: a bulk string at most `max_bulk` bytes, an array at
//! most [`MAX_ARRAY`] items, nested at most [`MAX_DEPTH`] deep.

use bytes::{Buf, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Most items in an array reply (pushes are 3, `SUBSCRIBE` confirmations 3).
const MAX_ARRAY: usize = 16;
/// Deepest nesting of arrays.
const MAX_DEPTH: usize = 2;
/// Longest status, error or integer line.
const MAX_LINE: usize = 4096;

/// Where Redis is: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

/// The password is never shown.
impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "redis://{}:{}/{}", self.host, self.port, self.db)
    }
}

/// Why an address is not one (the address itself is not repeated: it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("it must start with redis:// (rediss://, TLS, is not supported yet)")]
    Scheme,
    #[error("no host")]
    NoHost,
    #[error("the port is not a number from 1 to 65535")]
    Port,
    #[error("the database is not a number")]
    Db,
    #[error("the user or password is not valid percent-encoded UTF-8")]
    Credentials,
}

impl Address {
    pub fn parse(url: &str) -> Result<Self, AddressError> {
        let rest = url.strip_prefix("redis://").ok_or(AddressError::Scheme)?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, hostport) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        let decode = |s: &str| -> Result<String, AddressError> {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| AddressError::Credentials)
        };
        let (user, password) = match credentials {
            None => (None, None),
            Some(c) => match c.split_once(':') {
                Some((u, p)) => (
                    (!u.is_empty()).then(|| decode(u)).transpose()?,
                    Some(decode(p)?),
                ),
                None => (None, Some(decode(c)?)),
            },
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or(AddressError::NoHost)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| AddressError::Port)?,
                None if after.is_empty() => 6379,
                None => return Err(AddressError::Port),
            };
            (host.to_owned(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| AddressError::Port)?),
                None => (hostport.to_owned(), 6379),
            }
        };
        if host.is_empty() {
            return Err(AddressError::NoHost);
        }
        if port == 0 {
            return Err(AddressError::Port);
        }
        let db = match path.split('?').next().unwrap_or("") {
            "" => 0,
            d => d.parse().map_err(|_| AddressError::Db)?,
        };
        Ok(Self {
            host,
            port,
            user,
            password,
            db,
        })
    }
}

/// A reply or a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Status(String),
    Error(String),
    Int(i64),
    /// `None`: the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None`: the null array.
    Array(Option<Vec<Value>>),
}

impl Value {
    /// A bulk or status string as text (a push's kind, say).
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Bulk(Some(b)) => std::str::from_utf8(b).ok(),
            Value::Status(s) => Some(s),
            _ => None,
        }
    }
}

/// What can go wrong on a connection.
#[derive(Debug, thiserror::Error)]
pub enum RespError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis closed the connection")]
    Closed,
    #[error("not the redis protocol: {0}")]
    Protocol(String),
    #[error("redis refused: {0}")]
    Refused(String),
}

/// Parses one value from the front of `buf`: `Ok(None)` when it is not all there yet.
pub fn parse(buf: &[u8], max_bulk: usize) -> Result<Option<(Value, usize)>, RespError> {
    parse_at(buf, 0, max_bulk, 0)
}

fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = &buf[at..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end <= MAX_LINE => Ok(Some((&rest[..end], at + end + 2))),
        Some(_) => Err(RespError::Protocol("a line over 4096 bytes".into())),
        None if rest.len() > MAX_LINE + 2 => {
            Err(RespError::Protocol("a line over 4096 bytes".into()))
        }
        None => Ok(None),
    }
}

fn number(text: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            RespError::Protocol(format!("not a number: {:?}", String::from_utf8_lossy(text)))
        })
}

fn parse_at(
    buf: &[u8],
    at: usize,
    max_bulk: usize,
    depth: usize,
) -> Result<Option<(Value, usize)>, RespError> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((text, next)) = line(buf, at + 1)? else {
        return Ok(None);
    };
    let string = || String::from_utf8_lossy(text).into_owned();
    match kind {
        b'+' => Ok(Some((Value::Status(string()), next))),
        b'-' => Ok(Some((Value::Error(string()), next))),
        b':' => Ok(Some((Value::Int(number(text)?), next))),
        b'$' => {
            let len = number(text)?;
            if len == -1 {
                return Ok(Some((Value::Bulk(None), next)));
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l <= max_bulk)
                .ok_or_else(|| RespError::Protocol(format!("a bulk string of {len} bytes")))?;
            let end = next + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RespError::Protocol("a bulk string without its CRLF".into()));
            }
            Ok(Some((Value::Bulk(Some(buf[next..end].to_vec())), end + 2)))
        }
        b'*' => {
            let n = number(text)?;
            if n == -1 {
                return Ok(Some((Value::Array(None), next)));
            }
            let n = usize::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_ARRAY)
                .ok_or_else(|| RespError::Protocol(format!("an array of {n} items")))?;
            if depth >= MAX_DEPTH {
                return Err(RespError::Protocol("arrays nested too deep".into()));
            }
            let mut items = Vec::with_capacity(n);
            let mut at = next;
            for _ in 0..n {
                let Some((item, after)) = parse_at(buf, at, max_bulk, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                at = after;
            }
            Ok(Some((Value::Array(Some(items)), at)))
        }
        other => Err(RespError::Protocol(format!(
            "unknown reply type {:?}",
            other as char
        ))),
    }
}

/// Appends a command (an array of bulk strings) to `out`.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// One connection to Redis, owned by one task (or split: [`Conn::into_parts`]).
pub struct Conn {
    reader: Reader,
    writer: OwnedWriteHalf,
    write: Vec<u8>,
}

/// The reading half of a connection: replies and pushes, parsed from its buffer.
pub struct Reader {
    half: OwnedReadHalf,
    read: BytesMut,
    max_bulk: usize,
}

impl Conn {
    /// Connects, authenticates and selects the database, each within `timeout`.
    pub async fn open(
        address: &Address,
        timeout: Duration,
        max_bulk: usize,
    ) -> Result<Self, RespError> {
        let stream = tokio::time::timeout(
            timeout,
            TcpStream::connect((address.host.as_str(), address.port)),
        )
        .await
        .map_err(|_| RespError::Timeout(timeout))??;
        stream.set_nodelay(true)?;
        let (half, writer) = stream.into_split();
        let mut conn = Self {
            reader: Reader {
                half,
                read: BytesMut::with_capacity(16 * 1024),
                max_bulk,
            },
            writer,
            write: Vec::with_capacity(16 * 1024),
        };
        if let Some(password) = &address.password {
            match &address.user {
                Some(user) => conn.queue(&[b"AUTH", user.as_bytes(), password.as_bytes()]),
                None => conn.queue(&[b"AUTH", password.as_bytes()]),
            }
            conn.flush().await?;
            conn.expect_ok(timeout).await?;
        }
        if address.db != 0 {
            conn.queue(&[b"SELECT", address.db.to_string().as_bytes()]);
            conn.flush().await?;
            conn.expect_ok(timeout).await?;
        }
        Ok(conn)
    }

    async fn expect_ok(&mut self, timeout: Duration) -> Result<(), RespError> {
        match self.next_within(timeout).await? {
            Value::Status(_) => Ok(()),
            Value::Error(e) => Err(RespError::Refused(e)),
            other => Err(RespError::Protocol(format!("unexpected reply {other:?}"))),
        }
    }

    /// Queues a command; [`Conn::flush`] sends what is queued.
    pub fn queue(&mut self, args: &[&[u8]]) {
        encode(&mut self.write, args);
    }

    pub async fn flush(&mut self) -> Result<(), RespError> {
        if !self.write.is_empty() {
            self.writer.write_all(&self.write).await?;
            self.write.clear();
        }
        Ok(())
    }

    /// The reading half and the writing half, for a task that reads replies while others
    /// write (the writing half's `try_write` needs no `&mut`).
    pub fn into_parts(self) -> (Reader, OwnedWriteHalf) {
        (self.reader, self.writer)
    }

    pub fn buffered(&mut self) -> Result<Option<Value>, RespError> {
        self.reader.buffered()
    }

    pub async fn fill(&mut self) -> Result<(), RespError> {
        self.reader.fill().await
    }

    pub async fn next_within(&mut self, timeout: Duration) -> Result<Value, RespError> {
        self.reader.next_within(timeout).await
    }
}

impl Reader {
    /// The next value already in the buffer, if one is whole there.
    pub fn buffered(&mut self) -> Result<Option<Value>, RespError> {
        match parse(&self.read, self.max_bulk)? {
            Some((value, used)) => {
                self.read.advance(used);
                Ok(Some(value))
            }
            None => Ok(None),
        }
    }

    /// Reads more from the socket into the buffer. Cancel-safe: a `select!` may drop it and
    /// nothing read is lost.
    pub async fn fill(&mut self) -> Result<(), RespError> {
        if self.read.capacity() - self.read.len() < 4096 {
            self.read.reserve(16 * 1024);
        }
        match self.half.read_buf(&mut self.read).await? {
            0 => Err(RespError::Closed),
            _ => Ok(()),
        }
    }

    /// The next value, reading as needed, within `timeout`.
    pub async fn next_within(&mut self, timeout: Duration) -> Result<Value, RespError> {
        tokio::time::timeout(timeout, async {
            loop {
                if let Some(value) = self.buffered()? {
                    return Ok(value);
                }
                self.fill().await?;
            }
        })
        .await
        .map_err(|_| RespError::Timeout(timeout))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let a = Address::parse("redis://127.0.0.1:6390").unwrap();
        assert_eq!((a.host.as_str(), a.port, a.db), ("127.0.0.1", 6390, 0));
        assert_eq!((a.user, a.password), (None, None));
        let a = Address::parse("redis://:s%40cret@bus.internal/3").unwrap();
        assert_eq!((a.host.as_str(), a.port, a.db), ("bus.internal", 6379, 3));
        assert_eq!(a.password.as_deref(), Some("s@cret"));
        let a = Address::parse("redis://duet:pw@[::1]:7000").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 7000));
        assert_eq!(a.user.as_deref(), Some("duet"));
        assert!(
            !format!("{a:?}").contains("pw"),
            "the password is never shown"
        );
        for (bad, why) in [
            ("http://x", AddressError::Scheme),
            ("rediss://x", AddressError::Scheme),
            ("redis://", AddressError::NoHost),
            ("redis://x:0", AddressError::Port),
            ("redis://x:99999", AddressError::Port),
            ("redis://x/db", AddressError::Db),
        ] {
            assert_eq!(Address::parse(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn replies_parse_whole_or_wait_for_more() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$3\r\na\x00b\r\n";
        let (v, used) = parse(msg, 1024).unwrap().unwrap();
        assert_eq!(used, msg.len());
        assert_eq!(
            v,
            Value::Array(Some(vec![
                Value::Bulk(Some(b"message".to_vec())),
                Value::Bulk(Some(b"chan".to_vec())),
                Value::Bulk(Some(b"a\x00b".to_vec())),
            ]))
        );
        // Every prefix is "not yet", never an error.
        for cut in 0..msg.len() {
            assert!(parse(&msg[..cut], 1024).unwrap().is_none(), "{cut}");
        }
        assert_eq!(parse(b":3\r\n", 9).unwrap(), Some((Value::Int(3), 4)));
        assert_eq!(
            parse(b"+PONG\r\n", 9).unwrap(),
            Some((Value::Status("PONG".into()), 7))
        );
        assert_eq!(
            parse(b"-ERR no\r\n", 9).unwrap(),
            Some((Value::Error("ERR no".into()), 9))
        );
        assert_eq!(parse(b"$-1\r\n", 9).unwrap(), Some((Value::Bulk(None), 5)));
    }

    #[test]
    fn hostile_replies_are_refused_without_allocating_for_them() {
        for bad in [
            &b"$99999999999\r\n"[..],
            b"*1000000\r\n",
            b"*1\r\n*1\r\n*1\r\n:1\r\n",
            b"$-5\r\n",
            b"?x\r\n",
            b":x\r\n",
            b"$3\r\nabcXY",
        ] {
            assert!(parse(bad, 1024).is_err(), "{bad:?}");
        }
        assert!(parse(&[b'+'; 5000], 1024).is_err(), "a line without an end");
    }

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"PUBLISH", b"c", b"\x00\x01"]);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$2\r\n\x00\x01\r\n");
    }
}
