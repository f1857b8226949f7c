//! Data from Python: simulated labelled cutouts, any dataset the command
//! line reads, colour composites to look at, and similarity search over
//! embeddings.

use crate::{arrays, errors, models, parallel};
use numpy::ndarray::{Array1, Array2, Array3, Array4};
use numpy::{IntoPyArray, PyArray3, PyArray4, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rayon::prelude::*;
use std::path::PathBuf;
use tidalscope_core::Cutout;
use tidalscope_eval::search::{normalise_rows, top_k};
use tidalscope_sim::scene::Truth;
use tidalscope_sim::{SimConfig, Simulator};

/// Images `[N, size, size, 5]` (float32, g r i z y, coadd flux units, the
/// layout of `tidalscope simulate`'s images.npy) and their catalogue (the
/// columns of its catalog.csv), bit for bit what the command line makes
/// for the same settings and seed.
#[pyfunction]
#[pyo3(signature = (n, survey = "hsc-ud", seed = 1, size = 128, tidal_fraction = 0.3, near_miss_fraction = 0.25, companion_probability = 0.15, crowding = 1.0, host_size = 1.0, feature_contrast = 1.0, sky_residual = 1.0))]
#[allow(clippy::too_many_arguments)]
pub fn simulate<'py>(
    py: Python<'py>,
    n: usize,
    survey: &str,
    seed: u64,
    size: usize,
    tidal_fraction: f64,
    near_miss_fraction: f64,
    companion_probability: f64,
    crowding: f64,
    host_size: f64,
    feature_contrast: f64,
    sky_residual: f64,
) -> PyResult<(Bound<'py, PyArray4<f32>>, Bound<'py, PyDict>)> {
    if n == 0 {
        return Err(errors::value("n must be at least 1"));
    }
    let config = SimConfig {
        survey: survey.parse().map_err(errors::value)?,
        size,
        tidal_fraction,
        near_miss_fraction,
        companion_probability,
        crowding,
        host_size,
        feature_contrast,
        sky_residual,
        seed,
    };
    let sim = Simulator::new(config, n).map_err(errors::value)?;
    let per = size * size * 5;
    let mut pixels: Vec<f32> = Vec::new();
    n.checked_mul(per).and_then(|len| pixels.try_reserve_exact(len).ok()).ok_or_else(|| {
        pyo3::exceptions::PyMemoryError::new_err(format!(
            "{n} cutouts of {size}×{size}×5 float32 need {:.1} GB; simulate fewer at a time",
            n as f64 * per as f64 * 4e-9
        ))
    })?;
    let (pixels, rows) = parallel::detached(py, || {
        pixels.resize(n * per, 0.0);
        let rows: Vec<Vec<String>> = pixels
            .par_chunks_mut(per)
            .enumerate()
            .map_init(
                || sim.renderer(),
                |renderer, (id, out)| {
                    let mock = sim.simulate(id, renderer);
                    mock.image.write_hwc(out);
                    mock.truth.csv_fields()
                },
            )
            .collect();
        (pixels, rows)
    })?;
    let images = Array4::from_shape_vec((n, size, size, 5), pixels).expect("n × size × size × 5 values");
    let columns: Vec<String> = Truth::CSV_COLUMNS.iter().map(|s| s.to_string()).collect();
    Ok((images.into_pyarray(py), arrays::table(py, &columns, rows)?))
}

/// Every image of a dataset — any input the command line reads: a
/// simulate folder, a catalogue CSV, FITS, .npy/.npz, PNG/JPEG, a folder
/// of them, the published TensorFlow datasets — as float32 `[N, H, W, C]`
/// with its catalogue (id, label when known, metadata columns). All images
/// must share one shape. Pixels are as stored: no normalisation; NaN stays
/// NaN. With `coadd=` (one tile as `{band: file}`, a list of tiles, or a
/// tile list CSV), `path` is a catalogue of RA/Dec and each object is cut
/// `cutout_size` pixels wide from the coadd images through their WCS, as
/// `--coadd` does (NaN off the image; objects off every tile raise).
#[pyfunction]
#[pyo3(signature = (path, format = None, layout = None, image_key = "image", coadd = None, cutout_size = 128,
                    ra_column = "ra", dec_column = "dec"))]
#[allow(clippy::too_many_arguments)]
pub fn read<'py>(
    py: Python<'py>,
    path: PathBuf,
    format: Option<&str>,
    layout: Option<&str>,
    image_key: &str,
    coadd: Option<&Bound<'py, PyAny>>,
    cutout_size: usize,
    ra_column: &str,
    dec_column: &str,
) -> PyResult<(Bound<'py, PyArray4<f32>>, Bound<'py, PyDict>)> {
    let coadd = models::coadd_options(coadd, cutout_size, ra_column, dec_column)?;
    let source = models::open(&path, format, layout, image_key, coadd)?;
    let info = source.info().clone();
    let (shape, pixels, rows) = parallel::detached(py, || -> PyResult<_> {
        let mut shape: Option<[usize; 3]> = None;
        let (mut pixels, mut rows) = (Vec::new(), Vec::new());
        let mut records = source.records(0).map_err(errors::io)?;
        loop {
            let chunk: Vec<_> = records.by_ref().take(256).collect::<Result<_, _>>().map_err(errors::io)?;
            if chunk.is_empty() {
                break;
            }
            let decoded: Vec<PyResult<(Cutout, Vec<String>)>> = chunk
                .into_par_iter()
                .map(|r| {
                    let (id, file) = (r.id.clone(), r.file.clone());
                    let img = r.pixels.load().map_err(|e| errors::io_in(e, &id, &file))?;
                    let mut row = vec![r.id];
                    if info.labelled {
                        row.push(r.label.map(|l| l.to_string()).unwrap_or_default());
                    }
                    row.extend(r.meta);
                    Ok((img, row))
                })
                .collect();
            for d in decoded {
                let (img, row) = d?;
                let s = *shape.get_or_insert(img.shape());
                if img.shape() != s {
                    return Err(errors::value(format!(
                        "{}: object {} is {:?} (bands, height, width), the first was {s:?}; read needs one shape",
                        path.display(),
                        row[0],
                        img.shape()
                    )));
                }
                let start = pixels.len();
                pixels.resize(start + img.data().len(), 0.0);
                img.write_hwc(&mut pixels[start..]);
                rows.push(row);
            }
        }
        Ok((shape.unwrap_or([info.bands.len().max(1), 0, 0]), pixels, rows))
    })??;
    let [c, h, w] = shape;
    let images = Array4::from_shape_vec((rows.len(), h, w, c), pixels).expect("n × h × w × c values");
    let mut columns = vec!["id".to_string()];
    if info.labelled {
        columns.push("label".into());
    }
    let meta = tidalscope_data::stream::meta_names(&columns, &info.meta_columns);
    columns.extend(meta);
    Ok((images.into_pyarray(py), arrays::table(py, &columns, rows)?))
}

/// A Lupton et al. (2004) asinh colour composite of one image, as the
/// command line's previews: red, green, blue from bands i, r, g of a
/// five-band g r i z y image (the first three bands, reversed, otherwise;
/// grey for one band). `stretch` defaults to 8 × the image's sky noise
/// (the sigma-clipped MAD of its outer eighth, so faint structure shows the
/// same beside a large host as beside a small one), `q` to 10. Returns uint8 `[H, W, 3]` with the
/// image's last row first: north up under matplotlib's default `imshow`
/// for images stored in FITS row order.
#[pyfunction]
#[pyo3(signature = (image, layout = None, stretch = None, q = 10.0))]
pub fn lupton_rgb<'py>(
    py: Python<'py>,
    image: &Bound<'py, PyAny>,
    layout: Option<&str>,
    stretch: Option<f64>,
    q: f64,
) -> PyResult<Bound<'py, PyArray3<u8>>> {
    let array = arrays::float32(image, "image")?;
    if array.ndim() != 3 {
        return Err(errors::value(format!("image must have 3 axes (one image), got shape {:?}", array.shape())));
    }
    let batch = arrays::batch(&array, layout)?;
    let img = batch.cutout(0)?;
    let positive = |x: f64| x > 0.0 && x.is_finite();
    if !positive(q) || stretch.is_some_and(|s| !positive(s)) {
        return Err(errors::value(format!("q and stretch must be positive, got q = {q}, stretch = {stretch:?}")));
    }
    let (w, h) = (img.width(), img.height());
    let rgb = tidalscope_eval::rgb::composite(&img, stretch, q);
    Ok(Array3::from_shape_vec((h, w, 3), rgb).expect("h × w × 3 values").into_pyarray(py))
}

/// The `k` rows of `embeddings` `[N, D]` most similar to `query` (`[D]`, or
/// `[Q, D]` for several) by cosine similarity, best first, skipping the
/// rows in `exclude` (e.g. the query's own row). Returns `(indices,
/// similarities)`: int64 and float32, `[k]` (or `[Q, k]`); fewer than `k`
/// when fewer rows remain. The exact search of `tidalscope search`.
#[pyfunction]
#[pyo3(signature = (embeddings, query, k = 10, exclude = None))]
pub fn search<'py>(
    py: Python<'py>,
    embeddings: &Bound<'py, PyAny>,
    query: &Bound<'py, PyAny>,
    k: usize,
    exclude: Option<Vec<usize>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    if k == 0 {
        return Err(errors::value("k must be at least 1"));
    }
    let rows = arrays::float32(embeddings, "embeddings")?;
    let [n, d] = *rows.shape() else {
        return Err(errors::value(format!("embeddings must be [N, D], got shape {:?}", rows.shape())));
    };
    let queries = arrays::float32(query, "query")?;
    let (q, qd, single) = match *queries.shape() {
        [qd] => (1, qd, true),
        [q, qd] => (q, qd, false),
        ref s => return Err(errors::value(format!("query must be [D] or [Q, D], got shape {s:?}"))),
    };
    if qd != d {
        return Err(errors::value(format!("query has {qd} numbers, the embeddings {d}")));
    }
    if d == 0 {
        return Err(errors::value("embeddings of 0 numbers per row: nothing to compare"));
    }
    let mut exclude = exclude.unwrap_or_default();
    exclude.sort_unstable();
    exclude.dedup();
    let mut unit = rows.as_slice().map_err(errors::value)?.to_vec();
    let mut qs = queries.as_slice().map_err(errors::value)?.to_vec();
    let kept = k.min(n.saturating_sub(exclude.iter().filter(|&&i| i < n).count()));
    let (idx, sim) = parallel::detached(py, || {
        normalise_rows(&mut unit, d);
        normalise_rows(&mut qs, d);
        let (mut idx, mut sim) = (Vec::with_capacity(q * kept), Vec::with_capacity(q * kept));
        for query in qs.chunks_exact(d) {
            for (i, s) in top_k(&unit, d, query, kept, &exclude) {
                idx.push(i as i64);
                sim.push(s);
            }
        }
        (idx, sim)
    })?;
    if single {
        Ok((Array1::from(idx).into_pyarray(py).into_any(), Array1::from(sim).into_pyarray(py).into_any()))
    } else {
        Ok((
            Array2::from_shape_vec((q, kept), idx).expect("q × k").into_pyarray(py).into_any(),
            Array2::from_shape_vec((q, kept), sim).expect("q × k").into_pyarray(py).into_any(),
        ))
    }
}
