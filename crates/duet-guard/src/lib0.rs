//! lib0's binary encoding, the one reader and writer of it in duet: unsigned LEB128 numbers
//! (`varUint`), length-prefixed byte strings (`varUint8Array`) and strings (`varString`), as
//! Yjs updates, state vectors and y-protocols messages are all written.
//!
//! The reader checks every length against the bytes that are really there before anything is
//! sliced or allocated: a count read from the wire is never trusted ([`Reader::count`]).

/// Bytes could not be read as lib0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lib0Error {
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("varint too long at byte {0}")]
    BadVarint(usize),
    #[error("count {count} at byte {at} exceeds the {remaining} bytes that follow")]
    CountTooLarge {
        count: u64,
        at: usize,
        remaining: usize,
    },
    #[error("string at byte {0} is not UTF-8")]
    NotUtf8(usize),
}

/// A bounds-checked reader over one buffer.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Where the next read starts.
    #[inline]
    pub fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The bytes not read yet.
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, Lib0Error> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(Lib0Error::Truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub fn skip(&mut self, n: usize) -> Result<(), Lib0Error> {
        if n > self.remaining() {
            return Err(Lib0Error::Truncated(self.pos));
        }
        self.pos += n;
        Ok(())
    }

    /// A `varUint`: at most 10 bytes (lib0 writes at most 8 for the 53-bit numbers JavaScript
    /// holds; bits past 64 are dropped, as yrs drops them).
    #[inline]
    pub fn var_uint(&mut self) -> Result<u64, Lib0Error> {
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            if shift < 64 {
                value |= u64::from(b & 0x7f) << shift;
            }
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Lib0Error::BadVarint(start))
    }

    /// A count of elements that each take at least `min_bytes`: refused when they could not
    /// fit in what remains, so a caller may allocate for `count` elements.
    #[inline]
    pub fn count(&mut self, min_bytes: usize) -> Result<u64, Lib0Error> {
        let at = self.pos;
        let count = self.var_uint()?;
        let remaining = self.remaining();
        if count.saturating_mul(min_bytes as u64) > remaining as u64 {
            return Err(Lib0Error::CountTooLarge {
                count,
                at,
                remaining,
            });
        }
        Ok(count)
    }

    /// A `varUint8Array`: a length, then that many bytes.
    #[inline]
    pub fn var_bytes(&mut self) -> Result<&'a [u8], Lib0Error> {
        let len = self.count(1)? as usize;
        let start = self.pos;
        self.pos += len;
        Ok(&self.buf[start..self.pos])
    }

    /// A `varString`: a `varUint8Array` holding UTF-8.
    #[inline]
    pub fn var_string(&mut self) -> Result<&'a str, Lib0Error> {
        let at = self.pos;
        std::str::from_utf8(self.var_bytes()?).map_err(|_| Lib0Error::NotUtf8(at))
    }
}

/// Writes `v` as a `varUint` (unsigned LEB128).
pub fn write_var_uint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes a `varUint8Array`: the length, then the bytes.
pub fn write_var_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_var_uint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Writes a `varString`.
pub fn write_var_string(out: &mut Vec<u8>, s: &str) {
    write_var_bytes(out, s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_match_lib0() {
        // lib0 writes 300 as ac 02 and 2^53 - 1 in 8 bytes.
        let mut out = Vec::new();
        write_var_uint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        for v in [0, 1, 127, 128, 300, (1 << 53) - 1, u64::MAX] {
            let mut out = Vec::new();
            write_var_uint(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.var_uint(), Ok(v));
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn lengths_are_checked_before_anything_is_read() {
        assert_eq!(Reader::new(&[]).var_uint(), Err(Lib0Error::Truncated(0)));
        assert_eq!(
            Reader::new(&[0xff; 11]).var_uint(),
            Err(Lib0Error::BadVarint(0))
        );
        // 2^28 elements claimed in 5 bytes.
        assert_eq!(
            Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x01]).count(1),
            Err(Lib0Error::CountTooLarge {
                count: 1 << 28,
                at: 0,
                remaining: 0
            })
        );
        let mut r = Reader::new(&[3, b'a', b'b']);
        assert!(matches!(
            r.var_bytes(),
            Err(Lib0Error::CountTooLarge { .. })
        ));
        let mut framed = Vec::new();
        write_var_string(&mut framed, "hé");
        write_var_bytes(&mut framed, &[0xff]);
        let mut r = Reader::new(&framed);
        assert_eq!(r.var_string(), Ok("hé"));
        assert_eq!(r.var_string(), Err(Lib0Error::NotUtf8(4)));
    }
}
