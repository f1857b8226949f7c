//! TensorFlow checkpoint bundles: `PREFIX.index`, a LevelDB table mapping
//! variable keys to where their bytes live, and `PREFIX.data-SSSSS-of-NNNNN`
//! shards of raw little-endian tensors.

use crate::protobuf::{Field, Reader};
use crate::tensor::{parse_shape, DType, Tensor, TensorData};
use crate::tfrecord::masked_crc;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Where one variable is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEntry {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Data shard.
    pub shard: u32,
    /// Byte offset in the shard.
    pub offset: u64,
    /// Byte size.
    pub size: u64,
    /// Masked CRC-32C of the bytes.
    pub crc32c: u32,
}

/// An opened checkpoint bundle.
#[derive(Debug)]
pub struct Bundle {
    /// The `.index` file.
    pub index_path: PathBuf,
    prefix: PathBuf,
    shards: u32,
    /// Every variable, by checkpoint key.
    pub entries: BTreeMap<String, BundleEntry>,
    /// Variables of element types tidalscope does not read, with why.
    pub unsupported: BTreeMap<String, String>,
}

fn varint(r: &mut Reader) -> std::result::Result<u64, String> {
    r.varint().ok_or_else(|| "malformed varint".to_string())
}

/// Reads a block of the table at `(offset, size)`, checking its trailer.
fn block(file: &[u8], offset: u64, size: u64) -> std::result::Result<&[u8], String> {
    let (o, s) = (offset as usize, size as usize);
    let end = o
        .checked_add(s)
        .and_then(|e| e.checked_add(5))
        .filter(|&e| e <= file.len())
        .ok_or("block past the end of the file")?;
    let contents = &file[o..o + s];
    let kind = file[o + s];
    if kind != 0 {
        return Err(format!("compressed blocks (type {kind}) are not supported"));
    }
    let crc = u32::from_le_bytes(file[o + s + 1..end].try_into().expect("4 bytes"));
    if masked_crc(&file[o..o + s + 1]) != crc {
        return Err("block checksum mismatch (corrupt index)".into());
    }
    Ok(contents)
}

/// A key and its value in a table block.
type Entry<'a> = (Vec<u8>, &'a [u8]);

/// Key-value entries of a block (prefix-compressed keys).
fn entries(block: &[u8]) -> std::result::Result<Vec<Entry<'_>>, String> {
    if block.len() < 4 {
        return Err("block too short".into());
    }
    let restarts = u32::from_le_bytes(block[block.len() - 4..].try_into().expect("4 bytes")) as usize;
    let data_end = block.len().checked_sub(4 + 4 * restarts).ok_or("bad restart count")?;
    let mut r = Reader::new(&block[..data_end]);
    let mut key: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    while !r.is_empty() {
        let shared = varint(&mut r)? as usize;
        let non_shared = varint(&mut r)? as usize;
        let value_len = varint(&mut r)? as usize;
        let rest = r.rest();
        if shared > key.len() || non_shared.checked_add(value_len).is_none_or(|n| n > rest.len()) {
            return Err("malformed block entry".into());
        }
        key.truncate(shared);
        key.extend_from_slice(&rest[..non_shared]);
        let value = &rest[non_shared..non_shared + value_len];
        out.push((key.clone(), value));
        r = Reader::new(&rest[non_shared + value_len..]);
    }
    Ok(out)
}

fn handle(v: &[u8]) -> std::result::Result<(u64, u64), String> {
    let mut r = Reader::new(v);
    Ok((varint(&mut r)?, varint(&mut r)?))
}

impl Bundle {
    /// Opens the bundle with this prefix (e.g. `variables/variables`).
    pub fn open(prefix: &Path) -> Result<Self> {
        let index_path = PathBuf::from(format!("{}.index", prefix.display()));
        let file = std::fs::read(&index_path).map_err(|e| Error::io(&index_path, e))?;
        Self::from_index(&file, prefix)
    }

    /// Parses the bytes of `PREFIX.index` (the data shards are read later,
    /// by [`Bundle::read`]).
    pub fn from_index(file: &[u8], prefix: &Path) -> Result<Self> {
        let index_path = PathBuf::from(format!("{}.index", prefix.display()));
        let err = |m: String| Error::format(&index_path, m);
        if file.len() < 48 || file[file.len() - 8..] != 0xdb47_7524_8b80_fb57u64.to_le_bytes() {
            return Err(err("not a checkpoint index (no LevelDB table magic)".into()));
        }
        let footer = &file[file.len() - 48..];
        let mut r = Reader::new(footer);
        let _meta = (varint(&mut r).map_err(err)?, varint(&mut r).map_err(err)?);
        let (io, is) = (varint(&mut r).map_err(err)?, varint(&mut r).map_err(err)?);
        let index = block(file, io, is).map_err(err)?;
        let mut map = BTreeMap::new();
        let mut unsupported = BTreeMap::new();
        let mut shards = 1;
        for (_, v) in entries(index).map_err(err)? {
            let (o, s) = handle(v).map_err(err)?;
            for (k, value) in entries(block(file, o, s).map_err(err)?).map_err(err)? {
                let key = String::from_utf8_lossy(&k).into_owned();
                if key.is_empty() {
                    // BundleHeaderProto: num_shards = 1
                    for (n, f) in Reader::fields(value).ok_or_else(|| err("malformed bundle header".into()))? {
                        if let (1, Field::Varint(v)) = (n, f) {
                            shards = v as u32;
                        }
                    }
                    continue;
                }
                match Self::entry(value) {
                    Ok(e) => {
                        map.insert(key, e);
                    }
                    // A variable of a type we do not read (float16 state of
                    // a mixed-precision model, say) only matters if asked for.
                    Err(m) if m.starts_with("unsupported dtype") => {
                        unsupported.insert(key, m);
                    }
                    Err(m) => return Err(err(format!("entry {key:?}: {m}"))),
                }
            }
        }
        Ok(Self { index_path, prefix: prefix.to_path_buf(), shards, entries: map, unsupported })
    }

    fn entry(v: &[u8]) -> std::result::Result<BundleEntry, String> {
        let mut e = BundleEntry { dtype: DType::F32, shape: Vec::new(), shard: 0, offset: 0, size: 0, crc32c: 0 };
        let mut dtype = None;
        for (n, f) in Reader::fields(v).ok_or("malformed BundleEntryProto")? {
            match (n, f) {
                (1, Field::Varint(d)) => {
                    dtype = Some(DType::from_code(d).ok_or_else(|| format!("unsupported dtype {d}"))?)
                }
                (2, Field::Len(b)) => {
                    e.shape = parse_shape(b)?
                        .ok_or("unknown rank")?
                        .into_iter()
                        .map(|d| d.ok_or("unknown dimension"))
                        .collect::<std::result::Result<_, _>>()?
                }
                (3, Field::Varint(s)) => e.shard = s as u32,
                (4, Field::Varint(o)) => e.offset = o,
                (5, Field::Varint(s)) => e.size = s,
                (6, Field::I32(c)) => e.crc32c = c,
                (7, _) => return Err("partitioned (sliced) variables are not supported".into()),
                _ => {}
            }
        }
        e.dtype = dtype.ok_or("no dtype")?;
        Ok(e)
    }

    /// The data file of a shard.
    pub fn shard_path(&self, shard: u32) -> PathBuf {
        PathBuf::from(format!("{}.data-{shard:05}-of-{:05}", self.prefix.display(), self.shards))
    }

    /// Reads a variable, verifying its checksum.
    pub fn read(&self, key: &str) -> Result<Tensor> {
        if let Some(why) = self.unsupported.get(key) {
            return Err(Error::format(&self.index_path, format!("variable {key:?}: {why}")));
        }
        let e = self.entries.get(key).ok_or_else(|| Error::format(&self.index_path, format!("no variable {key:?}")))?;
        let path = self.shard_path(e.shard);
        let mut f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        // Sizes come from the (possibly corrupt) index: check them against
        // the shard before allocating.
        let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        if e.offset.checked_add(e.size).is_none_or(|end| end > len) {
            return Err(Error::format(
                &path,
                format!(
                    "variable {key:?}: bytes {}+{} lie beyond the {len}-byte file (truncated or corrupt)",
                    e.offset, e.size
                ),
            ));
        }
        let n = e.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| {
            Error::format(&self.index_path, format!("variable {key:?}: shape {:?} overflows", e.shape))
        })?;
        if e.dtype != DType::Str && e.dtype.size().and_then(|s| s.checked_mul(n)) != Some(e.size as usize) {
            return Err(Error::format(&path, format!("variable {key:?}: {} bytes for shape {:?}", e.size, e.shape)));
        }
        f.seek(SeekFrom::Start(e.offset)).map_err(|e| Error::io(&path, e))?;
        let mut bytes = vec![0u8; e.size as usize];
        f.read_exact(&mut bytes)
            .map_err(|_| Error::format(&path, format!("variable {key:?}: data ends early (truncated file)")))?;
        let data = if e.dtype == DType::Str {
            // varint lengths | u32 masked crc of the lengths | strings
            let mut r = Reader::new(&bytes);
            let lens = (0..n)
                .map(|_| r.varint().map(|v| v as usize))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Error::format(&path, format!("variable {key:?}: malformed string lengths")))?;
            let rest = r.rest();
            if rest.len() < 4 {
                return Err(Error::format(&path, format!("variable {key:?}: truncated string tensor")));
            }
            // The entry's checksum covers the lengths (as u32 words), the
            // stored checksum of the lengths and the strings.
            let body_len = lens.iter().try_fold(0usize, |a, &l| a.checked_add(l)).unwrap_or(usize::MAX);
            if body_len > rest.len().saturating_sub(4) {
                return Err(Error::format(&path, format!("variable {key:?}: truncated string tensor")));
            }
            let mut covered: Vec<u8> = lens.iter().flat_map(|&l| (l as u32).to_le_bytes()).collect();
            covered.extend_from_slice(&rest[..4 + body_len]);
            if masked_crc(&covered) != e.crc32c {
                return Err(Error::format(&path, format!("variable {key:?}: checksum mismatch (corrupt file)")));
            }
            let mut body = &rest[4..];
            let mut out = Vec::with_capacity(n);
            for l in lens {
                if l > body.len() {
                    return Err(Error::format(&path, format!("variable {key:?}: truncated string")));
                }
                out.push(body[..l].to_vec());
                body = &body[l..];
            }
            TensorData::Str(out)
        } else {
            if masked_crc(&bytes) != e.crc32c {
                return Err(Error::format(&path, format!("variable {key:?}: checksum mismatch (corrupt file)")));
            }
            if bytes.len() != n * e.dtype.size().expect("numeric") {
                return Err(Error::format(
                    &path,
                    format!("variable {key:?}: {} bytes for shape {:?}", bytes.len(), e.shape),
                ));
            }
            TensorData::Raw(bytes)
        };
        Ok(Tensor { dtype: e.dtype, shape: e.shape.clone(), data })
    }
}
