//! Access tokens: signed, expiring grants of a role in rooms matching a pattern.
//!
//! The format is a compact JWT with HMAC-SHA256 (`HS256`), written and checked here with the
//! `hmac` and `sha2` crates: the algorithm is pinned (a token naming any other is refused, so
//! `none` and algorithm confusion cannot happen), the signature is compared in constant time,
//! `exp` is required, and `kid` picks the key so keys can be rotated: the key file lists
//! several, the first signs, all verify.
//!
//! Claims: `room` (exact name, `prefix/*`, or `*`), `role` (`editor` | `viewer`), `exp` and
//! `iat` (Unix seconds), optional `name`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use duet_protocol::{Role, RoomName};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Why a token was refused. [`AuthError::status`] maps each to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token: send `Authorization: Bearer <token>` or `?token=<token>`")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token algorithm {0:?} is not accepted; only HS256")]
    WrongAlgorithm(String),
    #[error("token signed with unknown key id {0:?}")]
    UnknownKey(String),
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token expired {0} s ago")]
    Expired(u64),
    #[error("token grants rooms {pattern:?}, not {room:?}")]
    WrongRoom { pattern: String, room: String },
}

impl AuthError {
    /// 403 for a valid token that does not cover the room; 401 for everything else.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::WrongRoom { .. } => 403,
            _ => 401,
        }
    }
}

/// A key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "key file {path} has no keys; put one secret (at least {MIN_SECRET_BYTES} bytes) per line, optionally as KID:SECRET"
    )]
    Empty { path: String },
    #[error("key {kid:?} in {path} is {len} bytes; use at least {MIN_SECRET_BYTES}")]
    TooShort {
        path: String,
        kid: String,
        len: usize,
    },
}

#[derive(Clone)]
struct Key {
    kid: String,
    secret: Vec<u8>,
}

/// The keys tokens are signed and verified with.
#[derive(Clone)]
pub struct Keys {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keys {
    // Never print secrets, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        write!(f, "Keys({kids:?})")
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub room: String,
    pub role: RoleClaim,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleClaim {
    Editor,
    Viewer,
}

impl From<RoleClaim> for Role {
    fn from(r: RoleClaim) -> Role {
        match r {
            RoleClaim::Editor => Role::Editor,
            RoleClaim::Viewer => Role::Viewer,
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether a room `pattern` (`name`, `prefix/*` or `*`) covers `room`.
pub fn pattern_matches(pattern: &str, room: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) if prefix.ends_with('/') => room.starts_with(prefix),
        _ => pattern == room,
    }
}

impl Keys {
    /// Reads a key file: one secret per line, optionally `KID:SECRET`; `#` starts a comment.
    pub fn from_file(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, KeyFileError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (kid, secret) = match line.split_once(':') {
                Some((kid, secret)) => (kid.trim().to_owned(), secret.trim()),
                None => (format!("k{}", i + 1), line),
            };
            if secret.len() < MIN_SECRET_BYTES {
                return Err(KeyFileError::TooShort {
                    path: origin.to_owned(),
                    kid,
                    len: secret.len(),
                });
            }
            keys.push(Key {
                kid,
                secret: secret.as_bytes().to_vec(),
            });
        }
        if keys.is_empty() {
            return Err(KeyFileError::Empty {
                path: origin.to_owned(),
            });
        }
        Ok(Self { keys })
    }

    fn mac(secret: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        <HmacSha256 as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("hmac takes any key length"))
    }

    /// Signs `claims` with the first key.
    pub fn sign(&self, claims: &Claims) -> String {
        let key = &self.keys[0];
        let header = Header {
            alg: "HS256".into(),
            typ: Some("JWT".into()),
            kid: Some(key.kid.clone()),
        };
        let h = B64.encode(serde_json::to_vec(&header).unwrap_or_default());
        let p = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{h}.{p}");
        let mut mac = Self::mac(&key.secret);
        mac.update(signing_input.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// A token for `room` pattern and `role`, valid for `ttl`.
    pub fn issue(
        &self,
        room: &str,
        role: RoleClaim,
        ttl: Duration,
        name: Option<String>,
    ) -> String {
        let iat = now();
        self.sign(&Claims {
            room: room.to_owned(),
            role,
            exp: iat + ttl.as_secs().max(1),
            iat,
            name,
        })
    }

    /// Checks a token's algorithm, key, signature and expiry, and that it covers `room`.
    pub fn verify(&self, token: &str, room: &RoomName) -> Result<Claims, AuthError> {
        self.verify_at(token, room, now())
    }

    pub fn verify_at(&self, token: &str, room: &RoomName, now: u64) -> Result<Claims, AuthError> {
        let mut parts = token.trim().split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed(
                "expected three dot-separated parts".into(),
            ));
        };
        let decode = |part: &str, what: &str| {
            B64.decode(part)
                .map_err(|e| AuthError::Malformed(format!("{what} is not base64url: {e}")))
        };
        let header: Header = serde_json::from_slice(&decode(h, "header")?)
            .map_err(|e| AuthError::Malformed(format!("header: {e}")))?;
        if header.alg != "HS256" {
            return Err(AuthError::WrongAlgorithm(header.alg));
        }
        let key = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| &k.kid == kid)
                .ok_or_else(|| AuthError::UnknownKey(kid.clone()))?,
            None if self.keys.len() == 1 => &self.keys[0],
            None => return Err(AuthError::UnknownKey(String::new())),
        };
        let signature = decode(s, "signature")?;
        let mut mac = Self::mac(&key.secret);
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| AuthError::BadSignature)?;
        let claims: Claims = serde_json::from_slice(&decode(p, "claims")?)
            .map_err(|e| AuthError::Malformed(format!("claims: {e}")))?;
        if claims.exp <= now {
            return Err(AuthError::Expired(now - claims.exp));
        }
        if !pattern_matches(&claims.room, room.as_str()) {
            return Err(AuthError::WrongRoom {
                pattern: claims.room,
                room: room.to_string(),
            });
        }
        Ok(claims)
    }
}

/// Why a token lifetime was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    #[error("invalid duration {0:?}; use e.g. 90s, 15m, 1h, 7d")]
    Number(String),
    #[error("invalid duration unit in {0:?}; use s, m, h or d")]
    Unit(String),
    #[error("duration {0:?} is too long")]
    TooLong(String),
    #[error("a token must live at least one second, not {0:?}")]
    Zero(String),
}

/// Parses a duration like `90s`, `15m`, `1h` or `7d`.
pub fn parse_ttl(s: &str) -> Result<Duration, TtlError> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| TtlError::Number(s.to_owned()))?;
    let per_unit: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(TtlError::Unit(s.to_owned())),
    };
    let secs = n
        .checked_mul(per_unit)
        .ok_or_else(|| TtlError::TooLong(s.to_owned()))?;
    if secs == 0 {
        return Err(TtlError::Zero(s.to_owned()));
    }
    Ok(Duration::from_secs(secs))
}

/// The token a request carries: `Authorization: Bearer …` first, then `?token=…`.
/// Header values and query strings come from anyone: nothing here may index into them by
/// byte position (a multi-byte character there once made this panic).
pub fn token_from_request(authorization: Option<&str>, query: Option<&str>) -> Option<String> {
    if let Some(value) = authorization {
        let value = value.trim();
        if let Some((scheme, token)) = value.split_once(' ')
            && scheme.eq_ignore_ascii_case("bearer")
            && !token.trim().is_empty()
        {
            return Some(token.trim().to_owned());
        }
    }
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(|t| {
            percent_encoding::percent_decode_str(t)
                .decode_utf8_lossy()
                .into_owned()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_from_anything_without_panicking() {
        let table: &[(Option<&str>, Option<&str>, Option<&str>)] = &[
            (Some("Bearer abc"), None, Some("abc")),
            (Some("bearer   abc  "), None, Some("abc")),
            (Some("BEARER abc"), Some("token=zzz"), Some("abc")),
            (Some("Basic abc"), Some("token=q%2Fr"), Some("q/r")),
            (Some("Bearer"), None, None),
            (Some("Bearer "), None, None),
            // Multi-byte input where byte offsets 7 or i+3 fall inside a character.
            (Some("ééééé"), None, None),
            (Some("Beare\u{e9}abc"), None, None),
            (None, Some("token=%€"), Some("%€")),
            (None, Some("token=%e2%82%ac"), Some("€")),
            (None, Some("token=%"), Some("%")),
            (None, Some("token=%4"), Some("%4")),
            (None, Some("token=%zz"), Some("%zz")),
            (None, Some("a=1&token=x%20y"), Some("x y")),
            (None, Some("tokens=x"), None),
            (None, None, None),
        ];
        for (header, query, want) in table {
            assert_eq!(
                token_from_request(*header, *query).as_deref(),
                *want,
                "{header:?} {query:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_header_or_query_is_read_without_panicking(h in ".{0,40}", q in ".{0,40}") {
            let _ = token_from_request(Some(&h), Some(&q));
            let _ = token_from_request(None, Some(&format!("token={q}")));
        }
    }

    fn keys() -> Keys {
        Keys::parse("# test keys\nnew:0123456789abcdef0123456789abcdef\nold:fedcba9876543210fedcba9876543210\n", "test").expect("keys")
    }

    fn room(s: &str) -> RoomName {
        RoomName::new(s).expect("room")
    }

    #[test]
    fn issued_tokens_verify_and_carry_their_role() {
        let k = keys();
        let t = k.issue(
            "team/*",
            RoleClaim::Viewer,
            Duration::from_secs(60),
            Some("ann".into()),
        );
        let c = k.verify(&t, &room("team/notes.md")).expect("valid");
        assert_eq!(c.role, RoleClaim::Viewer);
        assert_eq!(c.name.as_deref(), Some("ann"));
    }

    #[test]
    fn refusals_say_why() {
        let k = keys();
        let t = k.issue("team/*", RoleClaim::Editor, Duration::from_secs(60), None);
        assert!(matches!(
            k.verify(&t, &room("other/x")),
            Err(AuthError::WrongRoom { .. })
        ));
        assert_eq!(k.verify(&t, &room("other/x")).unwrap_err().status(), 403);
        // Expired.
        let exp = k.verify_at(&t, &room("team/a"), now() + 120);
        assert!(matches!(exp, Err(AuthError::Expired(_))));
        assert_eq!(exp.unwrap_err().status(), 401);
        // Tampered claims.
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(br#"{"room":"*","role":"editor","exp":9999999999}"#);
        parts[1] = &forged;
        assert_eq!(
            k.verify(&parts.join("."), &room("team/a")),
            Err(AuthError::BadSignature)
        );
        // alg none.
        let none_header = B64.encode(br#"{"alg":"none"}"#);
        let none = format!("{none_header}.{}.", t.split('.').nth(1).unwrap_or(""));
        assert!(matches!(
            k.verify(&none, &room("team/a")),
            Err(AuthError::WrongAlgorithm(_))
        ));
        assert!(matches!(
            k.verify("abc", &room("team/a")),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn rotated_keys_still_verify_old_tokens() {
        let old_only = Keys::parse("old:fedcba9876543210fedcba9876543210", "t").expect("keys");
        let t = old_only.issue("*", RoleClaim::Editor, Duration::from_secs(60), None);
        assert!(keys().verify(&t, &room("a")).is_ok());
        let other = Keys::parse("zzz:fedcba9876543210fedcba9876543210", "t").expect("keys");
        assert!(matches!(
            other.verify(&t, &room("a")),
            Err(AuthError::UnknownKey(_))
        ));
    }

    #[test]
    fn short_secrets_and_empty_files_are_refused() {
        assert!(matches!(
            Keys::parse("short", "f"),
            Err(KeyFileError::TooShort { .. })
        ));
        assert!(matches!(
            Keys::parse("# nothing\n", "f"),
            Err(KeyFileError::Empty { .. })
        ));
        assert!(
            !format!("{:?}", keys()).contains("0123456789"),
            "debug output hides secrets"
        );
    }

    #[test]
    fn patterns_and_token_sources() {
        assert!(pattern_matches("*", "x/y"));
        assert!(pattern_matches("team/*", "team/a/b"));
        assert!(!pattern_matches("team/*", "teams/a"));
        assert!(pattern_matches("a.md", "a.md"));
        assert!(!pattern_matches("a", "ab"));
        assert_eq!(
            token_from_request(Some("Bearer abc"), None).as_deref(),
            Some("abc")
        );
        assert_eq!(
            token_from_request(None, Some("x=1&token=a%2Eb")).as_deref(),
            Some("a.b")
        );
        assert_eq!(token_from_request(None, Some("x=1")), None);
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("1y"), Err(TtlError::Unit("1y".into())));
        assert_eq!(parse_ttl("x"), Err(TtlError::Number("x".into())));
        assert_eq!(parse_ttl("0m"), Err(TtlError::Zero("0m".into())));
        assert!(matches!(
            parse_ttl("99999999999999999d"),
            Err(TtlError::TooLong(_))
        ));
    }
}
