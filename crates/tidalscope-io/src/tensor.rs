//! TensorFlow's `TensorProto`: the record of one tensor (dtype, shape and
//! values) that tf.data snapshots store per element component and Keras'
//! checkpoints store per variable; and `TensorShapeProto`. Both the tf.data
//! reader and the Keras reader build on these.

use crate::protobuf::{self, Field, Reader};

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

pub(crate) fn dtype_name(code: u64) -> String {
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
