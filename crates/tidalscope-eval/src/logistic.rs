//! L2-regularised logistic regression on a few standardised features,
//! fitted by Newton's method (iteratively reweighted least squares): the
//! classical baseline's classifier. Deterministic; no randomness.

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
        let p = d + 1;
        let row = |i: usize| -> Vec<f64> {
            let mut r = Vec::with_capacity(p);
            r.push(1.0);
            r.extend((0..d).map(|j| {
                let v = x[i * d + j];
                if v.is_finite() {
                    (v - mean[j]) / scale[j]
                } else {
                    0.0
                }
            }));
            r
        };
        // Penalised negative log-likelihood, for step halving.
        let objective = |w: &[f64], rows: &[Vec<f64>]| -> f64 {
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
        };
        let rows: Vec<Vec<f64>> = (0..n).map(row).collect();
        let mut w = vec![0.0; p];
        for _ in 0..50 {
            let mut hess = vec![0.0; p * p];
            let mut grad = vec![0.0; p];
            for (r, &yi) in rows.iter().zip(y) {
                let z: f64 = r.iter().zip(&w).map(|(a, b)| a * b).sum();
                let mu = sigmoid(z);
                let s = (mu * (1.0 - mu)).max(1e-9);
                for a in 0..p {
                    grad[a] += (mu - yi as f64) * r[a];
                    for b in 0..p {
                        hess[a * p + b] += s * r[a] * r[b];
                    }
                }
            }
            for a in 1..p {
                grad[a] += l2 * w[a];
                hess[a * p + a] += l2;
            }
            let step = solve(hess, grad, p);
            // Newton's step, halved until the objective does not increase.
            let before = objective(&w, &rows);
            let mut t = 1.0;
            let mut next: Vec<f64> = w.iter().zip(&step).map(|(a, s)| a - s).collect();
            while objective(&next, &rows) > before && t > 1e-6 {
                t *= 0.5;
                next = w.iter().zip(&step).map(|(a, s)| a - t * s).collect();
            }
            let change = w.iter().zip(&next).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            w = next;
            if change < 1e-10 {
                break;
            }
        }
        Self { mean, scale, weights: w }
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
