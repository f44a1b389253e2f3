//! The hand-written binary primitives shared by frames and certificates.
//!
//! All integers are fixed-width **big-endian**. Variable-length data is
//! length-prefixed with a `u16` and bounded by a per-field maximum that is
//! checked before anything is allocated. A decoder reads exactly the bytes
//! it was given: leftover bytes are an error. See `docs/protocol.md` §2.

use crate::ids::InvalidValue;

/// Why a body or certificate failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside `field`.
    #[error("truncated in {0}")]
    Truncated(&'static str),
    /// Bytes were left after the last field.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A length or count prefix exceeded its maximum.
    #[error("{field}: {len} exceeds the maximum {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The announced length or count.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A tag or flag byte had an unknown value.
    #[error("{field}: unknown tag {tag}")]
    UnknownTag {
        /// The field.
        field: &'static str,
        /// The byte read.
        tag: u8,
    },
    /// A string was not UTF-8.
    #[error("{0}: not UTF-8")]
    NotUtf8(&'static str),
    /// A value broke its type's rules.
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
}

/// A cursor over input bytes that never reads past the end.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated(field));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    /// A boolean: exactly 0 or 1.
    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::UnknownTag { field, tag }),
        }
    }

    /// A `u16` count, refused above `max`.
    pub(crate) fn count(&mut self, field: &'static str, max: usize) -> Result<usize, DecodeError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        Ok(len)
    }

    /// `u16` length + bytes, refused above `max` bytes.
    pub(crate) fn bytes(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<&'a [u8], DecodeError> {
        let len = self.count(field, max)?;
        self.take(len, field)
    }

    /// `u16` length + UTF-8, refused above `max` bytes.
    pub(crate) fn str(&mut self, field: &'static str, max: usize) -> Result<&'a str, DecodeError> {
        core::str::from_utf8(self.bytes(field, max)?).map_err(|_| DecodeError::NotUtf8(field))
    }

    /// Ends decoding: every byte must have been consumed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.rest.len()))
        }
    }
}

/// Appends big-endian primitives to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

/// A value was too long to encode (more than `u16::MAX` bytes or items, or
/// above a field maximum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field} too long to encode ({len} > {max})")]
pub struct TooLongToEncode {
    /// The field.
    pub field: &'static str,
    /// Its length or count.
    pub len: usize,
    /// The maximum.
    pub max: usize,
}

impl Writer {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.put(&v.to_be_bytes());
    }

    pub(crate) fn i64(&mut self, v: i64) {
        self.put(&v.to_be_bytes());
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    /// A `u16` count, refused above `max`.
    pub(crate) fn count(
        &mut self,
        field: &'static str,
        len: usize,
        max: usize,
    ) -> Result<(), TooLongToEncode> {
        let max = max.min(usize::from(u16::MAX));
        match u16::try_from(len) {
            Ok(n) if len <= max => {
                self.u16(n);
                Ok(())
            }
            _ => Err(TooLongToEncode { field, len, max }),
        }
    }

    /// `u16` length + bytes.
    pub(crate) fn bytes(
        &mut self,
        field: &'static str,
        v: &[u8],
        max: usize,
    ) -> Result<(), TooLongToEncode> {
        self.count(field, v.len(), max)?;
        self.put(v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_bounds() {
        let mut r = Reader::new(&[0, 3, b'a', b'b']);
        assert_eq!(r.str("s", 10), Err(DecodeError::Truncated("s")));
        let mut r = Reader::new(&[0, 3, b'a', b'b', b'c']);
        assert_eq!(
            r.str("s", 2),
            Err(DecodeError::TooLong {
                field: "s",
                len: 3,
                max: 2
            })
        );
        let mut r = Reader::new(&[0, 2, 0xff, 0xfe]);
        assert_eq!(r.str("s", 2), Err(DecodeError::NotUtf8("s")));
        let mut r = Reader::new(&[2]);
        assert_eq!(
            r.bool("b"),
            Err(DecodeError::UnknownTag { field: "b", tag: 2 })
        );
        let mut r = Reader::new(&[1, 9]);
        assert_eq!(r.bool("b"), Ok(true));
        assert_eq!(r.finish(), Err(DecodeError::Trailing(1)));
    }

    #[test]
    fn writer_bounds() {
        let mut w = Writer::default();
        assert!(w.bytes("x", &[0; 3], 2).is_err());
        assert!(w.buf.is_empty());
        w.bytes("x", &[7; 2], 2).unwrap();
        w.i64(-2);
        assert_eq!(
            w.buf,
            [0, 2, 7, 7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]
        );
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.bytes("x", 2).unwrap(), &[7, 7]);
        assert_eq!(r.i64("i").unwrap(), -2);
        r.finish().unwrap();
    }
}
