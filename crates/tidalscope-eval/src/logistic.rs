//! L2-regularised logistic regression on standardised features, fitted by
//! Newton's method (iteratively reweighted least squares) to convergence:
//! the classical baseline's classifier and the linear probe on frozen
//! representations. [`Logistic::fit_cv`] chooses the L2 strength by
//! stratified k-fold cross-validation on the training labels alone.
//! Deterministic for a seed.

use rayon::prelude::*;

/// A fitted model: standardisation and weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Logistic {
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// Intercept, then one weight per standardised feature.
    pub weights: Vec<f64>,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Solves `a x = b` (`a` symmetric positive definite, `d`×`d`) by Gaussian
/// elimination with partial pivoting.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, d: usize) -> Vec<f64> {
    for c in 0..d {
        let p = (c..d).max_by(|&i, &j| a[i * d + c].abs().total_cmp(&a[j * d + c].abs())).unwrap_or(c);
        if p != c {
            for k in 0..d {
                a.swap(c * d + k, p * d + k);
            }
            b.swap(c, p);
        }
        let piv = a[c * d + c];
        if piv.abs() < 1e-300 {
            continue;
        }
        for r in c + 1..d {
            let f = a[r * d + c] / piv;
            for k in c..d {
                a[r * d + k] -= f * a[c * d + k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; d];
    for c in (0..d).rev() {
        let s: f64 = (c + 1..d).map(|k| a[c * d + k] * x[k]).sum();
        let piv = a[c * d + c];
        x[c] = if piv.abs() < 1e-300 { 0.0 } else { (b[c] - s) / piv };
    }
    x
}

/// Standardised rows (intercept column first) of `n` rows of `d` features.
/// Non-finite values become 0 (the feature's mean).
fn standardised(x: &[f64], d: usize, mean: &[f64], scale: &[f64]) -> Vec<Vec<f64>> {
    x.chunks_exact(d.max(1))
        .map(|r| {
            std::iter::once(1.0)
                .chain(r.iter().enumerate().map(|(j, &v)| if v.is_finite() { (v - mean[j]) / scale[j] } else { 0.0 }))
                .collect()
        })
        .collect()
}

/// Penalised negative log-likelihood (the intercept is not penalised).
fn objective(w: &[f64], rows: &[Vec<f64>], y: &[u8], l2: f64) -> f64 {
    let nll: f64 = rows
        .iter()
        .zip(y)
        .map(|(r, &yi)| {
            let z: f64 = r.iter().zip(w).map(|(a, b)| a * b).sum();
            // log(1 + e^z) − y z, computed stably.
            z.max(0.0) + (-z.abs()).exp().ln_1p() - yi as f64 * z
        })
        .sum();
    nll + 0.5 * l2 * w[1..].iter().map(|v| v * v).sum::<f64>()
}

/// Newton's method from `w`, step-halved, until no weight moves by more
/// than 1e-10 (or 100 iterations). Returns the weights and the iterations.
fn newton(rows: &[Vec<f64>], y: &[u8], l2: f64, mut w: Vec<f64>) -> (Vec<f64>, usize) {
    let p = w.len();
    for it in 0..100 {
        let mut hess = vec![0.0; p * p];
        let mut grad = vec![0.0; p];
        for (r, &yi) in rows.iter().zip(y) {
            let z: f64 = r.iter().zip(&w).map(|(a, b)| a * b).sum();
            let mu = sigmoid(z);
            let s = (mu * (1.0 - mu)).max(1e-9);
            for a in 0..p {
                grad[a] += (mu - yi as f64) * r[a];
                let sa = s * r[a];
                // Lower triangle only; mirrored below.
                for b in 0..=a {
                    hess[a * p + b] += sa * r[b];
                }
            }
        }
        for a in 0..p {
            for b in 0..a {
                hess[b * p + a] = hess[a * p + b];
            }
        }
        for a in 1..p {
            grad[a] += l2 * w[a];
            hess[a * p + a] += l2;
        }
        let step = solve(hess, grad, p);
        // Newton's step, halved until the objective does not increase.
        let before = objective(&w, rows, y, l2);
        let mut t = 1.0;
        let mut next: Vec<f64> = w.iter().zip(&step).map(|(a, s)| a - s).collect();
        while objective(&next, rows, y, l2) > before && t > 1e-6 {
            t *= 0.5;
            next = w.iter().zip(&step).map(|(a, s)| a - t * s).collect();
        }
        let change = w.iter().zip(&next).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        w = next;
        if change < 1e-10 {
            return (w, it + 1);
        }
    }
    (w, 100)
}

/// What [`Logistic::fit_cv`] chose and why.
#[derive(Debug, Clone, PartialEq)]
pub struct CvReport {
    /// The L2 strengths tried.
    pub grid: Vec<f64>,
    /// Mean held-out log-loss per strength.
    pub loss: Vec<f64>,
    /// The chosen strength (the lowest held-out loss).
    pub chosen: f64,
    /// Folds used.
    pub folds: usize,
    /// Each row's held-out log-loss at the chosen strength, in row order
    /// (empty without folds).
    pub held_out: Vec<f64>,
}

/// The fold (0..k) of each of the 0/1 labels `y`: each class shuffled by
/// `seed`, then dealt round-robin, so every fold holds both classes in
/// their overall proportion.
pub fn stratified_folds(y: &[u8], k: usize, seed: u64) -> Vec<usize> {
    let mut fold = vec![0usize; y.len()];
    let mut rng = tidalscope_core::Rng::new(seed);
    for c in [0u8, 1] {
        let mut idx: Vec<usize> = (0..y.len()).filter(|&i| y[i] == c).collect();
        rng.shuffle(&mut idx);
        for (j, &i) in idx.iter().enumerate() {
            fold[i] = j % k.max(1);
        }
    }
    fold
}

/// The default grid of L2 strengths for [`Logistic::fit_cv`]: 10^-2 … 10^4
/// in steps of 10^0.5 (the penalty is on the summed log-likelihood, so its
/// weight relative to the data grows as the sample shrinks).
pub fn default_grid() -> Vec<f64> {
    (0..=12).map(|k| 10f64.powf(-2.0 + 0.5 * k as f64)).collect()
}

impl Logistic {
    /// Fits `n` rows of `d` features (`x` row-major) to 0/1 `y` with L2
    /// penalty `l2` on the (standardised) weights, not on the intercept.
    pub fn fit(x: &[f64], d: usize, y: &[u8], l2: f64) -> Self {
        let n = y.len();
        let mut mean = vec![0.0; d];
        let mut scale = vec![0.0; d];
        // Non-finite feature values are replaced by the feature's mean over
        // the finite ones (they then carry no information), in fit and predict.
        for j in 0..d {
            let finite: Vec<f64> = (0..n).map(|i| x[i * d + j]).filter(|v| v.is_finite()).collect();
            mean[j] = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
            let var = finite.iter().map(|v| (v - mean[j]).powi(2)).sum::<f64>() / finite.len().max(1) as f64;
            scale[j] = if var > 0.0 { var.sqrt() } else { 1.0 };
        }
        let rows = standardised(&x[..n * d], d, &mean, &scale);
        let (weights, _) = newton(&rows, y, l2, vec![0.0; d + 1]);
        Self { mean, scale, weights }
    }

    /// Fits with the L2 strength from `grid` that gives the lowest mean
    /// held-out log-loss in stratified `folds`-fold cross-validation (fewer
    /// folds when a class has fewer members; none below 2 per class, when
    /// the middle of the grid is used), then refits on all rows. Folds are
    /// assigned by a shuffle seeded with `seed`.
    pub fn fit_cv(x: &[f64], d: usize, y: &[u8], grid: &[f64], folds: usize, seed: u64) -> (Self, CvReport) {
        assert!(!grid.is_empty(), "an empty grid of L2 strengths");
        let n = y.len();
        let per_class = |c: u8| y.iter().filter(|&&v| v == c).count();
        let k = folds.min(per_class(0)).min(per_class(1));
        if k < 2 {
            let chosen = grid[grid.len() / 2];
            let m = Self::fit(x, d, y, chosen);
            return (
                m,
                CvReport {
                    grid: grid.to_vec(),
                    loss: vec![f64::NAN; grid.len()],
                    chosen,
                    folds: 0,
                    held_out: Vec::new(),
                },
            );
        }
        let fold = stratified_folds(y, k, seed);
        let per_row: Vec<Vec<f64>> = grid
            .par_iter()
            .map(|&l2| {
                let mut rows = vec![0.0; n];
                let rows_of = |idx: &[usize]| -> Vec<f64> {
                    idx.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect()
                };
                for f in 0..k {
                    let (held, kept): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| fold[i] == f);
                    let yt: Vec<u8> = kept.iter().map(|&i| y[i]).collect();
                    let m = Self::fit(&rows_of(&kept), d, &yt, l2);
                    for (&i, p) in held.iter().zip(m.predict(&rows_of(&held))) {
                        let p = p.clamp(1e-12, 1.0 - 1e-12);
                        rows[i] = -(if y[i] == 1 { p.ln() } else { (1.0 - p).ln() });
                    }
                }
                rows
            })
            .collect();
        let loss: Vec<f64> = per_row.iter().map(|r| r.iter().sum::<f64>() / n as f64).collect();
        let best = (0..grid.len()).min_by(|&a, &b| loss[a].total_cmp(&loss[b])).expect("non-empty grid");
        let chosen = grid[best];
        let held_out = per_row.into_iter().nth(best).expect("a row of losses per strength");
        (Self::fit(x, d, y, chosen), CvReport { grid: grid.to_vec(), loss, chosen, folds: k, held_out })
    }

    /// The model as an affine map of the raw features: (weights, intercept)
    /// with logit = intercept + Σ weights_j x_j (for finite x).
    pub fn affine(&self) -> (Vec<f64>, f64) {
        let w: Vec<f64> = self.weights[1..].iter().zip(&self.scale).map(|(w, s)| w / s).collect();
        let b = self.weights[0] - w.iter().zip(&self.mean).map(|(w, m)| w * m).sum::<f64>();
        (w, b)
    }

    /// P(y = 1) for each of the rows of `x`.
    pub fn predict(&self, x: &[f64]) -> Vec<f64> {
        let d = self.mean.len();
        x.chunks_exact(d.max(1))
            .map(|r| {
                let z = self.weights[0]
                    + r.iter()
                        .enumerate()
                        .filter(|(_, v)| v.is_finite())
                        .map(|(j, v)| self.weights[j + 1] * (v - self.mean[j]) / self.scale[j])
                        .sum::<f64>();
                sigmoid(z)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_logistic_model() {
        // y ~ Bernoulli(sigmoid(-0.5 + 2 x0 - x1)), x standard normal.
        let mut rng = tidalscope_core::Rng::new(11);
        let n = 20_000;
        let x: Vec<f64> = (0..2 * n).map(|_| rng.normal()).collect();
        let y: Vec<u8> =
            (0..n).map(|i| (rng.uniform() < sigmoid(-0.5 + 2.0 * x[2 * i] - x[2 * i + 1])) as u8).collect();
        let m = Logistic::fit(&x, 2, &y, 1e-6);
        // Standardisation of N(0,1) features is close to the identity.
        for (got, want) in m.weights.iter().zip([-0.5, 2.0, -1.0]) {
            assert!((got - want).abs() < 0.08, "{:?}", m.weights);
        }
        let p = m.predict(&[0.0, 0.0]);
        assert!(
            (p[0]
                - sigmoid(
                    m.weights[0] - m.weights[1] * m.mean[0] / m.scale[0] - m.weights[2] * m.mean[1] / m.scale[1]
                ))
            .abs()
                < 1e-12
        );
    }

    /// Plain gradient descent on the same penalised objective, written from
    /// its definition: the slow, obviously correct reference solution.
    fn reference_solution(x: &[f64], d: usize, y: &[u8], l2: f64) -> Vec<f64> {
        let n = y.len();
        let mean: Vec<f64> = (0..d).map(|j| (0..n).map(|i| x[i * d + j]).sum::<f64>() / n as f64).collect();
        let scale: Vec<f64> =
            (0..d).map(|j| ((0..n).map(|i| (x[i * d + j] - mean[j]).powi(2)).sum::<f64>() / n as f64).sqrt()).collect();
        let mut w = vec![0.0; d + 1];
        for _ in 0..200_000 {
            let mut g = vec![0.0; d + 1];
            for i in 0..n {
                let r: Vec<f64> =
                    std::iter::once(1.0).chain((0..d).map(|j| (x[i * d + j] - mean[j]) / scale[j])).collect();
                let p = sigmoid(r.iter().zip(&w).map(|(a, b)| a * b).sum());
                for a in 0..=d {
                    g[a] += (p - y[i] as f64) * r[a];
                }
            }
            for a in 1..=d {
                g[a] += l2 * w[a];
            }
            for a in 0..=d {
                w[a] -= 0.01 * g[a];
            }
        }
        w
    }

    #[test]
    fn converges_to_the_reference_solution_of_a_small_problem() {
        // 40 rows, 3 features (one useless), overlapping classes, as a
        // 50-label probe would see.
        let mut rng = tidalscope_core::Rng::new(3);
        let (n, d) = (40, 3);
        let x: Vec<f64> = (0..n * d).map(|_| rng.normal()).collect();
        let y: Vec<u8> = (0..n).map(|i| (rng.uniform() < sigmoid(1.5 * x[i * d] - x[i * d + 1])) as u8).collect();
        for l2 in [0.1, 3.0] {
            let m = Logistic::fit(&x, d, &y, l2);
            let want = reference_solution(&x, d, &y, l2);
            for (a, b) in m.weights.iter().zip(&want) {
                assert!((a - b).abs() < 1e-6, "λ {l2}: {:?} vs {want:?}", m.weights);
            }
            // The affine form gives the same logits on raw features.
            let (w, b) = m.affine();
            let z = b + w.iter().zip(&x[..d]).map(|(a, v)| a * v).sum::<f64>();
            assert!((sigmoid(z) - m.predict(&x[..d])[0]).abs() < 1e-12);
        }
    }

    #[test]
    fn cross_validation_prefers_a_strong_penalty_for_pure_noise() {
        // Labels independent of 10 noise features: no strength beats
        // chance by much held out, and the choice is stronger than with a
        // real signal, which it finds.
        let mut rng = tidalscope_core::Rng::new(8);
        let (n, d) = (200, 10);
        let x: Vec<f64> = (0..n * d).map(|_| rng.normal()).collect();
        let noise: Vec<u8> = (0..n).map(|i| (i % 2) as u8).collect();
        let (_, r) = Logistic::fit_cv(&x, d, &noise, &default_grid(), 5, 1);
        assert_eq!(r.folds, 5);
        let best = |r: &CvReport| r.loss.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(best(&r) > 0.64, "{r:?}");
        let signal: Vec<u8> = (0..n).map(|i| (x[i * d] + 0.3 * rng.normal() > 0.0) as u8).collect();
        let (m, r2) = Logistic::fit_cv(&x, d, &signal, &default_grid(), 5, 1);
        assert!(r2.chosen < r.chosen && best(&r2) < 0.4, "{r2:?} vs {r:?}");
        assert!(m.weights[1] > 1.0, "{:?}", m.weights);
        // Each row's held-out loss is that of the model fitted without its
        // fold, in row order; averaged, it is the chosen strength's loss.
        assert_eq!(r2.held_out.len(), n);
        let mean = r2.held_out.iter().sum::<f64>() / n as f64;
        assert!((mean - best(&r2)).abs() < 1e-12, "{mean} vs {}", best(&r2));
        let fold = stratified_folds(&signal, 5, 1);
        let (inside, outside): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| fold[i] == 2);
        let rows = |idx: &[usize]| -> Vec<f64> { idx.iter().flat_map(|&i| x[i * d..(i + 1) * d].to_vec()).collect() };
        let labels = |idx: &[usize]| -> Vec<u8> { idx.iter().map(|&i| signal[i]).collect() };
        let without = Logistic::fit(&rows(&outside), d, &labels(&outside), r2.chosen);
        for (&i, p) in inside.iter().zip(without.predict(&rows(&inside))) {
            let loss = -(if signal[i] == 1 { p } else { 1.0 - p }).clamp(1e-12, 1.0).ln();
            assert!((loss - r2.held_out[i]).abs() < 1e-9, "row {i}: {loss} vs {}", r2.held_out[i]);
        }
        // Same seed, same choice; a class of one member: no CV, the middle strength.
        assert_eq!(Logistic::fit_cv(&x, d, &signal, &default_grid(), 5, 1).1, r2);
        let mut one = vec![0u8; n];
        one[0] = 1;
        let (_, none) = Logistic::fit_cv(&x, d, &one, &default_grid(), 5, 1);
        assert_eq!((none.folds, none.held_out.len()), (0, 0));
    }

    #[test]
    fn non_finite_features_carry_no_information() {
        let x = vec![0.0, f64::NAN, 1.0, 5.0, 2.0, 6.0, 3.0, f64::INFINITY];
        let y = vec![0, 0, 1, 1];
        let m = Logistic::fit(&x, 2, &y, 1.0);
        assert!(m.weights.iter().all(|v| v.is_finite()), "{:?}", m.weights);
        let p = m.predict(&[f64::NAN, f64::NAN]);
        assert!(p[0].is_finite());
    }

    #[test]
    fn separable_data_stays_finite_with_a_penalty() {
        let x = vec![0.0, 1.0, 2.0, 3.0];
        let y = vec![0, 0, 1, 1];
        let m = Logistic::fit(&x, 1, &y, 1.0);
        let p = m.predict(&x);
        assert!(p.iter().all(|v| v.is_finite()) && p[0] < 0.5 && p[3] > 0.5, "{p:?}");
    }
}
