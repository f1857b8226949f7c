//! Losses and training metrics, as pure functions.
//!
//! **NNCLR** (Dwibedi et al. 2021, as in the reference): with z1, z2 the
//! L2-normalised projections of two views and NN(z) the support-queue
//! entry nearest to z, used through a stop-gradient (z + sg(NN(z) − z):
//! the value of the neighbour, the gradient of z), the loss is the mean of
//! four softmax cross-entropies whose targets are the diagonal:
//! NN(z1)·z2ᵀ/τ, z2·NN(z1)ᵀ/τ, NN(z2)·z1ᵀ/τ and z1·NN(z2)ᵀ/τ, τ = 0.1.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Rows scaled to unit length.
pub fn l2_normalise(z: Tensor<2>) -> Tensor<2> {
    let n = z.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-12);
    z / n
}

/// Mean cross-entropy of each row of `logits` `[B, B]` against the
/// diagonal.
pub fn diagonal_cross_entropy(logits: Tensor<2>) -> Tensor<1> {
    let b = logits.dims()[0];
    let eye = Tensor::<2>::eye(b, &logits.device());
    (log_softmax(logits, 1) * eye).sum_dim(1).mean().neg()
}

/// The NNCLR loss. `z1`, `z2`: normalised projections `[B, D]`; `nn1`,
/// `nn2`: their queue neighbours (constants).
pub fn nnclr(z1: Tensor<2>, z2: Tensor<2>, nn1: Tensor<2>, nn2: Tensor<2>, temperature: f64) -> Tensor<1> {
    let p1 = z1.clone() + (nn1 - z1.clone()).detach();
    let p2 = z2.clone() + (nn2 - z2.clone()).detach();
    let inv_t = 1.0 / temperature;
    let l1 = diagonal_cross_entropy(p1.clone().matmul(z2.clone().transpose()) * inv_t);
    let l2 = diagonal_cross_entropy(z2.clone().matmul(p1.transpose()) * inv_t);
    let l3 = diagonal_cross_entropy(p2.clone().matmul(z1.clone().transpose()) * inv_t);
    let l4 = diagonal_cross_entropy(z1.matmul(p2.transpose()) * inv_t);
    (l1 + l2 + l3 + l4) / 4.0
}

/// Multi-crop NNCLR: [`nnclr`] of the two global views, plus for each
/// local view (a small crop, normalised projections `[B, D]`) the mean of
/// the four cross-entropies that pair it with both global views'
/// neighbours, NN(z1) and NN(z2), as the second view is paired in
/// [`nnclr`]; the mean over all 1 + locals terms. The neighbours carry
/// the gradient of their global view (z + sg(NN(z) − z)), so each local
/// crop also pulls its image's global projections towards itself. With no
/// local views this is [`nnclr`].
pub fn nnclr_multi_crop(
    z1: Tensor<2>,
    z2: Tensor<2>,
    nn1: Tensor<2>,
    nn2: Tensor<2>,
    locals: &[Tensor<2>],
    temperature: f64,
) -> Tensor<1> {
    if locals.is_empty() {
        return nnclr(z1, z2, nn1, nn2, temperature);
    }
    let p1 = z1.clone() + (nn1.clone() - z1.clone()).detach();
    let p2 = z2.clone() + (nn2.clone() - z2.clone()).detach();
    let inv_t = 1.0 / temperature;
    let mut total = nnclr(z1, z2, nn1, nn2, temperature);
    for zl in locals {
        let pair = |p: &Tensor<2>| {
            diagonal_cross_entropy(p.clone().matmul(zl.clone().transpose()) * inv_t)
                + diagonal_cross_entropy(zl.clone().matmul(p.clone().transpose()) * inv_t)
        };
        total = total + (pair(&p1) + pair(&p2)) / 4.0;
    }
    total / (1 + locals.len()) as f64
}

/// Decorrelation penalty on a batch of representations `h` `[B, D]`: the
/// mean, over the D(D − 1) pairs of distinct dimensions, of their squared
/// Pearson correlation across the batch. 0 when the dimensions are
/// uncorrelated, 1 when every dimension is a copy of one. Scale-free, so a
/// BatchNorm γ cannot shrink it away. Counters the dimensional collapse
/// of contrastive representations (one direction carrying most of the
/// variance), as VICReg's covariance term does (Bardes et al. 2022).
pub fn decorrelation(h: Tensor<2>) -> Tensor<1> {
    let [b, d] = h.dims();
    let centred = h.clone() - h.mean_dim(0);
    let sd = centred.clone().powf_scalar(2.0).mean_dim(0).add_scalar(1e-6).sqrt();
    let s = centred / sd;
    let corr = s.clone().transpose().matmul(s) / b as f64;
    let off = Tensor::<2>::ones([d, d], &corr.device()) - Tensor::<2>::eye(d, &corr.device());
    (corr.powf_scalar(2.0) * off).sum() / (d * (d - 1)).max(1) as f64
}

/// Fraction of rows of `sim` `[B, B]` whose largest entry is on the diagonal.
fn diagonal_accuracy(sim: Tensor<2>) -> f32 {
    let b = sim.dims()[0];
    let target = Tensor::<1, Int>::arange(0..b as i64, &sim.device());
    let hits = sim.argmax(1).reshape([b]).equal(target).int().sum().into_scalar::<i64>();
    hits as f32 / b as f32
}

/// Contrastive accuracy (the reference's monitor): how often a view's most
/// similar representation in the batch is its partner, both directions.
pub fn contrastive_accuracy(h1: Tensor<2>, h2: Tensor<2>) -> f32 {
    let sim = l2_normalise(h1.detach()).matmul(l2_normalise(h2.detach()).transpose());
    (diagonal_accuracy(sim.clone()) + diagonal_accuracy(sim.transpose())) / 2.0
}

/// Feature-correlation accuracy (the reference's monitor): standardise
/// each feature over the batch; how often a feature of view 1 correlates
/// most with the same feature of view 2, both directions.
pub fn correlation_accuracy(h1: Tensor<2>, h2: Tensor<2>) -> f32 {
    let standardise = |h: Tensor<2>| {
        let mean = h.clone().mean_dim(0);
        let centred = h - mean;
        let sd = centred.clone().powf_scalar(2.0).mean_dim(0).sqrt().clamp_min(1e-6);
        centred / sd
    };
    let b = h1.dims()[0] as f64;
    let c = standardise(h1.detach()).transpose().matmul(standardise(h2.detach())) / b; // [D, D]
    (diagonal_accuracy(c.clone()) + diagonal_accuracy(c.transpose())) / 2.0
}

/// Binary cross-entropy of `logits` against `targets` in [0, 1] (labels, or
/// soft targets such as a teacher's probabilities), computed stably: mean
/// of max(x, 0) − x·t + ln(1 + e^−|x|).
pub fn bce_with_logits(logits: Tensor<1>, targets: Tensor<1>) -> Tensor<1> {
    let relu = logits.clone().clamp_min(0.0);
    (relu - logits.clone() * targets + logits.abs().neg().exp().log1p()).mean()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_against_soft_targets_is_least_at_the_targets_logit() {
        let dev = Device::flex();
        let bce = |x: f32, t: f32| {
            bce_with_logits(Tensor::<1>::from_floats([x], &dev), Tensor::<1>::from_floats([t], &dev))
                .into_scalar::<f32>()
        };
        // A 0/1 label: ln 2 at logit 0, -ln σ(x) elsewhere, stable far out.
        assert!((bce(0.0, 1.0) - std::f32::consts::LN_2).abs() < 1e-6);
        assert!((bce(2.0, 1.0) - (1.0 + (-2f32).exp()).ln()).abs() < 1e-6);
        assert!((bce(-80.0, 1.0) - 80.0).abs() < 1e-3 && bce(80.0, 1.0) < 1e-6);
        // A soft target t: least at logit ln(t / (1 − t)), where it is the
        // entropy of t, and larger on either side.
        let t = 0.3f32;
        let at = (t / (1.0 - t)).ln();
        let entropy = -(t * t.ln() + (1.0 - t) * (1.0 - t).ln());
        assert!((bce(at, t) - entropy).abs() < 1e-6, "{} vs {entropy}", bce(at, t));
        assert!(bce(at - 0.1, t) > bce(at, t) && bce(at + 0.1, t) > bce(at, t));
    }
}
