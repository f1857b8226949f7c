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

use crate::tensor::dtype_name;
pub use crate::tensor::{parse_shape, shape_proto, DType, Tensor, TensorData};

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
    /// Number of elements (−1/−2: unknown; 0 is taken as unknown too, and
    /// so is any count of a save that did not finish: see
    /// [`TfDataset::element_count`]).
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

    /// Number of elements the metadata promises: None where the save did
    /// not finish (not `finalized`: TensorFlow writes the count last) or
    /// recorded no positive count (−1/−2 for unknown; some writers leave 0).
    pub fn element_count(&self) -> Option<usize> {
        usize::try_from(self.metadata.num_elements).ok().filter(|&n| n > 0 && self.metadata.finalized)
    }

    /// Number of elements: the metadata's count where it promises one
    /// ([`element_count`](Self::element_count)), otherwise the elements the
    /// snapshot files hold, counted from their record framing
    /// ([`count_elements`](Self::count_elements)), so that a folder of
    /// unknown length is read to its end rather than taken as empty. A
    /// promise is checked against uncompressed files, where counting
    /// costs a seek per record: a shard file lost from a finished save
    /// would otherwise shift every later element of a part read by index
    /// (`--shard k/n`) without a word. (Compressed files are checked when
    /// reading reaches their end.)
    pub fn num_elements(&self) -> Result<usize> {
        match self.element_count() {
            Some(n) if self.compression == Compression::None => match self.count_elements()? {
                held if held == n => Ok(n),
                held => Err(self.broken_promise(n, held as u64)),
            },
            Some(n) => Ok(n),
            None => self.count_elements(),
        }
    }

    /// The error of a finished save whose files hold `held` elements where
    /// its metadata promises `n`.
    fn broken_promise(&self, n: usize, held: u64) -> Error {
        let why = if (n as u64) > held {
            "a file missing or cut between elements"
        } else {
            "more than promised: files from another save?"
        };
        Error::format(
            &self.path,
            format!("snapshot.metadata promises {n} elements, the snapshot files hold {held} ({why})"),
        )
    }

    /// Counts the elements in the snapshot files by stepping over their
    /// records (a record per component; data neither kept nor checked):
    /// plain files by seeking past each record's data, compressed ones by
    /// decompressing them (a full read, at every opening: Dataset.save
    /// records the count, so only an unfinished or foreign save pays it).
    /// An error names a file that ends inside a record or an element.
    pub fn count_elements(&self) -> Result<usize> {
        let components = self.spec.components.len().max(1) as u64;
        let mut elements = 0u64;
        for path in self.shards.iter().flatten() {
            let records = match self.compression {
                Compression::None => tfrecord::count_records(path)?,
                _ => {
                    let mut reader = open_snapshot(path, self.compression)?;
                    while reader.skip()? {}
                    reader.count()
                }
            };
            let (whole, part) = (records / components, records % components);
            if part != 0 {
                return Err(Error::format(
                    path,
                    format!(
                        "{whole} whole elements, then {part} of the next element's {components} components \
                         (truncated)"
                    ),
                ));
            }
            elements += whole;
        }
        Ok(elements as usize)
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

/// A record reader over one snapshot file, decompressing as it reads.
fn open_snapshot(path: &Path, compression: Compression) -> Result<RecordReader<Box<dyn Read + Send>>> {
    let f = BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| Error::io(path, e))?);
    let r: Box<dyn Read + Send> = match compression {
        Compression::None => Box::new(f),
        Compression::Gzip => Box::new(BufReader::new(flate2::read::GzDecoder::new(f))),
        Compression::Zlib => Box::new(BufReader::new(flate2::read::ZlibDecoder::new(f))),
    };
    Ok(RecordReader::new(r, path))
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
        self.reader = Some(open_snapshot(path, self.compression)?);
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
                // Where the metadata promised a count, the files must hold
                // it: a lost shard file otherwise passes for a shorter data set.
                return match self.dataset.element_count() {
                    Some(n) if n as u64 != self.produced => {
                        self.failed = true;
                        Some(Err(self.dataset.broken_promise(n, self.produced)))
                    }
                    _ => None,
                };
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
