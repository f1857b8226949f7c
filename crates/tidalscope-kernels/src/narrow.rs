//! Products and convolutions with exactly 8 or 16 output channels — the
//! quick preset's 8-channel layers at 24×24 (a fifth of its multiply-adds)
//! and the paper encoder's 16-channel layers at 96×96 — with every output
//! row in one vector.
//!
//! The `gemm` crate vectorises the output's columns: on AVX-512 an
//! 8-column product runs its 16-lane micro-kernels half masked and spends
//! more time packing than multiplying (30–50 GFLOP/s measured on these
//! layers against 150–200 on the wider ones), its 16-column kernel keeps
//! only 6 sums in flight, too few to hide the multiply-add's latency, and
//! a 3×3 convolution spent as long again writing its whole im2col patch
//! matrix out to the L2 cache and reading it back. Here a block of output
//! rows keeps its accumulators in registers and takes, for every step of
//! the inner dimension, one row of the right-hand matrix and one broadcast
//! element of the left-hand matrix per output row ([`Kernel`] lists the
//! variants: 8 columns on 256-bit vectors, or two to a 512-bit vector; 16
//! on 512-bit vectors). Stride-1 convolutions on images at least as wide
//! as the window read the image in place, window row by window row
//! (`Plan::forward_direct`, when not adding onto the output); other cases,
//! and the edge columns, copy the patches of a few dozen pixels at a time
//! into a buffer that stays in the L1 cache.
//!
//! Each output element is summed in a fixed order, so results do not depend
//! on how rows are split between threads.

use crate::conv::Conv;
use crate::gemm::{MatRef, Threads};
use rayon::prelude::*;
use std::cell::RefCell;

/// The most output columns (channels) a kernel is written for.
const MAX_COLS: usize = 16;

/// Rows of the output per register block of the 256-bit kernel: 12
/// accumulators, one right-hand row and a broadcast fit AVX2's 16 vector
/// registers.
const BLOCK: usize = 12;

/// Output rows per parallel task when a product may use every thread.
const TASK_ROWS: usize = 16 * BLOCK;

/// Inner steps summed in registers before they are added to the output. A
/// long inner dimension (the pixels of a weight gradient: tens of
/// thousands) summed in one chain loses accuracy in proportion to its
/// length; in chunks the error grows with the chunk's length plus the
/// number of chunks, as in the `gemm` crate's blocked sums. Even, so only
/// a product's last chunk can end on an unpaired step in the step-pair
/// kernel.
const CHUNK: usize = 256;

/// Output pixels whose patches are copied at a time: 48 patches of a 3×3
/// window over 8 channels are 14 kB, well inside a 32 kB L1 data cache
/// (28 kB over 16 channels, inside the 48 kB of the CPUs that run 16).
const TILE: usize = 4 * BLOCK;

thread_local! {
    // Patches of one tile, reused between tiles, images and layers.
    static PATCHES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether this CPU runs the 256-bit kernel (x86-64 with AVX2 and FMA).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether this CPU runs the 512-bit kernels (AVX-512F as well).
fn wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        available() && std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether products with `cols` output columns run here on this CPU: 8
/// with AVX2, 16 with AVX-512 (on AVX2 alone the `gemm` crate's 16-lane
/// kernels are two full vectors wide and keep 12 sums in flight).
pub(crate) fn supports(cols: usize) -> bool {
    match cols {
        8 => available(),
        16 => wide(),
        _ => false,
    }
}

/// Whether a convolution runs here: 8 or 16 outputs ([`supports`]), a
/// window wider than one pixel (1×1 convolutions are plain products, see
/// [`product`]) and whole vectors of input channels (the patch copies move
/// 8 floats at a time; the 5-band stem measured no faster than its im2col
/// product).
pub(crate) fn applies(conv: &Conv) -> bool {
    supports(conv.cout) && conv.k > 1 && conv.cin.is_multiple_of(8)
}

/// A left-hand matrix: entry (i, p) is `data[base + i·rs + p·cs]`.
#[derive(Clone, Copy)]
struct Lhs<'a> {
    data: &'a [f32],
    base: usize,
    rs: usize,
    cs: usize,
    /// Whether the kernels request it ahead of use (set by [`rows_on`]
    /// for matrices too large to be in cache already: [`FAR`]).
    far: bool,
}

impl<'a> Lhs<'a> {
    /// Entry (i, p) at `data[base + i·rs + p·cs]`, not requested ahead
    /// ([`rows_on`] decides that for the whole call).
    fn new(data: &'a [f32], base: usize, rs: usize, cs: usize) -> Self {
        Self { data, base, rs, cs, far: false }
    }
}

/// Floats a left-hand matrix spans from which the kernels request it
/// ahead (512 kB, a quarter of a 2 MB L2 cache), counted over what one
/// call of the kernels reads: a product on one thread (each image's
/// convolution in a training pass), or one parallel task's rows of a
/// product on every thread. Below, it is mostly in
/// cache already — an image of the quick preset's, a tile of patches —
/// and the requests cost more than they save (quick-preset inference
/// measured 2–17% slower with them).
const FAR: usize = 128 * 1024;

/// The micro-kernels. Each sums every output element over the inner
/// dimension in one fixed order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    /// 8 columns, an output row per 256-bit vector (AVX2 and FMA).
    Eight,
    /// 8 columns, an output row per 512-bit vector holding two inner steps
    /// side by side (AVX-512, left-hand rows contiguous): each element is
    /// the sum of its even steps plus the sum of its odd steps.
    EightBySteps,
    /// 8 columns, two output rows per 512-bit vector (AVX-512, left-hand
    /// columns contiguous): the same sums, bit for bit, as [`Kernel::Eight`].
    EightByRows,
    /// 16 columns, an output row per 512-bit vector (AVX-512).
    Sixteen,
}

impl Kernel {
    /// The kernel for a product with `cols` columns and left-hand side `lhs`
    /// on this CPU ([`supports`] holds).
    fn choose(cols: usize, lhs: &Lhs<'_>) -> Self {
        match cols {
            16 => Kernel::Sixteen,
            _ if wide() && lhs.cs == 1 => Kernel::EightBySteps,
            _ if wide() && lhs.rs == 1 => Kernel::EightByRows,
            _ => Kernel::Eight,
        }
    }

    /// Output columns.
    fn cols(self) -> usize {
        if self == Kernel::Sixteen {
            16
        } else {
            8
        }
    }

    /// Whether this CPU has the instructions.
    fn runs_here(self) -> bool {
        if self == Kernel::Eight {
            available()
        } else {
            wide()
        }
    }
}

/// Rows `0..count` of `lhs·rhs` (`rhs`: `k × cols`, row-major) into `c`
/// (row stride `ldc`), or added to it.
#[allow(clippy::too_many_arguments)]
fn rows(c: &mut [f32], ldc: usize, count: usize, lhs: Lhs<'_>, k: usize, rhs: &[f32], cols: usize, accumulate: bool) {
    rows_on(Kernel::choose(cols, &lhs), c, ldc, count, lhs, k, rhs, accumulate)
}

/// [`rows`] on a given kernel.
#[allow(clippy::too_many_arguments)]
fn rows_on(
    kernel: Kernel,
    c: &mut [f32],
    ldc: usize,
    count: usize,
    lhs: Lhs<'_>,
    k: usize,
    rhs: &[f32],
    accumulate: bool,
) {
    let cols = kernel.cols();
    if count == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.chunks_mut(ldc).take(count).for_each(|r| r[..cols].fill(0.0));
        }
        return;
    }
    // Every index the kernel touches, checked once here.
    assert!(
        lhs.base + (count - 1) * lhs.rs + (k - 1) * lhs.cs < lhs.data.len()
            && rhs.len() >= k * cols
            && (count - 1) * ldc + cols <= c.len(),
        "{cols}-column product out of bounds"
    );
    assert!(kernel.runs_here(), "{kernel:?} kernel called on a CPU without its instructions");
    let far = (count - 1) * lhs.rs + (k - 1) * lhs.cs >= FAR;
    let lhs = Lhs { far, ..lhs };
    for start in (0..k).step_by(CHUNK) {
        let (k, rhs) = (CHUNK.min(k - start), &rhs[start * cols..]);
        let lhs = Lhs { base: lhs.base + start * lhs.cs, ..lhs };
        let accumulate = accumulate || start > 0;
        // SAFETY: the CPU has the kernel's instructions and the indices are
        // in bounds (both checked above; a chunk reads a part of the whole).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            match kernel {
                Kernel::Eight => x86::rows(c, ldc, count, lhs, k, rhs, accumulate),
                Kernel::EightBySteps => x86::rows_by_steps(c, ldc, count, lhs, k, rhs, accumulate),
                Kernel::EightByRows => x86::rows_by_rows(c, ldc, count, lhs, k, rhs, accumulate),
                Kernel::Sixteen => x86::rows16(c, ldc, count, lhs, k, rhs, accumulate),
            }
        }
    }
}

/// `c = a·b` (or `c += a·b`) for `b` of 8 or 16 columns; `c` is row-major
/// with row stride `ldc`. The caller checks the shapes and that
/// [`supports`] holds for the column count.
pub(crate) fn product(c: &mut [f32], ldc: usize, a: MatRef<'_>, b: MatRef<'_>, accumulate: bool, threads: Threads) {
    let lhs = Lhs::new(a.data, 0, a.row_stride, a.col_stride);
    product_on(Kernel::choose(b.cols, &lhs), c, ldc, a, b, accumulate, threads)
}

/// [`product`] on a given kernel.
fn product_on(
    kernel: Kernel,
    c: &mut [f32],
    ldc: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    accumulate: bool,
    threads: Threads,
) {
    let (m, k, cols) = (a.rows, a.cols, kernel.cols());
    debug_assert!(b.cols == cols && b.rows == k);
    // The right-hand side is small (k × cols): read it as contiguous rows.
    let packed: Vec<f32>;
    let rhs: &[f32] = if b.col_stride == 1 && b.row_stride == cols {
        &b.data[..k * cols]
    } else {
        packed = (0..k * cols).map(|i| b.data[(i / cols) * b.row_stride + (i % cols) * b.col_stride]).collect();
        &packed
    };
    let lhs = |first: usize| Lhs::new(a.data, first * a.row_stride, a.row_stride, a.col_stride);
    let c = &mut c[..(m - 1) * ldc + cols];
    if threads == Threads::All && m > TASK_ROWS {
        // Whole rows per task: the same sums as one thread.
        c.par_chunks_mut(TASK_ROWS * ldc).enumerate().for_each(|(t, ct)| {
            let first = t * TASK_ROWS;
            rows_on(kernel, ct, ldc, TASK_ROWS.min(m - first), lhs(first), k, rhs, accumulate)
        });
    } else {
        rows_on(kernel, c, ldc, m, lhs(0), k, rhs, accumulate);
    }
}

/// A convolution with 8 or 16 outputs (see [`applies`]) on `h × w` images, one
/// image at a time: read in place where the stride is 1 (see
/// [`forward`](Self::forward)), otherwise its patches copied a tile of
/// pixels at a time.
pub(crate) struct Plan {
    conv: Conv,
    /// Output channels: 8 or 16.
    cols: usize,
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
        Plan { conv: *conv, cols: conv.cout, h, w, ho, wo, pt, pl }
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
    /// `[k, k, cin, cols]`, `y` `[ho, wo, cols]`.
    pub(crate) fn forward(&self, x: &[f32], weight: &[f32], y: &mut [f32], accumulate: bool) {
        let (kk, cols) = (self.patch_len(), self.cols);
        match self.interior() {
            Some((a, b)) if !accumulate => self.forward_direct(x, weight, y, a, b),
            _ => self.tiles(x, |first, n, patches| {
                let lhs = Lhs::new(patches, 0, kk, 1);
                rows(&mut y[first * cols..], cols, n, lhs, kk, weight, cols, accumulate);
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
        let (k, c, wo, cols) = (self.conv.k, self.conv.cin, self.wo, self.cols);
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
            let lhs = Lhs::new(x, base, c, 1);
            rows(&mut y[first * cols..], cols, last - first, lhs, kc, &weight[ky * kc * cols..], cols, i > 0);
        }
        let kk = self.patch_len();
        for ox in (0..a).chain(b..wo) {
            self.column_tiles(x, ox, |first, n, patches| {
                let lhs = Lhs::new(patches, 0, kk, 1);
                rows(&mut y[first * cols..], wo * cols, n, lhs, kk, weight, cols, false);
            });
        }
    }

    /// Adds one image's weight gradient `Σ_pixels patch(x)ᵀ·dy` into
    /// `dweight` (`[k, k, cin, cols]`): `x` `[h, w, cin]`, `dy` `[ho, wo, cols]`.
    pub(crate) fn add_weight_grad(&self, x: &[f32], dy: &[f32], dweight: &mut [f32]) {
        let (kk, cols) = (self.patch_len(), self.cols);
        let Some((a, b)) = self.interior() else {
            // Rows of this product are the patch entries, its inner
            // dimension the tile's pixels.
            return self.tiles(x, |first, n, patches| {
                let lhs = Lhs::new(patches, 0, 1, kk);
                rows(dweight, cols, kk, lhs, n, &dy[first * cols..], cols, true);
            });
        };
        let (k, c, wo) = (self.conv.k, self.conv.cin, self.wo);
        let kc = k * c;
        // The interior pixels of each row, read in place: rows of the
        // product are the `k·cin` entries of one window row, its inner
        // dimension the row's interior pixels.
        for ky in 0..k {
            let dw = &mut dweight[ky * kc * cols..][..kc * cols];
            for oy in self.rows_inside(ky) {
                let base = ((oy + ky - self.pt) * self.w + a - self.pl) * c;
                let lhs = Lhs::new(x, base, 1, c);
                rows(dw, cols, kc, lhs, b - a, &dy[(oy * wo + a) * cols..], cols, true);
            }
        }
        // The edge columns from copied windows, their output gradients
        // gathered into rows.
        let mut g = [0f32; TILE * MAX_COLS];
        for ox in (0..a).chain(b..wo) {
            self.column_tiles(x, ox, |first, n, patches| {
                for (i, row) in g.chunks_exact_mut(cols).take(n).enumerate() {
                    row.copy_from_slice(&dy[(first + i * wo) * cols..][..cols]);
                }
                let lhs = Lhs::new(patches, 0, 1, kk);
                rows(dweight, cols, kk, lhs, n, &g[..n * cols], cols, true);
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
    use super::{Lhs, BLOCK};
    use std::arch::x86_64::*;

    /// Runs `$block` (an expression of the first row `$r`) over rows
    /// `0..$count` in blocks: as many of the first size as fit, then of the
    /// next, down to single rows, so each row is computed once.
    macro_rules! in_blocks {
        ($count:expr, $r:ident, $($rows:expr => $block:expr),+ $(,)?) => {{
            let mut $r = 0;
            $(
                // One test for every size, 1 included.
                #[allow(clippy::int_plus_one)]
                while $r + $rows <= $count {
                    $block;
                    $r += $rows;
                }
            )+
        }};
    }

    /// Output rows per register block of the 512-bit kernels. AVX-512's 32
    /// registers would hold 24 accumulators besides the right-hand row and
    /// a broadcast, but with 24 the compiler kept the accumulator array in
    /// memory (the 8-output kernels took 14.7% of a quick training's
    /// samples, against 10.1% with 16).
    const WIDE_BLOCK: usize = 16;

    /// Where a register block asks for the left-hand side it will read
    /// later, one cache line per inner step. The blocks read hundreds of
    /// megabytes of activations at the paper's size in an order the
    /// hardware prefetcher follows badly (a few dozen lines at once, 4 kB
    /// pages): the 64 → 16 pointwise convolution on a batch of 32 images
    /// of 96×96 ran at 75–78 GFLOP/s, and at 154–183 with these requests.
    #[derive(Clone, Copy)]
    struct Ahead {
        /// The line for step 0, or null for none.
        first: *const f32,
        /// Floats between the lines of consecutive steps.
        step: usize,
    }

    impl Ahead {
        /// Blocks ahead where the left-hand rows are whole and contiguous.
        const BLOCKS: usize = 2;
        /// Steps ahead where a step's elements are contiguous.
        const STEPS: usize = 16;

        /// For a block of `rows` rows from `pa` over `k` steps of a matrix
        /// far from cache ([`Lhs::far`]): rows stored one after another
        /// (`cs == 1`, `rs == k`) fetch the block [`BLOCKS`](Self::BLOCKS)
        /// ahead, `rows` floats per step, about a line; a step's elements
        /// side by side (`rs == 1`) fetch the step [`STEPS`](Self::STEPS)
        /// ahead; other layouts (windows read in place) and matrices in
        /// cache fetch nothing.
        #[inline(always)]
        fn new(pa: *const f32, lhs: Lhs<'_>, rows: usize, k: usize) -> Self {
            if lhs.far && lhs.cs == 1 && lhs.rs == k && rows >= 12 {
                Self { first: pa.wrapping_add(Self::BLOCKS * rows * k), step: rows }
            } else if lhs.far && lhs.rs == 1 && lhs.cs >= 8 {
                Self { first: pa.wrapping_add(Self::STEPS * lhs.cs), step: lhs.cs }
            } else {
                Self { first: std::ptr::null(), step: 0 }
            }
        }

        /// The request of step `p` (a hint: an address past the data is
        /// never read, and a prefetch does not fault).
        #[inline(always)]
        fn fetch(self, p: usize) {
            if !self.first.is_null() {
                // SAFETY: a prefetch reads nothing architecturally.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(self.first.wrapping_add(p * self.step) as *const i8) };
            }
        }
    }

    /// [`super::Kernel::Eight`]; bounds checked in [`super::rows_on`].
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
        // Fewer than 8 independent sums wait on the multiply-add's latency.
        in_blocks!(count, r,
            BLOCK => block::<BLOCK>(c, ldc, r, lhs, k, rhs, accumulate),
            8 => block::<8>(c, ldc, r, lhs, k, rhs, accumulate),
            4 => block::<4>(c, ldc, r, lhs, k, rhs, accumulate),
            1 => block::<1>(c, ldc, r, lhs, k, rhs, accumulate),
        );
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
        let ahead = Ahead::new(pa, lhs, N, k);
        for p in 0..k {
            ahead.fetch(p);
            let bv = _mm256_loadu_ps(pb.add(p * 8));
            let ap = pa.add(p * lhs.cs);
            for (i, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&*ap.add(i * lhs.rs)), bv, *acc);
            }
        }
        let pc = c.as_mut_ptr().add(r * ldc);
        for (i, acc) in acc.iter().enumerate() {
            store8(pc.add(i * ldc), *acc, accumulate);
        }
    }

    /// Writes `v` to the 8 floats at `out`, or adds it onto them.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn store8(out: *mut f32, v: __m256, accumulate: bool) {
        let v = if accumulate { _mm256_add_ps(_mm256_loadu_ps(out), v) } else { v };
        _mm256_storeu_ps(out, v);
    }

    /// [`super::Kernel::EightBySteps`] (`lhs.cs == 1`); bounds checked in
    /// [`super::rows_on`].
    ///
    /// # Safety
    /// The CPU must have AVX-512F, AVX2 and FMA, and every index in bounds.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn rows_by_steps(
        c: &mut [f32],
        ldc: usize,
        count: usize,
        lhs: Lhs<'_>,
        k: usize,
        rhs: &[f32],
        accumulate: bool,
    ) {
        debug_assert_eq!(lhs.cs, 1);
        in_blocks!(count, r,
            WIDE_BLOCK => block_by_steps::<WIDE_BLOCK>(c, ldc, r, lhs, k, rhs, accumulate),
            12 => block_by_steps::<12>(c, ldc, r, lhs, k, rhs, accumulate),
            4 => block_by_steps::<4>(c, ldc, r, lhs, k, rhs, accumulate),
            1 => block_by_steps::<1>(c, ldc, r, lhs, k, rhs, accumulate),
        );
    }

    /// Output rows `r..r + N`, each in one 512-bit accumulator whose lanes
    /// `2j` and `2j + 1` sum column `j` over the even and the odd inner
    /// steps: a step pair takes one 64-bit broadcast of the row's two
    /// adjacent left-hand elements and the two right-hand rows interleaved.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn block_by_steps<const N: usize>(
        c: &mut [f32],
        ldc: usize,
        r: usize,
        lhs: Lhs<'_>,
        k: usize,
        rhs: &[f32],
        accumulate: bool,
    ) {
        // Rows p and p + 1 of the right-hand side, element by element.
        let spread = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
        let mut acc = [_mm512_setzero_ps(); N];
        let (pa, pb) = (lhs.data.as_ptr().add(lhs.base + r * lhs.rs), rhs.as_ptr());
        let ahead = Ahead::new(pa, lhs, N, k);
        let mut p = 0;
        while p + 2 <= k {
            ahead.fetch(p);
            ahead.fetch(p + 1);
            let bv = _mm512_permutexvar_ps(spread, _mm512_loadu_ps(pb.add(p * 8)));
            let ap = pa.add(p);
            for (i, acc) in acc.iter_mut().enumerate() {
                let pair = (ap.add(i * lhs.rs) as *const f64).read_unaligned();
                *acc = _mm512_fmadd_ps(_mm512_castpd_ps(_mm512_set1_pd(pair)), bv, *acc);
            }
            p += 2;
        }
        if p < k {
            // The last, odd step goes to the even lanes only.
            let bv = _mm512_permutexvar_ps(spread, _mm512_maskz_loadu_ps(0x00ff, pb.add(p * 8)));
            let ap = pa.add(p);
            for (i, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_mask3_fmadd_ps(_mm512_set1_ps(*ap.add(i * lhs.rs)), bv, *acc, 0x5555);
            }
        }
        // Even plus odd in the even lanes, then those gathered low.
        let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        let pc = c.as_mut_ptr().add(r * ldc);
        for (i, acc) in acc.iter().enumerate() {
            let sum = _mm512_add_ps(*acc, _mm512_permute_ps::<0b1011_0001>(*acc));
            store8(pc.add(i * ldc), _mm512_castps512_ps256(_mm512_permutexvar_ps(evens, sum)), accumulate);
        }
    }

    /// [`super::Kernel::EightByRows`] (`lhs.rs == 1`); bounds checked in
    /// [`super::rows_on`].
    ///
    /// # Safety
    /// The CPU must have AVX-512F, AVX2 and FMA, and every index in bounds.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn rows_by_rows(
        c: &mut [f32],
        ldc: usize,
        count: usize,
        lhs: Lhs<'_>,
        k: usize,
        rhs: &[f32],
        accumulate: bool,
    ) {
        debug_assert_eq!(lhs.rs, 1);
        in_blocks!(count, r,
            2 * BLOCK => block_by_rows::<BLOCK>(c, ldc, r, lhs, k, rhs, accumulate),
            8 => block_by_rows::<4>(c, ldc, r, lhs, k, rhs, accumulate),
            2 => block_by_rows::<1>(c, ldc, r, lhs, k, rhs, accumulate),
            1 => block::<1>(c, ldc, r, lhs, k, rhs, accumulate),
        );
    }

    /// Output rows `r..r + 2N`, two to a 512-bit accumulator: lanes `2j`
    /// and `2j + 1` are column `j` of rows `r + 2i` and `r + 2i + 1`. A step
    /// takes one 64-bit broadcast of the rows' two adjacent left-hand
    /// elements and the right-hand row with each element twice.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn block_by_rows<const N: usize>(
        c: &mut [f32],
        ldc: usize,
        r: usize,
        lhs: Lhs<'_>,
        k: usize,
        rhs: &[f32],
        accumulate: bool,
    ) {
        let twice = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
        let mut acc = [_mm512_setzero_ps(); N];
        let (pa, pb) = (lhs.data.as_ptr().add(lhs.base + r), rhs.as_ptr());
        let ahead = Ahead::new(pa, lhs, 2 * N, k);
        for p in 0..k {
            ahead.fetch(p);
            let bv = _mm512_permutexvar_ps(twice, _mm512_castps256_ps512(_mm256_loadu_ps(pb.add(p * 8))));
            let ap = pa.add(p * lhs.cs);
            for (i, acc) in acc.iter_mut().enumerate() {
                let pair = (ap.add(2 * i) as *const f64).read_unaligned();
                *acc = _mm512_fmadd_ps(_mm512_castpd_ps(_mm512_set1_pd(pair)), bv, *acc);
            }
        }
        // Even lanes to the low half (row r + 2i), odd to the high one.
        let split = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        let pc = c.as_mut_ptr().add(r * ldc);
        for (i, acc) in acc.iter().enumerate() {
            let v = _mm512_permutexvar_ps(split, *acc);
            let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            store8(pc.add(2 * i * ldc), _mm512_castps512_ps256(v), accumulate);
            store8(pc.add((2 * i + 1) * ldc), high, accumulate);
        }
    }

    /// [`super::Kernel::Sixteen`]; bounds checked in [`super::rows_on`].
    ///
    /// # Safety
    /// The CPU must have AVX-512F, AVX2 and FMA, and every index in bounds.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn rows16(
        c: &mut [f32],
        ldc: usize,
        count: usize,
        lhs: Lhs<'_>,
        k: usize,
        rhs: &[f32],
        accumulate: bool,
    ) {
        in_blocks!(count, r,
            WIDE_BLOCK => block16::<WIDE_BLOCK>(c, ldc, r, lhs, k, rhs, accumulate),
            12 => block16::<12>(c, ldc, r, lhs, k, rhs, accumulate),
            4 => block16::<4>(c, ldc, r, lhs, k, rhs, accumulate),
            1 => block16::<1>(c, ldc, r, lhs, k, rhs, accumulate),
        );
    }

    /// Output rows `r..r + N` of 16 columns, one 512-bit accumulator each.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn block16<const N: usize>(
        c: &mut [f32],
        ldc: usize,
        r: usize,
        lhs: Lhs<'_>,
        k: usize,
        rhs: &[f32],
        accumulate: bool,
    ) {
        let mut acc = [_mm512_setzero_ps(); N];
        let (pa, pb) = (lhs.data.as_ptr().add(lhs.base + r * lhs.rs), rhs.as_ptr());
        let ahead = Ahead::new(pa, lhs, N, k);
        for p in 0..k {
            ahead.fetch(p);
            let bv = _mm512_loadu_ps(pb.add(p * 16));
            let ap = pa.add(p * lhs.cs);
            for (i, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_fmadd_ps(_mm512_set1_ps(*ap.add(i * lhs.rs)), bv, *acc);
            }
        }
        let pc = c.as_mut_ptr().add(r * ldc);
        for (i, acc) in acc.iter().enumerate() {
            let out = pc.add(i * ldc);
            let v = if accumulate { _mm512_add_ps(_mm512_loadu_ps(out), *acc) } else { *acc };
            _mm512_storeu_ps(out, v);
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

    /// Every kernel this CPU runs, with whether it takes a left-hand side
    /// of row stride `rs` and column stride `cs`.
    fn kernels_here() -> Vec<Kernel> {
        let all = [Kernel::Eight, Kernel::EightBySteps, Kernel::EightByRows, Kernel::Sixteen];
        let here: Vec<Kernel> = all.into_iter().filter(|k| k.runs_here()).collect();
        if here.len() < all.len() {
            eprintln!("this CPU runs only {here:?} of the narrow kernels");
        }
        here
    }

    fn takes(kernel: Kernel, a: MatRef<'_>) -> bool {
        match kernel {
            Kernel::EightBySteps => a.col_stride == 1,
            Kernel::EightByRows => a.row_stride == 1,
            _ => true,
        }
    }

    #[test]
    fn products_match_the_definition_on_every_kernel() {
        let val = |i: usize, f: f32| ((i as f32 + 1.0) * f).sin();
        for kernel in kernels_here() {
            let cols = kernel.cols();
            // Row counts through every block size (24, 12, 8, 4, pairs, 1)
            // and past one parallel task; inner dimensions 1 to a few
            // hundred, odd and even.
            for &(m, k) in &[(1usize, 1usize), (3, 7), (13, 72), (25, 8), (31, 45), (59, 2), (400, 33), (37, 300)] {
                let a: Vec<f32> = (0..m * k).map(|i| val(i, 0.37)).collect();
                let at: Vec<f32> = (0..m * k).map(|i| a[(i % m) * k + i / m]).collect();
                let b: Vec<f32> = (0..k * cols).map(|i| val(i, 0.11)).collect();
                let bt: Vec<f32> = (0..k * cols).map(|i| b[(i % k) * cols + i / k]).collect();
                let want = naive(MatRef::new(&a, m, k), MatRef::new(&b, k, cols));
                let scale = want.iter().fold(1f64, |s, v| s.max(v.abs()));
                let operands = [
                    (MatRef::new(&a, m, k), MatRef::new(&b, k, cols)),
                    // aᵀ and bᵀ stored: read through transposed views.
                    (MatRef::new(&at, k, m).t(), MatRef::new(&bt, cols, k).t()),
                ];
                for (lhs, rhs) in operands {
                    if !takes(kernel, lhs) {
                        continue;
                    }
                    for threads in [Threads::One, Threads::All] {
                        for accumulate in [false, true] {
                            // Row stride 19 > 16: the gaps must stay untouched.
                            let ldc = 19;
                            let mut c = vec![0.5f32; (m - 1) * ldc + cols];
                            product_on(kernel, &mut c, ldc, lhs, rhs, accumulate, threads);
                            let what = format!("{kernel:?}: {m}×{k}, {threads:?}, accumulate {accumulate}");
                            for i in 0..m {
                                for j in 0..ldc.min(c.len() - i * ldc) {
                                    let got = c[i * ldc + j] as f64;
                                    let expect = match (j < cols, accumulate) {
                                        (false, _) => 0.5,
                                        (true, false) => want[i * cols + j],
                                        (true, true) => want[i * cols + j] + 0.5,
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
    }

    #[test]
    fn non_finite_inputs_reach_only_their_own_outputs() {
        // An infinite left-hand element on the last, odd inner step: the
        // step-pair kernel's unused odd lanes must not turn it into NaN.
        let (m, k) = (5, 3);
        for kernel in kernels_here() {
            let cols = kernel.cols();
            let mut a = vec![1f32; m * k];
            a[2 * k + (k - 1)] = f32::INFINITY;
            a[4 * k] = f32::NAN;
            let b = vec![0.5f32; k * cols];
            let mut c = vec![0f32; m * cols];
            let (lhs, at);
            if takes(kernel, MatRef::new(&a, m, k)) {
                lhs = MatRef::new(&a, m, k);
            } else {
                at = (0..m * k).map(|i| a[(i % m) * k + i / m]).collect::<Vec<f32>>();
                lhs = MatRef::new(&at, k, m).t();
            }
            product_on(kernel, &mut c, cols, lhs, MatRef::new(&b, k, cols), false, Threads::One);
            for (i, row) in c.chunks(cols).enumerate() {
                for v in row {
                    match i {
                        2 => assert_eq!(*v, f32::INFINITY, "{kernel:?}, row {i}"),
                        4 => assert!(v.is_nan(), "{kernel:?}, row {i}"),
                        _ => assert_eq!(*v, 1.5, "{kernel:?}, row {i}"),
                    }
                }
            }
        }
    }

    /// Matrices large enough to be requested ahead ([`FAR`]), in both
    /// layouts that request them (whole contiguous rows; a step's elements
    /// side by side), give the products of the definition; the requests run
    /// past the data's end at the last blocks, which must not fault.
    #[test]
    fn matrices_requested_ahead_match_the_definition() {
        let (m, k) = (8200usize, 16usize);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5).collect();
        let at: Vec<f32> = (0..m * k).map(|i| a[(i % m) * k + i / m]).collect();
        for kernel in kernels_here() {
            let cols = kernel.cols();
            let b: Vec<f32> = (0..k * cols).map(|i| ((i * 31) % 17) as f32 / 17.0 - 0.5).collect();
            let rhs = MatRef::new(&b, k, cols);
            let want = naive(MatRef::new(&a, m, k), rhs);
            for lhs in [MatRef::new(&a, m, k), MatRef::new(&at, k, m).t()] {
                assert!((m - 1) * lhs.row_stride + (k - 1) * lhs.col_stride >= FAR, "not a far matrix");
                if !takes(kernel, lhs) {
                    continue;
                }
                let mut c = vec![0f32; m * cols];
                // One thread: a parallel product's tasks are too small to be far.
                product_on(kernel, &mut c, cols, lhs, rhs, false, Threads::One);
                for (i, (got, want)) in c.iter().zip(&want).enumerate() {
                    assert!(
                        (*got as f64 - want).abs() < 1e-5,
                        "{kernel:?}, strides {} / {}: element {i}: {got} against {want}",
                        lhs.row_stride,
                        lhs.col_stride
                    );
                }
            }
        }
    }

    #[test]
    fn long_inner_dimensions_are_summed_in_chunks() {
        // 100,000 steps of 0.1·1 (a weight gradient over 100,000 pixels):
        // one float chain drifts by about 1e-4 of the sum.
        let (m, k) = (5, 100_000);
        let a = vec![0.1f32; m * k];
        for kernel in kernels_here() {
            let cols = kernel.cols();
            let b = vec![1f32; k * cols];
            let lhs =
                if takes(kernel, MatRef::new(&a, m, k)) { MatRef::new(&a, m, k) } else { MatRef::new(&a, k, m).t() };
            let mut c = vec![0f32; m * cols];
            product_on(kernel, &mut c, cols, lhs, MatRef::new(&b, k, cols), false, Threads::One);
            let want = 0.1f32 as f64 * k as f64;
            for v in &c {
                assert!((*v as f64 - want).abs() < 1e-5 * want, "{kernel:?}: {v} against {want}");
            }
        }
    }

    #[test]
    fn two_rows_to_a_vector_give_the_same_bits_as_one() {
        if !Kernel::EightByRows.runs_here() {
            eprintln!("no AVX-512: the two-rows kernel is not used on this CPU");
            return;
        }
        let (m, k) = (51, 37);
        let at: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1013) as f32 * 1e-3 - 0.5).collect();
        let b: Vec<f32> = (0..k * 8).map(|i| ((i * 104729) % 997) as f32 * 1e-3 - 0.5).collect();
        let lhs = MatRef::new(&at, k, m).t();
        let (mut one, mut two) = (vec![0.25f32; m * 8], vec![0.25f32; m * 8]);
        product_on(Kernel::Eight, &mut one, 8, lhs, MatRef::new(&b, k, 8), true, Threads::One);
        product_on(Kernel::EightByRows, &mut two, 8, lhs, MatRef::new(&b, k, 8), true, Threads::One);
        assert_eq!(one, two);
    }

    #[test]
    fn splitting_rows_between_threads_does_not_change_a_bit() {
        let (m, k) = (1000, 72);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1013) as f32 * 1e-3 - 0.5).collect();
        for kernel in kernels_here() {
            let cols = kernel.cols();
            let b: Vec<f32> = (0..k * cols).map(|i| ((i * 104729) % 997) as f32 * 1e-3 - 0.5).collect();
            let lhs =
                if takes(kernel, MatRef::new(&a, m, k)) { MatRef::new(&a, m, k) } else { MatRef::new(&a, k, m).t() };
            let (mut one, mut all) = (vec![0f32; m * cols], vec![0f32; m * cols]);
            product_on(kernel, &mut one, cols, lhs, MatRef::new(&b, k, cols), false, Threads::One);
            product_on(kernel, &mut all, cols, lhs, MatRef::new(&b, k, cols), false, Threads::All);
            assert_eq!(one, all, "{kernel:?}");
        }
    }
}
