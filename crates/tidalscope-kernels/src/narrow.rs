//! Products and convolutions with exactly eight output channels — the
//! quick preset's 8-channel layers at 24×24, a fifth of its multiply-adds —
//! on 256-bit vectors.
//!
//! The `gemm` crate vectorises the output's columns: on AVX-512 an
//! 8-column product runs its 16-lane micro-kernels half masked and spends
//! more time packing than multiplying (30–50 GFLOP/s measured on these
//! layers against 150–200 on the wider ones), and a 3×3 convolution spent
//! as long again writing its whole im2col patch matrix out to the L2 cache
//! and reading it back. Here each output row is one 8-float vector: a block
//! of rows keeps its accumulators in registers and takes, for every step
//! of the inner dimension, one row of the right-hand matrix and one
//! broadcast element of the left-hand matrix per output row. Stride-1
//! convolutions on images at least as wide as the window read the image
//! in place, window row by window row (`Plan::forward_direct`, when not
//! adding onto the output); other cases, and the edge columns, copy the
//! patches of a few dozen pixels at a time into a buffer that stays in the
//! L1 cache. On CPUs whose AVX-512 units are two 256-bit halves (AMD Zen
//! 4) this is the full multiply-add rate.
//!
//! Each output element is summed in a fixed order, so results do not depend
//! on how rows are split between threads.

use crate::conv::Conv;
use crate::gemm::{MatRef, Threads};
use rayon::prelude::*;
use std::cell::RefCell;

/// Output columns (channels) the kernels are written for.
pub(crate) const COLS: usize = 8;

/// Rows of the output per register block: 12 accumulators, one right-hand
/// row and a broadcast fit AVX2's 16 vector registers.
const BLOCK: usize = 12;

/// Output rows per parallel task when a product may use every thread.
const TASK_ROWS: usize = 16 * BLOCK;

/// Output pixels whose patches are copied at a time: 48 patches of a 3×3
/// window over 8 channels are 14 kB, well inside a 32 kB L1 data cache.
const TILE: usize = 4 * BLOCK;

thread_local! {
    // Patches of one tile, reused between tiles, images and layers.
    static PATCHES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether this CPU runs the kernels (x86-64 with AVX2 and FMA).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether a convolution runs here: 8 outputs, a window wider than one
/// pixel (1×1 convolutions are plain products, see [`product`]), whole
/// vectors of input channels (the patch copies move 8 floats at a time; the
/// 5-band stem measured no faster than its im2col product) and a CPU that
/// can.
pub(crate) fn applies(conv: &Conv) -> bool {
    conv.cout == COLS && conv.k > 1 && conv.cin.is_multiple_of(8) && available()
}

/// A left-hand matrix: entry (i, p) is `data[base + i·rs + p·cs]`.
#[derive(Clone, Copy)]
struct Lhs<'a> {
    data: &'a [f32],
    base: usize,
    rs: usize,
    cs: usize,
}

/// Rows `0..count` of `lhs·rhs` (`rhs`: `k × 8`, row-major) into `c` (row
/// stride `ldc`), or added to it.
fn rows(c: &mut [f32], ldc: usize, count: usize, lhs: Lhs<'_>, k: usize, rhs: &[f32], accumulate: bool) {
    if count == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.chunks_mut(ldc).take(count).for_each(|r| r[..COLS].fill(0.0));
        }
        return;
    }
    // Every index the kernel touches, checked once here.
    assert!(
        lhs.base + (count - 1) * lhs.rs + (k - 1) * lhs.cs < lhs.data.len()
            && rhs.len() >= k * COLS
            && (count - 1) * ldc + COLS <= c.len(),
        "8-column product out of bounds"
    );
    assert!(available(), "8-column kernel called without AVX2 and FMA");
    // SAFETY: AVX2 and FMA are present and the indices are in bounds (both
    // checked above).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        x86::rows(c, ldc, count, lhs, k, rhs, accumulate)
    }
}

/// `c = a·b` (or `c += a·b`) for `b` of exactly [`COLS`] columns; `c` is
/// row-major with row stride `ldc`. The caller checks the shapes and that
/// [`available`] holds.
pub(crate) fn product(c: &mut [f32], ldc: usize, a: MatRef<'_>, b: MatRef<'_>, accumulate: bool, threads: Threads) {
    let (m, k) = (a.rows, a.cols);
    debug_assert!(b.cols == COLS && b.rows == k);
    // The right-hand side is small (k × 8): read it as contiguous rows.
    let packed: Vec<f32>;
    let rhs: &[f32] = if b.col_stride == 1 && b.row_stride == COLS {
        &b.data[..k * COLS]
    } else {
        packed = (0..k * COLS).map(|i| b.data[(i / COLS) * b.row_stride + (i % COLS) * b.col_stride]).collect();
        &packed
    };
    let lhs = |first: usize| Lhs { data: a.data, base: first * a.row_stride, rs: a.row_stride, cs: a.col_stride };
    let c = &mut c[..(m - 1) * ldc + COLS];
    if threads == Threads::All && m > TASK_ROWS {
        // Whole rows per task: the same sums as one thread.
        c.par_chunks_mut(TASK_ROWS * ldc).enumerate().for_each(|(t, ct)| {
            let first = t * TASK_ROWS;
            rows(ct, ldc, TASK_ROWS.min(m - first), lhs(first), k, rhs, accumulate)
        });
    } else {
        rows(c, ldc, m, lhs(0), k, rhs, accumulate);
    }
}

/// A convolution with 8 outputs (see [`applies`]) on `h × w` images, one
/// image at a time: read in place where the stride is 1 (see
/// [`forward`](Self::forward)), otherwise its patches copied a tile of
/// pixels at a time.
pub(crate) struct Plan {
    conv: Conv,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    /// Padding before the first row and column.
    pt: usize,
    pl: usize,
}

impl Plan {
    /// The plan for `conv` on `h × w` images.
    pub(crate) fn new(conv: &Conv, h: usize, w: usize) -> Self {
        let (ho, wo) = conv.out_size(h, w);
        let (pt, pl) = conv.pad_before(h, w);
        Plan { conv: *conv, h, w, ho, wo, pt, pl }
    }

    /// Floats in one patch: the inner dimension of the forward product.
    fn patch_len(&self) -> usize {
        self.conv.k * self.conv.k * self.conv.cin
    }

    /// Copies the windows of output pixels `first`, `first + step`, … (as
    /// many as `patches` holds, `patch_len` floats each) into `patches`,
    /// zeros where a window hangs over the edge.
    fn fill(&self, x: &[f32], first: usize, step: usize, patches: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: the CPU has AVX2 and FMA (checked).
            return unsafe { self.fill_avx2(x, first, step, patches) };
        }
        self.fill_any(x, first, step, patches)
    }

    /// [`fill`](Self::fill) with 256-bit moves.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fill_avx2(&self, x: &[f32], first: usize, step: usize, patches: &mut [f32]) {
        self.fill_any(x, first, step, patches)
    }

    #[inline(always)]
    fn fill_any(&self, x: &[f32], first: usize, step: usize, patches: &mut [f32]) {
        let (k, s, c) = (self.conv.k, self.conv.stride, self.conv.cin);
        for (r, patch) in patches.chunks_exact_mut(self.patch_len()).enumerate() {
            let pixel = first + r * step;
            let (oy, ox) = (pixel / self.wo, pixel % self.wo);
            let ix0 = (ox * s).wrapping_sub(self.pl);
            let row_inside = ox * s >= self.pl && ix0 + k <= self.w;
            for (ky, dst) in patch.chunks_exact_mut(k * c).enumerate() {
                let iy = (oy * s + ky).wrapping_sub(self.pt);
                if iy >= self.h {
                    dst.fill(0.0);
                } else if row_inside {
                    copy(dst, &x[(iy * self.w + ix0) * c..][..k * c]);
                } else {
                    for (kx, dst) in dst.chunks_exact_mut(c).enumerate() {
                        let ix = (ox * s + kx).wrapping_sub(self.pl);
                        if ix < self.w {
                            copy(dst, &x[(iy * self.w + ix) * c..][..c]);
                        } else {
                            dst.fill(0.0);
                        }
                    }
                }
            }
        }
    }

    /// Runs `f(first pixel, pixels, patches)` over the image's output pixels
    /// a tile at a time.
    fn tiles(&self, x: &[f32], f: impl FnMut(usize, usize, &[f32])) {
        self.tiles_along(x, 0, 1, self.ho * self.wo, f)
    }

    /// Runs `f(first pixel, pixels, patches)` over output pixels `start`,
    /// `start + step`, … (`count` of them) a tile at a time.
    fn tiles_along(&self, x: &[f32], start: usize, step: usize, count: usize, mut f: impl FnMut(usize, usize, &[f32])) {
        let kk = self.patch_len();
        PATCHES.with(|p| {
            let mut buf = p.borrow_mut();
            if buf.len() < TILE * kk {
                buf.resize(TILE * kk, 0.0);
            }
            for i in (0..count).step_by(TILE) {
                let n = TILE.min(count - i);
                let patches = &mut buf[..n * kk];
                let first = start + i * step;
                self.fill(x, first, step, patches);
                f(first, n, patches);
            }
        });
    }

    /// The output columns `a..b` whose windows lie inside the image
    /// across, where the direct path reads the image in place: with stride
    /// 1, consecutive output pixels' windows — across the end of a row too
    /// — start `cin` floats apart, so a run of them is a strided view of
    /// the image. `None` where that does not hold (another stride, or an
    /// image narrower than the window).
    fn interior(&self) -> Option<(usize, usize)> {
        let k = self.conv.k;
        if self.conv.stride != 1 || self.wo != self.w || self.ho != self.h || self.w < k {
            return None;
        }
        let (a, b) = (self.pl, self.w + self.pl + 1 - k);
        (a < b).then_some((a, b))
    }

    /// The output rows for which window row `ky` lies inside the image
    /// (stride 1).
    fn rows_inside(&self, ky: usize) -> std::ops::Range<usize> {
        let lo = self.pt.saturating_sub(ky);
        let hi = (self.h + self.pt).saturating_sub(ky).min(self.ho);
        lo..hi.max(lo)
    }

    /// Runs `f(first pixel, pixels, patches)` over the output pixels of
    /// column `ox`, in every row (`wo` pixels apart), a tile at a time.
    fn column_tiles(&self, x: &[f32], ox: usize, f: impl FnMut(usize, usize, &[f32])) {
        self.tiles_along(x, ox, self.wo, self.ho, f)
    }

    /// One image's `y = conv(x)` (or `y +=`): `x` `[h, w, cin]`, `weight`
    /// `[k, k, cin, 8]`, `y` `[ho, wo, 8]`.
    pub(crate) fn forward(&self, x: &[f32], weight: &[f32], y: &mut [f32], accumulate: bool) {
        let kk = self.patch_len();
        match self.interior() {
            Some((a, b)) if !accumulate => self.forward_direct(x, weight, y, a, b),
            _ => self.tiles(x, |first, n, patches| {
                let lhs = Lhs { data: patches, base: 0, rs: kk, cs: 1 };
                rows(&mut y[first * COLS..], COLS, n, lhs, kk, weight, accumulate);
            }),
        }
    }

    /// [`forward`](Self::forward) without copying the windows of the
    /// interior columns `a..b`: for each window row `ky`, one product over
    /// the run of output pixels from the first interior pixel of its first
    /// row inside to the last of its last, reading the image in place. The
    /// edge columns in that run read the neighbouring row's pixels; they
    /// are computed again, from copied windows, at the end.
    fn forward_direct(&self, x: &[f32], weight: &[f32], y: &mut [f32], a: usize, b: usize) {
        let (k, c, wo) = (self.conv.k, self.conv.cin, self.wo);
        let kc = k * c;
        // Window row `pt` lies inside for every output row: it goes first and
        // overwrites, the others add.
        let order = std::iter::once(self.pt).chain((0..k).filter(|&ky| ky != self.pt));
        for (i, ky) in order.enumerate() {
            let inside = self.rows_inside(ky);
            if inside.is_empty() {
                continue;
            }
            let (first, last) = (inside.start * wo + a, (inside.end - 1) * wo + b);
            // The window of output pixel (oy, ox) starts at input pixel
            // (oy + ky − pt, ox − pl): `first` is an interior pixel, so this
            // does not underflow.
            let base = ((inside.start + ky - self.pt) * self.w + a - self.pl) * c;
            let lhs = Lhs { data: x, base, rs: c, cs: 1 };
            rows(&mut y[first * COLS..], COLS, last - first, lhs, kc, &weight[ky * kc * COLS..], i > 0);
        }
        let kk = self.patch_len();
        for ox in (0..a).chain(b..wo) {
            self.column_tiles(x, ox, |first, n, patches| {
                let lhs = Lhs { data: patches, base: 0, rs: kk, cs: 1 };
                rows(&mut y[first * COLS..], wo * COLS, n, lhs, kk, weight, false);
            });
        }
    }

    /// Adds one image's weight gradient `Σ_pixels patch(x)ᵀ·dy` into
    /// `dweight` (`[k, k, cin, 8]`): `x` `[h, w, cin]`, `dy` `[ho, wo, 8]`.
    pub(crate) fn add_weight_grad(&self, x: &[f32], dy: &[f32], dweight: &mut [f32]) {
        let kk = self.patch_len();
        let Some((a, b)) = self.interior() else {
            // Rows of this product are the patch entries, its inner
            // dimension the tile's pixels.
            return self.tiles(x, |first, n, patches| {
                let lhs = Lhs { data: patches, base: 0, rs: 1, cs: kk };
                rows(dweight, COLS, kk, lhs, n, &dy[first * COLS..], true);
            });
        };
        let (k, c, wo) = (self.conv.k, self.conv.cin, self.wo);
        let kc = k * c;
        // The interior pixels of each row, read in place: rows of the
        // product are the `k·cin` entries of one window row, its inner
        // dimension the row's interior pixels.
        for ky in 0..k {
            let dw = &mut dweight[ky * kc * COLS..][..kc * COLS];
            for oy in self.rows_inside(ky) {
                let base = ((oy + ky - self.pt) * self.w + a - self.pl) * c;
                let lhs = Lhs { data: x, base, rs: 1, cs: c };
                rows(dw, COLS, kc, lhs, b - a, &dy[(oy * wo + a) * COLS..], true);
            }
        }
        // The edge columns from copied windows, their output gradients
        // gathered into rows.
        let mut g = [0f32; TILE * COLS];
        for ox in (0..a).chain(b..wo) {
            self.column_tiles(x, ox, |first, n, patches| {
                for (i, row) in g.chunks_exact_mut(COLS).take(n).enumerate() {
                    row.copy_from_slice(&dy[(first + i * wo) * COLS..][..COLS]);
                }
                let lhs = Lhs { data: patches, base: 0, rs: 1, cs: kk };
                rows(dweight, COLS, kk, lhs, n, &g[..n * COLS], true);
            });
        }
    }
}

/// `dst = src` for short runs, 8 floats per move: the copy is inlined where
/// `copy_from_slice` would call `memmove` for every few dozen bytes.
#[inline(always)]
fn copy(dst: &mut [f32], src: &[f32]) {
    let src = &src[..dst.len()];
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let v: [f32; 8] = s.try_into().expect("8 floats");
        d.copy_from_slice(&v);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Lhs, BLOCK, COLS};
    use std::arch::x86_64::*;

    /// See [`super::rows`]; bounds checked there.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA, and every index in bounds.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows(
        c: &mut [f32],
        ldc: usize,
        count: usize,
        lhs: Lhs<'_>,
        k: usize,
        rhs: &[f32],
        accumulate: bool,
    ) {
        let mut r = 0;
        while r + BLOCK <= count {
            block::<BLOCK>(c, ldc, r, lhs, k, rhs, accumulate);
            r += BLOCK;
        }
        // Fewer than 8 independent sums wait on the multiply-add's latency.
        if r + 8 <= count {
            block::<8>(c, ldc, r, lhs, k, rhs, accumulate);
            r += 8;
        }
        while r + 4 <= count {
            block::<4>(c, ldc, r, lhs, k, rhs, accumulate);
            r += 4;
        }
        while r < count {
            block::<1>(c, ldc, r, lhs, k, rhs, accumulate);
            r += 1;
        }
    }

    /// Output rows `r..r + N`, accumulators in registers.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn block<const N: usize>(
        c: &mut [f32],
        ldc: usize,
        r: usize,
        lhs: Lhs<'_>,
        k: usize,
        rhs: &[f32],
        accumulate: bool,
    ) {
        let mut acc = [_mm256_setzero_ps(); N];
        let (pa, pb) = (lhs.data.as_ptr().add(lhs.base + r * lhs.rs), rhs.as_ptr());
        for p in 0..k {
            let bv = _mm256_loadu_ps(pb.add(p * COLS));
            let ap = pa.add(p * lhs.cs);
            for (i, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&*ap.add(i * lhs.rs)), bv, *acc);
            }
        }
        let pc = c.as_mut_ptr().add(r * ldc);
        for (i, acc) in acc.iter().enumerate() {
            let out = pc.add(i * ldc);
            let v = if accumulate { _mm256_add_ps(_mm256_loadu_ps(out), *acc) } else { *acc };
            _mm256_storeu_ps(out, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f64> {
        let at = |m: MatRef<'_>, i: usize, j: usize| m.data[i * m.row_stride + j * m.col_stride] as f64;
        let mut c = vec![0f64; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                c[i * b.cols + j] = (0..a.cols).map(|p| at(a, i, p) * at(b, p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn eight_column_products_match_the_definition() {
        if !available() {
            eprintln!("no AVX2 and FMA: the 8-column kernels are not used on this CPU");
            return;
        }
        let val = |i: usize, f: f32| ((i as f32 + 1.0) * f).sin();
        // Row counts through every block size (12, 8, 4, 1) and past one
        // parallel task; inner dimensions 1 to a few hundred.
        for &(m, k) in &[(1usize, 1usize), (3, 7), (13, 72), (25, 8), (31, 45), (400, 33), (37, 300)] {
            let a: Vec<f32> = (0..m * k).map(|i| val(i, 0.37)).collect();
            let at: Vec<f32> = (0..m * k).map(|i| a[(i % m) * k + i / m]).collect();
            let b: Vec<f32> = (0..k * COLS).map(|i| val(i, 0.11)).collect();
            let bt: Vec<f32> = (0..k * COLS).map(|i| b[(i % k) * COLS + i / k]).collect();
            let want = naive(MatRef::new(&a, m, k), MatRef::new(&b, k, COLS));
            let scale = want.iter().fold(1f64, |s, v| s.max(v.abs()));
            let operands = [
                (MatRef::new(&a, m, k), MatRef::new(&b, k, COLS)),
                // aᵀ and bᵀ stored: read through transposed views.
                (MatRef::new(&at, k, m).t(), MatRef::new(&bt, COLS, k).t()),
            ];
            for (lhs, rhs) in operands {
                for threads in [Threads::One, Threads::All] {
                    for accumulate in [false, true] {
                        // Row stride 11 > 8: the gaps must stay untouched.
                        let ldc = 11;
                        let mut c = vec![0.5f32; (m - 1) * ldc + COLS];
                        product(&mut c, ldc, lhs, rhs, accumulate, threads);
                        let what = format!("{m}×{k}, {threads:?}, accumulate {accumulate}");
                        for i in 0..m {
                            for j in 0..ldc.min(c.len() - i * ldc) {
                                let got = c[i * ldc + j] as f64;
                                let expect = match (j < COLS, accumulate) {
                                    (false, _) => 0.5,
                                    (true, false) => want[i * COLS + j],
                                    (true, true) => want[i * COLS + j] + 0.5,
                                };
                                assert!(
                                    (got - expect).abs() <= 1e-5 * scale,
                                    "{what}: c[{i}][{j}] = {got}, expected {expect}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn splitting_rows_between_threads_does_not_change_a_bit() {
        if !available() {
            return;
        }
        let (m, k) = (1000, 72);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1013) as f32 * 1e-3 - 0.5).collect();
        let b: Vec<f32> = (0..k * COLS).map(|i| ((i * 104729) % 997) as f32 * 1e-3 - 0.5).collect();
        let (mut one, mut all) = (vec![0f32; m * COLS], vec![0f32; m * COLS]);
        product(&mut one, COLS, MatRef::new(&a, m, k), MatRef::new(&b, k, COLS), false, Threads::One);
        product(&mut all, COLS, MatRef::new(&a, m, k), MatRef::new(&b, k, COLS), false, Threads::All);
        assert_eq!(one, all);
    }
}
