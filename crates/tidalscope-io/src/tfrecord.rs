//! TFRecord framing, the container of tf.data snapshot files: each record is
//! `u64 length | u32 masked_crc32c(length) | data | u32 masked_crc32c(data)`,
//! little-endian, where masked(c) = ((c >> 15) | (c << 17)) + 0xA282EAD8.

use crate::{Error, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The CRC-32C (Castagnoli) of `data`, masked as TFRecord stores it.
pub fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xA282_EAD8)
}

/// Largest record accepted (4 GiB): a corrupt length must not make the
/// reader allocate the moon.
pub const MAX_RECORD: u64 = 1 << 32;

/// Reads records one by one from any byte stream, verifying both CRCs.
pub struct RecordReader<R: Read> {
    inner: R,
    path: PathBuf,
    index: u64,
}

impl<R: Read> RecordReader<R> {
    /// A reader over `inner`; `path` names the file in errors.
    pub fn new(inner: R, path: &Path) -> Self {
        Self { inner, path: path.to_path_buf(), index: 0 }
    }

    /// Number of records read so far.
    pub fn count(&self) -> u64 {
        self.index
    }

    /// Reads the next record into `buf`. `Ok(false)` at a clean end of
    /// stream; an error names the file and the record on truncation or a
    /// CRC mismatch.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        let i = self.index;
        let Some(len) = self.header(i)? else { return Ok(false) };
        buf.clear();
        buf.resize(len as usize + 4, 0);
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::format(&self.path, format!("record {i}: truncated data ({len} bytes expected)"))
            } else {
                self.read_error(i, e)
            }
        })?;
        let data_crc = u32::from_le_bytes(buf[len as usize..].try_into().expect("4 bytes"));
        buf.truncate(len as usize);
        if masked_crc(buf) != data_crc {
            return Err(Error::format(&self.path, format!("record {i}: data CRC mismatch (corrupt file)")));
        }
        self.index += 1;
        Ok(true)
    }

    /// Steps over the next record without reading its data into memory or
    /// checking the data's CRC (the length's is checked: a corrupt length
    /// would send the count astray). `Ok(false)` at a clean end of stream;
    /// an error names the file and the record on truncation.
    pub fn skip(&mut self) -> Result<bool> {
        self.skip_with(|inner, n| std::io::copy(&mut inner.take(n), &mut std::io::sink()))
    }

    /// [`skip`](Self::skip), the data stepped over by `pass(inner, n)`,
    /// which returns how many of the `n` bytes it passed (fewer at the
    /// end of the stream).
    fn skip_with(&mut self, pass: impl FnOnce(&mut R, u64) -> std::io::Result<u64>) -> Result<bool> {
        let i = self.index;
        let Some(len) = self.header(i)? else { return Ok(false) };
        let want = len + 4;
        let got = pass(&mut self.inner, want).map_err(|e| self.read_error(i, e))?;
        if got < want {
            return Err(Error::format(&self.path, format!("record {i}: truncated data ({len} bytes expected)")));
        }
        self.index += 1;
        Ok(true)
    }

    /// Reads record `i`'s header: its data length, or None at a clean end
    /// of stream.
    fn header(&mut self, i: u64) -> Result<Option<u64>> {
        let mut header = [0u8; 12];
        let mut got = 0;
        while got < 12 {
            match self.inner.read(&mut header[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(i, e)),
            }
        }
        if got == 0 {
            return Ok(None);
        }
        if got < 12 {
            return Err(Error::format(&self.path, format!("record {i}: truncated header ({got} of 12 bytes)")));
        }
        let len = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
        let len_crc = u32::from_le_bytes(header[8..].try_into().expect("4 bytes"));
        if masked_crc(&header[..8]) != len_crc {
            return Err(Error::format(&self.path, format!("record {i}: length CRC mismatch (corrupt file)")));
        }
        if len > MAX_RECORD {
            return Err(Error::format(&self.path, format!("record {i}: implausible length {len}")));
        }
        Ok(Some(len))
    }

    fn read_error(&self, i: u64, e: std::io::Error) -> Error {
        // Decompressors report corrupt input as InvalidInput/InvalidData.
        Error::format(&self.path, format!("record {i}: {e}"))
    }
}

/// Counts the records of an uncompressed TFRecord file by reading each
/// header (its length's CRC checked) and seeking past the data: the
/// data's bytes are never read. An error names the file and the record
/// that the file ends inside.
pub fn count_records(path: &Path) -> Result<u64> {
    use std::io::{BufReader, Seek, SeekFrom};
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut r = RecordReader::new(BufReader::with_capacity(1 << 12, file), path);
    // A seek past the end succeeds: stop at the end and say how far it got.
    let seek = |f: &mut BufReader<std::fs::File>, n: u64| {
        let from = f.stream_position()?;
        let to = from.saturating_add(n).min(size);
        f.seek(SeekFrom::Start(to))?;
        Ok(to - from)
    };
    while r.skip_with(seek)? {}
    Ok(r.count())
}

/// Appends one framed record.
pub fn write_record(w: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    w.write_all(&len)?;
    w.write_all(&masked_crc(&len).to_le_bytes())?;
    w.write_all(data)?;
    w.write_all(&masked_crc(data).to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // CRC-32C("123456789") = 0xE3069283 (RFC 3720)
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn records_round_trip_and_corruption_is_named() {
        let mut bytes = Vec::new();
        write_record(&mut bytes, b"hello").unwrap();
        write_record(&mut bytes, b"").unwrap();
        let p = Path::new("x.snapshot");
        let mut r = RecordReader::new(&bytes[..], p);
        let mut buf = Vec::new();
        assert!(r.next_into(&mut buf).unwrap());
        assert_eq!(buf, b"hello");
        assert!(r.next_into(&mut buf).unwrap());
        assert!(buf.is_empty());
        assert!(!r.next_into(&mut buf).unwrap());

        let mut bad = bytes.clone();
        bad[13] ^= 1; // a data byte of record 0
        let err = RecordReader::new(&bad[..], p).next_into(&mut buf).unwrap_err().to_string();
        assert!(err.contains("x.snapshot") && err.contains("record 0") && err.contains("CRC"), "{err}");

        let cut = &bytes[..bytes.len() - 3];
        let mut r = RecordReader::new(cut, p);
        r.next_into(&mut buf).unwrap();
        let err = r.next_into(&mut buf).unwrap_err().to_string();
        assert!(err.contains("record 1") && err.contains("truncated"), "{err}");
    }
}
