//! tf.data `Dataset.save` folders (snapshot format version 2), read and
//! written without TensorFlow. The byte layout is in
//! `tests/fixtures/tensorflow/FORMAT.md`; in short:
//!
//! ```text
//! path/dataset_spec.pb     StructuredValue: the element spec
//! path/snapshot.metadata   SnapshotMetadataRecord: run id, dtypes, count
//! path/<run_id>/NNNNNNNN.shard/NNNNNNNN.snapshot
//!                          TFRecord stream (optionally one gzip or zlib stream);
//!                          each element = one TensorProto record per component,
//!                          components in sorted-key order
//! ```
//!
//! Reading streams: memory stays constant whatever the file size. Elements
//! come in the order TensorFlow's `Dataset.load` gives them, which with
//! several shards depends on the interleave cycle length (TensorFlow uses the
//! reading machine's CPU count).

use crate::protobuf::{self, Field, Reader};
use crate::tfrecord::{self, RecordReader};
use crate::{Error, Result};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// TensorFlow data types tidalscope reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// DT_FLOAT
    F32,
    /// DT_DOUBLE
    F64,
    /// DT_INT32
    I32,
    /// DT_UINT8
    U8,
    /// DT_INT16
    I16,
    /// DT_INT8
    I8,
    /// DT_STRING
    Str,
    /// DT_INT64
    I64,
    /// DT_BOOL
    Bool,
    /// DT_UINT16
    U16,
    /// DT_UINT32
    U32,
    /// DT_UINT64
    U64,
}

impl DType {
    /// From TensorFlow's DataType enum value.
    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            1 => DType::F32,
            2 => DType::F64,
            3 => DType::I32,
            4 => DType::U8,
            5 => DType::I16,
            6 => DType::I8,
            7 => DType::Str,
            9 => DType::I64,
            10 => DType::Bool,
            17 => DType::U16,
            22 => DType::U32,
            23 => DType::U64,
            _ => return None,
        })
    }

    /// TensorFlow's DataType enum value.
    pub fn code(self) -> u64 {
        match self {
            DType::F32 => 1,
            DType::F64 => 2,
            DType::I32 => 3,
            DType::U8 => 4,
            DType::I16 => 5,
            DType::I8 => 6,
            DType::Str => 7,
            DType::I64 => 9,
            DType::Bool => 10,
            DType::U16 => 17,
            DType::U32 => 22,
            DType::U64 => 23,
        }
    }

    /// Bytes per element (strings: none).
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DType::U8 | DType::I8 | DType::Bool => 1,
            DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::Str => return None,
        })
    }

    /// TensorFlow's name (`float32`, …).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I32 => "int32",
            DType::U8 => "uint8",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::Str => "string",
            DType::I64 => "int64",
            DType::Bool => "bool",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
        }
    }
}

fn dtype_name(code: u64) -> String {
    DType::from_code(code).map(|d| d.name().to_string()).unwrap_or_else(|| format!("DataType {code}"))
}

/// The values of a tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Numbers and bools: raw little-endian bytes, row-major.
    Raw(Vec<u8>),
    /// Byte strings.
    Str(Vec<Vec<u8>>),
}

/// One tensor of an element.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Element type.
    pub dtype: DType,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Values.
    pub data: TensorData,
}

macro_rules! le_values {
    ($bytes:expr, $t:ty) => {
        $bytes.chunks_exact(std::mem::size_of::<$t>()).map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk size")))
    };
}

impl Tensor {
    /// A float32 tensor.
    pub fn f32(shape: Vec<usize>, values: &[f32]) -> Self {
        Tensor {
            dtype: DType::F32,
            shape,
            data: TensorData::Raw(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Numeric values as float32 (None for strings).
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        let TensorData::Raw(b) = &self.data else { return None };
        Some(match self.dtype {
            DType::F32 => le_values!(b, f32).collect(),
            DType::F64 => le_values!(b, f64).map(|v| v as f32).collect(),
            DType::I32 => le_values!(b, i32).map(|v| v as f32).collect(),
            DType::I64 => le_values!(b, i64).map(|v| v as f32).collect(),
            DType::I16 => le_values!(b, i16).map(|v| v as f32).collect(),
            DType::U16 => le_values!(b, u16).map(|v| v as f32).collect(),
            DType::U32 => le_values!(b, u32).map(|v| v as f32).collect(),
            DType::U64 => le_values!(b, u64).map(|v| v as f32).collect(),
            DType::U8 | DType::Bool => b.iter().map(|&v| v as f32).collect(),
            DType::I8 => b.iter().map(|&v| v as i8 as f32).collect(),
            DType::Str => return None,
        })
    }

    /// The values as text, exactly (integers in full, floats as the
    /// shortest round-trip decimal, strings as UTF-8 with invalid bytes
    /// replaced); arrays as `[a b c]` in row-major order.
    pub fn to_text(&self) -> String {
        let items: Vec<String> = match &self.data {
            TensorData::Str(s) => s.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect(),
            TensorData::Raw(b) => match self.dtype {
                DType::F32 => le_values!(b, f32).map(|v| v.to_string()).collect(),
                DType::F64 => le_values!(b, f64).map(|v| v.to_string()).collect(),
                DType::I32 => le_values!(b, i32).map(|v| v.to_string()).collect(),
                DType::I64 => le_values!(b, i64).map(|v| v.to_string()).collect(),
                DType::I16 => le_values!(b, i16).map(|v| v.to_string()).collect(),
                DType::U16 => le_values!(b, u16).map(|v| v.to_string()).collect(),
                DType::U32 => le_values!(b, u32).map(|v| v.to_string()).collect(),
                DType::U64 => le_values!(b, u64).map(|v| v.to_string()).collect(),
                DType::U8 => b.iter().map(|v| v.to_string()).collect(),
                DType::I8 => b.iter().map(|&v| (v as i8).to_string()).collect(),
                DType::Bool => b.iter().map(|&v| if v != 0 { "true" } else { "false" }.to_string()).collect(),
                DType::Str => Vec::new(),
            },
        };
        if self.shape.is_empty() {
            items.into_iter().next().unwrap_or_default()
        } else {
            format!("[{}]", items.join(" "))
        }
    }

    /// Serialises as TensorFlow's `Tensor::AsProtoTensorContent` does:
    /// dtype, shape, tensor_content, in that order.
    pub fn to_proto(&self) -> Vec<u8> {
        let mut out = Vec::new();
        protobuf::put_varint_field(&mut out, 1, self.dtype.code());
        protobuf::put_bytes_field(&mut out, 2, &shape_proto(&self.shape.iter().map(|&d| d as i64).collect::<Vec<_>>()));
        let content: Vec<u8> = match &self.data {
            TensorData::Raw(b) => b.clone(),
            TensorData::Str(s) => {
                let mut c = Vec::new();
                for v in s {
                    protobuf::put_varint(&mut c, v.len() as u64);
                }
                for v in s {
                    c.extend_from_slice(v);
                }
                c
            }
        };
        if !content.is_empty() {
            protobuf::put_bytes_field(&mut out, 4, &content);
        }
        out
    }

    /// Parses a serialised TensorProto (tensor_content or typed value
    /// fields).
    pub fn from_proto(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut dtype = None;
        let mut shape = Vec::new();
        let mut content: Option<&[u8]> = None;
        let mut typed: Vec<u8> = Vec::new();
        let mut strings: Vec<Vec<u8>> = Vec::new();
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            let (num, f) = r.field().ok_or("malformed TensorProto")?;
            match (num, f) {
                (1, Field::Varint(v)) => {
                    dtype = Some(DType::from_code(v).ok_or_else(|| format!("unsupported dtype {}", dtype_name(v)))?)
                }
                (2, Field::Len(b)) => {
                    shape = parse_shape(b)?
                        .ok_or("tensor of unknown rank")?
                        .into_iter()
                        .map(|d| d.ok_or("tensor with an unknown dimension"))
                        .collect::<std::result::Result<_, _>>()?
                }
                (4, Field::Len(b)) => content = Some(b),
                (8, Field::Len(b)) => strings.push(b.to_vec()),
                // Typed value fields (packed or not) are not written by
                // Dataset.save, but are valid TensorProtos.
                (5, Field::Len(b)) => typed.extend_from_slice(b),
                (5, Field::I32(v)) => typed.extend_from_slice(&v.to_le_bytes()),
                (6, Field::Len(b)) => typed.extend_from_slice(b),
                (6, Field::I64(v)) => typed.extend_from_slice(&v.to_le_bytes()),
                (7 | 10 | 11, Field::Len(b)) => {
                    for v in protobuf::packed_varints(b).ok_or("malformed packed values")? {
                        typed.extend_from_slice(&v.to_le_bytes());
                    }
                }
                (7 | 10 | 11, Field::Varint(v)) => typed.extend_from_slice(&v.to_le_bytes()),
                _ => {}
            }
        }
        let dtype = dtype.ok_or("TensorProto without dtype")?;
        let n: usize = shape.iter().product();
        let data = if dtype == DType::Str {
            if let Some(c) = content {
                let mut r = Reader::new(c);
                let lens = (0..n)
                    .map(|_| r.varint().map(|v| v as usize))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("malformed string tensor")?;
                let mut rest = r.rest();
                let mut out = Vec::with_capacity(n);
                for l in lens {
                    if l > rest.len() {
                        return Err("string tensor shorter than its lengths".into());
                    }
                    out.push(rest[..l].to_vec());
                    rest = &rest[l..];
                }
                TensorData::Str(out)
            } else {
                if strings.len() != n {
                    return Err(format!("{} strings for shape {shape:?}", strings.len()));
                }
                TensorData::Str(strings)
            }
        } else {
            let size = dtype.size().expect("numeric");
            let raw = match content {
                Some(c) => c.to_vec(),
                None if typed.is_empty() && n > 0 => return Err("numeric tensor without values".into()),
                None => repack_typed(dtype, &typed, n)?,
            };
            if raw.len() != n * size {
                return Err(format!(
                    "{} bytes of {} for shape {shape:?} ({} expected)",
                    raw.len(),
                    dtype.name(),
                    n * size
                ));
            }
            TensorData::Raw(raw)
        };
        Ok(Tensor { dtype, shape, data })
    }
}

/// Typed value fields hold 64-bit varints / fixed values; convert them to the
/// dtype's raw little-endian layout. A single value broadcasts to `n`.
fn repack_typed(dtype: DType, typed: &[u8], n: usize) -> std::result::Result<Vec<u8>, String> {
    let vals: Vec<[u8; 8]> = match dtype {
        DType::F32 => {
            typed.chunks_exact(4).map(|c| (f32::from_le_bytes(c.try_into().unwrap()) as f64).to_le_bytes()).collect()
        }
        _ => typed.chunks_exact(8).map(|c| c.try_into().unwrap()).collect(),
    };
    let vals = if vals.len() == 1 && n > 1 { vec![vals[0]; n] } else { vals };
    let mut out = Vec::new();
    for v in vals {
        match dtype {
            DType::F32 => out.extend_from_slice(&(f64::from_le_bytes(v) as f32).to_le_bytes()),
            DType::F64 | DType::I64 | DType::U64 => out.extend_from_slice(&v),
            DType::I32 | DType::U32 => out.extend_from_slice(&v[..4]),
            DType::I16 | DType::U16 => out.extend_from_slice(&v[..2]),
            DType::U8 | DType::I8 | DType::Bool => out.push(v[0]),
            DType::Str => return Err("strings in numeric fields".into()),
        }
    }
    Ok(out)
}

/// TensorShapeProto bytes for `dims` (−1 = unknown).
pub fn shape_proto(dims: &[i64]) -> Vec<u8> {
    let mut out = Vec::new();
    for &d in dims {
        let mut dim = Vec::new();
        if d != 0 {
            protobuf::put_varint_field(&mut dim, 1, d as u64);
        }
        protobuf::put_bytes_field(&mut out, 2, &dim);
    }
    out
}

/// Parses a TensorShapeProto: `None` for unknown rank, `None` entries for
/// unknown dimensions.
pub fn parse_shape(bytes: &[u8]) -> std::result::Result<Option<Vec<Option<usize>>>, String> {
    let mut dims = Vec::new();
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        match r.field().ok_or("malformed TensorShapeProto")? {
            (2, Field::Len(b)) => {
                let mut size: i64 = 0;
                for (n, f) in Reader::fields(b).ok_or("malformed shape dimension")? {
                    if let (1, Field::Varint(v)) = (n, f) {
                        size = v as i64;
                    }
                }
                dims.push(usize::try_from(size).ok());
            }
            (3, Field::Varint(1)) => return Ok(None),
            _ => {}
        }
    }
    Ok(Some(dims))
}

/// One component of an element spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSpec {
    /// Key path (`image`, or `outer/inner` for nested structures).
    pub key: String,
    /// Data type.
    pub dtype: DType,
    /// Shape (`None` = unknown rank; `Some(None)` entries = unknown size).
    pub shape: Option<Vec<Option<usize>>>,
}

/// A dataset's element structure, flattened in TensorFlow's order (dict keys
/// sorted, depth first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ElementSpec {
    /// Components in record order.
    pub components: Vec<ComponentSpec>,
}

impl ElementSpec {
    /// Parses `dataset_spec.pb`.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut spec = ElementSpec::default();
        flatten_structured(bytes, "", &mut spec.components)?;
        Ok(spec)
    }

    /// Position of component `key`.
    pub fn position(&self, key: &str) -> Option<usize> {
        self.components.iter().position(|c| c.key == key)
    }

    /// Serialises as a dict of tensor specs (keys sorted).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut dict = Vec::new();
        let mut comps: Vec<&ComponentSpec> = self.components.iter().collect();
        comps.sort_by(|a, b| a.key.cmp(&b.key));
        for c in comps {
            let mut ts = Vec::new();
            let dims: Vec<i64> =
                c.shape.as_ref().map(|s| s.iter().map(|d| d.map_or(-1, |v| v as i64)).collect()).unwrap_or_default();
            protobuf::put_bytes_field(&mut ts, 2, &shape_proto(&dims));
            protobuf::put_varint_field(&mut ts, 3, c.dtype.code());
            let mut value = Vec::new();
            protobuf::put_bytes_field(&mut value, 33, &ts);
            let mut entry = Vec::new();
            protobuf::put_bytes_field(&mut entry, 1, c.key.as_bytes());
            protobuf::put_bytes_field(&mut entry, 2, &value);
            protobuf::put_bytes_field(&mut dict, 1, &entry);
        }
        let mut out = Vec::new();
        protobuf::put_bytes_field(&mut out, 53, &dict);
        out
    }
}

fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}/{key}")
    }
}

fn flatten_structured(bytes: &[u8], prefix: &str, out: &mut Vec<ComponentSpec>) -> std::result::Result<(), String> {
    let fields = Reader::fields(bytes).ok_or("malformed StructuredValue")?;
    for (num, f) in fields {
        let Field::Len(b) = f else { continue };
        match num {
            // tensor_spec_value / bounded_tensor_spec_value
            33 | 35 => {
                let (mut shape, mut dtype) = (Some(Vec::new()), None);
                for (n, g) in Reader::fields(b).ok_or("malformed TensorSpecProto")? {
                    match (n, g) {
                        (2, Field::Len(s)) => shape = parse_shape(s)?,
                        (3, Field::Varint(d)) => {
                            dtype = Some(DType::from_code(d).ok_or_else(|| {
                                format!("component {prefix:?} has unsupported dtype {}", dtype_name(d))
                            })?)
                        }
                        _ => {}
                    }
                }
                let dtype = dtype.ok_or_else(|| format!("component {prefix:?} has no dtype"))?;
                out.push(ComponentSpec { key: prefix.to_string(), dtype, shape });
            }
            // dict_value: sorted keys
            53 => {
                let mut entries = Vec::new();
                for (n, g) in Reader::fields(b).ok_or("malformed DictValue")? {
                    if let (1, Field::Len(e)) = (n, g) {
                        let (mut key, mut value) = (String::new(), &[][..]);
                        for (m, h) in Reader::fields(e).ok_or("malformed dict entry")? {
                            match (m, h) {
                                (1, Field::Len(k)) => key = String::from_utf8_lossy(k).into_owned(),
                                (2, Field::Len(v)) => value = v,
                                _ => {}
                            }
                        }
                        entries.push((key, value));
                    }
                }
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                for (k, v) in entries {
                    flatten_structured(v, &join_key(prefix, &k), out)?;
                }
            }
            // list_value / tuple_value
            51 | 52 => {
                let mut i = 0;
                for (n, g) in Reader::fields(b).ok_or("malformed list")? {
                    if let (1, Field::Len(v)) = (n, g) {
                        flatten_structured(v, &join_key(prefix, &i.to_string()), out)?;
                        i += 1;
                    }
                }
            }
            // named_tuple_value: fields in declaration order
            54 => {
                for (n, g) in Reader::fields(b).ok_or("malformed named tuple")? {
                    if let (2, Field::Len(pair)) = (n, g) {
                        let (mut key, mut value) = (String::new(), &[][..]);
                        for (m, h) in Reader::fields(pair).ok_or("malformed named tuple field")? {
                            match (m, h) {
                                (1, Field::Len(k)) => key = String::from_utf8_lossy(k).into_owned(),
                                (2, Field::Len(v)) => value = v,
                                _ => {}
                            }
                        }
                        flatten_structured(value, &join_key(prefix, &key), out)?;
                    }
                }
            }
            34 => {
                return Err(format!(
                    "component {prefix:?} is a ragged, sparse or other composite tensor, which is not supported"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Contents of `snapshot.metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    /// Name of the run folder.
    pub run_id: String,
    /// Snapshot format version (2 for TFRecord snapshots).
    pub version: u64,
    /// DataType of each component, in flat order.
    pub dtypes: Vec<u64>,
    /// Number of elements (−1/−2: unknown).
    pub num_elements: i64,
    /// True once the writer finished.
    pub finalized: bool,
    /// Creation time, µs since the epoch.
    pub creation_timestamp: i64,
}

impl Metadata {
    /// Parses `snapshot.metadata`.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut m = Metadata::default();
        for (num, f) in Reader::fields(bytes).ok_or("malformed SnapshotMetadataRecord")? {
            match (num, f) {
                (2, Field::Len(b)) => m.run_id = String::from_utf8_lossy(b).into_owned(),
                (3, Field::Varint(v)) => m.creation_timestamp = v as i64,
                (4, Field::Varint(v)) => m.version = v,
                (5, Field::Len(b)) => m.dtypes.extend(protobuf::packed_varints(b).ok_or("malformed dtype list")?),
                (5, Field::Varint(v)) => m.dtypes.push(v),
                (6, Field::Varint(v)) => m.num_elements = v as i64,
                (1000, Field::Varint(v)) => m.finalized = v != 0,
                _ => {}
            }
        }
        Ok(m)
    }

    /// Serialises as TensorFlow writes it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        protobuf::put_bytes_field(&mut out, 2, self.run_id.as_bytes());
        protobuf::put_varint_field(&mut out, 3, self.creation_timestamp as u64);
        protobuf::put_varint_field(&mut out, 4, self.version);
        let mut packed = Vec::new();
        for &d in &self.dtypes {
            protobuf::put_varint(&mut packed, d);
        }
        protobuf::put_bytes_field(&mut out, 5, &packed);
        protobuf::put_varint_field(&mut out, 6, self.num_elements as u64);
        if self.finalized {
            protobuf::put_varint_field(&mut out, 1000, 1);
        }
        out
    }
}

/// How a snapshot file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain TFRecord.
    None,
    /// The whole file is one gzip member.
    Gzip,
    /// The whole file is one zlib stream.
    Zlib,
}

/// Guesses a snapshot file's compression from its first bytes: a plain
/// TFRecord starts with a length whose masked CRC follows it.
pub fn detect_compression(head: &[u8]) -> Option<Compression> {
    if head.len() >= 12 && tfrecord::masked_crc(&head[..8]).to_le_bytes() == head[8..12] {
        Some(Compression::None)
    } else if head.len() >= 3 && head[0] == 0x1f && head[1] == 0x8b && head[2] == 8 {
        Some(Compression::Gzip)
    } else if head.len() >= 2 && head[0] & 0x0f == 8 && (u16::from(head[0]) * 256 + u16::from(head[1])) % 31 == 0 {
        Some(Compression::Zlib)
    } else if head.is_empty() {
        Some(Compression::None)
    } else {
        None
    }
}

/// An opened `Dataset.save` folder.
#[derive(Debug, Clone)]
pub struct TfDataset {
    /// The folder.
    pub path: PathBuf,
    /// Element structure.
    pub spec: ElementSpec,
    /// Snapshot metadata.
    pub metadata: Metadata,
    /// Snapshot files of each shard, shards sorted by name, files by id.
    pub shards: Vec<Vec<PathBuf>>,
    /// Compression of the snapshot files.
    pub compression: Compression,
}

/// True if `dir` looks like a `Dataset.save` folder.
pub fn is_dataset(dir: &Path) -> bool {
    dir.join("snapshot.metadata").is_file()
}

impl TfDataset {
    /// Opens a folder written by `tf.data.Dataset.save`.
    pub fn open(path: &Path) -> Result<Self> {
        let meta_path = path.join("snapshot.metadata");
        let meta_bytes = std::fs::read(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        let metadata = Metadata::parse(&meta_bytes).map_err(|m| Error::format(&meta_path, m))?;
        if metadata.version != 2 {
            return Err(Error::format(
                &meta_path,
                format!("snapshot version {} (only version 2, written by Dataset.save, is read)", metadata.version),
            ));
        }
        let spec_path = path.join("dataset_spec.pb");
        let spec = match std::fs::read(&spec_path) {
            Ok(b) => ElementSpec::parse(&b).map_err(|m| Error::format(&spec_path, m))?,
            Err(e) => return Err(Error::io(&spec_path, e)),
        };
        if spec.components.len() != metadata.dtypes.len()
            || spec.components.iter().zip(&metadata.dtypes).any(|(c, &d)| c.dtype.code() != d)
        {
            return Err(Error::format(
                &meta_path,
                format!(
                    "component dtypes [{}] disagree with dataset_spec.pb [{}]",
                    metadata.dtypes.iter().map(|&d| dtype_name(d)).collect::<Vec<_>>().join(", "),
                    spec.components.iter().map(|c| c.dtype.name()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let run = path.join(&metadata.run_id);
        let mut shard_dirs: Vec<PathBuf> = std::fs::read_dir(&run)
            .map_err(|e| Error::io(&run, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && p.extension().is_some_and(|x| x == "shard"))
            .collect();
        shard_dirs.sort();
        let shards: Vec<Vec<PathBuf>> = shard_dirs
            .iter()
            .map(|d| (0..).map(|i| d.join(format!("{i:08}.snapshot"))).take_while(|p| p.is_file()).collect())
            .collect();
        let first = shards.iter().flatten().next();
        let compression = match first {
            None => Compression::None,
            Some(f) => {
                let mut head = [0u8; 12];
                let mut file = File::open(f).map_err(|e| Error::io(f, e))?;
                let n = file.read(&mut head).map_err(|e| Error::io(f, e))?;
                detect_compression(&head[..n])
                    .ok_or_else(|| Error::format(f, "neither a TFRecord snapshot nor gzip/zlib-compressed"))?
            }
        };
        Ok(Self { path: path.to_path_buf(), spec, metadata, shards, compression })
    }

    /// Number of elements the metadata promises (None when unknown).
    pub fn element_count(&self) -> Option<usize> {
        usize::try_from(self.metadata.num_elements).ok()
    }

    /// Elements in the order `Dataset.load` yields them with interleave
    /// cycle length `cycle_length` (TensorFlow's default: the CPU count).
    pub fn elements(&self, cycle_length: usize) -> Elements {
        Elements {
            dataset: self.clone(),
            slots: (0..cycle_length.max(1)).map(|_| None).collect(),
            next_shard: 0,
            slot: 0,
            produced: 0,
            failed: false,
        }
    }
}

/// A sequential reader of one shard's elements.
struct ShardStream {
    files: Vec<PathBuf>,
    file: usize,
    reader: Option<RecordReader<Box<dyn Read + Send>>>,
    components: usize,
    compression: Compression,
    buf: Vec<u8>,
    element: u64,
}

impl ShardStream {
    fn open_file(&mut self) -> Result<bool> {
        let Some(path) = self.files.get(self.file) else { return Ok(false) };
        let f = BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| Error::io(path, e))?);
        let r: Box<dyn Read + Send> = match self.compression {
            Compression::None => Box::new(f),
            Compression::Gzip => Box::new(BufReader::new(flate2::read::GzDecoder::new(f))),
            Compression::Zlib => Box::new(BufReader::new(flate2::read::ZlibDecoder::new(f))),
        };
        self.reader = Some(RecordReader::new(r, path));
        Ok(true)
    }

    /// Next element's component tensors, or None at the end of the shard.
    fn next(&mut self) -> Result<Option<(PathBuf, u64, Vec<Tensor>)>> {
        loop {
            if self.reader.is_none() && !self.open_file()? {
                return Ok(None);
            }
            let path = self.files[self.file].clone();
            let reader = self.reader.as_mut().expect("opened above");
            let mut tensors = Vec::with_capacity(self.components);
            for c in 0..self.components {
                if !reader.next_into(&mut self.buf)? {
                    if c == 0 {
                        break;
                    }
                    return Err(Error::format(
                        &path,
                        format!(
                            "element {}: file ends after {c} of its {} components (truncated)",
                            self.element, self.components
                        ),
                    ));
                }
                let t = Tensor::from_proto(&self.buf)
                    .map_err(|m| Error::format(&path, format!("element {}, component {c}: {m}", self.element)))?;
                tensors.push(t);
            }
            if tensors.is_empty() {
                self.reader = None;
                self.file += 1;
                continue;
            }
            self.element += 1;
            return Ok(Some((path, self.element - 1, tensors)));
        }
    }
}

/// Elements of a [`TfDataset`] in `Dataset.load` order; each item is the
/// element's component tensors in spec order, or an error naming the file
/// and element. Iteration stops after the first error.
pub struct Elements {
    dataset: TfDataset,
    slots: Vec<Option<ShardStream>>,
    next_shard: usize,
    slot: usize,
    produced: u64,
    failed: bool,
}

impl Iterator for Elements {
    type Item = Result<Vec<Tensor>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let n_slots = self.slots.len();
        loop {
            if self.next_shard >= self.dataset.shards.len() && self.slots.iter().all(Option::is_none) {
                return None;
            }
            let i = self.slot;
            match self.slots[i].as_mut() {
                Some(stream) => match stream.next() {
                    Ok(Some((path, element, tensors))) => {
                        self.slot = (i + 1) % n_slots;
                        self.produced += 1;
                        return Some(self.check(&path, element, tensors));
                    }
                    Ok(None) => {
                        self.slots[i] = None;
                        self.slot = (i + 1) % n_slots;
                    }
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                },
                None if self.next_shard < self.dataset.shards.len() => {
                    self.slots[i] = Some(ShardStream {
                        files: self.dataset.shards[self.next_shard].clone(),
                        file: 0,
                        reader: None,
                        components: self.dataset.spec.components.len(),
                        compression: self.dataset.compression,
                        buf: Vec::new(),
                        element: 0,
                    });
                    self.next_shard += 1;
                }
                None => self.slot = (i + 1) % n_slots,
            }
        }
    }
}

impl Elements {
    /// Checks an element against the spec.
    fn check(&mut self, path: &Path, element: u64, tensors: Vec<Tensor>) -> Result<Vec<Tensor>> {
        for (t, c) in tensors.iter().zip(&self.dataset.spec.components) {
            let shape_ok = c.shape.as_ref().is_none_or(|s| {
                s.len() == t.shape.len() && s.iter().zip(&t.shape).all(|(a, b)| a.is_none_or(|a| a == *b))
            });
            if t.dtype != c.dtype || !shape_ok {
                self.failed = true;
                return Err(Error::format(
                    path,
                    format!(
                        "element {element}, component {:?}: {} {:?} does not match the spec's {} {:?}",
                        c.key,
                        t.dtype.name(),
                        t.shape,
                        c.dtype.name(),
                        c.shape
                    ),
                ));
            }
        }
        Ok(tensors)
    }
}

/// Writes a `Dataset.save` folder: one shard, one snapshot file, as
/// TensorFlow does without a shard function. The snapshot file is
/// byte-identical to TensorFlow's for the same elements (uncompressed). The
/// folder appears only when [`TfDataWriter::finish`] succeeds.
pub struct TfDataWriter {
    dest: PathBuf,
    tmp: PathBuf,
    spec: ElementSpec,
    run_id: String,
    out: Option<Box<dyn Write + Send>>,
    count: i64,
    snapshot: PathBuf,
}

impl TfDataWriter {
    /// Starts writing a dataset of elements structured as `spec` to `dest`.
    pub fn create(dest: &Path, spec: ElementSpec, compression: Compression) -> Result<Self> {
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dataset".into());
        let tmp = dest.with_file_name(format!(".{name}.tmp{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        // A run id derived from the spec: the same data gives the same folder.
        let run_id = (crc32c::crc32c(&spec.to_bytes()) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_string();
        let shard = tmp.join(&run_id).join("00000000.shard");
        std::fs::create_dir_all(&shard).map_err(|e| Error::io(&shard, e))?;
        std::fs::write(tmp.join("dataset_spec.pb"), spec.to_bytes()).map_err(|e| Error::io(dest, e))?;
        let snapshot = shard.join("00000000.snapshot");
        let file =
            std::io::BufWriter::with_capacity(1 << 20, File::create(&snapshot).map_err(|e| Error::io(&snapshot, e))?);
        let out: Box<dyn Write + Send> = match compression {
            Compression::None => Box::new(file),
            Compression::Gzip => {
                Box::new(flate2::GzBuilder::new().operating_system(3).write(file, flate2::Compression::default()))
            }
            Compression::Zlib => Box::new(flate2::write::ZlibEncoder::new(file, flate2::Compression::default())),
        };
        Ok(Self { dest: dest.to_path_buf(), tmp, spec, run_id, out: Some(out), count: 0, snapshot })
    }

    /// Appends one element (its tensors in spec order).
    pub fn write(&mut self, tensors: &[Tensor]) -> Result<()> {
        if tensors.len() != self.spec.components.len() {
            return Err(Error::format(
                &self.dest,
                format!("element of {} tensors for a spec of {}", tensors.len(), self.spec.components.len()),
            ));
        }
        let out = self.out.as_mut().expect("writer open until finish");
        for (t, c) in tensors.iter().zip(&self.spec.components) {
            if t.dtype != c.dtype {
                return Err(Error::format(
                    &self.dest,
                    format!("component {:?}: {} given, spec says {}", c.key, t.dtype.name(), c.dtype.name()),
                ));
            }
            tfrecord::write_record(out, &t.to_proto()).map_err(|e| Error::io(&self.snapshot, e))?;
        }
        self.count += 1;
        Ok(())
    }

    /// Writes the metadata and moves the folder into place.
    pub fn finish(mut self) -> Result<()> {
        let mut out = self.out.take().expect("writer open until finish");
        out.flush().map_err(|e| Error::io(&self.snapshot, e))?;
        drop(out); // finishes the gzip/zlib stream
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let meta = Metadata {
            run_id: self.run_id.clone(),
            version: 2,
            dtypes: self.spec.components.iter().map(|c| c.dtype.code()).collect(),
            num_elements: self.count,
            finalized: true,
            creation_timestamp: now_us,
        };
        std::fs::write(self.tmp.join("snapshot.metadata"), meta.to_bytes()).map_err(|e| Error::io(&self.dest, e))?;
        crate::atomic::replace_dir(&self.tmp, &self.dest)
    }
}

impl Drop for TfDataWriter {
    fn drop(&mut self) {
        if self.out.is_some() {
            self.out = None;
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}
