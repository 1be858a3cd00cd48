//! Admission and rate limits: per-IP handshake rate (429 with Retry-After), per-IP and global
//! connection caps (429 / 503), and per-connection message and byte rates (close 1008).
//!
//! Token buckets with an explicit clock argument, so tests drive time by hand. Defaults suit a
//! small team on one machine; every number is a flag.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Every limit, in one place.
#[derive(Debug, Clone)]
pub struct LimitConfig {
    /// New connections per second per IP, sustained.
    pub handshakes_per_sec: f64,
    /// New connections per IP in one burst.
    pub handshake_burst: f64,
    /// Open connections per IP.
    pub connections_per_ip: usize,
    /// Open connections in all.
    pub connections_total: usize,
    /// Rooms held in memory at once; joining another is refused with 503.
    pub max_loaded_rooms: usize,
    /// Messages per second per connection, sustained, and in one burst.
    pub messages_per_sec: f64,
    pub message_burst: f64,
    /// Payload bytes per second per connection, sustained, and in one burst.
    pub bytes_per_sec: f64,
    pub byte_burst: f64,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            handshakes_per_sec: 10.0,
            handshake_burst: 50.0,
            connections_per_ip: 256,
            connections_total: 10_000,
            max_loaded_rooms: 10_000,
            messages_per_sec: 500.0,
            message_burst: 5_000.0,
            bytes_per_sec: 4.0 * 1024.0 * 1024.0,
            byte_burst: 64.0 * 1024.0 * 1024.0,
        }
    }
}

/// A token bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            rate,
            burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes `n` tokens, or says how long until they would be there.
    pub fn take(&mut self, n: f64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= n {
            self.tokens -= n;
            Ok(())
        } else {
            let missing = n - self.tokens;
            Err(Duration::from_secs_f64(
                missing / self.rate.max(f64::MIN_POSITIVE),
            ))
        }
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("too many new connections from {ip}; retry in {retry_after} s")]
    HandshakeRate { ip: IpAddr, retry_after: u64 },
    #[error("too many open connections from {ip} (limit {limit})")]
    PerIp { ip: IpAddr, limit: usize },
    #[error("the server is at its connection limit ({limit})")]
    Total { limit: usize },
}

impl Refused {
    pub fn status(&self) -> u16 {
        match self {
            Refused::HandshakeRate { .. } | Refused::PerIp { .. } => 429,
            Refused::Total { .. } => 503,
        }
    }

    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Refused::HandshakeRate { retry_after, .. } => Some(*retry_after),
            Refused::PerIp { .. } => Some(5),
            Refused::Total { .. } => Some(30),
        }
    }
}

struct IpState {
    handshakes: Bucket,
    open: usize,
}

/// Connection admission shared by the whole server.
pub struct Admission {
    config: LimitConfig,
    // A std Mutex: held only for a map lookup and arithmetic, never across an `.await`.
    ips: Mutex<HashMap<IpAddr, IpState>>,
    open: std::sync::atomic::AtomicUsize,
}

/// Holds one admitted connection's place; dropping it frees the place.
pub struct Ticket<'a> {
    admission: &'a Admission,
    ip: IpAddr,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.admission.release(self.ip);
    }
}

/// Entries kept before idle ones are swept.
const SWEEP_OVER: usize = 4096;

impl Admission {
    pub fn new(config: LimitConfig) -> Self {
        Self {
            config,
            ips: Mutex::new(HashMap::new()),
            open: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub fn config(&self) -> &LimitConfig {
        &self.config
    }

    /// Counts a new connection from `ip` against the handshake rate and connection caps.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<Ticket<'_>, Refused> {
        use std::sync::atomic::Ordering;
        let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        if ips.len() > SWEEP_OVER {
            ips.retain(|_, s| s.open > 0 || !s.handshakes.is_full(now));
        }
        let state = ips.entry(ip).or_insert_with(|| IpState {
            handshakes: Bucket::new(
                self.config.handshakes_per_sec,
                self.config.handshake_burst,
                now,
            ),
            open: 0,
        });
        if let Err(wait) = state.handshakes.take(1.0, now) {
            return Err(Refused::HandshakeRate {
                ip,
                retry_after: wait.as_secs().max(1),
            });
        }
        if state.open >= self.config.connections_per_ip {
            return Err(Refused::PerIp {
                ip,
                limit: self.config.connections_per_ip,
            });
        }
        if self.open.load(Ordering::Relaxed) >= self.config.connections_total {
            return Err(Refused::Total {
                limit: self.config.connections_total,
            });
        }
        state.open += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(Ticket {
            admission: self,
            ip,
        })
    }

    fn release(&self, ip: IpAddr) {
        use std::sync::atomic::Ordering;
        self.open.fetch_sub(1, Ordering::Relaxed);
        let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = ips.get_mut(&ip) {
            state.open = state.open.saturating_sub(1);
        }
    }

    /// The per-connection message and byte limiter.
    pub fn traffic(&self, now: Instant) -> Traffic {
        Traffic {
            messages: Bucket::new(self.config.messages_per_sec, self.config.message_burst, now),
            bytes: Bucket::new(self.config.bytes_per_sec, self.config.byte_burst, now),
        }
    }
}

/// One connection's message and byte budget.
pub struct Traffic {
    messages: Bucket,
    bytes: Bucket,
}

impl Traffic {
    /// Counts one received message of `len` bytes; `Err` means the connection is over its
    /// rate and must be closed (1008).
    pub fn record(&mut self, len: usize, now: Instant) -> Result<(), OverRate> {
        self.messages
            .take(1.0, now)
            .map_err(|_| OverRate::Messages)?;
        self.bytes
            .take(len as f64, now)
            .map_err(|_| OverRate::Bytes)
    }
}

/// Which budget a connection went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OverRate {
    #[error("too many messages per second")]
    Messages,
    #[error("too many bytes per second")]
    Bytes,
}

/// The client's address: the socket's, or the last `X-Forwarded-For` hop when the socket's
/// peer is a trusted proxy.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    forwarded_for
        .and_then(|v| v.rsplit(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn handshake_rate_refills_over_time() {
        let config = LimitConfig {
            handshakes_per_sec: 1.0,
            handshake_burst: 2.0,
            ..LimitConfig::default()
        };
        let a = Admission::new(config);
        let t0 = Instant::now();
        let _t1 = a.admit(ip("10.0.0.1"), t0).expect("first");
        let _t2 = a.admit(ip("10.0.0.1"), t0).expect("second");
        let refused = a.admit(ip("10.0.0.1"), t0).err().expect("third refused");
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.retry_after(), Some(1));
        // Another IP is unaffected; after a second there is room again.
        assert!(a.admit(ip("10.0.0.2"), t0).is_ok());
        assert!(
            a.admit(ip("10.0.0.1"), t0 + Duration::from_millis(1100))
                .is_ok()
        );
    }

    #[test]
    fn connection_caps_and_release() {
        let config = LimitConfig {
            connections_per_ip: 1,
            connections_total: 2,
            ..LimitConfig::default()
        };
        let a = Admission::new(config);
        let now = Instant::now();
        let first = a.admit(ip("10.0.0.1"), now).expect("first");
        assert!(matches!(
            a.admit(ip("10.0.0.1"), now),
            Err(Refused::PerIp { .. })
        ));
        let _second = a.admit(ip("10.0.0.2"), now).expect("second ip");
        let total = a.admit(ip("10.0.0.3"), now).err().expect("over total");
        assert_eq!(total.status(), 503);
        drop(first);
        assert!(
            a.admit(ip("10.0.0.1"), now).is_ok(),
            "released place is free again"
        );
    }

    #[test]
    fn traffic_limits_messages_and_bytes() {
        let a = Admission::new(LimitConfig {
            messages_per_sec: 10.0,
            message_burst: 3.0,
            bytes_per_sec: 100.0,
            byte_burst: 100.0,
            ..LimitConfig::default()
        });
        let now = Instant::now();
        let mut t = a.traffic(now);
        assert!(t.record(10, now).is_ok());
        assert!(t.record(10, now).is_ok());
        assert!(t.record(10, now).is_ok());
        assert!(
            t.record(10, now).is_err(),
            "fourth message in the same instant"
        );
        let mut t = a.traffic(now);
        assert!(t.record(150, now).is_err(), "more bytes than the burst");
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxy = ip("127.0.0.1");
        assert_eq!(client_ip(proxy, Some("1.2.3.4"), &[proxy]), ip("1.2.3.4"));
        assert_eq!(
            client_ip(proxy, Some("9.9.9.9, 1.2.3.4"), &[proxy]),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_ip(ip("5.6.7.8"), Some("1.2.3.4"), &[proxy]),
            ip("5.6.7.8")
        );
        assert_eq!(client_ip(proxy, Some("garbage"), &[proxy]), proxy);
    }
}
