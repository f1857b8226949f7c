//! Reading and writing the formats survey astronomers use: NumPy `.npy`,
//! FITS (including the HSC cutout-service layout) and PNG, every write
//! atomic ([`atomic::AtomicFile`]): a crash never leaves a half-written file
//! where a good one was.
//!
//! ```
//! use tidalscope_io::npy::{read_f32, NpyWriter};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("x.npy");
//! let mut w = NpyWriter::create(&path, &[2, 3]).unwrap();
//! w.write(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
//! w.finish().unwrap();
//! let (shape, data) = read_f32(&path).unwrap();
//! assert_eq!(shape, vec![2, 3]);
//! assert_eq!(data[5], 6.0);
//! ```
#![deny(missing_docs)]

pub mod atomic;
pub mod checksum;
pub mod csv;
pub mod embeddings;
mod error;
pub mod fits;
pub mod fits_compressed;
pub mod fits_table;
pub mod fuzzing;
pub mod keras;
pub mod npy;
pub mod parquet_table;
pub mod png;
pub mod protobuf;
pub mod source;
pub mod tensor;
pub mod tfdata;
pub mod tfrecord;
pub mod wcs;

pub use error::{Error, Result};
