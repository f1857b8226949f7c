//! NumPy `.npy` files (format version 1.0/2.0): a streaming float32 writer
//! and a reader.
//!
//! Layout: the magic `\x93NUMPY`, a version, a little-endian header length,
//! a Python-literal dict (`descr`, `fortran_order`, `shape`) padded with
//! spaces to a 64-byte boundary, then the raw array in C order.

use crate::atomic::AtomicFile;
use crate::{Error, Result};
use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Header bytes of a C-order array of dtype `descr` and `shape`.
pub fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    let (version, prefix) = if dict.len() + 11 < 65_536 { (1u8, 10) } else { (2u8, 12) };
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    dict.extend(std::iter::repeat_n(' ', total - prefix - dict.len() - 1));
    dict.push('\n');
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Writes a float32 array of known shape piece by piece, so arrays larger
/// than memory can be produced; the file appears only when complete.
pub struct NpyWriter {
    file: AtomicFile,
    expected: usize,
    written: usize,
    buf: Vec<u8>,
}

impl NpyWriter {
    /// Starts a C-order float32 array of `shape` at `path`.
    pub fn create(path: &Path, shape: &[usize]) -> Result<Self> {
        let mut file = AtomicFile::create(path)?;
        file.write_all(&header("<f4", shape)).map_err(|e| Error::io(path, e))?;
        Ok(Self { file, expected: shape.iter().product(), written: 0, buf: Vec::new() })
    }

    /// Appends values in C order.
    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        if self.written + values.len() > self.expected {
            return Err(Error::format(
                self.file.path(),
                format!("more values than the declared shape holds ({})", self.expected),
            ));
        }
        self.buf.clear();
        self.buf.reserve(values.len() * 4);
        for v in values {
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        self.file.write_all(&self.buf).map_err(|e| Error::io(self.file.path(), e))?;
        self.written += values.len();
        Ok(())
    }

    /// Checks that the whole array was written and moves the file into place.
    pub fn finish(self) -> Result<()> {
        if self.written != self.expected {
            return Err(Error::format(self.file.path(), format!("wrote {} of {} values", self.written, self.expected)));
        }
        self.file.commit()
    }
}

/// Element types a `.npy` file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// float32
    F32,
    /// float64
    F64,
    /// uint8
    U8,
    /// int16
    I16,
    /// int32
    I32,
    /// int64
    I64,
    /// uint16
    U16,
    /// int8
    I8,
    /// uint32
    U32,
    /// uint64
    U64,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::U8 | Dtype::I8 => 1,
            Dtype::I16 | Dtype::U16 => 2,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
        }
    }

    /// NumPy's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
            Dtype::U8 => "uint8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::I64 => "int64",
            Dtype::U16 => "uint16",
            Dtype::I8 => "int8",
            Dtype::U32 => "uint32",
            Dtype::U64 => "uint64",
        }
    }
}

/// The parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: Dtype,
    /// True for big-endian data.
    pub big_endian: bool,
    /// Array shape.
    pub shape: Vec<usize>,
    /// Byte offset of the data.
    pub data_offset: u64,
}

fn dict_value<'a>(dict: &'a str, key: &str) -> Option<&'a str> {
    let start = dict.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = dict[start..].trim_start().strip_prefix(':')?.trim_start();
    Some(rest)
}

impl NpyHeader {
    /// Number of elements, or an error if the shape's product overflows.
    pub fn element_count(&self, path: &Path) -> Result<usize> {
        self.shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|n| n.checked_mul(self.dtype.size()).is_some())
            .ok_or_else(|| Error::format(path, format!(".npy shape {:?} is too large", self.shape)))
    }
}

/// Parses a `.npy` header from a reader positioned at the file start.
pub fn read_header(r: &mut impl Read, path: &Path) -> Result<NpyHeader> {
    let mut pre = [0u8; 10];
    r.read_exact(&mut pre).map_err(|_| Error::format(path, "not a .npy file: shorter than the 10-byte preamble"))?;
    if &pre[..6] != MAGIC {
        return Err(Error::format(path, "not a .npy file: missing the \\x93NUMPY magic"));
    }
    let (len, prefix) = match pre[6] {
        1 => (u16::from_le_bytes([pre[8], pre[9]]) as usize, 10),
        2 | 3 => {
            let mut more = [0u8; 2];
            r.read_exact(&mut more).map_err(|e| Error::io(path, e))?;
            (u32::from_le_bytes([pre[8], pre[9], more[0], more[1]]) as usize, 12)
        }
        v => return Err(Error::format(path, format!("unsupported .npy version {v}"))),
    };
    if len > 1 << 20 {
        return Err(Error::format(path, format!(".npy header of {len} bytes is implausibly long")));
    }
    let mut dict = vec![0u8; len];
    r.read_exact(&mut dict).map_err(|_| Error::format(path, "truncated .npy header"))?;
    let dict = String::from_utf8_lossy(&dict);
    let descr = dict_value(&dict, "descr")
        .and_then(|v| v.strip_prefix('\''))
        .and_then(|v| v.split('\'').next())
        .ok_or_else(|| Error::format(path, ".npy header has no 'descr'"))?;
    if !descr.is_ascii() || descr.is_empty() {
        return Err(Error::format(path, format!("bad .npy dtype {descr:?}")));
    }
    let (order, code) = descr.split_at(1);
    let big_endian = order == ">";
    let dtype = match (order, code) {
        ("<" | "|" | "=" | ">", "f4") => Dtype::F32,
        ("<" | "|" | "=" | ">", "f8") => Dtype::F64,
        ("|" | "<" | ">" | "=", "u1") => Dtype::U8,
        ("|" | "<" | ">" | "=", "i1") => Dtype::I8,
        ("<" | "=" | ">", "u4") => Dtype::U32,
        ("<" | "=" | ">", "u8") => Dtype::U64,
        ("<" | "=" | ">", "i2") => Dtype::I16,
        ("<" | "=" | ">", "u2") => Dtype::U16,
        ("<" | "=" | ">", "i4") => Dtype::I32,
        ("<" | "=" | ">", "i8") => Dtype::I64,
        _ => {
            return Err(Error::format(
                path,
                format!("unsupported .npy dtype {descr:?} (float32/64 and (u)int8/16/32/64 are read)"),
            ))
        }
    };
    let fortran = dict_value(&dict, "fortran_order").map(|v| v.starts_with("True")).unwrap_or(false);
    if fortran {
        return Err(Error::format(
            path,
            "Fortran-ordered .npy arrays are not supported; save with np.ascontiguousarray",
        ));
    }
    let shape_txt = dict_value(&dict, "shape")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or_else(|| Error::format(path, ".npy header has no 'shape'"))?;
    let shape = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| Error::format(path, format!("bad .npy shape entry {s:?}"))))
        .collect::<Result<Vec<_>>>()?;
    Ok(NpyHeader { dtype, big_endian, shape, data_offset: (prefix + len) as u64 })
}

/// Converts raw bytes of `dtype` to float32.
pub fn decode_into(bytes: &[u8], dtype: Dtype, big_endian: bool, out: &mut [f32]) {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact($n)) {
                let arr: [u8; $n] = c.try_into().expect("chunk size");
                *o = (if big_endian { <$t>::from_be_bytes(arr) } else { <$t>::from_le_bytes(arr) }) as f32;
            }
        };
    }
    match dtype {
        Dtype::F32 => conv!(f32, 4),
        Dtype::F64 => conv!(f64, 8),
        Dtype::U8 => out.iter_mut().zip(bytes).for_each(|(o, &b)| *o = b as f32),
        Dtype::I16 => conv!(i16, 2),
        Dtype::U16 => conv!(u16, 2),
        Dtype::I32 => conv!(i32, 4),
        Dtype::I64 => conv!(i64, 8),
        Dtype::I8 => out.iter_mut().zip(bytes).for_each(|(o, &b)| *o = b as i8 as f32),
        Dtype::U32 => conv!(u32, 4),
        Dtype::U64 => conv!(u64, 8),
    }
}

/// Reads a whole `.npy` array as float32 (any supported dtype).
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut f = std::io::BufReader::new(file);
    let h = read_header(&mut f, path)?;
    let n = h.element_count(path)?;
    let truncated = || {
        Error::format(
            path,
            format!(
                "truncated .npy data: shape {:?} of {} needs {} bytes",
                h.shape,
                h.dtype.name(),
                n * h.dtype.size()
            ),
        )
    };
    if h.data_offset + (n * h.dtype.size()) as u64 > file_len {
        return Err(truncated());
    }
    let mut bytes = vec![0u8; n * h.dtype.size()];
    f.read_exact(&mut bytes).map_err(|_| truncated())?;
    let mut out = vec![0f32; n];
    decode_into(&bytes, h.dtype, h.big_endian, &mut out);
    Ok((h.shape, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_64_byte_aligned_and_parses_back() {
        for shape in [vec![3], vec![10, 128, 128, 5], vec![]] {
            let h = header("<f4", &shape);
            assert_eq!(h.len() % 64, 0);
            let parsed = read_header(&mut &h[..], Path::new("x.npy")).unwrap();
            assert_eq!(parsed.shape, shape);
            assert_eq!(parsed.data_offset as usize, h.len());
        }
    }

    /// Every integer type the README lists, in both byte orders where it has one.
    #[test]
    fn integer_dtypes_read_as_their_values() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, Vec<u8>); 5] = [
            ("|i1", vec![0x80, 0xff, 0x07]),
            ("<u4", [4_000_000_000u32, 0, 7].iter().flat_map(|v| v.to_le_bytes()).collect()),
            (">u4", [4_000_000_000u32, 0, 7].iter().flat_map(|v| v.to_be_bytes()).collect()),
            ("<u8", [1u64 << 40, 0, 7].iter().flat_map(|v| v.to_le_bytes()).collect()),
            (">i8", [-5i64, 0, 7].iter().flat_map(|v| v.to_be_bytes()).collect()),
        ];
        let want: [[f32; 3]; 5] =
            [[-128.0, -1.0, 7.0], [4e9, 0.0, 7.0], [4e9, 0.0, 7.0], [(1u64 << 40) as f32, 0.0, 7.0], [-5.0, 0.0, 7.0]];
        for ((descr, data), want) in cases.into_iter().zip(want) {
            let p = dir.path().join("a.npy");
            let mut bytes = header(descr, &[3]);
            bytes.extend(data);
            std::fs::write(&p, bytes).unwrap();
            assert_eq!(read_f32(&p).unwrap().1, want, "{descr}");
        }
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        // found by scripts/fuzz.sh: a non-ASCII dtype string
        let mut h = b"\x93NUMPY\x01\x00".to_vec();
        let dict = "{'descr': '\u{fffd}{A<f4', 'fortran_order': False, 'shape': (1,), }";
        h.extend((dict.len() as u16).to_le_bytes());
        h.extend(dict.as_bytes());
        let e = read_header(&mut &h[..], Path::new("x.npy")).unwrap_err().to_string();
        assert!(e.contains("bad .npy dtype"), "{e}");
        let e = read_header(&mut &b"\x93NUMPY\x01\x00\xff\xff"[..], Path::new("x.npy")).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn short_writes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let mut w = NpyWriter::create(&p, &[4]).unwrap();
        w.write(&[1.0, 2.0]).unwrap();
        assert!(w.finish().unwrap_err().to_string().contains("wrote 2 of 4"));
        assert!(!p.exists());
    }
}
