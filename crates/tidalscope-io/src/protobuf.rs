//! The protocol-buffer wire format, just enough to read and write the
//! handful of TensorFlow messages tidalscope meets (TensorProto,
//! StructuredValue, snapshot metadata, checkpoint bundles): varints,
//! length-delimited fields and fixed-width numbers.

/// Wire types of protobuf fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Variable-length integer (0).
    Varint,
    /// Little-endian 64-bit (1).
    I64,
    /// Length-delimited bytes (2).
    Len,
    /// Little-endian 32-bit (5).
    I32,
}

/// A field's value as read from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// A varint.
    Varint(u64),
    /// A fixed 64-bit value.
    I64(u64),
    /// Bytes (a string, a nested message or a packed array).
    Len(&'a [u8]),
    /// A fixed 32-bit value.
    I32(u32),
}

/// A cursor over one serialised message. Every method returns `None` on
/// malformed or truncated input instead of panicking.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    /// Reads a varint.
    pub fn varint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return None; // more than 64 bits
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// Reads the next field: its number and value. `None` at the end or on
    /// malformed input (check [`Reader::is_empty`] to tell them apart).
    pub fn field(&mut self) -> Option<(u32, Field<'a>)> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).ok()?;
        let value = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => Field::I64(u64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            2 => {
                let n = usize::try_from(self.varint()?).ok()?;
                Field::Len(self.take(n)?)
            }
            5 => Field::I32(u32::from_le_bytes(self.take(4)?.try_into().ok()?)),
            _ => return None,
        };
        Some((number, value))
    }

    /// All fields of the message, or `None` if any is malformed.
    pub fn fields(buf: &'a [u8]) -> Option<Vec<(u32, Field<'a>)>> {
        let mut r = Reader::new(buf);
        let mut out = Vec::new();
        while !r.is_empty() {
            out.push(r.field()?);
        }
        Some(out)
    }
}

/// Appends a varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a field key.
pub fn put_key(out: &mut Vec<u8>, field: u32, wire: Wire) {
    let w = match wire {
        Wire::Varint => 0,
        Wire::I64 => 1,
        Wire::Len => 2,
        Wire::I32 => 5,
    };
    put_varint(out, (u64::from(field) << 3) | w);
}

/// Appends a varint field.
pub fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, Wire::Varint);
    put_varint(out, v);
}

/// Appends a length-delimited field.
pub fn put_bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, Wire::Len);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Decodes a packed repeated varint field.
pub fn packed_varints(bytes: &[u8]) -> Option<Vec<u64>> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(r.varint()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_malformed_input_is_none() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(Reader::new(&b).varint(), Some(v));
        }
        assert_eq!(Reader::new(&[0x80, 0x80]).varint(), None); // truncated
        assert_eq!(Reader::new(&[0x0a, 0x05, 1, 2]).field(), None); // length past the end
        let mut m = Vec::new();
        put_varint_field(&mut m, 1, 7);
        put_bytes_field(&mut m, 2, b"hi");
        assert_eq!(Reader::fields(&m).unwrap(), vec![(1, Field::Varint(7)), (2, Field::Len(b"hi"))]);
    }
}
