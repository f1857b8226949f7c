//! Similarity search in representation space, and the 2-D projection
//! astronomers plot representations with.
//!
//! Representations are compared by cosine similarity. The exact search
//! scans every row in parallel, keeping the best k per thread in a small
//! heap: a million 128-d embeddings take well under a second per query on
//! two cores (`tidalscope bench search`).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Row-major `[n, d]` embeddings scaled to unit length (zero rows stay zero).
pub fn normalise_rows(v: &mut [f32], d: usize) {
    for row in v.chunks_exact_mut(d) {
        let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|x| *x /= n);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Hit(f32, usize);

impl Eq for Hit {}
impl PartialOrd for Hit {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Hit {
    // Reversed, so the heap's top is the worst kept hit; ties by index.
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0).then(self.1.cmp(&o.1))
    }
}

/// The `k` rows of unit-length `rows` (`[n, d]`) most similar to the unit
/// vector `query`, as `(row, cosine similarity)`, best first; rows in
/// `exclude` are skipped.
pub fn top_k(rows: &[f32], d: usize, query: &[f32], k: usize, exclude: &[usize]) -> Vec<(usize, f32)> {
    use rayon::prelude::*;
    let n = rows.len() / d.max(1);
    let chunk = 16_384;
    let heaps: Vec<BinaryHeap<Hit>> = (0..n.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let mut heap = BinaryHeap::with_capacity(k + 1);
            for i in c * chunk..((c + 1) * chunk).min(n) {
                if exclude.contains(&i) {
                    continue;
                }
                let s: f32 = rows[i * d..(i + 1) * d].iter().zip(query).map(|(a, b)| a * b).sum();
                if heap.len() < k {
                    heap.push(Hit(s, i));
                } else if heap.peek().is_some_and(|w| s > w.0) {
                    heap.pop();
                    heap.push(Hit(s, i));
                }
            }
            heap
        })
        .collect();
    let mut all: Vec<Hit> = heaps.into_iter().flat_map(|h| h.into_vec()).collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    all.truncate(k);
    all.into_iter().map(|h| (h.1, h.0)).collect()
}

/// The first two principal components of `[n, d]` rows: `(mean, pc1, pc2)`
/// by power iteration on the covariance matrix (with deflation).
pub fn pca2(rows: &[f32], d: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = (rows.len() / d.max(1)).max(1);
    let mut mean = vec![0.0; d];
    for r in rows.chunks_exact(d) {
        for (m, &x) in mean.iter_mut().zip(r) {
            *m += x as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut cov = vec![0.0; d * d];
    for r in rows.chunks_exact(d) {
        let c: Vec<f64> = r.iter().zip(&mean).map(|(&x, m)| x as f64 - m).collect();
        for i in 0..d {
            for j in 0..d {
                cov[i * d + j] += c[i] * c[j];
            }
        }
    }
    let power = |cov: &[f64]| {
        let mut v: Vec<f64> = (0..d).map(|i| 1.0 + (i as f64 * 0.618).sin()).collect();
        for _ in 0..200 {
            let mut w = vec![0.0; d];
            for i in 0..d {
                w[i] = (0..d).map(|j| cov[i * d + j] * v[j]).sum();
            }
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
            v = w.into_iter().map(|x| x / norm).collect();
        }
        v
    };
    let pc1 = power(&cov);
    let lambda: f64 = (0..d).map(|i| pc1[i] * (0..d).map(|j| cov[i * d + j] * pc1[j]).sum::<f64>()).sum();
    let deflated: Vec<f64> = (0..d * d).map(|k| cov[k] - lambda * pc1[k / d] * pc1[k % d]).collect();
    let pc2 = power(&deflated);
    (mean, pc1, pc2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_matches_a_full_sort_and_excludes() {
        let mut rng = tidalscope_core::Rng::new(3);
        let d = 8;
        let mut rows: Vec<f32> = (0..40_000 * d).map(|_| rng.normal() as f32).collect();
        normalise_rows(&mut rows, d);
        let q = rows[123 * d..124 * d].to_vec();
        let got = top_k(&rows, d, &q, 5, &[123]);
        let mut all: Vec<(usize, f32)> = (0..40_000)
            .filter(|&i| i != 123)
            .map(|i| (i, rows[i * d..(i + 1) * d].iter().zip(&q).map(|(a, b)| a * b).sum()))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        assert_eq!(got, all[..5].to_vec());
        assert_eq!(top_k(&rows, d, &q, 1, &[])[0].0, 123, "a vector is its own nearest neighbour");
    }

    #[test]
    fn pca_finds_the_dominant_directions() {
        let mut rng = tidalscope_core::Rng::new(1);
        let rows: Vec<f32> = (0..2000)
            .flat_map(|_| {
                let (a, b) = (rng.normal() * 5.0, rng.normal() * 2.0);
                [a as f32, b as f32, (0.1 * rng.normal()) as f32]
            })
            .collect();
        let (_, pc1, pc2) = pca2(&rows, 3);
        assert!(pc1[0].abs() > 0.99 && pc2[1].abs() > 0.99, "{pc1:?} {pc2:?}");
    }
}
