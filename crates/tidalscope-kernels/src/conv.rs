//! 2-D convolutions on NHWC buffers with TensorFlow's "same" padding (the
//! reference Keras model's, and burn's `PaddingConfig2d::Same`: when the
//! total padding is odd, the extra row or column goes at the bottom/right).
//!
//! Weights are HWIO, `[k, k, cin, cout]` row-major, so they are the
//! `(k·k·cin) × cout` right-hand matrix of one GEMM per image whose left-hand
//! side is the image itself for 1×1 stride-1 convolutions (no copy) and its
//! im2col patch matrix otherwise. Images run in parallel, one GEMM per group
//! of consecutive images on one thread; a batch of one gives the GEMM every
//! thread instead. A group is one image on large maps, several on small ones
//! ([`group_size`]): a product of a few dozen rows spends most of its time
//! packing the weights, not multiplying.

use crate::gemm::{matmul, MatRef, Threads};
use crate::narrow;
use rayon::prelude::*;
use std::cell::RefCell;
use std::ops::Range;
use std::thread::LocalKey;
use tidalscope_core::multiversion;

/// Floats in a block of an image's patch matrix ([`Conv::patch_block`]):
/// 512 kB, a quarter of a 2 MB L2 cache, leaving room for the product's
/// packed operands.
const PATCH_BLOCK: usize = 128 * 1024;

thread_local! {
    // One patch-matrix buffer per thread, reused across layers and steps.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    // The weight gradients' per-group partial sums, on the calling thread:
    // megabytes per layer at the paper's size, which a fresh allocation
    // each step would page-fault in again.
    static PARTIALS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    // A chunk of a made input ([`Input::Made`]), reused between chunks,
    // layers and steps.
    static MADE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a scratch buffer of `len` floats owned by this thread. The
/// buffer is taken out while in use, so a nested call (rayon can run another
/// task on this thread while a GEMM waits) gets its own.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_buffer(&SCRATCH, len, f)
}

/// [`with_scratch`] on the buffer `key`.
fn with_buffer<R>(key: &'static LocalKey<RefCell<Vec<f32>>>, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = key.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    key.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < buf.len() {
            *s = buf;
        }
    });
    r
}

/// A square convolution without bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv {
    /// Kernel side.
    pub k: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
}

impl Conv {
    /// Output height and width for an `h × w` input: ⌈h/stride⌉ × ⌈w/stride⌉.
    pub fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        (h.div_ceil(self.stride), w.div_ceil(self.stride))
    }

    /// Floats in the weight tensor.
    pub fn weight_len(&self) -> usize {
        self.k * self.k * self.cin * self.cout
    }

    fn patch_len(&self) -> usize {
        self.k * self.k * self.cin
    }

    /// Padding before the first row and column (TensorFlow's rule).
    pub(crate) fn pad_before(&self, h: usize, w: usize) -> (usize, usize) {
        let (ho, wo) = self.out_size(h, w);
        let total = |i: usize, o: usize| ((o - 1) * self.stride + self.k).saturating_sub(i);
        (total(h, ho) / 2, total(w, wo) / 2)
    }

    /// A 1×1 stride-1 convolution reads the image itself as its patch matrix.
    fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1
    }

    fn check(&self, what: &str, len: usize, want: usize) {
        assert_eq!(len, want, "{what} of {self:?}: {len} floats, expected {want}");
    }

    /// `y = conv(x)` (or `y += conv(x)` when `accumulate`).
    ///
    /// # Shapes
    /// `x`: `[n, h, w, cin]`, `weight`: `[k, k, cin, cout]`, `y`: `[n, ho, wo, cout]`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(&self, x: &[f32], n: usize, h: usize, w: usize, weight: &[f32], y: &mut [f32], accumulate: bool) {
        self.forward_with(Input::Ready(x), n, h, w, weight, y, accumulate, |_, _| ());
    }

    /// [`forward`](Self::forward), then `then(offset, chunk)` on each chunk
    /// of `y` (an image or a group of images; `offset` in floats) right
    /// after the chunk is written, on the thread that wrote it, while the
    /// chunk is still in cache: what `then` returned for each chunk, in
    /// order. The chunks depend on the shapes only, never on the thread
    /// count. (The BatchNorm that follows takes its statistics here
    /// instead of in a pass of its own over the whole output, and a
    /// residual block adds its identity shortcut: `then` may change the
    /// chunk.)
    ///
    /// # Shapes
    /// As [`forward`](Self::forward).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_with<R: Send>(
        &self,
        x: Input<'_>,
        n: usize,
        h: usize,
        w: usize,
        weight: &[f32],
        y: &mut [f32],
        accumulate: bool,
        then: impl Fn(usize, &mut [f32]) -> R + Sync,
    ) -> Vec<R> {
        let (ho, wo) = self.out_size(h, w);
        let (xs, ys) = (h * w * self.cin, ho * wo * self.cout);
        self.check("input", x.len(), n * xs);
        self.check("output", y.len(), n * ys);
        self.check("weight", weight.len(), self.weight_len());
        let g = group_size(n, ho * wo);
        per_chunk(x, xs * g, y, ys * g, |i, xg, yg, threads| {
            self.forward_images(xg, xg.len() / xs, h, w, weight, yg, accumulate, threads);
            then(i * ys * g, yg)
        })
    }

    /// [`forward`](Self::forward) for one image `[h, w, cin]` with a given
    /// thread budget (the inference pass runs whole images on each thread).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_image(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        weight: &[f32],
        y: &mut [f32],
        accumulate: bool,
        threads: Threads,
    ) {
        self.forward_images(x, 1, h, w, weight, y, accumulate, threads);
    }

    /// `m` consecutive images `[m, h, w, cin]` as one product.
    #[allow(clippy::too_many_arguments)]
    fn forward_images(
        &self,
        x: &[f32],
        m: usize,
        h: usize,
        w: usize,
        weight: &[f32],
        y: &mut [f32],
        accumulate: bool,
        threads: Threads,
    ) {
        let (ho, wo) = self.out_size(h, w);
        let k = self.patch_len();
        let wm = MatRef::new(weight, k, self.cout);
        if self.pointwise() {
            matmul(y, self.cout, MatRef::new(x, m * h * w, self.cin), wm, accumulate, threads);
        } else if narrow::applies(self) {
            let plan = narrow::Plan::new(self, h, w);
            let (xs, ys) = (h * w * self.cin, ho * wo * self.cout);
            for (xi, yi) in x.chunks(xs).zip(y.chunks_mut(ys)).take(m) {
                plan.forward(xi, weight, yi, accumulate);
            }
        } else if m == 1 {
            self.for_each_patch_block(x, h, w, |r, cols| {
                let yb = &mut y[r.start * self.cout..r.end * self.cout];
                matmul(yb, self.cout, MatRef::new(cols, r.len(), k), wm, accumulate, threads);
            });
        } else {
            let xs = h * w * self.cin;
            with_scratch(m * ho * wo * k, |cols| {
                for (xi, ci) in x.chunks(xs).take(m).zip(cols.chunks_mut(ho * wo * k)) {
                    self.im2col(xi, h, w, 0..ho * wo, ci);
                }
                matmul(y, self.cout, MatRef::new(cols, m * ho * wo, k), wm, accumulate, threads);
            });
        }
    }

    /// The input gradient: `dx = ∂L/∂x` from `dy = ∂L/∂y` (or `dx +=` when
    /// `accumulate`, for inputs that feed several layers).
    ///
    /// # Shapes
    /// As [`forward`](Self::forward), with `dy` shaped like `y` and `dx` like `x`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_input(
        &self,
        dy: &[f32],
        n: usize,
        h: usize,
        w: usize,
        weight: &[f32],
        dx: &mut [f32],
        accumulate: bool,
    ) {
        self.backward_input_with(dy, n, h, w, weight, dx, accumulate, |_, _| ());
    }

    /// [`backward_input`](Self::backward_input), then `then(offset, chunk)`
    /// on each chunk of `dx` right after it is written, as
    /// [`forward_with`](Self::forward_with) does on `y`.
    ///
    /// # Shapes
    /// As [`backward_input`](Self::backward_input).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_input_with<R: Send>(
        &self,
        dy: &[f32],
        n: usize,
        h: usize,
        w: usize,
        weight: &[f32],
        dx: &mut [f32],
        accumulate: bool,
        then: impl Fn(usize, &mut [f32]) -> R + Sync,
    ) -> Vec<R> {
        let (ho, wo) = self.out_size(h, w);
        let (xs, ys) = (h * w * self.cin, ho * wo * self.cout);
        self.check("output gradient", dy.len(), n * ys);
        self.check("input gradient", dx.len(), n * xs);
        self.check("weight", weight.len(), self.weight_len());
        if let Some(t) = self.transposed_narrow() {
            // The product below would have 8 or 16 inner columns and the
            // whole patch as output, then a scatter back onto the pixels;
            // this is one 8- or 16-output convolution reading `dy` in place.
            let flipped = self.flipped(weight);
            return t.forward_with(Input::Ready(dy), n, h, w, &flipped, dx, accumulate, then);
        }
        let wt = MatRef::new(weight, self.patch_len(), self.cout).t();
        let g = group_size(n, ho * wo);
        per_chunk(Input::Ready(dy), ys * g, dx, xs * g, |i, dyg, dxg, threads| {
            let m = dyg.len() / ys;
            let dym = MatRef::new(dyg, m * ho * wo, self.cout);
            if self.pointwise() {
                matmul(dxg, self.cin, dym, wt, accumulate, threads);
            } else {
                // The whole patch gradient at once even where it is larger
                // than the cache: in blocks of rows each product repacks
                // the whole weight matrix, which measured 2–19% slower.
                let k = self.patch_len();
                with_scratch(m * ho * wo * k, |dcols| {
                    matmul(dcols, k, dym, wt, false, threads);
                    if !accumulate {
                        dxg.fill(0.0);
                    }
                    for (ci, dxi) in dcols.chunks(ho * wo * k).zip(dxg.chunks_mut(xs)) {
                        self.col2im_add(ci, h, w, dxi);
                    }
                });
            }
            then(i * xs * g, dxg)
        })
    }

    /// The convolution whose forward pass is this one's input gradient,
    /// where that runs on the narrow 8- or 16-output kernels: with stride 1
    /// and an odd window, "same" padding is symmetric, so `∂L/∂x` is the
    /// same-padded convolution of `∂L/∂y` with the filters turned by 180°
    /// and their channels swapped ([`flipped`](Self::flipped)).
    fn transposed_narrow(&self) -> Option<Conv> {
        let t = Conv { cin: self.cout, cout: self.cin, ..*self };
        (self.stride == 1 && self.k % 2 == 1 && narrow::applies(&t)).then_some(t)
    }

    /// HWIO weights `[k, k, cout, cin]` with `w'[ky][kx][o][i] = w[k−1−ky][k−1−kx][i][o]`.
    fn flipped(&self, weight: &[f32]) -> Vec<f32> {
        let (k, ci, co) = (self.k, self.cin, self.cout);
        let mut out = vec![0f32; weight.len()];
        for ky in 0..k {
            for kx in 0..k {
                let src = &weight[((k - 1 - ky) * k + (k - 1 - kx)) * ci * co..][..ci * co];
                let dst = &mut out[(ky * k + kx) * ci * co..][..ci * co];
                for i in 0..ci {
                    for o in 0..co {
                        dst[o * ci + i] = src[i * co + o];
                    }
                }
            }
        }
        out
    }

    /// The weight gradient `dweight = ∂L/∂weight`, summed over the batch in
    /// a fixed order (so it does not depend on the thread count).
    ///
    /// # Shapes
    /// As [`forward`](Self::forward), with `dy` shaped like `y` and `dweight` like `weight`.
    pub fn backward_weight(&self, x: &[f32], n: usize, h: usize, w: usize, dy: &[f32], dweight: &mut [f32]) {
        self.backward_weight_with(Input::Ready(x), n, h, w, dy, dweight);
    }

    /// [`backward_weight`](Self::backward_weight) of an input that may be
    /// made chunk by chunk as it is read ([`Input::Made`]), in chunks of
    /// its own: the same values as the forward pass read, the same sums in
    /// the same order, so the same bits as on the input made whole.
    ///
    /// # Shapes
    /// As [`backward_weight`](Self::backward_weight).
    pub fn backward_weight_with(&self, x: Input<'_>, n: usize, h: usize, w: usize, dy: &[f32], dweight: &mut [f32]) {
        let (ho, wo) = self.out_size(h, w);
        let (xs, ys) = (h * w * self.cin, ho * wo * self.cout);
        self.check("input", x.len(), n * xs);
        self.check("output gradient", dy.len(), n * ys);
        self.check("weight gradient", dweight.len(), self.weight_len());
        let x = x.parts();
        // Images i..j summed by one product over their stacked rows.
        let add_images = |i: usize, j: usize, acc: &mut [f32], first: bool, threads: Threads| {
            let dyg = &dy[i * ys..j * ys];
            x.read(i * xs..j * xs, |xg| self.add_weight_grad(xg, dyg, j - i, h, w, acc, first, threads))
        };
        if n == 0 {
            dweight.fill(0.0);
            return;
        }
        // Up to 8 fixed groups of consecutive images, each summed on one
        // thread (a product per `group_size` images), then the groups in
        // order: the sum does not depend on the thread count.
        let groups = n.min(8);
        let per = n.div_ceil(groups);
        if groups == 1 {
            add_images(0, n, dweight, true, Threads::All);
            return;
        }
        let step = group_size(n, ho * wo).min(per);
        let len = dweight.len();
        if len == 0 {
            return;
        }
        with_buffer(&PARTIALS, n.div_ceil(per) * len, |partial| {
            partial.par_chunks_mut(len).enumerate().for_each(|(g, acc)| {
                let end = ((g + 1) * per).min(n);
                // The first product of a group overwrites what the buffer held.
                for i in (g * per..end).step_by(step) {
                    add_images(i, (i + step).min(end), acc, i == g * per, Threads::One);
                }
            });
            let (first, rest) = partial.split_at(len);
            dweight.copy_from_slice(first);
            for p in rest.chunks_exact(len) {
                for (d, s) in dweight.iter_mut().zip(p) {
                    *d += s;
                }
            }
        });
    }

    /// Adds (or writes, when `first`) the weight gradient of the `m`
    /// images `xg` (`[m, h, w, cin]`) with output gradients `dyg` into
    /// `acc`, by one product over their stacked rows.
    #[allow(clippy::too_many_arguments)]
    fn add_weight_grad(
        &self,
        xg: &[f32],
        dyg: &[f32],
        m: usize,
        h: usize,
        w: usize,
        acc: &mut [f32],
        first: bool,
        threads: Threads,
    ) {
        let (ho, wo) = self.out_size(h, w);
        let (xs, ys) = (h * w * self.cin, ho * wo * self.cout);
        let dym = MatRef::new(dyg, m * ho * wo, self.cout);
        if self.pointwise() {
            matmul(acc, self.cout, MatRef::new(xg, m * h * w, self.cin).t(), dym, !first, threads);
        } else if narrow::applies(self) {
            if first {
                acc.fill(0.0);
            }
            let plan = narrow::Plan::new(self, h, w);
            for (xi, dyi) in xg.chunks(xs).zip(dyg.chunks(ys)) {
                plan.add_weight_grad(xi, dyi, acc);
            }
        } else if m == 1 {
            // An image of no output pixels makes no product below.
            if ho * wo == 0 && first {
                acc.fill(0.0);
            }
            let k = self.patch_len();
            self.for_each_patch_block(xg, h, w, |r, cols| {
                let dyb = MatRef::new(&dyg[r.start * self.cout..r.end * self.cout], r.len(), self.cout);
                let add = !first || r.start > 0;
                matmul(acc, self.cout, MatRef::new(cols, r.len(), k).t(), dyb, add, threads);
            });
        } else {
            let k = self.patch_len();
            with_scratch(m * ho * wo * k, |cols| {
                for (xi, ci) in xg.chunks(xs).zip(cols.chunks_mut(ho * wo * k)) {
                    self.im2col(xi, h, w, 0..ho * wo, ci);
                }
                matmul(acc, self.cout, MatRef::new(cols, m * ho * wo, k).t(), dym, !first, threads);
            });
        }
    }

    /// Output rows per block of an image's patch matrix, for an image of
    /// `rows` output pixels: all of them where the matrix fits in
    /// [`PATCH_BLOCK`] floats, else as many as fit (at least 16). The
    /// paper size's strided 3×3 convolutions have 2.7–5.3 MB patch
    /// matrices per image, more than a core's L2 cache; a block is written
    /// and read back while it is still there (the forward pass and the
    /// weight gradient: measured per layer on batches of 32, 96×96×64 →
    /// 48×48 10% and 5% faster, 48×48×128 → 24×24 2% and 1%; 64 or 256
    /// kfloats no better).
    fn patch_block(&self, rows: usize) -> usize {
        let k = self.patch_len().max(1);
        if rows * k <= PATCH_BLOCK {
            rows.max(1)
        } else {
            (PATCH_BLOCK / k).max(16)
        }
    }

    /// Calls `f(rows, their patch matrix)` on one image's patch matrix a
    /// block of rows at a time ([`patch_block`](Self::patch_block)), each
    /// block written into this thread's scratch buffer just before `f`
    /// reads it.
    fn for_each_patch_block(&self, x: &[f32], h: usize, w: usize, mut f: impl FnMut(Range<usize>, &[f32])) {
        let (ho, wo) = self.out_size(h, w);
        let (k, rows) = (self.patch_len(), ho * wo);
        let block = self.patch_block(rows);
        with_scratch(block * k, |cols| {
            for r0 in (0..rows).step_by(block) {
                let r1 = (r0 + block).min(rows);
                let cols = &mut cols[..(r1 - r0) * k];
                self.im2col(x, h, w, r0..r1, cols);
                f(r0..r1, cols);
            }
        });
    }

    /// Calls `f(patch-matrix offset, pixel offset, length)` for every run of
    /// a k×k window under the output pixels `rows` of an `h × w` image, in
    /// order (offsets in floats, the patch matrix's counted from the range's
    /// first row; the pixel is `None` where the window hangs over the
    /// edge): row `oy·wo + ox` of the patch matrix holds the window under
    /// output pixel (oy, ox). A window row that lies inside the image is
    /// one run of `k·cin` floats, contiguous in both the image and the
    /// patch matrix; otherwise each of its slots (`cin` floats) is a run.
    #[inline(always)]
    fn for_each_patch_run(
        &self,
        h: usize,
        w: usize,
        rows: Range<usize>,
        mut f: impl FnMut(usize, Option<usize>, usize),
    ) {
        let (_, wo) = self.out_size(h, w);
        let (pt, pl) = self.pad_before(h, w);
        let (c, k, s) = (self.cin, self.k, self.stride);
        let first = rows.start;
        for r in rows {
            let (oy, ox) = (r / wo, r % wo);
            let ix0 = (ox * s).wrapping_sub(pl);
            let row_inside = ox * s >= pl && ix0 + k <= w;
            for ky in 0..k {
                let iy = (oy * s + ky).wrapping_sub(pt);
                let col = (r - first) * self.patch_len() + ky * k * c;
                if iy >= h {
                    f(col, None, k * c);
                } else if row_inside {
                    f(col, Some((iy * w + ix0) * c), k * c);
                } else {
                    for kx in 0..k {
                        let ix = (ox * s + kx).wrapping_sub(pl);
                        f(col + kx * c, (ix < w).then(|| (iy * w + ix) * c), c);
                    }
                }
            }
        }
    }

    /// The rows `rows` of one image's patch matrix (see
    /// [`for_each_patch_run`](Self::for_each_patch_run)), zeros where a
    /// window hangs over the edge.
    fn im2col(&self, x: &[f32], h: usize, w: usize, rows: Range<usize>, cols: &mut [f32]) {
        self.for_each_patch_run(h, w, rows, |col, pixel, len| match pixel {
            Some(px) => cols[col..col + len].copy_from_slice(&x[px..px + len]),
            None => cols[col..col + len].fill(0.0),
        });
    }

    /// Adds each entry of an image's patch matrix back onto the pixel it
    /// was copied from.
    fn col2im_add(&self, cols: &[f32], h: usize, w: usize, dx: &mut [f32]) {
        col2im_add(self, cols, h, w, dx)
    }
}

multiversion! {
    /// [`Conv::col2im_add`], compiled for the widest vectors the CPU has
    /// (the crate's default target has 128-bit ones): the same additions
    /// in the same order, so the same bits.
    fn col2im_add(conv: &Conv, cols: &[f32], h: usize, w: usize, dx: &mut [f32]) {
        let (ho, wo) = conv.out_size(h, w);
        conv.for_each_patch_run(h, w, 0..ho * wo, |col, pixel, len| {
            if let Some(px) = pixel {
                dx[px..px + len].iter_mut().zip(&cols[col..col + len]).for_each(|(d, v)| *d += v);
            }
        });
    }
}

/// Images per product for a batch of `n` images of `rows` output pixels
/// each: enough for about 512 rows per product, but at most ⌈n/8⌉, so that
/// a batch of 64 or more makes at least 8 groups to run in parallel (a
/// machine with many more threads than that leaves some idle on the
/// smallest maps; measured on 2 cores only). It depends on the shapes only,
/// never on the thread count, so neither do the results.
pub(crate) fn group_size(n: usize, rows: usize) -> usize {
    const ROWS: usize = 512;
    ROWS.div_ceil(rows.max(1)).min(n.div_ceil(8)).max(1)
}

/// Makes one chunk of a made input: `make(from chunk, into chunk)`
/// ([`Input::Made`]).
pub type MakeFn<'a> = dyn Fn(&[f32], &mut [f32]) + Sync + 'a;

/// A convolution's input.
pub enum Input<'a> {
    /// A buffer as it is.
    Ready(&'a [f32]),
    /// The buffer `make` makes from `from` (of the same length), made
    /// chunk by chunk into a buffer of the thread's own just before the
    /// chunk's product reads it, and not kept: the BatchNorm-ReLU before a
    /// convolution is applied so, not in a pass of its own over the whole
    /// batch, and where a chunk fits in a core's cache its output is never
    /// written out to memory. The training backward pass makes it again
    /// where its weight gradient reads it ([`Conv::backward_weight_with`]).
    Made {
        /// What the input is made from.
        from: &'a [f32],
        /// Makes one chunk: `make(from chunk, into chunk)` on chunks of
        /// whole images, which differ between the passes that read the
        /// input: each value must depend only on its own input value and
        /// its place in the image (a BatchNorm map, per channel).
        make: &'a MakeFn<'a>,
    },
    /// As [`Input::Made`], but made into `into` (of the same length) and
    /// left there for the backward pass to read as it is: where an image
    /// is too large to stay in a core's cache while it is made and read
    /// again (the training tape decides: `resnet::KeptInputs`).
    Kept {
        /// What the input is made from.
        from: &'a [f32],
        /// Where it is made (left filled).
        into: &'a mut [f32],
        /// Makes one chunk, as in [`Input::Made`].
        make: &'a MakeFn<'a>,
    },
}

impl<'a> Input<'a> {
    /// Floats in the input (made or not).
    pub fn len(&self) -> usize {
        match self {
            Input::Ready(x) => x.len(),
            Input::Made { from, .. } | Input::Kept { from, .. } => from.len(),
        }
    }

    /// Whether the input has no floats.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The input as the weight gradients read it, in parts: one to be
    /// kept is made whole first.
    pub(crate) fn parts(self) -> Parts<'a> {
        match self.made_and_kept() {
            (Parts::Made { from, make }, Some(into)) => {
                make(from, into);
                Parts::Ready(into)
            }
            (parts, _) => parts,
        }
    }

    /// The input in parts made as they are read, and where it is to be
    /// left made if it is kept ([`Input::Kept`]).
    fn made_and_kept(self) -> (Parts<'a>, Option<&'a mut [f32]>) {
        match self {
            Input::Ready(x) => (Parts::Ready(x), None),
            Input::Made { from, make } => (Parts::Made { from, make }, None),
            Input::Kept { from, into, make } => {
                assert_eq!(from.len(), into.len(), "a convolution's input made from a buffer of another size");
                (Parts::Made { from, make }, Some(into))
            }
        }
    }
}

/// An input read in parts, each made as it is read where the input is
/// made ([`Input::parts`]).
#[derive(Clone, Copy)]
pub(crate) enum Parts<'a> {
    /// A buffer as it is.
    Ready(&'a [f32]),
    /// As [`Input::Made`].
    Made { from: &'a [f32], make: &'a MakeFn<'a> },
}

impl Parts<'_> {
    /// The floats `range` of the input, as made, handed to `f` (in the
    /// thread's own buffer where the input is made).
    pub(crate) fn read<R>(self, range: Range<usize>, f: impl FnOnce(&[f32]) -> R) -> R {
        match self {
            Parts::Ready(x) => f(&x[range]),
            Parts::Made { from, make } => {
                let from = &from[range];
                with_buffer(&MADE, from.len(), |x| {
                    make(from, x);
                    f(x)
                })
            }
        }
    }
}

/// Runs `f(chunk index, input chunk, output chunk, threads)` on
/// consecutive chunks of a batch (an image or a group of images), `in_len`
/// and `out_len` floats each (the last may be shorter), each input chunk
/// made first where the input is made ([`Input::Made`], [`Input::Kept`]):
/// chunks in parallel with single-threaded products, or one chunk with
/// every thread in its product. Returns what `f` returned for each chunk,
/// in order.
pub(crate) fn per_chunk<R: Send>(
    input: Input<'_>,
    in_len: usize,
    output: &mut [f32],
    out_len: usize,
    f: impl Fn(usize, &[f32], &mut [f32], Threads) -> R + Sync,
) -> Vec<R> {
    let (in_len, out_len) = (in_len.max(1), out_len.max(1));
    let total = input.len();
    let n = total.div_ceil(in_len);
    // Where each chunk is kept, if the input is.
    let (parts, into) = input.made_and_kept();
    let kept: Vec<Option<&mut [f32]>> = match into {
        Some(into) => into.chunks_mut(in_len).map(Some).collect(),
        None => std::iter::repeat_with(|| None).take(n).collect(),
    };
    let jobs: Vec<Chunk<'_>> = output
        .chunks_mut(out_len)
        .zip(kept)
        .enumerate()
        .take(n)
        .map(|(index, (output, kept))| Chunk { index, output, kept })
        .collect();
    let run = |Chunk { index, output, kept }: Chunk<'_>, threads| {
        let range = index * in_len..((index + 1) * in_len).min(total);
        match (kept, parts) {
            (Some(into), Parts::Made { from, make }) => {
                make(&from[range], into);
                f(index, into, output, threads)
            }
            _ => parts.read(range, |x| f(index, x, output, threads)),
        }
    };
    if n <= 1 || rayon::current_num_threads() == 1 {
        let threads = if n <= 1 { Threads::All } else { Threads::One };
        jobs.into_iter().map(|job| run(job, threads)).collect()
    } else {
        jobs.into_par_iter().map(|job| run(job, Threads::One)).collect()
    }
}

/// One chunk of [`per_chunk`]'s work.
struct Chunk<'a> {
    index: usize,
    output: &'a mut [f32],
    /// Where the input chunk is kept, if it is ([`Input::Kept`]).
    kept: Option<&'a mut [f32]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straight from the definition, in f64: y, and dx, dw for dy.
    fn naive(
        c: &Conv,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        wt: &[f32],
        dy: &[f32],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (ho, wo) = c.out_size(h, w);
        let (pt, pl) = c.pad_before(h, w);
        let mut y = vec![0f64; n * ho * wo * c.cout];
        let mut dx = vec![0f64; x.len()];
        let mut dw = vec![0f64; wt.len()];
        for b in 0..n {
            for oy in 0..ho {
                for ox in 0..wo {
                    for ky in 0..c.k {
                        for kx in 0..c.k {
                            let iy = (oy * c.stride + ky) as isize - pt as isize;
                            let ix = (ox * c.stride + kx) as isize - pl as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            for ci in 0..c.cin {
                                let xi = ((b * h + iy as usize) * w + ix as usize) * c.cin + ci;
                                for co in 0..c.cout {
                                    let wi = ((ky * c.k + kx) * c.cin + ci) * c.cout + co;
                                    let yi = ((b * ho + oy) * wo + ox) * c.cout + co;
                                    y[yi] += x[xi] as f64 * wt[wi] as f64;
                                    dx[xi] += dy[yi] as f64 * wt[wi] as f64;
                                    dw[wi] += dy[yi] as f64 * x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        (y, dx, dw)
    }

    fn close(got: &[f32], want: &[f64], what: &str) {
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(((*g as f64) - w).abs() <= 1e-4 * scale, "{what}[{i}]: {g} vs {w}");
        }
    }

    /// `then` sees every chunk of the output once, in order, at its
    /// offset and after its last write (accumulation included), on each
    /// path: a plain product, the patch matrix, the narrow kernels, and the
    /// input gradient through col2im and through the transposed narrow
    /// convolution; an input made chunk by chunk gives the same product.
    #[test]
    fn chunk_callbacks_see_each_finished_chunk_at_its_offset() {
        let (h, w) = (6, 5);
        for c in [
            Conv { k: 1, stride: 1, cin: 8, cout: 24 },
            Conv { k: 3, stride: 2, cin: 5, cout: 24 },
            Conv { k: 3, stride: 1, cin: 8, cout: 8 },
            Conv { k: 3, stride: 1, cin: 8, cout: 16 },
        ] {
            for n in [1usize, 37] {
                let (ho, wo) = c.out_size(h, w);
                let x: Vec<f32> = (0..n * h * w * c.cin).map(|i| (i as f32 * 0.37).sin()).collect();
                let wt: Vec<f32> = (0..c.weight_len()).map(|i| (i as f32 * 0.11).cos()).collect();
                let dy: Vec<f32> = (0..n * ho * wo * c.cout).map(|i| (i as f32 * 0.23).sin()).collect();
                let record = |at: usize, chunk: &mut [f32]| (at, chunk.to_vec());
                let check = |seen: Vec<(usize, Vec<f32>)>, out: &[f32], what: &str| {
                    let mut next = 0;
                    for (at, chunk) in &seen {
                        assert_eq!(*at, next, "{c:?} batch {n} {what}: chunk offset");
                        assert_eq!(&out[next..next + chunk.len()], &chunk[..], "{c:?} batch {n} {what}: chunk at {at}");
                        next += chunk.len();
                    }
                    assert_eq!(next, out.len(), "{c:?} batch {n} {what}: chunks cover the output");
                    assert!(n == 1 || seen.len() > 1, "{c:?} batch {n} {what}: one chunk");
                };
                let mut y = vec![1f32; dy.len()];
                let seen = c.forward_with(Input::Ready(&x), n, h, w, &wt, &mut y, true, record);
                check(seen, &y, "forward");
                // An input made chunk by chunk is read as made, by the
                // product and by the weight gradient: the same bits as the
                // input made whole.
                let double = |a: &[f32], b: &mut [f32]| a.iter().zip(b).for_each(|(u, v)| *v = 2.0 * u);
                let made = || Input::Made { from: &x, make: &double };
                let mut y2 = vec![1f32; dy.len()];
                let seen = c.forward_with(made(), n, h, w, &wt, &mut y2, true, record);
                check(seen, &y2, "forward, made input");
                let x2: Vec<f32> = x.iter().map(|v| 2.0 * v).collect();
                let mut y3 = vec![1f32; dy.len()];
                c.forward(&x2, n, h, w, &wt, &mut y3, true);
                assert_eq!(y2, y3, "{c:?} batch {n}: the product of the made input");
                let (mut dw, mut dw2) = (vec![f32::NAN; wt.len()], vec![f32::NAN; wt.len()]);
                c.backward_weight_with(made(), n, h, w, &dy, &mut dw);
                c.backward_weight(&x2, n, h, w, &dy, &mut dw2);
                assert_eq!(dw, dw2, "{c:?} batch {n}: the weight gradient of the made input");
                // One made and kept: the same product, the input left made
                // whole, and so is the weight gradient of one kept there.
                let mut kept = vec![f32::NAN; x.len()];
                let mut y6 = vec![1f32; dy.len()];
                let input = Input::Kept { from: &x, into: &mut kept, make: &double };
                let seen = c.forward_with(input, n, h, w, &wt, &mut y6, true, record);
                check(seen, &y6, "forward, kept input");
                assert_eq!(y6, y3, "{c:?} batch {n}: the product of the kept input");
                assert_eq!(kept, x2, "{c:?} batch {n}: the kept input");
                kept.fill(f32::NAN);
                let mut dw3 = vec![f32::NAN; wt.len()];
                c.backward_weight_with(
                    Input::Kept { from: &x, into: &mut kept, make: &double },
                    n,
                    h,
                    w,
                    &dy,
                    &mut dw3,
                );
                assert_eq!(dw3, dw2, "{c:?} batch {n}: the weight gradient of a kept input");
                assert_eq!(kept, x2, "{c:?} batch {n}: the input kept by the weight gradient");
                let mut dx = vec![1f32; x.len()];
                let seen = c.backward_input_with(&dy, n, h, w, &wt, &mut dx, false, record);
                check(seen, &dx, "input gradient");
                // What a callback writes into its chunk stays there.
                let mut y4 = vec![1f32; dy.len()];
                c.forward_with(Input::Ready(&x2), n, h, w, &wt, &mut y4, true, |_, y| {
                    y.iter_mut().for_each(|v| *v += 1.0)
                });
                let y5: Vec<f32> = y3.iter().map(|v| v + 1.0).collect();
                assert_eq!(y4, y5, "{c:?} batch {n}: a callback's change to its chunk");
            }
        }
    }

    /// Uniform numbers in [−½, ½) from a fixed linear congruential sequence.
    fn uniform(mut seed: u32) -> impl FnMut() -> f32 {
        move || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        }
    }

    /// `c`'s forward pass, input and weight gradients on `n` random `h × w`
    /// images against [`naive`], then the two passes that can add onto
    /// what is there.
    fn check_against_the_definition(c: &Conv, n: usize, h: usize, w: usize, rnd: &mut impl FnMut() -> f32) {
        let (ho, wo) = c.out_size(h, w);
        let x: Vec<f32> = (0..n * h * w * c.cin).map(|_| rnd()).collect();
        let wt: Vec<f32> = (0..c.weight_len()).map(|_| rnd()).collect();
        let dy: Vec<f32> = (0..n * ho * wo * c.cout).map(|_| rnd()).collect();
        let (y0, dx0, dw0) = naive(c, &x, n, h, w, &wt, &dy);
        let what = format!("{c:?} batch {n} {h}×{w}");
        let mut y = vec![f32::NAN; y0.len()];
        c.forward(&x, n, h, w, &wt, &mut y, false);
        close(&y, &y0, &format!("y, {what}"));
        let mut dx = vec![f32::NAN; x.len()];
        c.backward_input(&dy, n, h, w, &wt, &mut dx, false);
        close(&dx, &dx0, &format!("dx, {what}"));
        let mut dw = vec![f32::NAN; wt.len()];
        c.backward_weight(&x, n, h, w, &dy, &mut dw);
        close(&dw, &dw0, &format!("dw, {what}"));
        // Accumulation adds onto what is there.
        let plus_one = |v: &[f64]| v.iter().map(|v| v + 1.0).collect::<Vec<_>>();
        let mut y2 = vec![1f32; y0.len()];
        c.forward(&x, n, h, w, &wt, &mut y2, true);
        close(&y2, &plus_one(&y0), &format!("y + 1, {what}"));
        let mut dx2 = vec![1f32; x.len()];
        c.backward_input(&dy, n, h, w, &wt, &mut dx2, true);
        close(&dx2, &plus_one(&dx0), &format!("dx + 1, {what}"));
    }

    /// An image whose patch matrix is larger than a block runs block by
    /// block (a block boundary inside an output row, the last block
    /// shorter, windows over every edge), in all three passes and with
    /// accumulation, on one image and on two (one per product).
    #[test]
    fn patch_matrices_larger_than_a_block_match_the_definition() {
        let mut rnd = uniform(5);
        for (c, h, w) in [
            (Conv { k: 3, stride: 2, cin: 64, cout: 24 }, 41, 37),
            (Conv { k: 3, stride: 1, cin: 64, cout: 24 }, 23, 21),
        ] {
            let (ho, wo) = c.out_size(h, w);
            let rows = ho * wo;
            assert!(c.patch_block(rows) < rows && rows % c.patch_block(rows) != 0, "{c:?}: uneven blocks");
            for n in [1usize, 2] {
                check_against_the_definition(&c, n, h, w, &mut rnd);
            }
        }
    }

    #[test]
    fn forward_and_gradients_match_the_definition_on_odd_sizes() {
        let mut rnd = uniform(1);
        // 8 outputs run on the narrow kernels, as do 16 on AVX-512, and
        // with 8 (16) inputs, stride 1 and an odd window the input gradient
        // does too.
        for &(k, stride, cin, cout) in &[
            (1, 1, 3, 5),
            (1, 2, 3, 5),
            (3, 1, 3, 5),
            (3, 2, 3, 5),
            (1, 1, 3, 8),
            (3, 1, 5, 8),
            (3, 2, 8, 8),
            (3, 1, 8, 8),
            (3, 1, 8, 16),
            (3, 1, 16, 16),
            (3, 2, 16, 16),
            (3, 1, 16, 24),
            (1, 1, 24, 16),
            (5, 1, 8, 8),
            (4, 1, 8, 8),
        ] {
            // 37 images of small maps: several images per product (group_size),
            // the last group shorter.
            for &n in &[1usize, 7, 37] {
                // 14×14 with 37 images: partial sums of several products per
                // thread; 4×3, narrower than a 5×5 window; 7×5, one interior
                // column of it (the narrow kernels' direct path); 2×9,
                // lower than it (window rows outside for every output row).
                for &(h, w) in &[(7usize, 5usize), (6, 9), (14, 14), (4, 3), (2, 9)] {
                    check_against_the_definition(&Conv { k, stride, cin, cout }, n, h, w, &mut rnd);
                }
            }
        }
    }
}
