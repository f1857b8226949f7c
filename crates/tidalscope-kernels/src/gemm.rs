//! Single-precision matrix products on the `gemm` crate's cache-blocked
//! micro-kernels (AVX-512 / AVX2 / NEON chosen at run time), behind a safe,
//! bounds-checked interface, and the measurement of the machine's GEMM peak.

use crate::narrow;
use std::time::Instant;

/// How many threads one product may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// The calling thread only: the caller already runs products in parallel.
    One,
    /// Every thread of rayon's pool.
    All,
}

/// A read-only view of a matrix in a slice, with element strides (so a
/// transpose is a view with its strides swapped).
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows × cols` matrix at the start of `data`.
    ///
    /// # Panics
    /// If `data` is shorter than `rows × cols`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// A `rows × cols` matrix whose element (i, j) is `data[i·row_stride + j·col_stride]`.
    ///
    /// # Panics
    /// If an element would lie outside `data`.
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Self {
        if rows > 0 && cols > 0 {
            // Checked, so huge strides cannot wrap around into the slice.
            let last = (rows - 1)
                .checked_mul(row_stride)
                .zip((cols - 1).checked_mul(col_stride))
                .and_then(|(a, b)| a.checked_add(b));
            assert!(
                last.is_some_and(|l| l < data.len()) && row_stride.max(col_stride) <= isize::MAX as usize,
                "matrix {rows}×{cols} (strides {row_stride}, {col_stride}) outside a slice of {}",
                data.len()
            );
        }
        Self { data, rows, cols, row_stride, col_stride }
    }

    /// The transpose, without copying.
    pub fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }
}

/// `c = a·b`, or `c += a·b` when `accumulate`; `c` is row-major with row
/// stride `ldc`.
///
/// # Panics
/// If the shapes disagree or `c` is too short.
pub fn matmul(c: &mut [f32], ldc: usize, a: MatRef<'_>, b: MatRef<'_>, accumulate: bool, threads: Threads) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "inner dimensions differ");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        ldc >= n
            && ldc <= isize::MAX as usize
            && (m - 1).checked_mul(ldc).and_then(|e| e.checked_add(n)).is_some_and(|e| e <= c.len()),
        "output {m}×{n} (row stride {ldc}) outside a slice of {}",
        c.len()
    );
    if k == 0 {
        if !accumulate {
            for row in c.chunks_mut(ldc).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    if narrow::supports(n) {
        narrow::product(c, ldc, a, b, accumulate, threads);
        return;
    }
    let parallelism = match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(rayon::current_num_threads()),
    };
    // SAFETY: every element the product reads or writes lies inside its slice
    // (checked above and in `MatRef::strided`); `c` is borrowed mutably, so
    // it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The best sustained rate of a large square product on this machine with
/// every thread, in GFLOP/s (2·n³ flops per product): the ceiling against
/// which the encoder's speed is judged.
pub fn peak_gflops() -> f64 {
    let n = 1024;
    let a: Vec<f32> = (0..n * n).map(|i| ((i * 7919) % 1000) as f32 * 1e-3).collect();
    let b = a.clone();
    let mut c = vec![0f32; n * n];
    let mut best = f64::INFINITY;
    for _ in 0..24 {
        let t0 = Instant::now();
        matmul(&mut c, n, MatRef::new(&a, n, n), MatRef::new(&b, n, n), false, Threads::All);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    2.0 * (n as f64).powi(3) / best / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
        let mut c = vec![0f32; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                let mut s = 0f64;
                for p in 0..a.cols {
                    s += a.data[i * a.row_stride + p * a.col_stride] as f64
                        * b.data[p * b.row_stride + j * b.col_stride] as f64;
                }
                c[i * b.cols + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn products_with_transposes_and_accumulation_match_the_definition() {
        let (m, k, n) = (37, 23, 19);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        for threads in [Threads::One, Threads::All] {
            let mut c = vec![0f32; m * n];
            matmul(&mut c, n, MatRef::new(&a, m, k), MatRef::new(&b, k, n), false, threads);
            let want = naive(MatRef::new(&a, m, k), MatRef::new(&b, k, n));
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() < 1e-4, "{x} vs {y}");
            }
            // aᵀ viewed from a k×m buffer, and accumulation onto ones.
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let mut c2 = vec![1f32; m * n];
            matmul(&mut c2, n, MatRef::new(&at, k, m).t(), MatRef::new(&b, k, n), true, threads);
            for (x, y) in c2.iter().zip(&want) {
                assert!((x - 1.0 - y).abs() < 1e-4, "{x} vs 1 + {y}");
            }
        }
    }
}
