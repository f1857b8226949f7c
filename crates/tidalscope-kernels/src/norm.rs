//! BatchNorm over the rows of `[rows, channels]` buffers (NHWC images or
//! dense activations), fused with the ReLU that follows it in the encoder:
//! batch statistics and the backward pass in training, one per-channel
//! affine map (or nothing: it is folded into a convolution) at inference.
//!
//! In the encoder's training pass a BatchNorm between two convolutions
//! makes no pass of its own for its statistics or its map: the
//! convolution before it takes each chunk's moments as it writes the chunk
//! ([`BatchNorm::chunk_moments`]), and the one after it applies the map to
//! each chunk of its input just before reading it ([`AffineMap`]); in the
//! backward pass the convolution that writes its output gradient takes
//! each chunk's gradient sums ([`GradPlan::sums`]), leaving one pass, the
//! input gradient's. (The stem's, block 0's input and the dense layers'
//! BatchNorm run their passes over the whole batch.)
//!
//! Sums run in f32 over blocks of 32 rows, then in f64 over chunks fixed by
//! the shapes and combined in order, so results do not depend on the
//! number of threads.

use crate::simd;
use rayon::prelude::*;

/// Rows per parallel chunk.
const CHUNK: usize = 1024;
/// Rows summed in f32 before adding into the f64 totals: short enough to
/// keep f32 rounding near 1e-7 relative, long enough to vectorise.
const BLOCK: usize = 32;
/// Floats in the shortest row the passes run on: a 512-bit vector.
const LANES: usize = 16;

/// How many channel rows the passes take as one row: layers of fewer than
/// 16 channels (8 at the quick preset's largest maps) would run their
/// per-channel loops on part vectors, so `16 / c` rows are taken together
/// with the parameters repeated ([`tiled`]). Chunks and blocks stay whole
/// numbers of such rows (their row counts are multiples of 16).
fn tile_factor(c: usize) -> usize {
    if c > 0 && c < LANES && LANES.is_multiple_of(c) {
        LANES / c
    } else {
        1
    }
}

/// `p` repeated `t` times.
fn tiled(p: &[f32], t: usize) -> Vec<f32> {
    p.repeat(t)
}

/// Per-channel sums of `K` quantities over the rows of one chunk `a` (and
/// the matching rows of `b`), rows of `len` floats (a multiple of the `c`
/// channels: sums of position `j` belong to channel `j % c`):
/// `f(block_a, block_b, sums)` adds a block's contribution into
/// `sums[k][j]` in f32; blocks are then added in f64 and positions folded
/// onto their channels.
fn chunk_sums<const K: usize>(
    a: &[f32],
    b: &[f32],
    c: usize,
    len: usize,
    f: impl Fn(&[f32], &[f32], &mut [&mut [f32]; K]),
) -> [Vec<f64>; K] {
    thread_local! {
        // The block sums and the chunk's totals, reused from chunk to chunk:
        // the training pass takes sums of hundreds of chunks per step.
        static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f64>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    SCRATCH.with_borrow_mut(|(acc, total)| {
        acc.resize(K * len, 0.0);
        total.clear();
        total.resize(K * len, 0.0);
        for (ab, bb) in a.chunks(BLOCK * c).zip(b.chunks(BLOCK * c)) {
            acc.fill(0.0);
            let mut parts = acc.chunks_mut(len);
            let mut sums: [&mut [f32]; K] = std::array::from_fn(|_| parts.next().expect("K parts of the scratch"));
            f(ab, bb, &mut sums);
            for (t, a) in total.iter_mut().zip(acc.iter()) {
                *t += *a as f64;
            }
        }
        let mut folded = total.chunks(len.max(1));
        std::array::from_fn(|_| {
            let mut out = vec![0f64; c];
            for (j, v) in folded.next().unwrap_or(&[]).iter().enumerate() {
                out[j % c] += v;
            }
            out
        })
    })
}

/// Panics unless a forward pass's input and output are whole rows of `c`
/// channels of the same length.
fn check_forward(c: usize, x: &[f32], y: &[f32]) {
    assert!(
        x.len() == y.len() && x.len().is_multiple_of(c),
        "BatchNorm of {c} channels: {} inputs, {} outputs",
        x.len(),
        y.len()
    );
}

/// Panics unless a backward pass's buffers agree with each other and with
/// `c` channels.
fn check_backward(c: usize, x: &[f32], dy: &[f32], dx: &[f32], dgamma: &[f32], dbeta: &[f32]) {
    assert!(
        x.len() == dy.len()
            && x.len() == dx.len()
            && x.len().is_multiple_of(c)
            && dgamma.len() == c
            && dbeta.len() == c,
        "BatchNorm backward of {c} channels: {} inputs, {} output gradients, {} input gradients",
        x.len(),
        dy.len(),
        dx.len()
    );
}

/// A BatchNorm layer's parameters and running statistics (burn's and
/// Keras' definition: biased batch variance, ε inside the square root,
/// `running ← (1 − momentum)·running + momentum·batch`).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    /// Scale γ.
    pub gamma: Vec<f32>,
    /// Shift β.
    pub beta: Vec<f32>,
    /// Running mean.
    pub running_mean: Vec<f32>,
    /// Running (biased) variance.
    pub running_var: Vec<f32>,
    /// ε.
    pub epsilon: f32,
    /// Weight of the newest batch in the running statistics.
    pub momentum: f32,
}

/// A batch's mean and (biased) variance per channel, what the running
/// statistics move towards ([`BatchNorm::update_running`]).
#[derive(Clone, Debug, Default)]
pub struct BatchMoments {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Biased variance per channel.
    pub var: Vec<f32>,
}

/// What a training forward pass keeps for the backward pass.
#[derive(Clone, Debug, Default)]
pub struct BatchStats {
    /// Batch mean per channel.
    pub mean: Vec<f32>,
    /// 1/√(var + ε) per channel.
    pub inv_std: Vec<f32>,
}

impl BatchNorm {
    /// Channels.
    pub fn channels(&self) -> usize {
        self.gamma.len()
    }

    /// The inference map as `(scale, shift)`: BN(x) = x·scale + shift.
    pub fn inference_affine(&self) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> =
            self.gamma.iter().zip(&self.running_var).map(|(g, v)| g / (v + self.epsilon).sqrt()).collect();
        let shift = self.beta.iter().zip(&self.running_mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        (scale, shift)
    }

    /// The training map as `(scale, shift)` for batch statistics `stats`:
    /// BN(x) = x·scale + shift.
    fn batch_affine(&self, stats: &BatchStats) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> = self.gamma.iter().zip(&stats.inv_std).map(|(g, s)| g * s).collect();
        let shift = self.beta.iter().zip(&stats.mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        (scale, shift)
    }

    /// Training forward: normalises `x` with its own batch statistics into
    /// `y` (then ReLU when `relu`) and updates the running statistics.
    ///
    /// # Shapes
    /// `x`, `y`: `[rows, channels]`.
    ///
    /// # Panics
    /// If `x` and `y` differ in length or are not whole rows.
    pub fn forward_train(&mut self, x: &[f32], relu: bool, y: &mut [f32]) -> BatchStats {
        let (stats, moments) = self.forward_batch(x, relu, y);
        self.update_running(&moments);
        stats
    }

    /// Moves the running statistics towards a batch's moments.
    pub fn update_running(&mut self, batch: &BatchMoments) {
        let m = self.momentum;
        for (r, v) in self.running_mean.iter_mut().zip(&batch.mean) {
            *r = (1.0 - m) * *r + m * v;
        }
        for (r, v) in self.running_var.iter_mut().zip(&batch.var) {
            *r = (1.0 - m) * *r + m * v;
        }
    }

    /// [`forward_train`](Self::forward_train) without touching the running
    /// statistics: it returns the batch's moments for
    /// [`update_running`](Self::update_running) instead, so that views can
    /// run side by side and their updates be applied in order after.
    ///
    /// # Shapes
    /// `x`, `y`: `[rows, channels]`.
    ///
    /// # Panics
    /// If `x` and `y` differ in length or are not whole rows.
    pub fn forward_batch(&self, x: &[f32], relu: bool, y: &mut [f32]) -> (BatchStats, BatchMoments) {
        check_forward(self.channels(), x, y);
        self.forward_from_chunks(&self.moments_of(x), x, relu, y)
    }

    /// The moments of one chunk of this layer's input (whole rows), for
    /// [`forward_from_chunks`](Self::forward_from_chunks): a convolution
    /// takes them of each chunk of its output as it writes it
    /// ([`Conv::forward_with`](crate::conv::Conv::forward_with)), so that
    /// no pass of its own reads the whole input again.
    ///
    /// # Panics
    /// If `x` is not whole rows.
    pub fn chunk_moments(&self, x: &[f32]) -> ChunkMoments {
        let c = self.channels();
        assert!(x.len().is_multiple_of(c), "BatchNorm of {c} channels: a chunk of {} floats", x.len());
        // One pass for both moments, about a shift near the mean (that of
        // the chunk's first rows) so that Σ(x − k)² does not lose the
        // variance to cancellation.
        let head = &x[..x.len().min(BLOCK * c)];
        let [head_sum] = chunk_sums(head, head, c, c, |r, _, [acc]| simd::add_rows(acc, r));
        let head_rows = (head.len() / c).max(1) as f64;
        let shift: Vec<f32> = head_sum.iter().map(|s| (s / head_rows) as f32).collect();
        let shift_t = tiled(&shift, tile_factor(c));
        let [s1, s2] =
            chunk_sums(x, x, c, shift_t.len(), |r, _, [a1, a2]| simd::add_shifted_moments(a1, a2, r, &shift_t));
        ChunkMoments { rows: x.len() / c, shift, s1, s2 }
    }

    /// [`forward_batch`](Self::forward_batch) from the moments of the
    /// chunks `x` was cut into, in order ([`chunk_moments`](Self::chunk_moments)).
    ///
    /// # Panics
    /// If `x` and `y` differ in length, are not whole rows, or the chunks
    /// do not add up to `x`'s rows.
    pub fn forward_from_chunks(
        &self,
        parts: &[ChunkMoments],
        x: &[f32],
        relu: bool,
        y: &mut [f32],
    ) -> (BatchStats, BatchMoments) {
        let c = self.channels();
        check_forward(c, x, y);
        let total: usize = parts.iter().map(|p| p.rows).sum();
        assert_eq!(total, x.len() / c, "BatchNorm of {c} channels: chunk moments of {total} rows");
        let (stats, moments) = self.stats_from_chunks(parts);
        self.batch_map(&stats, relu).apply_all(x, y);
        (stats, moments)
    }

    /// A batch's statistics from the moments of its chunks, in order
    /// ([`chunk_moments`](Self::chunk_moments)), for
    /// [`batch_map`](Self::batch_map).
    pub fn stats_from_chunks(&self, parts: &[ChunkMoments]) -> (BatchStats, BatchMoments) {
        let c = self.channels();
        let rows = parts.iter().map(|p| p.rows).sum::<usize>() as f64;
        // Each chunk's mean and squared deviations about it, combined in
        // order (Chan, Golub & LeVeque 1979): Σ(x − m)² over a chunk is
        // s2 − s1²/n about its shift, plus n·(mean − m)² about the batch mean m.
        let chunk_mean = |p: &ChunkMoments, ch: usize| p.shift[ch] as f64 + p.s1[ch] / p.rows as f64;
        let parts: Vec<&ChunkMoments> = parts.iter().filter(|p| p.rows > 0).collect();
        let mean: Vec<f64> =
            (0..c).map(|ch| parts.iter().map(|p| p.rows as f64 * chunk_mean(p, ch)).sum::<f64>() / rows).collect();
        // Rounding can leave a tiny negative variance; NaN (a non-finite
        // input) stays NaN, as the two-pass sums gave.
        let var: Vec<f64> = (0..c)
            .map(|ch| {
                let m2: f64 = parts
                    .iter()
                    .map(|p| {
                        let n = p.rows as f64;
                        p.s2[ch] - p.s1[ch] * p.s1[ch] / n + n * (chunk_mean(p, ch) - mean[ch]).powi(2)
                    })
                    .sum();
                m2 / rows
            })
            .map(|v| if v < 0.0 { 0.0 } else { v })
            .collect();
        let stats = BatchStats {
            mean: mean.iter().map(|&m| m as f32).collect(),
            inv_std: var.iter().map(|&v| (1.0 / (v + self.epsilon as f64).sqrt()) as f32).collect(),
        };
        let moments = BatchMoments {
            mean: mean.iter().map(|&v| v as f32).collect(),
            var: var.iter().map(|&v| v as f32).collect(),
        };
        (stats, moments)
    }

    /// The moments of every chunk of `x` (whole rows), in parallel: for a
    /// BatchNorm input that no convolution took them of as it wrote it.
    pub fn moments_of(&self, x: &[f32]) -> Vec<ChunkMoments> {
        x.par_chunks(CHUNK * self.channels()).map(|xc| self.chunk_moments(xc)).collect()
    }

    /// The training map for batch statistics `stats` (then ReLU when
    /// `relu`), to apply chunk by chunk: a convolution applies it to each
    /// chunk of its input just before reading it
    /// ([`Input::Made`](crate::conv::Input::Made)).
    pub fn batch_map(&self, stats: &BatchStats, relu: bool) -> AffineMap {
        let (scale, shift) = self.batch_affine(stats);
        let t = tile_factor(self.channels());
        AffineMap { scale: tiled(&scale, t), shift: tiled(&shift, t), relu }
    }

    /// Training backward from `dy = ∂L/∂y`: writes `∂L/∂x` into `dx` (adds
    /// when `accumulate`), `∂L/∂γ` into `dgamma` and `∂L/∂β` into `dbeta`.
    ///
    /// # Panics
    /// If the buffers' lengths disagree.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        x: &[f32],
        stats: &BatchStats,
        relu: bool,
        dy: &[f32],
        dx: &mut [f32],
        accumulate: bool,
        dgamma: &mut [f32],
        dbeta: &mut [f32],
    ) {
        // `plan.backward` checks the buffers' lengths.
        let c = self.channels();
        let plan = self.grad_plan(stats, relu);
        let sums: Vec<GradSums> =
            x.par_chunks(CHUNK * c).zip(dy.par_chunks(CHUNK * c)).map(|(xc, gc)| plan.sums(xc, gc)).collect();
        plan.backward(&sums, x, dy, dx, if accumulate { GradInto::Add } else { GradInto::Write }, dgamma, dbeta);
    }

    /// What the backward pass needs of the forward pass that made `stats`
    /// (with a ReLU after when `relu`), for [`GradPlan::sums`] on chunks
    /// and then [`GradPlan::backward`].
    pub fn grad_plan<'a>(&self, stats: &'a BatchStats, relu: bool) -> GradPlan<'a> {
        // The forward pass's own map, so the ReLU mask matches it bit for bit.
        let (scale, shift) = self.batch_affine(stats);
        let c = self.channels();
        let t = tile_factor(c);
        let [mean_t, inv_t, scale_t, shift_t] = [&stats.mean, &stats.inv_std, &scale, &shift].map(|p| tiled(p, t));
        GradPlan { c, relu, stats, mean_t, inv_t, scale_t, shift_t }
    }
}

/// `y = x·scale + shift` per channel, then ReLU when `relu`, for chunks
/// of whole rows ([`BatchNorm::batch_map`]).
#[derive(Clone, Debug, Default)]
pub struct AffineMap {
    // Repeated to the passes' row length.
    scale: Vec<f32>,
    shift: Vec<f32>,
    relu: bool,
}

impl AffineMap {
    /// `y = map(x)` on one chunk, on the calling thread.
    ///
    /// # Panics
    /// If `x` and `y` differ in length.
    pub fn apply(&self, x: &[f32], y: &mut [f32]) {
        assert_eq!(x.len(), y.len(), "BatchNorm map: input and output sizes differ");
        if self.scale.is_empty() {
            // A map of no channels (the default) has no rows to apply to.
            assert!(x.is_empty(), "BatchNorm map of no channels applied to {} floats", x.len());
            return;
        }
        simd::affine_rows(y, x, &self.scale, &self.shift, self.relu);
    }

    /// `y = map(x)` on a whole batch, in parallel.
    ///
    /// # Panics
    /// If `x` and `y` differ in length.
    pub fn apply_all(&self, x: &[f32], y: &mut [f32]) {
        assert_eq!(x.len(), y.len(), "BatchNorm map: input and output sizes differ");
        // Chunks of whole rows of the parameters, so that each starts on channel 0.
        let len = CHUNK * self.scale.len();
        y.par_chunks_mut(len).zip(x.par_chunks(len)).for_each(|(yc, xc)| self.apply(xc, yc));
    }
}

/// The moments of one chunk of a BatchNorm's input
/// ([`BatchNorm::chunk_moments`]): sums about the mean of the chunk's first
/// rows.
#[derive(Clone, Debug)]
pub struct ChunkMoments {
    rows: usize,
    shift: Vec<f32>,
    s1: Vec<f64>,
    s2: Vec<f64>,
}

/// A BatchNorm(-ReLU) layer's backward pass, set up from its forward
/// pass's statistics ([`BatchNorm::grad_plan`]): the per-channel sums of
/// each chunk ([`sums`](Self::sums), which a convolution's input gradient
/// takes as it writes each chunk of `dy`: [`Conv::backward_input_with`](crate::conv::Conv::backward_input_with)),
/// then the gradients from them ([`backward`](Self::backward)).
#[derive(Clone, Debug)]
pub struct GradPlan<'a> {
    c: usize,
    relu: bool,
    stats: &'a BatchStats,
    // The statistics and the forward map, repeated to the passes' row length.
    mean_t: Vec<f32>,
    inv_t: Vec<f32>,
    scale_t: Vec<f32>,
    shift_t: Vec<f32>,
}

/// Where [`GradPlan::backward`] puts the input gradient `v` it makes.
#[derive(Clone, Copy, Debug)]
pub enum GradInto<'a> {
    /// `dx = v`.
    Write,
    /// `dx += v`: an input that feeds several layers.
    Add,
    /// `dx = v + r`: `r` is the gradient reaching the same input by another
    /// path (a residual block's identity shortcut), added as `dx` is
    /// written rather than in a pass of its own over the batch (same sums,
    /// same bits).
    Plus(&'a [f32]),
}

/// One chunk's Σg and Σg·(x − mean) per channel, g being `∂L/∂y` masked
/// where the ReLU was off ([`GradPlan::sums`]).
#[derive(Clone, Debug)]
pub struct GradSums {
    g: Vec<f64>,
    gd: Vec<f64>,
}

impl GradPlan<'_> {
    /// The sums of one chunk of the layer's input `x` and output gradient
    /// `dy` (the same whole rows of each).
    ///
    /// # Panics
    /// If `x` and `dy` differ in length or are not whole rows.
    pub fn sums(&self, x: &[f32], dy: &[f32]) -> GradSums {
        let c = self.c;
        assert!(
            x.len() == dy.len() && x.len().is_multiple_of(c),
            "BatchNorm backward of {c} channels: a chunk of {} inputs and {} output gradients",
            x.len(),
            dy.len()
        );
        let [g, gd] = chunk_sums(x, dy, c, self.mean_t.len(), |xb, gb, [ag, agd]| {
            simd::bn_grad_sums(ag, agd, xb, gb, &self.mean_t, &self.scale_t, &self.shift_t, self.relu)
        });
        GradSums { g, gd }
    }

    /// From the sums of the chunks `x` and `dy` were cut into, in order:
    /// puts `∂L/∂x` into `dx` as `into` says, writes `∂L/∂γ` into `dgamma`
    /// and `∂L/∂β` into `dbeta`.
    ///
    /// # Panics
    /// If the buffers' lengths disagree.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        sums: &[GradSums],
        x: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        into: GradInto<'_>,
        dgamma: &mut [f32],
        dbeta: &mut [f32],
    ) {
        let c = self.c;
        check_backward(c, x, dy, dx, dgamma, dbeta);
        if let GradInto::Plus(r) = into {
            assert_eq!(r.len(), dx.len(), "BatchNorm backward of {c} channels: a gradient to add of another length");
        }
        let rows = (x.len() / c) as f64;
        let (mut sum_g, mut sum_gd) = (vec![0f64; c], vec![0f64; c]);
        for s in sums {
            sum_g.iter_mut().zip(&s.g).for_each(|(t, v)| *t += v);
            sum_gd.iter_mut().zip(&s.gd).for_each(|(t, v)| *t += v);
        }
        // Σ g·x̂ = inv_std·Σ g·(x − mean).
        let sum_gx: Vec<f64> = sum_gd.iter().zip(&self.stats.inv_std).map(|(s, i)| s * *i as f64).collect();
        for ch in 0..c {
            dbeta[ch] = sum_g[ch] as f32;
            dgamma[ch] = sum_gx[ch] as f32;
        }
        let t = self.mean_t.len() / c;
        let mean_g: Vec<f32> = sum_g.iter().map(|s| (s / rows) as f32).collect();
        let mean_gx: Vec<f32> = sum_gx.iter().map(|s| (s / rows) as f32).collect();
        let (mean_g, mean_gx) = (tiled(&mean_g, t), tiled(&mean_gx, t));
        let len = CHUNK * c;
        dx.par_chunks_mut(len).zip(x.par_chunks(len)).zip(dy.par_chunks(len)).enumerate().for_each(
            |(i, ((dc, xc), gc))| {
                let into = match into {
                    GradInto::Plus(r) => GradInto::Plus(&r[i * len..i * len + dc.len()]),
                    other => other,
                };
                simd::bn_input_grad(
                    dc,
                    xc,
                    gc,
                    &self.mean_t,
                    &self.inv_t,
                    &self.scale_t,
                    &self.shift_t,
                    &mean_g,
                    &mean_gx,
                    self.relu,
                    into,
                )
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bn(c: usize) -> BatchNorm {
        BatchNorm {
            gamma: (0..c).map(|i| 0.5 + i as f32 * 0.3).collect(),
            beta: (0..c).map(|i| 0.2 - i as f32 * 0.15).collect(),
            running_mean: vec![0.0; c],
            running_var: vec![1.0; c],
            epsilon: 1e-3,
            momentum: 0.1,
        }
    }

    /// L = Σ y·r for fixed random r: its gradient by central differences.
    #[test]
    fn backward_matches_finite_differences_with_and_without_relu() {
        // 3 channels run as they are; 8 and 4 as rows of 16 floats, with
        // 13 rows leaving a part row at the end.
        for (rows, c) in [(13, 3), (13, 8), (7, 4)] {
            finite_differences(rows, c);
        }
    }

    fn finite_differences(rows: usize, c: usize) {
        // Irregular values: a repeated value can sit on the ReLU's kink.
        let x: Vec<f32> = (0..rows * c).map(|i| (i as f32 * 1.37 + 0.2).sin() * 2.4).collect();
        let r: Vec<f32> = (0..rows * c).map(|i| ((i * 11 % 7) as f32 - 3.0) * 0.5).collect();
        for relu in [false, true] {
            let loss = |x: &[f32], layer: &BatchNorm| {
                let mut y = vec![0f32; x.len()];
                layer.clone().forward_train(x, relu, &mut y);
                y.iter().zip(&r).map(|(a, b)| (a * b) as f64).sum::<f64>()
            };
            let mut layer = bn(c);
            let mut y = vec![0f32; x.len()];
            let stats = layer.clone().forward_train(&x, relu, &mut y);
            let (mut dx, mut dg, mut db) = (vec![0f32; x.len()], vec![0f32; c], vec![0f32; c]);
            layer.backward(&x, &stats, relu, &r, &mut dx, false, &mut dg, &mut db);
            let h = 1e-3;
            for i in 0..x.len() {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[i] += h;
                xm[i] -= h;
                let num = (loss(&xp, &layer) - loss(&xm, &layer)) / (2.0 * h as f64);
                assert!(
                    (num - dx[i] as f64).abs() < 2e-2 * (1.0 + num.abs()),
                    "dx[{i}] relu {relu}: {} vs {num}",
                    dx[i]
                );
            }
            for (ch, &got) in dg.iter().enumerate() {
                let base = layer.gamma[ch];
                layer.gamma[ch] = base + h;
                let lp = loss(&x, &layer);
                layer.gamma[ch] = base - h;
                let lm = loss(&x, &layer);
                layer.gamma[ch] = base;
                let num = (lp - lm) / (2.0 * h as f64);
                assert!((num - got as f64).abs() < 2e-2 * (1.0 + num.abs()), "dgamma[{ch}]: {got} vs {num}");
            }
        }
        // Running statistics move towards the batch's.
        let mut layer = bn(c);
        let mut y = vec![0f32; x.len()];
        let s = layer.forward_train(&x, false, &mut y);
        assert!((layer.running_mean[0] - 0.1 * s.mean[0]).abs() < 1e-6);
    }

    /// The statistics and gradients from a convolution's chunks (any cut
    /// into whole rows: uneven, of one row, the first holding atypical
    /// rows) equal the layer's own passes to rounding.
    #[test]
    fn chunked_statistics_and_gradients_match_the_layers_own_passes() {
        let cases: [(usize, usize, &[usize]); 4] = [
            (600, 8, &[0, 7, 300, 301, 600]),
            (333, 5, &[0, 111, 222, 333]),
            (100, 16, &[0, 100]),
            (50, 3, &[0, 1, 2, 50]),
        ];
        for (rows, c, cuts) in cases {
            let x: Vec<f32> = (0..rows * c)
                .map(|i| 50.0 + (i as f32 * 0.37).sin() * 3.0 + if i / c < 3 { 9.0 } else { 0.0 })
                .collect();
            let dy: Vec<f32> = (0..rows * c).map(|i| (i as f32 * 0.91).cos()).collect();
            let layer = bn(c);
            let chunks = |len: usize| cuts.windows(2).map(move |w| w[0] * len..w[1] * len);
            let close = |a: &[f32], b: &[f32], tol: f32, what: &str| {
                for (i, (u, v)) in a.iter().zip(b).enumerate() {
                    assert!((u - v).abs() <= tol * (1.0 + v.abs()), "{rows}×{c} {what}[{i}]: {u} vs {v}");
                }
            };
            for relu in [false, true] {
                let mut y0 = vec![0f32; x.len()];
                let (s0, m0) = layer.forward_batch(&x, relu, &mut y0);
                let parts: Vec<ChunkMoments> = chunks(c).map(|r| layer.chunk_moments(&x[r])).collect();
                let mut y1 = vec![0f32; x.len()];
                let (s1, m1) = layer.forward_from_chunks(&parts, &x, relu, &mut y1);
                close(&s1.mean, &s0.mean, 1e-6, "mean");
                close(&s1.inv_std, &s0.inv_std, 1e-5, "inv_std");
                close(&m1.var, &m0.var, 1e-5, "var");
                close(&y1, &y0, 1e-4, "y");
                let (mut dx0, mut dg0, mut db0) = (vec![0f32; x.len()], vec![0f32; c], vec![0f32; c]);
                layer.backward(&x, &s0, relu, &dy, &mut dx0, false, &mut dg0, &mut db0);
                let plan = layer.grad_plan(&s0, relu);
                let sums: Vec<GradSums> = chunks(c).map(|r| plan.sums(&x[r.clone()], &dy[r])).collect();
                let (mut dx1, mut dg1, mut db1) = (vec![0f32; x.len()], vec![0f32; c], vec![0f32; c]);
                plan.backward(&sums, &x, &dy, &mut dx1, GradInto::Write, &mut dg1, &mut db1);
                close(&dx1, &dx0, 1e-5, "dx");
                close(&dg1, &dg0, 1e-5, "dgamma");
                close(&db1, &db0, 1e-5, "dbeta");
            }
        }
    }

    /// The one-pass moments against a two-pass f64 definition, on data
    /// whose mean is 10⁴ times its spread (where Σx² − (Σx)²/n in f32 would
    /// lose the variance) and whose first rows are not typical, for channel
    /// counts that run tiled and not, and row counts past a chunk.
    #[test]
    fn batch_statistics_match_a_two_pass_definition_far_from_zero() {
        for (rows, c) in [(3001, 8), (1000, 5), (77, 16), (2049, 2)] {
            let x: Vec<f32> = (0..rows * c)
                .map(|i| {
                    let (r, ch) = (i / c, i % c);
                    let spike = if r < 3 { 5.0 } else { 0.0 };
                    1e4 * (ch as f32 + 1.0) + ((i * 7919) % 1013) as f32 * 1e-3 + spike
                })
                .collect();
            let mut layer = bn(c);
            let mut y = vec![0f32; x.len()];
            let s = layer.forward_train(&x, false, &mut y);
            for ch in 0..c {
                let v: Vec<f64> = (0..rows).map(|r| x[r * c + ch] as f64).collect();
                let mean = v.iter().sum::<f64>() / rows as f64;
                let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / rows as f64;
                let inv = 1.0 / (var + layer.epsilon as f64).sqrt();
                assert!((s.mean[ch] as f64 - mean).abs() <= 1e-6 * mean.abs(), "{rows}×{c}, mean[{ch}]");
                assert!(
                    (s.inv_std[ch] as f64 - inv).abs() <= 1e-4 * inv,
                    "{rows}×{c}, inv_std[{ch}]: {} vs {inv}",
                    s.inv_std[ch]
                );
            }
        }
        // A non-finite input makes its channel's statistics NaN (not a
        // variance of 0), and the other channels' are untouched.
        let (rows, c) = (40, 8);
        let mut x: Vec<f32> = (0..rows * c).map(|i| (i as f32 * 0.37).sin()).collect();
        x[17 * c + 3] = f32::NAN;
        let mut layer = bn(c);
        let mut y = vec![0f32; x.len()];
        let s = layer.forward_train(&x, false, &mut y);
        assert!(s.mean[3].is_nan() && s.inv_std[3].is_nan() && layer.running_var[3].is_nan());
        assert!((0..c).filter(|&ch| ch != 3).all(|ch| s.inv_std[ch].is_finite() && layer.running_var[ch].is_finite()));
    }
}
