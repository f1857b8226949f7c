//! NumPy arrays in and out. Inputs of any real dtype, byte order (FITS data
//! from astropy is big-endian) and strides are converted once to
//! C-contiguous native float32 by NumPy itself; catalogues go out as a dict
//! of NumPy columns, which `astropy.table.Table(...)` and
//! `pandas.DataFrame(...)` take as they are.

use crate::errors;
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use tidalscope_core::Cutout;
use tidalscope_io::source::Layout;

/// `obj` as a C-contiguous, native-endian float32 array (copied only when
/// it is not one already).
pub fn float32<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<PyReadonlyArrayDyn<'py, f32>> {
    let py = obj.py();
    let np = py.import("numpy")?;
    let arr = np.call_method1("asarray", (obj,))?;
    let dtype = arr.getattr("dtype")?;
    let kind: String = dtype.getattr("kind")?.extract()?;
    if !matches!(kind.as_str(), "f" | "i" | "u") {
        return Err(errors::value(format!("{what}: dtype {} is not a real number type", dtype.str()?)));
    }
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", np.getattr("float32")?)?;
    let c = np.call_method("ascontiguousarray", (arr,), Some(&kwargs))?;
    c.extract()
}

/// A layout named as on the command line (`None` = `auto`).
pub fn layout(name: Option<&str>) -> PyResult<Layout> {
    name.unwrap_or("auto").parse().map_err(errors::value)
}

/// Images as the caller gave them: `n` images of `dims` in `layout`
/// (resolved), values in one C-ordered slice.
#[derive(Clone, Copy)]
pub struct Batch<'a> {
    /// The pixels.
    pub values: &'a [f32],
    /// Number of images.
    pub n: usize,
    /// Axes of one image as given.
    pub dims: [usize; 3],
    /// How to read `dims`.
    pub layout: Layout,
}

/// A batch `[N, a, b, c]` (or one image `[a, b, c]`, as N = 1) in the
/// named layout.
pub fn batch<'a>(array: &'a PyReadonlyArrayDyn<'_, f32>, layout: Option<&str>) -> PyResult<Batch<'a>> {
    let shape = array.shape();
    let (n, dims) = match *shape {
        [n, a, b, c] => (n, [a, b, c]),
        [a, b, c] => (1, [a, b, c]),
        _ => {
            return Err(errors::value(format!(
                "images must be [N, H, W, C] or [N, C, H, W] (or one image of 3 axes), got an array of shape {shape:?}"
            )))
        }
    };
    if dims.contains(&0) {
        return Err(errors::value(format!("images of shape {shape:?} hold no pixels")));
    }
    let values = array.as_slice().map_err(|e| errors::value(format!("images: {e}")))?;
    Ok(Batch { values, n, dims, layout: self::layout(layout)?.resolve(dims) })
}

impl Batch<'_> {
    /// Image `i` as a cutout (bands, height, width).
    pub fn cutout(&self, i: usize) -> PyResult<Cutout> {
        let per = self.dims.iter().product::<usize>();
        self.layout
            .cutout(self.dims, self.values[i * per..(i + 1) * per].to_vec())
            .map_err(|e| errors::value(format!("image {i}: {e}")))
    }
}

/// The NumPy type a text column reads as: integers when every value is one
/// written plainly (no leading zeros or signs that would be lost), else
/// floats when every value is a number or empty (NaN), else text (so a
/// code such as "007" keeps its zeros).
fn column<'py>(py: Python<'py>, values: Vec<String>) -> PyResult<Bound<'py, PyAny>> {
    use numpy::IntoPyArray;
    let ints: Option<Vec<i64>> = values
        .iter()
        .map(|v| v.parse::<i64>().ok().filter(|i| i.to_string() == *v))
        .collect::<Option<Vec<i64>>>()
        .filter(|v| !v.is_empty());
    if let Some(ints) = ints {
        return Ok(ints.into_pyarray(py).into_any());
    }
    let floats: Option<Vec<f64>> = values
        .iter()
        .map(|v| match v.parse::<i64>() {
            // Beyond 2⁵³ (a survey object id) a float would lose digits.
            Ok(i) if i.to_string() == *v && i.unsigned_abs() <= 1 << 53 => Some(i as f64),
            // An integer written otherwise ("007") is a code, not a number.
            Ok(_) => None,
            Err(_) if v.is_empty() => Some(f64::NAN),
            Err(_) => v.parse::<f64>().ok(),
        })
        .collect::<Option<Vec<f64>>>()
        .filter(|f| f.iter().any(|x| !x.is_nan()));
    if let Some(floats) = floats {
        return Ok(floats.into_pyarray(py).into_any());
    }
    text_column(py, values)
}

/// A NumPy array of text (`dtype=str`), whatever the values look like.
pub fn text_column<'py>(py: Python<'py>, values: Vec<String>) -> PyResult<Bound<'py, PyAny>> {
    let np = py.import("numpy")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", "str")?;
    np.call_method("array", (PyList::new(py, values)?,), Some(&kwargs))
}

/// A catalogue as `{column: ndarray}` in column order.
pub fn table<'py>(py: Python<'py>, columns: &[String], rows: Vec<Vec<String>>) -> PyResult<Bound<'py, PyDict>> {
    let mut cols: Vec<Vec<String>> = vec![Vec::with_capacity(rows.len()); columns.len()];
    for row in rows {
        for (c, v) in cols.iter_mut().zip(row) {
            c.push(v);
        }
    }
    let dict = PyDict::new(py);
    if let Some((i, name)) = columns.iter().enumerate().find(|(i, n)| columns[..*i].contains(n)) {
        return Err(errors::value(format!(
            "column {name:?} appears twice (column {}): rename the data's column of that name",
            i + 1
        )));
    }
    for (name, values) in columns.iter().zip(cols) {
        dict.set_item(name, column(py, values)?)?;
    }
    Ok(dict)
}
