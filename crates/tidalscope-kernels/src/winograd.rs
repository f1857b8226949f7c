//! Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray 2016) for the 3×3
//! stride-1 "same" convolutions: a third of the encoder's multiply-adds at
//! the paper's size, a quarter in the layers wide enough for it to pay
//! ([`Winograd::pays`]). Inference uses it; training uses it in all three
//! passes on the maps large enough for a whole training step to gain
//! ([`Winograd::pays_in_training`], [`crate::resnet::TrainingWinograd`]).
//!
//! Each 2×2 block of outputs comes from a 4×4 input tile: with the tile
//! transformed to V = Bᵀ·d·B and each filter to U = G·g·Gᵀ (both 4×4), the
//! outputs are Aᵀ·(Σ_cin U ⊙ V)·A, so a convolution is 16 products of
//! `(tiles × cin)·(cin × cout)` — 16 multiply-adds per pair of channels and
//! output block instead of 36 — between transforms that only add. The
//! filters' transform is done once per set of weights (at inference once,
//! in training once per step); the tiles' runs on channel vectors (NHWC
//! keeps a pixel's channels together), compiled for the widest SIMD the CPU
//! has (the `simd` module). The coefficients are 0, ±1 and ±½, so results
//! equal the direct convolution to float rounding.
//!
//! Its products have `cin` as their inner dimension where im2col's have
//! `9·cin`, so on few channels the saving in multiply-adds is eaten by the
//! products' overheads: [`Winograd::pays`] says where it is used.

use crate::conv::{group_size, per_chunk, with_scratch, Conv, Input};
use crate::gemm::{matmul, MatRef, Threads};
use crate::simd;
use rayon::prelude::*;

/// Tiles transformed and multiplied at a time: enough rows for the products
/// to run at speed, few enough to bound the scratch (and, on narrow layers,
/// keep it in cache); 128 and 1024 measured no better.
const BLOCK: usize = 256;

/// A 3×3 stride-1 convolution with its filters in the Winograd domain.
#[derive(Clone, Debug)]
pub struct Winograd {
    /// The convolution computed: the layer's own, or for the input
    /// gradient its transpose (`cin` and `cout` swapped).
    conv: Conv,
    /// Whether the filters are the layer's flipped and transposed ones.
    transposed: bool,
    /// `[16][cin][cout]`: U = G·g·Gᵀ for every channel pair, element e = 4·row + col.
    u: Vec<f32>,
}

/// The shortest side of the maps on which training runs the wide 3×3
/// convolutions in the Winograd domain ([`Winograd::pays_in_training`]).
pub const TRAINING_MIN_SIDE: usize = 24;

impl Winograd {
    /// Whether `conv` has the shape this computes: 3×3, stride 1.
    pub fn applies(conv: &Conv) -> bool {
        conv.k == 3 && conv.stride == 1
    }

    /// Whether it is faster than im2col for `conv` (measured per layer and
    /// with `bench encoder`: below 32 channels the products are too thin).
    pub fn pays(conv: &Conv) -> bool {
        Self::applies(conv) && conv.cin.min(conv.cout) >= 32
    }

    /// Whether a training pass runs `conv` on an `h × w` input in the
    /// Winograd domain by default: where it [`pays`](Self::pays) and the
    /// map is at least [`TRAINING_MIN_SIDE`] pixels on a side. Whole
    /// training steps measured +0–13% with it at the paper size (its
    /// 48×48 and 24×24 maps) and nothing at the quick preset's 12×12 and
    /// 6×6, where the transforms' passes over small maps cost what the
    /// products save — so the quick preset trains on the direct products,
    /// bit for bit as before.
    pub fn pays_in_training(conv: &Conv, h: usize, w: usize) -> bool {
        Self::pays(conv) && h.min(w) >= TRAINING_MIN_SIDE
    }

    /// `conv` with the HWIO weights `[3, 3, cin, cout]`.
    ///
    /// # Panics
    /// If `conv` is not 3×3 stride 1 or `weight` is not its size.
    pub fn new(conv: &Conv, weight: &[f32]) -> Self {
        Self::with(conv, weight, false)
    }

    /// The input gradient of `conv` (weights as in [`new`](Self::new)): with
    /// "same" padding and stride 1, `∂L/∂x` is the convolution of `∂L/∂y`
    /// with the filters flipped in both axes and their channels swapped.
    ///
    /// # Panics
    /// As [`new`](Self::new).
    pub fn for_input_gradient(conv: &Conv, weight: &[f32]) -> Self {
        Self::with(conv, weight, true)
    }

    fn with(conv: &Conv, weight: &[f32], transposed: bool) -> Self {
        assert!(Self::applies(conv), "Winograd F(2×2, 3×3) needs a 3×3 stride-1 convolution, not {conv:?}");
        let conv = if transposed { Conv { cin: conv.cout, cout: conv.cin, ..*conv } } else { *conv };
        let mut me = Self { conv, transposed, u: vec![0f32; 16 * conv.cin * conv.cout] };
        me.load(weight);
        me
    }

    /// Replaces the filters by the transform of `weight` (the layer's HWIO
    /// weights, as given to the constructor), reusing the buffer.
    ///
    /// # Panics
    /// If `weight` is not the layer's size.
    pub fn load(&mut self, weight: &[f32]) {
        assert_eq!(weight.len(), self.conv.weight_len(), "weights of {:?}", self.conv);
        let (cin, cout) = (self.conv.cin, self.conv.cout);
        // The layer's weight g[ky][kx][i][o] as seen by this convolution.
        let g_of = |ky: usize, kx: usize, ci: usize, co: usize| {
            if self.transposed {
                weight[(((2 - ky) * 3 + 2 - kx) * cout + co) * cin + ci]
            } else {
                weight[((ky * 3 + kx) * cin + ci) * cout + co]
            }
        };
        // G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]].
        let expand = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
        let mut u = std::mem::take(&mut self.u);
        for ci in 0..cin {
            for co in 0..cout {
                // G·g, column by column (4 rows × 3 columns).
                let gg = [0, 1, 2].map(|kx| expand(g_of(0, kx, ci, co), g_of(1, kx, ci, co), g_of(2, kx, ci, co)));
                // (G·g)·Gᵀ, row by row.
                for r in 0..4 {
                    for (c, v) in expand(gg[0][r], gg[1][r], gg[2][r]).into_iter().enumerate() {
                        u[((r * 4 + c) * cin + ci) * cout + co] = v;
                    }
                }
            }
        }
        self.u = u;
    }

    /// `y = conv(x)` (or `y += conv(x)` when `accumulate`) for a batch,
    /// several images to a product on small maps, as [`Conv::forward`].
    ///
    /// # Shapes
    /// `x`: `[n, h, w, cin]`, `y`: `[n, h, w, cout]` (`cin`, `cout` of the
    /// convolution computed: swapped for the input gradient).
    ///
    /// # Panics
    /// If the lengths disagree with the shapes.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(&self, x: &[f32], n: usize, h: usize, w: usize, y: &mut [f32], accumulate: bool) {
        self.forward_with(Input::Ready(x), n, h, w, y, accumulate, |_, _| ());
    }

    /// [`forward`](Self::forward), then `then(offset, chunk)` on each chunk
    /// of `y` right after it is written, as [`Conv::forward_with`] does
    /// (whose input may likewise be made chunk by chunk: [`Input::Made`]).
    ///
    /// # Panics
    /// If the lengths disagree with the shapes.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_with<R: Send>(
        &self,
        x: Input<'_>,
        n: usize,
        h: usize,
        w: usize,
        y: &mut [f32],
        accumulate: bool,
        then: impl Fn(usize, &mut [f32]) -> R + Sync,
    ) -> Vec<R> {
        let (xs, ys) = (h * w * self.conv.cin, h * w * self.conv.cout);
        assert_eq!(x.len(), n * xs, "input of {n} {h}×{w} images for {:?}", self.conv);
        assert_eq!(y.len(), n * ys, "output of {n} {h}×{w} images for {:?}", self.conv);
        let g = group_size(n, h.div_ceil(2) * w.div_ceil(2));
        per_chunk(x, xs * g, y, ys * g, |i, xg, yg, threads| {
            self.forward_images(xg, xg.len() / xs, h, w, yg, accumulate, threads);
            then(i * ys * g, yg)
        })
    }

    /// [`forward`](Self::forward) for one image with a given thread budget.
    ///
    /// # Panics
    /// If the lengths disagree with the shapes.
    pub fn forward_image(&self, x: &[f32], h: usize, w: usize, y: &mut [f32], accumulate: bool, threads: Threads) {
        assert_eq!(x.len(), h * w * self.conv.cin, "input of a {h}×{w} image for {:?}", self.conv);
        assert_eq!(y.len(), h * w * self.conv.cout, "output of a {h}×{w} image for {:?}", self.conv);
        self.forward_images(x, 1, h, w, y, accumulate, threads);
    }

    /// `m` consecutive images, their tiles in blocks of [`BLOCK`].
    #[allow(clippy::too_many_arguments)]
    fn forward_images(
        &self,
        x: &[f32],
        m: usize,
        h: usize,
        w: usize,
        y: &mut [f32],
        accumulate: bool,
        threads: Threads,
    ) {
        let (cin, cout) = (self.conv.cin, self.conv.cout);
        let grid = (h.div_ceil(2), w.div_ceil(2));
        let tiles = m * grid.0 * grid.1;
        let nb = tiles.clamp(1, BLOCK);
        with_tile_buffers(nb, cin, cout, |[v, p, d, s]| {
            for t0 in (0..tiles).step_by(nb) {
                let n = nb.min(tiles - t0);
                simd::winograd_input(x, h, w, cin, grid, t0, n, d, v);
                for e in 0..16 {
                    matmul(
                        &mut p[e * n * cout..(e + 1) * n * cout],
                        cout,
                        MatRef::new(&v[e * n * cin..(e + 1) * n * cin], n, cin),
                        MatRef::new(&self.u[e * cin * cout..(e + 1) * cin * cout], cin, cout),
                        false,
                        threads,
                    );
                }
                simd::winograd_output(p, h, w, cout, grid, t0, n, s, y, accumulate);
            }
        });
    }

    /// The weight gradient `∂L/∂weight` of the 3×3 stride-1 `conv` from its
    /// input `x` (which may be made group by group as it is read:
    /// [`Input::Made`]) and output gradient `dy`, as
    /// [`Conv::backward_weight_with`]:
    /// with V = Bᵀ·d·B of each input tile and W = A·δ·Aᵀ of its 2×2 output
    /// gradients, `∂L/∂g = Gᵀ·(Σ_tiles V ⊙ W)·G` — 16 products of
    /// `(cin × tiles)·(tiles × cout)`, then one transform back. Summed over
    /// up to 8 fixed groups of images in order, so the result does not
    /// depend on the thread count.
    ///
    /// # Shapes
    /// `x`: `[n, h, w, cin]`, `dy`: `[n, h, w, cout]`, `dweight`: `[3, 3, cin, cout]`.
    ///
    /// # Panics
    /// If `conv` is not 3×3 stride 1 or the lengths disagree with the shapes.
    #[allow(clippy::too_many_arguments)]
    pub fn weight_gradient(conv: &Conv, x: Input<'_>, n: usize, h: usize, w: usize, dy: &[f32], dweight: &mut [f32]) {
        assert!(Self::applies(conv), "Winograd F(2×2, 3×3) needs a 3×3 stride-1 convolution, not {conv:?}");
        let (cin, cout) = (conv.cin, conv.cout);
        let (xs, ys) = (h * w * cin, h * w * cout);
        assert_eq!(x.len(), n * xs, "input of {n} {h}×{w} images for {conv:?}");
        assert_eq!(dy.len(), n * ys, "output gradient of {n} {h}×{w} images for {conv:?}");
        assert_eq!(dweight.len(), conv.weight_len(), "weight gradient of {conv:?}");
        if n == 0 {
            dweight.fill(0.0);
            return;
        }
        let x = x.parts();
        let grid = (h.div_ceil(2), w.div_ceil(2));
        let per_image = grid.0 * grid.1;
        // Σ over the tiles of images i..j of V ⊙ W, per element: [16][cin][cout].
        let sum = |i: usize, j: usize, threads: Threads| {
            let mut acc = vec![0f32; 16 * cin * cout];
            let tiles = (j - i) * per_image;
            let nb = tiles.clamp(1, BLOCK);
            let dyg = &dy[i * ys..j * ys];
            x.read(i * xs..j * xs, |xg| {
                with_tile_buffers(nb, cin, cout, |[v, g, d, s]| {
                    for t0 in (0..tiles).step_by(nb) {
                        let m = nb.min(tiles - t0);
                        simd::winograd_input(xg, h, w, cin, grid, t0, m, d, v);
                        simd::winograd_gradient(dyg, h, w, cout, grid, t0, m, s, g);
                        for e in 0..16 {
                            matmul(
                                &mut acc[e * cin * cout..(e + 1) * cin * cout],
                                cout,
                                MatRef::new(&v[e * m * cin..(e + 1) * m * cin], m, cin).t(),
                                MatRef::new(&g[e * m * cout..(e + 1) * m * cout], m, cout),
                                t0 > 0,
                                threads,
                            );
                        }
                    }
                })
            });
            acc
        };
        let groups = n.min(8);
        let per = n.div_ceil(groups);
        let partial: Vec<Vec<f32>> = if groups == 1 {
            vec![sum(0, n, Threads::All)]
        } else {
            (0..n.div_ceil(per)).into_par_iter().map(|k| sum(k * per, ((k + 1) * per).min(n), Threads::One)).collect()
        };
        let mut total = partial[0].clone();
        for p in &partial[1..] {
            simd::add_into(&mut total, p);
        }
        // Gᵀ·M·G: Gᵀ = [[1, ½, ½, 0], [0, ½, −½, 0], [0, ½, ½, 1]].
        let shrink = |a: f32, b: f32, c: f32, d: f32| [a + 0.5 * (b + c), 0.5 * (b - c), 0.5 * (b + c) + d];
        let at = |e: usize, k: usize| total[e * cin * cout + k];
        for k in 0..cin * cout {
            let cols = [0, 1, 2, 3].map(|c| shrink(at(c, k), at(4 + c, k), at(8 + c, k), at(12 + c, k)));
            for ky in 0..3 {
                for (kx, v) in shrink(cols[0][ky], cols[1][ky], cols[2][ky], cols[3][ky]).into_iter().enumerate() {
                    dweight[(ky * 3 + kx) * cin * cout + k] = v;
                }
            }
        }
    }
}

/// Runs `f` on the four buffers a block of `nb` tiles needs, cut from
/// the thread's scratch: the transformed input tiles (`16·nb·cin` floats),
/// the products or transformed output gradients (`16·nb·cout`), one input
/// tile and its transform's working space (`32·cin`), and the output
/// side's working space (`10·cout`).
fn with_tile_buffers<R>(nb: usize, cin: usize, cout: usize, f: impl FnOnce([&mut [f32]; 4]) -> R) -> R {
    with_scratch(16 * nb * (cin + cout) + 32 * cin + 10 * cout, |buf| {
        let (v, rest) = buf.split_at_mut(16 * nb * cin);
        let (p, rest) = rest.split_at_mut(16 * nb * cout);
        let (d, s) = rest.split_at_mut(32 * cin);
        f([v, p, d, s])
    })
}

/// Where tile `t` of a batch lies: the offset of its image's first pixel
/// (in pixels) and its top-left output pixel (oy, ox). Tiles run row by
/// row through each image of `grid` = (rows, columns) tiles, then on to the
/// next image.
#[inline(always)]
fn tile_at(t: usize, (h, w): (usize, usize), grid: (usize, usize)) -> (usize, usize, usize) {
    let per = grid.0 * grid.1;
    let (img, local) = (t / per, t % per);
    (img * h * w, 2 * (local / grid.1), 2 * (local % grid.1))
}

/// Copies the 4×4 input tile whose top-left pixel is (iy0, ix0) (either may
/// be −1, the padding) into `d` (`[16][c]`, row-major), zeros outside the image.
#[inline(always)]
fn gather_tile(x: &[f32], h: usize, w: usize, c: usize, iy0: isize, ix0: isize, d: &mut [f32]) {
    for r in 0..4 {
        let iy = iy0 + r as isize;
        let row = &mut d[r * 4 * c..(r + 1) * 4 * c];
        if iy < 0 || iy >= h as isize {
            row.fill(0.0);
        } else {
            for (col, px) in row.chunks_exact_mut(c).enumerate() {
                let ix = ix0 + col as isize;
                if ix < 0 || ix >= w as isize {
                    px.fill(0.0);
                } else {
                    let at = (iy as usize * w + ix as usize) * c;
                    px.copy_from_slice(&x[at..at + c]);
                }
            }
        }
    }
}

/// One application of Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0],
/// [0, 1, 0, −1]] to four channel vectors.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn input_butterfly(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    d: &[f32],
    o0: &mut [f32],
    o1: &mut [f32],
    o2: &mut [f32],
    o3: &mut [f32],
) {
    let n = o0.len();
    let (a, b, c, d, o1, o2, o3) = (&a[..n], &b[..n], &c[..n], &d[..n], &mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for i in 0..n {
        o0[i] = a[i] - c[i];
        o1[i] = b[i] + c[i];
        o2[i] = c[i] - b[i];
        o3[i] = b[i] - d[i];
    }
}

/// One application of Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]] to four channel
/// vectors, added to the outputs when `accumulate`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn output_butterfly(a: &[f32], b: &[f32], c: &[f32], d: &[f32], o0: &mut [f32], o1: &mut [f32], accumulate: bool) {
    let n = o0.len();
    let (a, b, c, d, o1) = (&a[..n], &b[..n], &c[..n], &d[..n], &mut o1[..n]);
    for i in 0..n {
        let (p, q) = (a[i] + b[i] + c[i], b[i] - c[i] - d[i]);
        o0[i] = if accumulate { o0[i] + p } else { p };
        o1[i] = if accumulate { o1[i] + q } else { q };
    }
}

/// Four consecutive `len`-float pieces of `s`, `step` floats apart.
#[inline(always)]
fn four(s: &[f32], at: usize, step: usize, len: usize) -> [&[f32]; 4] {
    [0, 1, 2, 3].map(|k| &s[at + k * step..at + k * step + len])
}

/// [`four`], mutable: the pieces must not overlap (`len ≤ step`).
#[inline(always)]
fn four_mut(s: &mut [f32], at: usize, step: usize, len: usize) -> [&mut [f32]; 4] {
    let mut it = s[at..].chunks_mut(step).map(|p| &mut p[..len]);
    [it.next().unwrap(), it.next().unwrap(), it.next().unwrap(), it.next().unwrap()]
}

/// The input transform of tiles `t0..t0 + n` of a batch of `h × w × c`
/// images (see [`tile_at`]; each tile holds 2×2 output pixels) into `v`
/// (`[16][n][c]`), with `d` (`32·c` floats) as scratch.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn input_tiles(
    x: &[f32],
    h: usize,
    w: usize,
    c: usize,
    grid: (usize, usize),
    t0: usize,
    n: usize,
    d: &mut [f32],
    v: &mut [f32],
) {
    let (d, t) = d[..32 * c].split_at_mut(16 * c);
    for i in 0..n {
        let (img, oy, ox) = tile_at(t0 + i, (h, w), grid);
        let x = &x[img * c..(img + h * w) * c];
        let (iy0, ix0) = (oy as isize - 1, ox as isize - 1);
        // Tiles inside the image are read in place; those over an edge are
        // copied out with their padding first.
        let (src, at, row) = if iy0 >= 0 && ix0 >= 0 && iy0 as usize + 4 <= h && ix0 as usize + 4 <= w {
            (x, (iy0 as usize * w + ix0 as usize) * c, w * c)
        } else {
            gather_tile(x, h, w, c, iy0, ix0, d);
            (&d[..], 0, 4 * c)
        };
        // Bᵀ·d, column by column, into t ([col][row][c]).
        for (col, tc) in t.chunks_exact_mut(4 * c).enumerate() {
            let [a, b, cc, dd] = four(src, at + col * c, row, c);
            let [o0, o1, o2, o3] = four_mut(tc, 0, c, c);
            input_butterfly(a, b, cc, dd, o0, o1, o2, o3);
        }
        // (Bᵀ·d)·B, row by row, into elements 4·row + col of v.
        for r in 0..4 {
            let [a, b, cc, dd] = four(t, r * c, 4 * c, c);
            let [o0, o1, o2, o3] = four_mut(v, (4 * r * n + i) * c, n * c, c);
            input_butterfly(a, b, cc, dd, o0, o1, o2, o3);
        }
    }
}

/// The output transform of tiles `t0..t0 + n` (see [`input_tiles`]) from
/// the products `m` (`[16][n][c]`) into the batch `y` of `h × w × c`
/// images, with `s` (`10·c` floats) as scratch.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn output_tiles(
    m: &[f32],
    h: usize,
    w: usize,
    c: usize,
    grid: (usize, usize),
    t0: usize,
    n: usize,
    s: &mut [f32],
    y: &mut [f32],
    accumulate: bool,
) {
    let (s, spare) = s[..10 * c].split_at_mut(8 * c);
    for i in 0..n {
        let (img, oy, ox) = tile_at(t0 + i, (h, w), grid);
        let y = &mut y[img * c..(img + h * w) * c];
        // Aᵀ·m, column by column, into s ([row][col][c]).
        for col in 0..4 {
            let [a, b, cc, dd] = four(m, (col * n + i) * c, 4 * n * c, c);
            let (s0, s1) = s.split_at_mut(4 * c);
            output_butterfly(a, b, cc, dd, &mut s0[col * c..(col + 1) * c], &mut s1[col * c..(col + 1) * c], false);
        }
        // (Aᵀ·m)·A, row by row, into the pixels inside the image (the
        // others into the spare buffer).
        for r in 0..2.min(h - oy) {
            let [a, b, cc, dd] = four(s, r * 4 * c, c, c);
            let at = ((oy + r) * w + ox) * c;
            if ox + 2 <= w {
                let (o0, o1) = y[at..at + 2 * c].split_at_mut(c);
                output_butterfly(a, b, cc, dd, o0, o1, accumulate);
            } else {
                output_butterfly(a, b, cc, dd, &mut y[at..at + c], &mut spare[..c], accumulate);
            }
        }
    }
}

/// One application of A = [[1, 0], [1, 1], [1, −1], [0, −1]] to two
/// channel vectors.
#[inline(always)]
fn gradient_butterfly(a: &[f32], b: &[f32], o0: &mut [f32], o1: &mut [f32], o2: &mut [f32], o3: &mut [f32]) {
    let n = o0.len();
    let (a, b, o1, o2, o3) = (&a[..n], &b[..n], &mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for i in 0..n {
        o0[i] = a[i];
        o1[i] = a[i] + b[i];
        o2[i] = a[i] - b[i];
        o3[i] = -b[i];
    }
}

/// A·δ·Aᵀ of the 2×2 output gradients δ of tiles `t0..t0 + n` (see
/// [`input_tiles`]; zeros for pixels outside the image) of a batch `dy` of
/// `h × w × c` images, into `g` (`[16][n][c]`), with `s` (`10·c` floats)
/// as scratch.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gradient_tiles(
    dy: &[f32],
    h: usize,
    w: usize,
    c: usize,
    grid: (usize, usize),
    t0: usize,
    n: usize,
    s: &mut [f32],
    g: &mut [f32],
) {
    let (zero, t) = s[..10 * c].split_at_mut(2 * c);
    let zero = &mut zero[..c];
    zero.fill(0.0);
    for i in 0..n {
        let (img, oy, ox) = tile_at(t0 + i, (h, w), grid);
        let dy = &dy[img * c..(img + h * w) * c];
        let px =
            |y: usize, x: usize| if y < h && x < w { &dy[(y * w + x) * c..(y * w + x + 1) * c] } else { &zero[..] };
        // A·δ, column by column, into t ([col][row][c]).
        for (col, tc) in t.chunks_exact_mut(4 * c).enumerate() {
            let [o0, o1, o2, o3] = four_mut(tc, 0, c, c);
            gradient_butterfly(px(oy, ox + col), px(oy + 1, ox + col), o0, o1, o2, o3);
        }
        // (A·δ)·Aᵀ, row by row, into elements 4·row + col of g.
        for r in 0..4 {
            let (a, b) = (&t[r * c..(r + 1) * c], &t[(4 + r) * c..(5 + r) * c]);
            let [o0, o1, o2, o3] = four_mut(g, (4 * r * n + i) * c, n * c, c);
            gradient_butterfly(a, b, o0, o1, o2, o3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rnd(seed: &mut u32) -> f32 {
        *seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
        (*seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    }

    fn close(got: &[f32], want: &[f32], what: &str) {
        let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        for (i, (g, t)) in got.iter().zip(want).enumerate() {
            assert!((g - t).abs() <= 1e-5 * scale, "{what}[{i}]: {g} vs {t}");
        }
    }

    #[test]
    fn equals_the_direct_convolution_and_its_input_gradient() {
        let mut seed = 7u32;
        // Odd and even sides (partial tiles at the bottom and right), maps
        // of more than one block of tiles (a block boundary inside the
        // second image), channel counts off the SIMD width, batches of one,
        // of several images per product (small maps) and of several
        // products.
        for &(n, h, w, cin, cout) in &[
            (1, 1, 1, 3, 2),
            (1, 5, 7, 9, 11),
            (3, 6, 6, 16, 8),
            (2, 35, 33, 12, 17),
            (2, 4, 3, 1, 1),
            (37, 5, 6, 4, 3),
        ] {
            let conv = Conv { k: 3, stride: 1, cin, cout };
            let what = format!("batch {n}, {h}×{w}, {cin} → {cout}");
            let x: Vec<f32> = (0..n * h * w * cin).map(|_| rnd(&mut seed)).collect();
            let dy: Vec<f32> = (0..n * h * w * cout).map(|_| rnd(&mut seed)).collect();
            let wt: Vec<f32> = (0..conv.weight_len()).map(|_| rnd(&mut seed)).collect();
            let mut want = vec![0f32; dy.len()];
            conv.forward(&x, n, h, w, &wt, &mut want, false);
            let mut want_dx = vec![0f32; x.len()];
            conv.backward_input(&dy, n, h, w, &wt, &mut want_dx, false);
            let wino = Winograd::new(&conv, &wt);
            let mut got = vec![f32::NAN; want.len()];
            wino.forward(&x, n, h, w, &mut got, false);
            close(&got, &want, &format!("y, {what}"));
            // Accumulation adds onto what is there.
            let mut acc = vec![1f32; want.len()];
            wino.forward(&x, n, h, w, &mut acc, true);
            let plus_one: Vec<f32> = want.iter().map(|v| v + 1.0).collect();
            close(&acc, &plus_one, &format!("y + 1, {what}"));
            // One image with every thread in its products.
            let mut first = vec![f32::NAN; h * w * cout];
            wino.forward_image(&x[..h * w * cin], h, w, &mut first, false, Threads::All);
            close(&first, &want[..h * w * cout], &format!("first image, {what}"));
            // The input gradient, also after reloading other weights.
            let mut back = Winograd::for_input_gradient(&conv, &vec![0.5; wt.len()]);
            back.load(&wt);
            let mut dx = vec![f32::NAN; x.len()];
            back.forward(&dy, n, h, w, &mut dx, false);
            close(&dx, &want_dx, &format!("dx, {what}"));
            let mut want_dw = vec![0f32; wt.len()];
            conv.backward_weight(&x, n, h, w, &dy, &mut want_dw);
            let mut dw = vec![f32::NAN; wt.len()];
            Winograd::weight_gradient(&conv, Input::Ready(&x), n, h, w, &dy, &mut dw);
            close(&dw, &want_dw, &format!("dw, {what}"));
            // Of an input made group by group as it is read: the same bits
            // as of the input made whole.
            let half = |a: &[f32], b: &mut [f32]| a.iter().zip(b).for_each(|(u, v)| *v = 0.5 * u);
            let x2: Vec<f32> = x.iter().map(|v| 0.5 * v).collect();
            let (mut dw2, mut dw3) = (vec![f32::NAN; wt.len()], vec![f32::NAN; wt.len()]);
            Winograd::weight_gradient(&conv, Input::Made { from: &x, make: &half }, n, h, w, &dy, &mut dw2);
            Winograd::weight_gradient(&conv, Input::Ready(&x2), n, h, w, &dy, &mut dw3);
            assert_eq!(dw2, dw3, "dw of a made input, {what}");
        }
    }

    #[test]
    fn only_3x3_stride_1_convolutions_apply() {
        assert!(Winograd::applies(&Conv { k: 3, stride: 1, cin: 4, cout: 4 }));
        assert!(!Winograd::applies(&Conv { k: 3, stride: 2, cin: 4, cout: 4 }));
        assert!(!Winograd::applies(&Conv { k: 1, stride: 1, cin: 4, cout: 4 }));
        assert!(!Winograd::pays(&Conv { k: 3, stride: 1, cin: 16, cout: 16 }));
        assert!(!Winograd::pays(&Conv { k: 3, stride: 1, cin: 64, cout: 16 }));
        assert!(Winograd::pays(&Conv { k: 3, stride: 1, cin: 64, cout: 64 }));
    }

    /// Training takes it on the paper size's wide maps (48×48, 24×24), not
    /// on the quick preset's (12×12, 6×6), nor where it does not pay.
    #[test]
    fn training_takes_it_on_large_maps_only() {
        let wide = Conv { k: 3, stride: 1, cin: 64, cout: 64 };
        assert!(Winograd::pays_in_training(&wide, 48, 48));
        assert!(Winograd::pays_in_training(&wide, 24, 24));
        assert!(!Winograd::pays_in_training(&wide, 23, 48));
        assert!(!Winograd::pays_in_training(&wide, 12, 12));
        assert!(!Winograd::pays_in_training(&Conv { k: 3, stride: 1, cin: 16, cout: 16 }, 96, 96));
        assert!(!Winograd::pays_in_training(&Conv { k: 3, stride: 2, cin: 64, cout: 64 }, 96, 96));
    }
}
