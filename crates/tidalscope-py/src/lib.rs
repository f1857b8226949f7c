//! `import tidalscope`: the toolkit from Python, built from the same crates
//! as the command line, with no torch or TensorFlow underneath. Images go
//! in as NumPy arrays of any real dtype, byte order and strides; scores,
//! embeddings and images come out as NumPy arrays and catalogues as dicts of
//! NumPy columns. Heavy work runs with the GIL released on a thread pool
//! whose size [`set_threads`] sets.

mod arrays;
mod data;
mod errors;
mod models;

use pyo3::prelude::*;

/// The thread pool every call runs its parallel work on.
mod parallel {
    use crate::errors;
    use pyo3::prelude::*;
    use std::sync::{Arc, Mutex};

    static POOL: Mutex<Option<Arc<rayon::ThreadPool>>> = Mutex::new(None);

    fn build(threads: usize) -> PyResult<Arc<rayon::ThreadPool>> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map(Arc::new)
            .map_err(|e| errors::value(format!("cannot start {threads} threads: {e}")))
    }

    /// The pool (all cores until [`set`] says otherwise).
    pub fn pool() -> PyResult<Arc<rayon::ThreadPool>> {
        let mut guard = POOL.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(build(0)?);
        }
        Ok(guard.as_ref().expect("set above").clone())
    }

    /// Replaces the pool by one of `threads` threads (0 = all cores).
    pub fn set(threads: usize) -> PyResult<()> {
        let pool = build(threads)?;
        *POOL.lock().unwrap_or_else(|p| p.into_inner()) = Some(pool);
        Ok(())
    }

    /// Runs `f` on the pool with the GIL released, so other Python threads
    /// go on meanwhile.
    pub fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> PyResult<T> {
        let pool = pool()?;
        Ok(py.detach(|| pool.install(f)))
    }
}

/// Sets the number of threads tidalscope computes with (0: all cores, the
/// default). Takes effect for the next call.
#[pyfunction]
fn set_threads(threads: usize) -> PyResult<()> {
    parallel::set(threads)
}

/// The number of threads tidalscope computes with.
#[pyfunction]
fn get_threads() -> PyResult<usize> {
    Ok(parallel::pool()?.current_num_threads())
}

/// Find tidal features in deep multi-band survey images with
/// self-supervised learning: load models trained by the `tidalscope`
/// command line, score and embed NumPy images, read every format the
/// command line reads, simulate labelled cutouts, search by similarity.
#[pymodule]
fn tidalscope(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<models::Classifier>()?;
    m.add_class::<models::Encoder>()?;
    m.add_function(wrap_pyfunction!(models::load_classifier, m)?)?;
    m.add_function(wrap_pyfunction!(models::load_encoder, m)?)?;
    m.add_function(wrap_pyfunction!(data::simulate, m)?)?;
    m.add_function(wrap_pyfunction!(data::read, m)?)?;
    m.add_function(wrap_pyfunction!(data::lupton_rgb, m)?)?;
    m.add_function(wrap_pyfunction!(data::search, m)?)?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_threads, m)?)?;
    Ok(())
}
