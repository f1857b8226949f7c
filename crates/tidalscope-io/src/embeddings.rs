//! The embeddings folder that `embed` writes and `search` (and anything
//! else: NumPy, pandas) reads:
//!
//! * `embeddings.npy` — float32 `[N, D]`, one representation per object;
//! * `ids.csv` — `index, id, label`, the columns the writer is given
//!   (`embed`'s: `nonfinite_fraction`, `constant_bands`, then the source's
//!   metadata), one row per line of the array, in the same order;
//! * `embedding.json` — [`EmbeddingInfo`]: the encoder and data it came
//!   from (so a query image can be embedded the same way), N and D.
//!
//! Every file is written atomically; the array is streamed through a
//! scratch file (its header needs the final count), so memory stays flat
//! whatever N.

use crate::csv::CsvWriter;
use crate::error::{Error, Result};
use crate::source::Catalog;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The array's file name.
pub const VECTORS: &str = "embeddings.npy";
/// The row table's file name.
pub const IDS: &str = "ids.csv";
/// The description's file name.
pub const INFO: &str = "embedding.json";

/// What an embeddings folder records about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingInfo {
    /// The encoder (or classifier) folder that made the vectors.
    pub encoder: PathBuf,
    /// The data embedded.
    pub data: PathBuf,
    /// How the data was read: format (None: recognised).
    pub format: Option<String>,
    /// Array layout.
    pub layout: String,
    /// tf.data image key.
    pub image_key: String,
    /// tf.data cycle length.
    pub cycle_length: Option<usize>,
    /// The coadd tiles the objects were cut from, as `--coadd` values with
    /// absolute paths (empty when the data held the images).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coadd: Vec<String>,
    /// `--cutout-size`, `--ra-column` and `--dec-column` with coadds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coadd_cut: Option<CoaddCut>,
    /// `K/N` when one shard of the data was embedded.
    pub shard: Option<String>,
    /// SHA-256 of the encoder's files (empty: not recorded, older releases).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub encoder_sha256: String,
    /// Objects in the whole data (every shard's), when recorded (0: not).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub source_len: usize,
    /// N, filled in by [`EmbeddingsWriter::finish`].
    pub count: usize,
    /// D, filled in by [`EmbeddingsWriter::finish`].
    pub dim: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// How objects were cut from coadds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoaddCut {
    /// Cutout side in pixels.
    pub size: usize,
    /// RA column.
    pub ra_column: String,
    /// Dec column.
    pub dec_column: String,
}

/// One object's row of `ids.csv`.
#[derive(Debug, Clone, Copy)]
pub struct IdRow<'a> {
    /// Record index in the source.
    pub index: usize,
    /// Record id.
    pub id: &'a str,
    /// Label, when known.
    pub label: Option<u8>,
    /// Metadata values.
    pub meta: &'a [String],
}

/// Writes an embeddings folder batch by batch.
pub struct EmbeddingsWriter {
    dir: PathBuf,
    ids: Option<CsvWriter>,
    raw_path: PathBuf,
    raw: Option<std::io::BufWriter<std::fs::File>>,
    rows: usize,
    dim: usize,
}

/// The first columns of `ids.csv`, before the writer's `meta_columns`.
pub const ID_COLUMNS: [&str; 3] = ["index", "id", "label"];

impl EmbeddingsWriter {
    /// Starts a folder `dir` (created when missing) for objects with
    /// `meta_columns` (after [`ID_COLUMNS`]).
    pub fn create(dir: &Path, meta_columns: &[String]) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut header: Vec<String> = ID_COLUMNS.map(String::from).to_vec();
        header.extend(meta_columns.iter().cloned());
        let ids = CsvWriter::create(&dir.join(IDS), &header)?;
        let raw_path = dir.join(format!(".embeddings.raw{}", std::process::id()));
        let file = std::fs::File::create(&raw_path).map_err(|e| Error::io(&raw_path, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            ids: Some(ids),
            raw_path,
            raw: Some(std::io::BufWriter::new(file)),
            rows: 0,
            dim: 0,
        })
    }

    /// Appends `vectors` (`[objects.len() × D]`, row-major) and their rows.
    ///
    /// # Errors
    /// On a write failure, or when D differs from an earlier batch's.
    pub fn push(&mut self, vectors: &[f32], objects: &[IdRow]) -> Result<()> {
        if objects.is_empty() {
            return Ok(());
        }
        let dim = vectors.len() / objects.len();
        if dim == 0 || dim * objects.len() != vectors.len() || (self.dim != 0 && dim != self.dim) {
            return Err(Error::format(
                &self.raw_path,
                format!("{} numbers for {} objects (earlier rows had {} each)", vectors.len(), objects.len(), self.dim),
            ));
        }
        self.dim = dim;
        let raw = self.raw.as_mut().expect("open until finish");
        for v in vectors {
            raw.write_all(&v.to_le_bytes()).map_err(|e| Error::io(&self.raw_path, e))?;
        }
        for o in objects {
            let mut row =
                vec![o.index.to_string(), o.id.to_string(), o.label.map(|l| l.to_string()).unwrap_or_default()];
            row.extend(o.meta.iter().cloned());
            self.ids.as_mut().expect("open until finish").row(&row)?;
        }
        self.rows += objects.len();
        Ok(())
    }

    /// Writes `embeddings.npy`, `ids.csv` and `embedding.json` (with N and
    /// D filled in; D = `empty_dim` when nothing was pushed) and returns
    /// the description written.
    pub fn finish(mut self, info: EmbeddingInfo, empty_dim: usize) -> Result<EmbeddingInfo> {
        let mut raw = self.raw.take().expect("open until finish");
        raw.flush().map_err(|e| Error::io(&self.raw_path, e))?;
        drop(raw);
        let dim = if self.dim == 0 { empty_dim } else { self.dim };
        let mut npy = crate::npy::NpyWriter::create(&self.dir.join(VECTORS), &[self.rows, dim])?;
        let mut f = std::fs::File::open(&self.raw_path).map_err(|e| Error::io(&self.raw_path, e))?;
        let mut remaining = self.rows * dim;
        let mut buf = vec![0u8; dim.max(1) * 4 * 1024];
        let mut vals = Vec::with_capacity(buf.len() / 4);
        while remaining > 0 {
            let m = remaining.min(buf.len() / 4);
            f.read_exact(&mut buf[..4 * m]).map_err(|e| Error::io(&self.raw_path, e))?;
            vals.clear();
            vals.extend(buf[..4 * m].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))));
            npy.write(&vals)?;
            remaining -= m;
        }
        npy.finish()?;
        self.ids.take().expect("open until finish").finish()?;
        let info = EmbeddingInfo { count: self.rows, dim, ..info };
        let text = serde_json::to_string_pretty(&info).expect("serialisable");
        crate::atomic::write(&self.dir.join(INFO), text.as_bytes())?;
        Ok(info)
    }
}

impl Drop for EmbeddingsWriter {
    fn drop(&mut self) {
        // The scratch file never outlives the writer, finished or not.
        let _ = std::fs::remove_file(&self.raw_path);
    }
}

/// An embeddings folder read back.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// Its description.
    pub info: EmbeddingInfo,
    /// D.
    pub dim: usize,
    /// `[N × D]`, row-major.
    pub vectors: Vec<f32>,
    /// `ids.csv`, one row per vector.
    pub ids: Catalog,
}

impl Embeddings {
    /// Reads the folder `dir`, checking that its parts agree.
    pub fn read(dir: &Path) -> Result<Self> {
        let info_path = dir.join(INFO);
        let text = std::fs::read_to_string(&info_path)
            .map_err(|e| Error::format(&info_path, format!("{} is not an embed folder: {e}", dir.display())))?;
        let info: EmbeddingInfo = serde_json::from_str(&text).map_err(|e| Error::format(&info_path, e.to_string()))?;
        let npy = dir.join(VECTORS);
        let (shape, vectors) = crate::npy::read_f32(&npy)?;
        if shape.len() != 2 || shape[1] == 0 {
            return Err(Error::format(&npy, format!("expected [N, D] embeddings with D ≥ 1, got {shape:?}")));
        }
        let ids = Catalog::read(&dir.join(IDS))?;
        if ids.rows.len() != shape[0] {
            return Err(Error::format(
                &dir.join(IDS),
                format!("{} rows for {} embeddings in {VECTORS}", ids.rows.len(), shape[0]),
            ));
        }
        Ok(Self { info, dim: shape[1], vectors, ids })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> EmbeddingInfo {
        EmbeddingInfo {
            encoder: "enc".into(),
            data: "data".into(),
            format: None,
            layout: "auto".into(),
            image_key: "image".into(),
            coadd: Vec::new(),
            coadd_cut: None,
            cycle_length: None,
            shard: Some("1/4".into()),
            encoder_sha256: String::new(),
            source_len: 0,
            count: 0,
            dim: 0,
        }
    }

    #[test]
    fn a_folder_written_in_batches_reads_back_whole_and_leaves_no_scratch_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("emb");
        let meta = vec!["z".to_string()];
        let mut w = EmbeddingsWriter::create(&out, &meta).unwrap();
        let m1 = vec!["0.1".to_string()];
        let m2 = vec!["0.2".to_string()];
        w.push(
            &[1.0, 2.0, 3.0, 4.0],
            &[
                IdRow { index: 0, id: "a", label: Some(1), meta: &m1 },
                IdRow { index: 2, id: "c", label: None, meta: &m2 },
            ],
        )
        .unwrap();
        w.push(&[5.0, 6.0], &[IdRow { index: 3, id: "d", label: Some(0), meta: &m1 }]).unwrap();
        let err = w.push(&[1.0, 2.0, 3.0], &[IdRow { index: 4, id: "e", label: None, meta: &m1 }]).unwrap_err();
        assert!(err.to_string().contains("3 numbers for 1 objects"), "{err}");
        let written = w.finish(info(), 128).unwrap();
        assert_eq!((written.count, written.dim), (3, 2));
        let e = Embeddings::read(&out).unwrap();
        assert_eq!(e.info, written);
        assert_eq!(e.vectors, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(e.ids.columns, ["index", "id", "label", "z"]);
        assert_eq!(e.ids.rows[1].fields, ["2", "c", "", "0.2"]);
        let names: Vec<String> =
            std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn an_empty_folder_has_the_given_width_and_a_mismatched_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let w = EmbeddingsWriter::create(dir.path(), &[]).unwrap();
        assert_eq!(w.finish(info(), 128).unwrap().dim, 128);
        assert_eq!(Embeddings::read(dir.path()).unwrap().vectors.len(), 0);
        crate::csv::CsvWriter::create(&dir.path().join(IDS), &["index", "id", "label"])
            .and_then(|mut c| c.row(["0", "x", ""]).and_then(|_| c.finish()))
            .unwrap();
        let err = Embeddings::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("ids.csv") && err.contains("1 rows for 0 embeddings"), "{err}");
    }
}
