//! The streaming half of inference: a range of a source read in chunks,
//! each chunk decoded and preprocessed in parallel, handed on in input
//! order with the objects that could not be prepared set apart. Memory holds
//! one chunk, whatever the size of the source; a bad object (missing or
//! corrupt file, wrong shape or bands) is a [`Failed`] row, not the end of
//! the run.

use crate::preprocess::Preprocess;
use rayon::prelude::*;
use std::ops::Range;
use tidalscope_core::Cutout;
use tidalscope_io::source::Source;

pub use tidalscope_io::source::meta_names;

/// An object ready for a model.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Record index within the source.
    pub index: usize,
    /// Record id.
    pub id: String,
    /// Its label, when the source has labels.
    pub label: Option<u8>,
    /// Its metadata (the source's metadata columns).
    pub meta: Vec<String>,
    /// The model's inference view of the preprocessed pixels (the centre
    /// `crop` × `crop`, [`Preprocess::apply_view`]): what the network reads.
    pub image: Cutout,
    /// Fraction of the image's pixels (all bands) that were not finite
    /// (NaN, ±inf) as read; they are 0 in `image`.
    pub non_finite: f64,
    /// The input bands of one value over all of `image` (the model's view)
    /// ([`Preprocess::constant_bands`]).
    pub constant_bands: Vec<String>,
}

/// The column of `predict`, `embed` and `evaluate` outputs that names each
/// object's bands of one value ([`Prepared::constant_bands`], joined by
/// `;`, empty where there are none).
pub const CONSTANT_COLUMN: &str = "constant_bands";

/// The column of `predict` and `embed` outputs that holds each object's
/// fraction of non-finite pixels ([`Prepared::non_finite`]).
pub const NON_FINITE_COLUMN: &str = "nonfinite_fraction";

impl Prepared {
    /// [`Prepared::non_finite`] as written to catalogues: exactly `0` when
    /// every pixel was finite.
    pub fn non_finite_text(&self) -> String {
        non_finite_text(self.non_finite)
    }

    /// [`Prepared::constant_bands`] as written to catalogues.
    pub fn constant_text(&self) -> String {
        constant_text(&self.constant_bands)
    }
}

/// A fraction of non-finite pixels as written to catalogues: exactly `0`
/// when every pixel was finite, else 6 decimals.
pub fn non_finite_text(fraction: f64) -> String {
    if fraction == 0.0 {
        "0".into()
    } else {
        format!("{fraction:.6}")
    }
}

/// A score as written to catalogues: the shortest decimal that reads back
/// to the same float32, so that no two scores the model told apart tie in
/// a table (rounded to 6 decimals, 1 − 5e-7 and 1 − 1e-7 both read 1) and
/// a threshold `evaluate` reports can be applied to its own `scores.csv`.
pub fn score_text(score: f32) -> String {
    format!("{score}")
}

/// Bands of one value as written to catalogues ([`CONSTANT_COLUMN`]):
/// joined by `;`, empty where there are none.
pub fn constant_text(bands: &[String]) -> String {
    bands.join(";")
}

/// The columns of an `errors.csv`: one row per [`Failed`] object.
pub const ERRORS_HEADER: [&str; 3] = ["id", "file", "reason"];

/// The columns of a scored catalogue (`predict`'s output, in the CLI and
/// in Python): id, label when the source has labels, score,
/// [`NON_FINITE_COLUMN`], [`CONSTANT_COLUMN`], then the source's metadata
/// columns, renamed where they clash ([`meta_names`]).
pub fn scores_header(labelled: bool, meta_columns: &[String]) -> Vec<String> {
    let mut header = vec!["id".to_string()];
    if labelled {
        header.push("label".into());
    }
    header.push("score".into());
    header.push(NON_FINITE_COLUMN.into());
    header.push(CONSTANT_COLUMN.into());
    let meta = meta_names(&header, meta_columns);
    header.extend(meta);
    header
}

impl Prepared {
    /// This object's row of a scored catalogue ([`scores_header`]), the
    /// score written by [`score_text`].
    pub fn scores_row(&self, labelled: bool, score: f32) -> Vec<String> {
        let mut row = vec![self.id.clone()];
        if labelled {
            row.push(self.label.map(|l| l.to_string()).unwrap_or_default());
        }
        row.push(score_text(score));
        row.push(self.non_finite_text());
        row.push(self.constant_text());
        row.extend(self.meta.iter().cloned());
        row
    }
}

/// An object that could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// Record id.
    pub id: String,
    /// The file it came from.
    pub file: String,
    /// Why.
    pub reason: String,
}

/// Objects of part `k` of `n` of a source of `len` objects: contiguous, sizes
/// differing by at most one, so the parts of `0..n` concatenate to the whole.
///
/// # Panics
/// If `k >= n`.
pub fn shard_range(len: usize, k: usize, n: usize) -> Range<usize> {
    assert!(k < n, "shard {k} of {n}");
    len * k / n..len * (k + 1) / n
}

/// Streams `range` of `source` in chunks of `chunk` records, decoding and
/// preprocessing each chunk in parallel; calls `f` with each chunk's good
/// objects and failures, both in input order.
///
/// # Errors
/// When the source itself cannot be read on (an object's own failure is a
/// [`Failed`], not an error), or when `f` fails.
pub fn stream_prepared<E, F>(
    source: &dyn Source,
    range: Range<usize>,
    preprocess: &Preprocess,
    chunk: usize,
    f: F,
) -> Result<(), E>
where
    E: From<tidalscope_io::Error>,
    F: FnMut(Vec<Prepared>, Vec<Failed>) -> Result<(), E>,
{
    stream_where(source, range, &|_| true, preprocess, chunk, f)
}

/// [`stream_prepared`] of the records at `indices` (ascending) alone: the
/// records between them are read past, not prepared (their pixels are not
/// loaded, except where a source loads several objects at once, as a
/// coadd reads each tile it passes).
///
/// # Errors
/// As [`stream_prepared`]; also when `indices` is not ascending.
pub fn stream_selected<E, F>(
    source: &dyn Source,
    indices: &[usize],
    preprocess: &Preprocess,
    chunk: usize,
    f: F,
) -> Result<(), E>
where
    E: From<tidalscope_io::Error>,
    F: FnMut(Vec<Prepared>, Vec<Failed>) -> Result<(), E>,
{
    let path = &source.info().path;
    if !indices.windows(2).all(|w| w[0] < w[1]) {
        return Err(tidalscope_io::Error::format(path, "selected records are not in ascending order").into());
    }
    let (Some(&first), Some(&last)) = (indices.first(), indices.last()) else {
        return Ok(());
    };
    let wanted: std::collections::HashSet<usize> = indices.iter().copied().collect();
    stream_where(source, first..last + 1, &|i| wanted.contains(&i), preprocess, chunk, f)
}

/// [`stream_prepared`] of the records of `range` that `keep` accepts.
fn stream_where<E, F>(
    source: &dyn Source,
    range: Range<usize>,
    keep: &(dyn Fn(usize) -> bool + Sync),
    preprocess: &Preprocess,
    chunk: usize,
    mut f: F,
) -> Result<(), E>
where
    E: From<tidalscope_io::Error>,
    F: FnMut(Vec<Prepared>, Vec<Failed>) -> Result<(), E>,
{
    // Bands named in another order than the model's reach their inputs.
    let reordered;
    let source: &dyn Source = match preprocess.band_order(source.info())? {
        Some(order) => {
            reordered = tidalscope_io::source::BandOrder::new(source, order);
            &reordered
        }
        None => source,
    };
    let mut records = source.records(range.start)?.take(range.len());
    loop {
        let mut batch = Vec::with_capacity(chunk.max(1));
        for rec in records.by_ref() {
            // A record error means the stream itself is unreadable from here.
            let rec = rec?;
            if keep(rec.index) {
                batch.push(rec);
            }
            if batch.len() >= chunk.max(1) {
                break;
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let results: Vec<Result<Prepared, Failed>> = batch
            .into_par_iter()
            .map(|r| {
                let (index, id, label, meta, file) = (r.index, r.id, r.label, r.meta, r.file);
                let fail = |reason: String| Failed { id: id.clone(), file: file.clone(), reason };
                let (image, bad, values) = preprocess.load_view(r.pixels).map_err(|e| fail(e.to_string()))?;
                let non_finite = bad as f64 / values.max(1) as f64;
                let constant_bands = preprocess.constant_bands(&image);
                Ok(Prepared { index, id: id.clone(), label, meta, image, non_finite, constant_bands })
            })
            .collect();
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for r in results {
            match r {
                Ok(p) => ok.push(p),
                Err(e) => bad.push(e),
            }
        }
        f(ok, bad)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_written_exactly() {
        for v in [0.5f32, 1.0 - 5e-7, 1.0 - 1e-7, 1.9e-7, 4.8e-10, 0.0, 1.0] {
            assert_eq!(score_text(v).parse::<f32>().unwrap().to_bits(), v.to_bits(), "{v}");
        }
        assert_ne!(score_text(1.0 - 5e-7), score_text(1.0 - 1e-7));
    }
    use crate::normalise::Normaliser;
    use crate::residual::Channels;
    use tidalscope_io::npy::NpyWriter;
    use tidalscope_io::source::{open, OpenOptions};

    /// Objects whose pixels all equal their index, except object 2, all NaN.
    fn numbered(dir: &std::path::Path) -> (Box<dyn Source>, Preprocess) {
        let p = dir.join("s.npy");
        let mut w = NpyWriter::create(&p, &[8, 4, 4, 1]).unwrap();
        for i in 0..8 {
            w.write(&[if i == 2 { f32::NAN } else { i as f32 }; 16]).unwrap();
        }
        w.finish().unwrap();
        let source = open(&p, &OpenOptions::default()).unwrap();
        let bands = source.info().bands.clone();
        let pre = Preprocess {
            bin: 1,
            crop: 4,
            normalisation: Normaliser::none(bands),
            channels: Channels::Image,
            centring: Default::default(),
        };
        (source, pre)
    }

    #[test]
    fn selected_records_alone_are_prepared_in_order_and_bad_ones_set_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (source, pre) = numbered(dir.path());
        let (mut seen, mut failed) = (Vec::new(), Vec::new());
        stream_selected(source.as_ref(), &[1, 2, 5, 6], &pre, 2, |ok, bad| -> Result<(), tidalscope_io::Error> {
            seen.extend(ok.iter().map(|p| (p.index, p.image.data()[0])));
            failed.extend(bad.into_iter().map(|b| b.id));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [(1, 1.0), (5, 5.0), (6, 6.0)]);
        assert_eq!(failed, ["2"]);
        let unordered = stream_selected(source.as_ref(), &[5, 1], &pre, 2, |_, _| Ok::<_, tidalscope_io::Error>(()));
        assert!(unordered.unwrap_err().to_string().contains("not in ascending order"));
        let mut calls = 0;
        stream_selected(source.as_ref(), &[], &pre, 2, |_, _| {
            calls += 1;
            Ok::<_, tidalscope_io::Error>(())
        })
        .unwrap();
        assert_eq!(calls, 0, "nothing selected, nothing read");
    }

    #[test]
    fn metadata_names_taken_by_the_table_get_a_suffix() {
        let own: Vec<String> = ["id", "score", "score_input"].map(String::from).to_vec();
        let meta: Vec<String> = ["ra", "score", "id", "ra"].map(String::from).to_vec();
        assert_eq!(meta_names(&own, &meta), ["ra", "score_input2", "id_input", "ra_input"]);
        assert_eq!(scores_header(false, &["score".to_string()]).last().unwrap(), "score_input");
    }
}
