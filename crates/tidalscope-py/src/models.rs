//! Trained models from Python: a classifier that scores images or a whole
//! catalogue, an encoder that embeds images. Both run the CLI's own
//! preprocessing and inference ([`Preprocess`], [`Predictor`]), so Python and
//! the command line give the same numbers for the same model and data.

use crate::arrays::{self, Batch};
use crate::{errors, parallel};
use numpy::ndarray::{Array2, Array4};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArray4};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use tidalscope_core::Cutout;
use tidalscope_data::preprocess::Preprocess;
use tidalscope_data::residual::Channels;
use tidalscope_data::stream::{
    scores_header, shard_range, stream_prepared, Failed, CONSTANT_COLUMN, NON_FINITE_COLUMN,
};
use tidalscope_io::source::{CoaddOptions, OpenOptions, Source, Tile};
use tidalscope_model::bundle::{ClassifierBundle, EncoderBundle};
use tidalscope_model::device::DeviceKind;
use tidalscope_model::infer::{InferError, Predictor};

/// Images converted, preprocessed and run through the network together:
/// bounds the memory of the copies whatever the batch size.
const CHUNK: usize = 256;

fn device(name: &str) -> PyResult<burn::prelude::Device> {
    let kind: DeviceKind = name.parse().map_err(errors::value)?;
    kind.device().map_err(errors::value)
}

/// `run` on every image of `batch`, `CHUNK` at a time: each chunk converted
/// and preprocessed in parallel, then handed to the network.
fn over_images<T>(
    batch: Batch<'_>,
    pre: &Preprocess,
    run: impl Fn(&[&Cutout]) -> Result<Vec<T>, InferError>,
) -> PyResult<Vec<T>> {
    let mut out = Vec::new();
    for start in (0..batch.n).step_by(CHUNK) {
        let end = (start + CHUNK).min(batch.n);
        let ready: Vec<Cutout> = (start..end)
            .into_par_iter()
            .map(|i| {
                let raw = batch.cutout(i)?;
                pre.apply_view(&raw).map(|(img, _)| img).map_err(|e| errors::preprocess(i, e))
            })
            .collect::<PyResult<_>>()?;
        let refs: Vec<&Cutout> = ready.iter().collect();
        out.extend(run(&refs).map_err(|e| errors::value(format!("images {start}..{end}: {e}")))?);
    }
    Ok(out)
}

/// What the network of a model with preprocessing `pre` takes for `images`:
/// float32 `[N, h, w, C]`, channels last, as the Keras model that
/// `export-keras` writes takes it.
fn network_input<'py>(
    py: Python<'py>,
    images: &Bound<'py, PyAny>,
    layout: Option<&str>,
    pre: &Preprocess,
) -> PyResult<Bound<'py, PyArray4<f32>>> {
    let array = arrays::float32(images, "images")?;
    let batch = arrays::batch(&array, layout)?;
    let n = batch.n;
    let planes = parallel::detached(py, || {
        over_images(batch, pre, |x| Ok(x.iter().map(|c| (c.shape(), channels_last(c))).collect()))
    })??;
    let [c, h, w] =
        planes.first().map_or([pre.input_bands().len() * pre.channels.factor(), pre.crop, pre.crop], |p| p.0);
    let values: Vec<f32> = planes.into_iter().flat_map(|(_, v)| v).collect();
    Ok(Array4::from_shape_vec((n, h, w, c), values).expect("n × h × w × c values").into_pyarray(py))
}

/// A cutout's planes as pixel-major values (`[h, w, c]`).
fn channels_last(c: &Cutout) -> Vec<f32> {
    let [bands, h, w] = c.shape();
    let mut out = vec![0f32; bands * h * w];
    for (b, plane) in c.data().chunks_exact(h * w).enumerate() {
        for (p, &v) in plane.iter().enumerate() {
            out[p * bands + b] = v;
        }
    }
    out
}

/// What a model expects of its images, for `repr` and the properties.
fn describe(pre: &Preprocess) -> String {
    // The bands are what a caller passes; the channels say what the network
    // makes of them.
    let channels = match pre.channels {
        Channels::Image => String::new(),
        c => format!(" (the network sees {}; {})", c.describe(), pre.centring.describe()),
    };
    format!("bands {:?}{channels}, binned {}×{}, {}×{} view", pre.input_bands(), pre.bin, pre.bin, pre.crop, pre.crop)
}

/// A trained classifier (a `finetune` or `import-keras` folder).
#[pyclass(module = "tidalscope", frozen)]
pub struct Classifier {
    // Boxed: the predictor's buffers are 64-byte aligned, more than Python
    // aligns the objects it allocates. Shared by every thread that calls
    // (it is Sync): no lock, so no thread waits on another.
    predictor: Box<Predictor>,
    preprocess: Preprocess,
    path: PathBuf,
}

/// Loads a classifier folder (written by `tidalscope finetune` or
/// `tidalscope import-keras`). `device` is "cpu" (default), "cuda" or
/// "cuda:N" (CUDA needs a build with the `cuda` feature).
#[pyfunction]
#[pyo3(signature = (path, device = "cpu"))]
pub fn load_classifier(py: Python<'_>, path: PathBuf, device: &str) -> PyResult<Classifier> {
    errors::require_exists(&path)?;
    let device = self::device(device)?;
    let bundle = py.detach(|| ClassifierBundle::load(&path, &device)).map_err(errors::bundle)?;
    let predictor = Predictor::classifier(&bundle.classifier, bundle.preprocess.crop, &device);
    Ok(Classifier { predictor: Box::new(predictor), preprocess: bundle.preprocess, path })
}

impl Classifier {
    /// The rows of `predict_catalog` (id, [label,] score, non-finite
    /// fraction, metadata) and the objects that could not be read.
    fn score_source(
        &self,
        source: &dyn Source,
        range: std::ops::Range<usize>,
        raise: bool,
        labelled: bool,
    ) -> PyResult<(Vec<Vec<String>>, Vec<Failed>)> {
        let path = &source.info().path;
        let (mut rows, mut failed) = (Vec::new(), Vec::new());
        stream_prepared(source, range, &self.preprocess, CHUNK, |ok, bad| -> Result<(), StreamError> {
            if raise {
                if let Some(b) = bad.first() {
                    return Err(errors::value(format!("object {} ({}): {}", b.id, b.file, b.reason)).into());
                }
            }
            failed.extend(bad);
            let images: Vec<&Cutout> = ok.iter().map(|p| &p.image).collect();
            let scores =
                self.predictor.scores(&images).map_err(|e| errors::value(format!("{}: {e}", path.display())))?;
            rows.extend(ok.iter().zip(scores).map(|(p, s)| p.scores_row(labelled, s)));
            Ok(())
        })
        .map_err(|e| match e {
            StreamError::Io(e) => errors::io(e),
            StreamError::Py(e) => e,
        })?;
        Ok((rows, failed))
    }
}

#[pymethods]
impl Classifier {
    /// Tidal-feature probabilities of images: an array `[N, H, W, C]` or
    /// `[N, C, H, W]` (or one image of three axes) of any real dtype, byte
    /// order and strides, in the model's bands and flux units, as the
    /// command line reads them. `layout` is "auto" (default: channels last
    /// unless only the first image axis is small enough to be bands), "hwc"
    /// or "chw". Returns float32 `[N]`. Non-finite pixels are set to 0 after
    /// normalisation, as in `tidalscope predict`; an image with a band that
    /// has no finite pixel raises `ValueError`.
    #[pyo3(signature = (images, layout = None))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        layout: Option<&str>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let array = arrays::float32(images, "images")?;
        let batch = arrays::batch(&array, layout)?;
        let scores = parallel::detached(py, || over_images(batch, &self.preprocess, |x| self.predictor.scores(x)))??;
        Ok(scores.into_pyarray(py))
    }

    /// What the network takes for `images` (as for `predict`): each image
    /// binned, cut to the model's view, its residual channels made when the
    /// model has them, normalised (non-finite pixels 0), as float32
    /// `[N, h, w, C]` channels last — the input of the Keras model that
    /// `tidalscope export-keras` writes, and what `predict` scores.
    #[pyo3(signature = (images, layout = None))]
    fn preprocess<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        layout: Option<&str>,
    ) -> PyResult<Bound<'py, PyArray4<f32>>> {
        network_input(py, images, layout, &self.preprocess)
    }

    /// Names of the network's input channels, in order (`preprocess`'s
    /// last axis): the bands, then `<band>_residual` and `<band>_mirror`
    /// where the model has them (a model of residuals only: just
    /// `<band>_residual`).
    #[getter]
    fn input_channels(&self) -> Vec<String> {
        self.preprocess.normalisation.bands.clone()
    }

    /// Scores every object of a catalogue or dataset — any input
    /// `tidalscope predict --data` takes — and returns its table as
    /// `{column: ndarray}`: id, label (when the data has labels), score,
    /// nonfinite_fraction (of each image's pixels, set to 0 before scoring),
    /// constant_bands (bands of one value, no data: see the README's NaN
    /// rule) and the data's metadata columns, in input order. `shard=(k, n)` scores
    /// part k of n, as `--shard k/n`. Scores are the CLI's catalogue values
    /// (float32, written exactly), so both give the same table. Objects that cannot be
    /// read are left out with a warning that counts them and names the first
    /// (`errors="warn"`), or raise `ValueError` naming the object
    /// (`errors="raise"`). `coadd=` cuts each object of a catalogue of
    /// RA/Dec from coadd images, as `--coadd` (see `read`).
    #[pyo3(signature = (path, shard = None, format = None, layout = None, image_key = "image", errors = "warn",
                        coadd = None, cutout_size = 128, ra_column = "ra", dec_column = "dec"))]
    #[allow(clippy::too_many_arguments)]
    fn predict_catalog<'py>(
        &self,
        py: Python<'py>,
        path: PathBuf,
        shard: Option<(usize, usize)>,
        format: Option<&str>,
        layout: Option<&str>,
        image_key: &str,
        errors: &str,
        coadd: Option<&Bound<'py, PyAny>>,
        cutout_size: usize,
        ra_column: &str,
        dec_column: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let raise = match errors {
            "warn" => false,
            "raise" => true,
            other => return Err(errors::value(format!("errors must be \"warn\" or \"raise\", got {other:?}"))),
        };
        if let Some((k, n)) = shard {
            if n == 0 || k >= n {
                return Err(errors::value(format!("shard ({k}, {n}): need 0 ≤ k < n")));
            }
        }
        let coadd = coadd_options(coadd, cutout_size, ra_column, dec_column)?;
        let source = open(&path, format, layout, image_key, coadd)?;
        let info = source.info().clone();
        let range = shard.map_or(0..info.len, |(k, n)| shard_range(info.len, k, n));
        let (rows, failed) =
            parallel::detached(py, || self.score_source(source.as_ref(), range, raise, info.labelled))??;
        if !failed.is_empty() {
            let first = &failed[0];
            let message = format!(
                "{} of {} objects could not be read and are left out; the first: object {} ({}): {}",
                failed.len(),
                rows.len() + failed.len(),
                first.id,
                first.file,
                first.reason
            );
            let warnings = py.import("warnings")?;
            warnings.call_method1("warn", (message,))?;
        }
        let columns = scores_header(info.labelled, &info.meta_columns);
        // Band names stay text (the table would read "1" as a number).
        let at = columns.iter().position(|c| c == CONSTANT_COLUMN);
        let constant: Vec<String> = at.map(|k| rows.iter().map(|r| r[k].clone()).collect()).unwrap_or_default();
        let table = arrays::table(py, &columns, rows)?;
        // A fraction, even when every object's is 0.
        if let Some(col) = table.get_item(NON_FINITE_COLUMN)? {
            table.set_item(NON_FINITE_COLUMN, col.call_method1("astype", ("float64",))?)?;
        }
        if at.is_some() {
            table.set_item(CONSTANT_COLUMN, arrays::text_column(py, constant)?)?;
        }
        Ok(table)
    }

    /// Bands the model expects, in channel order.
    #[getter]
    fn bands(&self) -> Vec<String> {
        self.preprocess.input_bands()
    }

    fn __repr__(&self) -> String {
        format!("Classifier({:?}; {})", self.path.display().to_string(), describe(&self.preprocess))
    }
}

/// A trained encoder (a `pretrain` folder, or the encoder of a classifier).
#[pyclass(module = "tidalscope", frozen)]
pub struct Encoder {
    // Boxed and shared, as the classifier's.
    predictor: Box<Predictor>,
    preprocess: Preprocess,
    dim: usize,
    path: PathBuf,
}

/// Loads an encoder folder (written by `tidalscope pretrain`), or the
/// encoder inside a classifier folder, as `tidalscope embed --encoder`
/// does. `device` as for [`load_classifier`].
#[pyfunction]
#[pyo3(signature = (path, device = "cpu"))]
pub fn load_encoder(py: Python<'_>, path: PathBuf, device: &str) -> PyResult<Encoder> {
    errors::require_exists(&path)?;
    let device = self::device(device)?;
    let (encoder, preprocess) = py.detach(|| EncoderBundle::load_encoder_of(&path, &device)).map_err(errors::bundle)?;
    let dim = encoder.dense2.weight.dims()[1];
    let predictor = Predictor::encoder(&encoder, preprocess.crop, &device);
    Ok(Encoder { predictor: Box::new(predictor), preprocess, dim, path })
}

#[pymethods]
impl Encoder {
    /// Representations of images (see `Classifier.predict` for what
    /// `images` and `layout` may be): float32 `[N, D]`, the same numbers
    /// `tidalscope embed` writes to embeddings.npy.
    #[pyo3(signature = (images, layout = None))]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        layout: Option<&str>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let array = arrays::float32(images, "images")?;
        let batch = arrays::batch(&array, layout)?;
        let reps = parallel::detached(py, || over_images(batch, &self.preprocess, |x| self.predictor.embed(x)))??;
        let n = reps.len() / self.dim;
        Ok(Array2::from_shape_vec((n, self.dim), reps).expect("n × dim values").into_pyarray(py))
    }

    /// What the network takes for `images`, as `Classifier.preprocess`.
    #[pyo3(signature = (images, layout = None))]
    fn preprocess<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        layout: Option<&str>,
    ) -> PyResult<Bound<'py, PyArray4<f32>>> {
        network_input(py, images, layout, &self.preprocess)
    }

    /// Names of the network's input channels, as `Classifier.input_channels`.
    #[getter]
    fn input_channels(&self) -> Vec<String> {
        self.preprocess.normalisation.bands.clone()
    }

    /// Length of a representation.
    #[getter]
    fn dim(&self) -> usize {
        self.dim
    }

    /// Bands the encoder expects, in channel order.
    #[getter]
    fn bands(&self) -> Vec<String> {
        self.preprocess.input_bands()
    }

    fn __repr__(&self) -> String {
        format!("Encoder({:?}; {}, {}-d)", self.path.display().to_string(), describe(&self.preprocess), self.dim)
    }
}

/// Failures while streaming a source: the source's own, or the consumer's.
enum StreamError {
    Io(tidalscope_io::Error),
    Py(PyErr),
}

impl From<tidalscope_io::Error> for StreamError {
    fn from(e: tidalscope_io::Error) -> Self {
        StreamError::Io(e)
    }
}

impl From<PyErr> for StreamError {
    fn from(e: PyErr) -> Self {
        StreamError::Py(e)
    }
}

/// Opens a dataset as the command line would (`--format`, `--layout`,
/// `--image-key`, `--coadd`).
pub fn open(
    path: &Path,
    format: Option<&str>,
    layout: Option<&str>,
    image_key: &str,
    coadd: Option<CoaddOptions>,
) -> PyResult<Box<dyn Source>> {
    errors::require_exists(path)?;
    let opts = OpenOptions {
        format: format.map(str::parse).transpose().map_err(errors::value)?,
        layout: arrays::layout(layout)?,
        image_key: image_key.to_string(),
        coadd,
        ..OpenOptions::default()
    };
    tidalscope_io::source::open(path, &opts).map_err(errors::io)
}

/// The `coadd=` argument: `None`; one tile as `{band: file}`; a list of
/// such tiles; or the path of a tile list CSV (`tile,band,file`).
pub fn coadd_options(
    coadd: Option<&Bound<'_, PyAny>>,
    cutout_size: usize,
    ra_column: &str,
    dec_column: &str,
) -> PyResult<Option<CoaddOptions>> {
    let Some(c) = coadd.filter(|c| !c.is_none()) else { return Ok(None) };
    let tile = |d: &Bound<'_, PyDict>, k: usize| -> PyResult<Tile> {
        let bands = d
            .iter()
            .map(|(b, f)| Ok((b.extract::<String>()?, f.extract::<PathBuf>()?)))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Tile { name: format!("tile{k}"), bands })
    };
    // Tiles given as arguments are the caller's values (ValueError); a tile
    // list is a file (its errors as any file's).
    let given = |tiles: Vec<Tile>| {
        CoaddOptions::new(tiles, cutout_size, ra_column, dec_column).map(Some).map_err(|e| errors::value(e.to_string()))
    };
    if let Ok(d) = c.cast::<PyDict>() {
        given(vec![tile(d, 0)?])
    } else if let Ok(list) = c.cast::<PyList>() {
        let tiles = list
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let d = t.cast::<PyDict>().map_err(|_| errors::value("coadd: a list of {band: file} dicts"))?;
                tile(d, k)
            })
            .collect::<PyResult<Vec<_>>>()?;
        given(tiles)
    } else if let Ok(p) = c.extract::<PathBuf>() {
        errors::require_exists(&p)?;
        CoaddOptions::parse(&[p.display().to_string()], cutout_size, ra_column, dec_column)
            .map(Some)
            .map_err(errors::io)
    } else {
        Err(errors::value("coadd: {band: file}, a list of them, or the path of a tile list CSV"))
    }
}
