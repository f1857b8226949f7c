//! BatchNorm over the rows of `[rows, channels]` buffers (NHWC images or
//! dense activations), fused with the ReLU that follows it in the encoder:
//! batch statistics and the backward pass in training, one per-channel
//! affine map (or nothing: it is folded into a convolution) at inference.
//!
//! Sums run in f32 over blocks of 32 rows, then in f64 over fixed chunks
//! combined in order, so results do not depend on the number of threads.

use crate::simd;
use rayon::prelude::*;

/// Rows per parallel chunk.
const CHUNK: usize = 1024;
/// Rows summed in f32 before adding into the f64 totals: short enough to
/// keep f32 rounding near 1e-7 relative, long enough to vectorise.
const BLOCK: usize = 32;

/// Per-channel sums of `K` quantities over all rows of `a` (and the
/// matching rows of `b`): `f(block_a, block_b, sums)` adds a block's
/// contribution into `sums[k][channel]` in f32; blocks are then added in
/// f64 and fixed chunks combined in order.
fn channel_sums<const K: usize>(
    a: &[f32],
    b: &[f32],
    c: usize,
    f: impl Fn(&[f32], &[f32], &mut [Vec<f32>; K]) + Sync,
) -> [Vec<f64>; K] {
    let parts: Vec<[Vec<f64>; K]> = a
        .par_chunks(CHUNK * c)
        .zip(b.par_chunks(CHUNK * c))
        .map(|(ac, bc)| {
            let mut total: [Vec<f64>; K] = std::array::from_fn(|_| vec![0f64; c]);
            let mut acc: [Vec<f32>; K] = std::array::from_fn(|_| vec![0f32; c]);
            for (ab, bb) in ac.chunks(BLOCK * c).zip(bc.chunks(BLOCK * c)) {
                acc.iter_mut().for_each(|v| v.fill(0.0));
                f(ab, bb, &mut acc);
                for (t, a) in total.iter_mut().zip(&acc) {
                    for (t, a) in t.iter_mut().zip(a) {
                        *t += *a as f64;
                    }
                }
            }
            total
        })
        .collect();
    let mut total: [Vec<f64>; K] = std::array::from_fn(|_| vec![0f64; c]);
    for p in parts {
        for (t, v) in total.iter_mut().zip(p) {
            for (t, v) in t.iter_mut().zip(v) {
                *t += v;
            }
        }
    }
    total
}

/// `y = x·scale + shift` per channel, then ReLU when `relu`.
pub fn affine(x: &[f32], scale: &[f32], shift: &[f32], relu: bool, y: &mut [f32]) {
    let c = scale.len();
    assert_eq!(x.len(), y.len(), "affine: input and output sizes differ");
    y.par_chunks_mut(CHUNK * c)
        .zip(x.par_chunks(CHUNK * c))
        .for_each(|(yc, xc)| simd::affine_rows(yc, xc, scale, shift, relu));
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
        let c = self.channels();
        assert!(
            x.len() == y.len() && x.len().is_multiple_of(c),
            "BatchNorm of {c} channels: {} inputs, {} outputs",
            x.len(),
            y.len()
        );
        let rows = (x.len() / c) as f64;
        let [sum] = channel_sums(x, x, c, |r, _, [acc]| simd::add_rows(acc, r));
        let mean: Vec<f64> = sum.iter().map(|s| s / rows).collect();
        let m32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let [ss] = channel_sums(x, x, c, |r, _, [acc]| simd::add_squared_deviations(acc, r, &m32));
        // Σ(x − m32)² = Σ(x − mean)² + n·(mean − m32)².
        let var: Vec<f64> =
            ss.iter().zip(&mean).zip(&m32).map(|((s, m), m32)| s / rows - (m - *m32 as f64).powi(2)).collect();
        let stats = BatchStats {
            mean: m32,
            inv_std: var.iter().map(|&v| (1.0 / (v + self.epsilon as f64).sqrt()) as f32).collect(),
        };
        let (scale, shift) = self.batch_affine(&stats);
        affine(x, &scale, &shift, relu, y);
        let m = self.momentum;
        for (r, v) in self.running_mean.iter_mut().zip(&mean) {
            *r = (1.0 - m) * *r + m * *v as f32;
        }
        for (r, v) in self.running_var.iter_mut().zip(&var) {
            *r = (1.0 - m) * *r + m * *v as f32;
        }
        stats
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
        let c = self.channels();
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
        let rows = (x.len() / c) as f64;
        let (mean, inv) = (&stats.mean, &stats.inv_std);
        // The forward pass's own map, so the ReLU mask matches it bit for bit.
        let (scale, shift) = self.batch_affine(stats);
        let [sum_g, sum_gx] = channel_sums(x, dy, c, |xb, gb, [ag, agx]| {
            simd::bn_grad_sums(ag, agx, xb, gb, mean, inv, &scale, &shift, relu)
        });
        for ch in 0..c {
            dbeta[ch] = sum_g[ch] as f32;
            dgamma[ch] = sum_gx[ch] as f32;
        }
        let mean_g: Vec<f32> = sum_g.iter().map(|s| (s / rows) as f32).collect();
        let mean_gx: Vec<f32> = sum_gx.iter().map(|s| (s / rows) as f32).collect();
        dx.par_chunks_mut(CHUNK * c).zip(x.par_chunks(CHUNK * c)).zip(dy.par_chunks(CHUNK * c)).for_each(
            |((dc, xc), gc)| {
                simd::bn_input_grad(dc, xc, gc, mean, inv, &scale, &shift, &mean_g, &mean_gx, relu, accumulate)
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
        let (rows, c) = (13, 3);
        let x: Vec<f32> = (0..rows * c).map(|i| ((i * 37 % 17) as f32 - 8.0) * 0.3).collect();
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
}
