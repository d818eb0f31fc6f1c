//! The big-endian field encodings of ferry's internal log records (the group log and the
//! transaction log): Kafka's own layouts for strings and byte strings, written with `put_*` and
//! read back with [`FieldReader`], which checks every length against what is left because bytes
//! read from the disk are never trusted.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;

/// Why a field could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("truncated while reading {what}")]
    Truncated { what: &'static str },
    #[error("{what} is not UTF-8")]
    InvalidUtf8 { what: &'static str },
    #[error("invalid length {length} of {what}")]
    InvalidLength { what: &'static str, length: i64 },
    #[error("{count} trailing bytes after {what}")]
    TrailingBytes { what: &'static str, count: usize },
    #[error("unknown value version {0}")]
    UnknownValueVersion(u8),
}

/// `impl From<FieldError> for $error`, for a record error enum with variants of the same names
/// (`Truncated`, `InvalidUtf8`, `InvalidLength`, `TrailingBytes`, `UnknownValueVersion`), so a
/// log's decoder can use `?` on [`FieldReader`] and keep its own messages.
#[macro_export]
macro_rules! impl_from_field_error {
    ($error:ident) => {
        impl From<$crate::fields::FieldError> for $error {
            fn from(error: $crate::fields::FieldError) -> $error {
                use $crate::fields::FieldError as F;
                match error {
                    F::Truncated { what } => $error::Truncated { what },
                    F::InvalidUtf8 { what } => $error::InvalidUtf8 { what },
                    F::InvalidLength { what, length } => $error::InvalidLength { what, length },
                    F::TrailingBytes { what, count } => $error::TrailingBytes { what, count },
                    F::UnknownValueVersion(v) => $error::UnknownValueVersion(v),
                }
            }
        }
    };
}

/// A string of at most `i16::MAX` bytes (all strings that come from Kafka requests): u16 length.
pub fn put_str(buf: &mut BytesMut, s: &str) {
    let len = u16::try_from(s.len()).expect("Kafka strings are at most i16::MAX bytes");
    buf.put_u16(len);
    buf.put_slice(s.as_bytes());
}

/// A nullable string: i16 length, -1 for none.
pub fn put_nullable_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        None => buf.put_i16(-1),
        Some(s) => {
            let len = i16::try_from(s.len()).expect("Kafka strings are at most i16::MAX bytes");
            buf.put_i16(len);
            buf.put_slice(s.as_bytes());
        }
    }
}

/// A byte string (or a string that may be longer than `i16::MAX`): u32 length.
pub fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("byte strings from requests fit u32");
    buf.put_u32(len);
    buf.put_slice(b);
}

/// A bounds-checked cursor over one record's key or value.
pub struct FieldReader(Bytes);

impl FieldReader {
    pub fn new(bytes: Bytes) -> FieldReader {
        FieldReader(bytes)
    }

    /// Bytes not read yet (to bound a count read from the disk before allocating for it).
    pub fn remaining(&self) -> usize {
        self.0.remaining()
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), FieldError> {
        if self.0.remaining() < n {
            return Err(FieldError::Truncated { what });
        }
        Ok(())
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, FieldError> {
        self.need(1, what)?;
        Ok(self.0.get_u8())
    }

    pub fn i16(&mut self, what: &'static str) -> Result<i16, FieldError> {
        self.need(2, what)?;
        Ok(self.0.get_i16())
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, FieldError> {
        self.need(4, what)?;
        Ok(self.0.get_u32())
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32, FieldError> {
        self.need(4, what)?;
        Ok(self.0.get_i32())
    }

    pub fn i64(&mut self, what: &'static str) -> Result<i64, FieldError> {
        self.need(8, what)?;
        Ok(self.0.get_i64())
    }

    /// Copies rather than slices: the record may be a view into a large read buffer that the
    /// coordinators' long-lived state must not pin.
    fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, FieldError> {
        self.need(n, what)?;
        let bytes = Bytes::copy_from_slice(&self.0[..n]);
        self.0.advance(n);
        Ok(bytes)
    }

    fn utf8(bytes: Bytes, what: &'static str) -> Result<StrBytes, FieldError> {
        StrBytes::from_utf8(bytes).map_err(|_| FieldError::InvalidUtf8 { what })
    }

    /// What [`put_str`] wrote.
    pub fn str(&mut self, what: &'static str) -> Result<StrBytes, FieldError> {
        let len = self.i16(what)? as u16 as usize;
        let bytes = self.take(len, what)?;
        Self::utf8(bytes, what)
    }

    /// What [`put_nullable_str`] wrote.
    pub fn nullable_str(&mut self, what: &'static str) -> Result<Option<StrBytes>, FieldError> {
        let len = self.i16(what)?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| FieldError::InvalidLength {
            what,
            length: i64::from(len),
        })?;
        let bytes = self.take(len, what)?;
        Self::utf8(bytes, what).map(Some)
    }

    /// What [`put_bytes`] wrote, as a string.
    pub fn long_str(&mut self, what: &'static str) -> Result<StrBytes, FieldError> {
        let bytes = self.bytes(what)?;
        Self::utf8(bytes, what)
    }

    /// What [`put_bytes`] wrote.
    pub fn bytes(&mut self, what: &'static str) -> Result<Bytes, FieldError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    /// Reads the one-byte value layout version that starts every value; `known` is the only one
    /// the caller reads.
    pub fn version(&mut self, known: u8) -> Result<(), FieldError> {
        match self.u8("value version")? {
            v if v == known => Ok(()),
            other => Err(FieldError::UnknownValueVersion(other)),
        }
    }

    /// Checks that nothing follows the last field.
    pub fn finish(&self, what: &'static str) -> Result<(), FieldError> {
        match self.0.remaining() {
            0 => Ok(()),
            count => Err(FieldError::TrailingBytes { what, count }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let mut buf = BytesMut::new();
        put_str(&mut buf, "topic");
        put_nullable_str(&mut buf, None);
        put_nullable_str(&mut buf, Some("x"));
        put_bytes(&mut buf, b"\x00\x01");
        buf.put_i64(-7);
        let mut r = FieldReader::new(buf.freeze());
        assert_eq!(&*r.str("a").unwrap(), "topic");
        assert_eq!(r.nullable_str("b").unwrap(), None);
        assert_eq!(r.nullable_str("c").unwrap().as_deref(), Some("x"));
        assert_eq!(&r.bytes("d").unwrap()[..], b"\x00\x01");
        assert_eq!(
            r.finish("e"),
            Err(FieldError::TrailingBytes {
                what: "e",
                count: 8
            })
        );
        assert_eq!(r.i64("f").unwrap(), -7);
        assert_eq!(r.finish("g"), Ok(()));
    }

    #[test]
    fn lying_lengths_are_errors() {
        type Read = fn(&mut FieldReader) -> Result<(), FieldError>;
        let str: Read = |r| r.str("s").map(drop);
        let nullable: Read = |r| r.nullable_str("s").map(drop);
        let bytes: Read = |r| r.bytes("s").map(drop);
        let cases: [(&[u8], Read, FieldError); 5] = [
            (b"\x00\x05ab", str, FieldError::Truncated { what: "s" }),
            (b"\x00", str, FieldError::Truncated { what: "s" }),
            (b"\x00\x01\xff", str, FieldError::InvalidUtf8 { what: "s" }),
            (
                b"\xff\xfe",
                nullable,
                FieldError::InvalidLength {
                    what: "s",
                    length: -2,
                },
            ),
            (
                b"\xff\xff\xff\xff",
                bytes,
                FieldError::Truncated { what: "s" },
            ),
        ];
        for (input, read, expected) in cases {
            let mut r = FieldReader::new(Bytes::copy_from_slice(input));
            assert_eq!(read(&mut r), Err(expected), "{input:?}");
        }
    }
}
