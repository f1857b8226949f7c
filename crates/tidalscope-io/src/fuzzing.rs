//! Entry points for fuzzing the parsers (tf.data, FITS, npy, Keras, Parquet) on in-memory bytes: each must
//! return (an error is fine) for any input, never panic or hang. Used by
//! the cargo-fuzz targets in `fuzz/` and by the stable mutation fuzzer
//! `examples/fuzz_parsers.rs` (see `scripts/fuzz.sh`).

use std::io::Cursor;
use std::path::Path;

/// tf.data: TFRecord framing of a snapshot, each record as a TensorProto,
/// and the whole input as a dataset spec and as snapshot metadata.
pub fn tfdata(data: &[u8]) {
    let path = Path::new("fuzz.snapshot");
    let _ = crate::tfdata::ElementSpec::parse(data);
    let _ = crate::tfdata::Metadata::parse(data);
    let _ = crate::tfdata::detect_compression(data);
    let mut r = crate::tfrecord::RecordReader::new(Cursor::new(data), path);
    let mut buf = Vec::new();
    while let Ok(true) = r.next_into(&mut buf) {
        if let Ok(t) = crate::tfdata::Tensor::from_proto(&buf) {
            let _ = t.to_f32();
            let _ = t.to_text();
        }
    }
}

/// FITS: every header, and the first values of every image HDU.
pub fn fits(data: &[u8]) {
    let path = Path::new("fuzz.fits");
    let mut c = Cursor::new(data);
    if let Ok(hdus) = crate::fits::scan_from(&mut c, data.len() as u64, path) {
        for h in hdus.iter().filter(|h| h.is_image) {
            let n = h.len().min(4096);
            let _ = crate::fits::read_values_from(&mut c, path, h, 0, n);
        }
    }
}

/// NumPy: the header, and the data it announces.
pub fn npy(data: &[u8]) {
    let path = Path::new("fuzz.npy");
    let mut c = Cursor::new(data);
    if let Ok(h) = crate::npy::read_header(&mut c, path) {
        if let Ok(n) = h.element_count(path) {
            let start = (h.data_offset as usize).min(data.len());
            let avail = (data.len() - start) / h.dtype.size();
            let n = n.min(avail).min(1 << 16);
            let mut out = vec![0f32; n];
            crate::npy::decode_into(&data[start..start + n * h.dtype.size()], h.dtype, h.big_endian, &mut out);
        }
    }
}

/// Keras SavedModel metadata: the input as a checkpoint index (LevelDB
/// table), as a checkpoint object graph and as `keras_metadata.pb`.
pub fn keras(data: &[u8]) {
    let _ = crate::keras::Bundle::from_index(data, Path::new("fuzz/variables"));
    let _ = crate::keras::ObjectGraph::parse(data);
    let _ = crate::keras::parse_metadata(data);
}

/// Parquet: the footer, the schema and every row of the scalar columns.
pub fn parquet(data: &[u8]) {
    let _ = crate::parquet_table::read_text_from(bytes::Bytes::copy_from_slice(data), Path::new("fuzz.parquet"));
}
