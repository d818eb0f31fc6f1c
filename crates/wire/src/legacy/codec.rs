//! Reading and writing the fields of the old, non-flexible schemas: big-endian integers,
//! strings and byte strings with a 16- or 32-bit length (-1 for null), arrays with a 32-bit
//! count. Every read checks the bytes left; nothing here panics on short or hostile input.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;

/// The most elements an old array may announce before it is refused: more than any request
/// within `socket.request.max.bytes` can hold (every element takes at least one byte), so the
/// count is checked against the bytes left instead of allocating for it.
fn count_fits(count: usize, rest: usize) -> bool {
    count <= rest
}

/// A cursor over a request body; errors name the field that did not fit.
pub(crate) struct Reader<'a> {
    body: &'a mut Bytes,
}

pub(crate) type ReadResult<T> = Result<T, String>;

impl<'a> Reader<'a> {
    pub(crate) fn new(body: &'a mut Bytes) -> Reader<'a> {
        Reader { body }
    }

    fn need(&self, bytes: usize, field: &str) -> ReadResult<()> {
        if self.body.remaining() < bytes {
            return Err(format!(
                "{field}: {bytes} bytes needed, {} left",
                self.body.remaining()
            ));
        }
        Ok(())
    }

    pub(crate) fn i8(&mut self, field: &str) -> ReadResult<i8> {
        self.need(1, field)?;
        Ok(self.body.get_i8())
    }

    pub(crate) fn i16(&mut self, field: &str) -> ReadResult<i16> {
        self.need(2, field)?;
        Ok(self.body.get_i16())
    }

    pub(crate) fn i32(&mut self, field: &str) -> ReadResult<i32> {
        self.need(4, field)?;
        Ok(self.body.get_i32())
    }

    pub(crate) fn i64(&mut self, field: &str) -> ReadResult<i64> {
        self.need(8, field)?;
        Ok(self.body.get_i64())
    }

    pub(crate) fn nullable_string(&mut self, field: &str) -> ReadResult<Option<StrBytes>> {
        let length = self.i16(field)?;
        if length < 0 {
            return Ok(None);
        }
        let length = length as usize;
        self.need(length, field)?;
        let bytes = self.body.split_to(length);
        StrBytes::from_utf8(bytes)
            .map(Some)
            .map_err(|_| format!("{field}: not UTF-8"))
    }

    pub(crate) fn string(&mut self, field: &str) -> ReadResult<StrBytes> {
        self.nullable_string(field)?
            .ok_or_else(|| format!("{field}: null where a string is required"))
    }

    pub(crate) fn nullable_bytes(&mut self, field: &str) -> ReadResult<Option<Bytes>> {
        let length = self.i32(field)?;
        if length < 0 {
            return Ok(None);
        }
        let length = length as usize;
        self.need(length, field)?;
        Ok(Some(self.body.split_to(length)))
    }

    /// An array's elements, each read by `element`; None for a null array (-1).
    pub(crate) fn nullable_array<T>(
        &mut self,
        field: &str,
        mut element: impl FnMut(&mut Reader<'_>) -> ReadResult<T>,
    ) -> ReadResult<Option<Vec<T>>> {
        let count = self.i32(field)?;
        if count < 0 {
            return Ok(None);
        }
        let count = count as usize;
        if !count_fits(count, self.body.remaining()) {
            return Err(format!(
                "{field}: {count} elements in {} bytes",
                self.body.remaining()
            ));
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(element(self)?);
        }
        Ok(Some(out))
    }

    pub(crate) fn array<T>(
        &mut self,
        field: &str,
        element: impl FnMut(&mut Reader<'_>) -> ReadResult<T>,
    ) -> ReadResult<Vec<T>> {
        Ok(self.nullable_array(field, element)?.unwrap_or_default())
    }
}

/// Writes old-schema fields into a response body.
pub(crate) struct Writer<'a> {
    out: &'a mut BytesMut,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut BytesMut) -> Writer<'a> {
        Writer { out }
    }

    pub(crate) fn i8(&mut self, value: i8) {
        self.out.put_i8(value);
    }

    pub(crate) fn bool(&mut self, value: bool) {
        self.out.put_i8(i8::from(value));
    }

    pub(crate) fn i16(&mut self, value: i16) {
        self.out.put_i16(value);
    }

    pub(crate) fn i32(&mut self, value: i32) {
        self.out.put_i32(value);
    }

    pub(crate) fn i64(&mut self, value: i64) {
        self.out.put_i64(value);
    }

    pub(crate) fn nullable_string(&mut self, value: Option<&str>) {
        match value {
            None => self.out.put_i16(-1),
            Some(text) => {
                self.out.put_i16(text.len() as i16);
                self.out.put_slice(text.as_bytes());
            }
        }
    }

    pub(crate) fn string(&mut self, value: &str) {
        self.nullable_string(Some(value));
    }

    pub(crate) fn nullable_bytes(&mut self, value: Option<&[u8]>) {
        match value {
            None => self.out.put_i32(-1),
            Some(bytes) => {
                self.out.put_i32(bytes.len() as i32);
                self.out.put_slice(bytes);
            }
        }
    }

    pub(crate) fn array<T>(&mut self, items: &[T], mut element: impl FnMut(&mut Writer<'_>, &T)) {
        self.out.put_i32(items.len() as i32);
        for item in items {
            element(self, item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_short_input_is_an_error() {
        let mut out = BytesMut::new();
        let mut w = Writer::new(&mut out);
        w.i16(7);
        w.string("topic");
        w.nullable_string(None);
        w.array(&[1i64, 2], |w, v| w.i64(*v));
        w.nullable_bytes(Some(b"xy"));
        let mut body = out.freeze();
        let mut r = Reader::new(&mut body);
        assert_eq!(r.i16("a").unwrap(), 7);
        assert_eq!(r.string("b").unwrap().as_str(), "topic");
        assert_eq!(r.nullable_string("c").unwrap(), None);
        assert_eq!(r.array("d", |r| r.i64("e")).unwrap(), vec![1, 2]);
        assert_eq!(r.nullable_bytes("f").unwrap().unwrap().as_ref(), b"xy");
        assert!(r.i8("g").unwrap_err().starts_with("g:"));
        // A huge announced count is refused before anything is allocated for it.
        let mut hostile = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0]);
        let error = Reader::new(&mut hostile)
            .array("topics", |r| r.i8("x"))
            .unwrap_err();
        assert!(error.contains("elements"), "{error}");
    }
}
