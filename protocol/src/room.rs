//! Room names, validated in exactly one place.
//!
//! A room is named by the URL path (`ws://host:port/team/notes.md`), as y-websocket does.
//! Allowed: ASCII letters, digits, `-`, `_`, `.`, and `/` between non-empty segments; at most
//! [`MAX_ROOM_NAME_BYTES`] bytes; no `.` or `..` segments (a name must never look like a path
//! that climbs out of a directory, whatever a storage backend does with it).

use std::fmt;

/// The longest room name accepted, in bytes.
pub const MAX_ROOM_NAME_BYTES: usize = 128;

/// A validated room name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

/// Why a room name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    #[error("room name is empty")]
    Empty,
    #[error("room name is {len} bytes long; the limit is {MAX_ROOM_NAME_BYTES}")]
    TooLong { len: usize },
    #[error("room name {name:?} contains {ch:?}; use letters, digits, '-', '_', '.' and '/'")]
    BadChar { name: String, ch: char },
    #[error("room name {name:?} has an empty segment (leading, trailing or double '/')")]
    EmptySegment { name: String },
    #[error("room name {name:?} has a '.' or '..' segment")]
    DotSegment { name: String },
}

impl RoomName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, RoomNameError> {
        if name.is_empty() {
            return Err(RoomNameError::Empty);
        }
        if name.len() > MAX_ROOM_NAME_BYTES {
            return Err(RoomNameError::TooLong { len: name.len() });
        }
        if let Some(ch) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
        {
            return Err(RoomNameError::BadChar {
                name: name.to_owned(),
                ch,
            });
        }
        for segment in name.split('/') {
            if segment.is_empty() {
                return Err(RoomNameError::EmptySegment {
                    name: name.to_owned(),
                });
            }
            if segment == "." || segment == ".." {
                return Err(RoomNameError::DotSegment {
                    name: name.to_owned(),
                });
            }
        }
        Ok(Self(name.to_owned()))
    }

    /// Derives a room name from a file name: keeps the allowed characters of the final path
    /// component and replaces the others with `-`. Returns an error only when nothing usable
    /// is left (for instance a name made of dots).
    pub fn from_file_name(file_name: &str) -> Result<Self, RoomNameError> {
        let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
        let mut cleaned: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        cleaned.truncate(MAX_ROOM_NAME_BYTES);
        Self::new(&cleaned)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for RoomName {
    type Err = RoomNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for RoomName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_namespaced_names() {
        for ok in ["a", "team/notes.md", "A-b_c.d/e", "x/y/z", "..a", "a.."] {
            assert!(RoomName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        let cases = [
            ("", RoomNameError::Empty),
            ("/a", RoomNameError::EmptySegment { name: "/a".into() }),
            ("a/", RoomNameError::EmptySegment { name: "a/".into() }),
            (
                "a//b",
                RoomNameError::EmptySegment {
                    name: "a//b".into(),
                },
            ),
            (
                "a/../b",
                RoomNameError::DotSegment {
                    name: "a/../b".into(),
                },
            ),
            (".", RoomNameError::DotSegment { name: ".".into() }),
            (
                "a b",
                RoomNameError::BadChar {
                    name: "a b".into(),
                    ch: ' ',
                },
            ),
            (
                "é",
                RoomNameError::BadChar {
                    name: "é".into(),
                    ch: 'é',
                },
            ),
            (
                "a%2e",
                RoomNameError::BadChar {
                    name: "a%2e".into(),
                    ch: '%',
                },
            ),
        ];
        for (name, err) in cases {
            assert_eq!(RoomName::new(name), Err(err), "{name:?}");
        }
        let long = "a".repeat(129);
        assert_eq!(
            RoomName::new(&long),
            Err(RoomNameError::TooLong { len: 129 })
        );
        assert!(RoomName::new(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn derives_from_file_names() {
        assert_eq!(
            RoomName::from_file_name("src/main.rs").unwrap().as_str(),
            "main.rs"
        );
        assert_eq!(
            RoomName::from_file_name("my notes (1).md")
                .unwrap()
                .as_str(),
            "my-notes--1-.md"
        );
        assert!(RoomName::from_file_name("..").is_err());
    }
}
