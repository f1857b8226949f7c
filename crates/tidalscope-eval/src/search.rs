//! Similarity search in representation space, and the 2-D projection
//! astronomers plot representations with.
//!
//! Representations are compared by cosine similarity. The exact search
//! scans every row in parallel, keeping the best k per thread in a small
//! heap: a million 128-d embeddings take well under a second per query on
//! two cores (`tidalscope bench search`). For sets far beyond that, an
//! approximate index ([`AnnIndex`], HNSW from the `hnsw_rs` crate) answers
//! in about a millisecond; its recall@k against the exact search is
//! measured by `tidalscope bench search --approximate` and by a test.
//! [`label_precision`] measures what the search is for on labelled data:
//! how many of one tidal galaxy's nearest neighbours are tidal too.

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

/// How well similarity search finds more of a class from one example of
/// it ([`label_precision`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SearchPrecision {
    /// Positives searched from (every positive is a query once).
    pub queries: usize,
    /// Neighbours per query.
    pub k: usize,
    /// Mean over the queries of the positive share of their `k` nearest
    /// neighbours (the query itself left out): precision at k.
    pub precision: f64,
    /// The same share for `k` neighbours drawn at random from the other
    /// objects, (P − 1)/(N − 1): what a search that knows nothing gives.
    pub base_rate: f64,
}

/// Precision at `k` of searching from each positive of `labels` (0/1, one
/// per row of unit-length `rows`, `[n, d]`) among all the rows: the
/// demo's measure of "find more like this galaxy". `None` without a
/// positive, for `k` = 0, or with fewer than `k + 1` rows.
///
/// # Panics
/// If `rows` does not hold `d` values per label.
pub fn label_precision(rows: &[f32], d: usize, labels: &[u8], k: usize) -> Option<SearchPrecision> {
    use rayon::prelude::*;
    let n = labels.len();
    assert_eq!(rows.len(), n * d, "label_precision: {n} labels for {} values of {d} dimensions", rows.len());
    let positives: Vec<usize> = (0..n).filter(|&i| labels[i] == 1).collect();
    if positives.is_empty() || k == 0 || n <= k {
        return None;
    }
    let shares: Vec<f64> = positives
        .par_iter()
        .map(|&q| {
            let hits = top_k(rows, d, &rows[q * d..(q + 1) * d], k, &[q]);
            hits.iter().filter(|(i, _)| labels[*i] == 1).count() as f64 / k as f64
        })
        .collect();
    Some(SearchPrecision {
        queries: positives.len(),
        k,
        precision: shares.iter().sum::<f64>() / shares.len() as f64,
        base_rate: (positives.len() - 1) as f64 / (n - 1) as f64,
    })
}

/// An approximate nearest-neighbour index (HNSW, Malkov & Yashunin 2018)
/// over unit-length rows, by cosine similarity.
pub struct AnnIndex {
    hnsw: hnsw_rs::hnsw::Hnsw<'static, f32, hnsw_rs::anndists::dist::DistCosine>,
    d: usize,
}

/// Settings of an [`AnnIndex`].
#[derive(Debug, Clone, Copy)]
pub struct AnnParams {
    /// Links per node (HNSW's M).
    pub links: usize,
    /// Candidate list while building.
    pub ef_construction: usize,
    /// Candidate list while searching (≥ k; larger: better recall, slower).
    pub ef_search: usize,
}

impl Default for AnnParams {
    fn default() -> Self {
        Self { links: 16, ef_construction: 100, ef_search: 128 }
    }
}

impl AnnIndex {
    /// Indexes unit-length `rows` (`[n, d]`), in parallel.
    pub fn build(rows: &[f32], d: usize, p: AnnParams) -> Self {
        let n = rows.len() / d.max(1);
        let layers = 16.min(((n.max(2)) as f64).ln().ceil() as usize);
        let hnsw =
            hnsw_rs::hnsw::Hnsw::new(p.links, n.max(1), layers, p.ef_construction, hnsw_rs::anndists::dist::DistCosine);
        // Zero rows (no representation) would sit at distance 0 from every
        // vector under hnsw_rs' cosine and crowd out true neighbours.
        let data: Vec<(&[f32], usize)> = rows
            .chunks_exact(d.max(1))
            .enumerate()
            .filter(|(_, r)| r.iter().any(|v| *v != 0.0))
            .map(|(i, r)| (r, i))
            .collect();
        hnsw.parallel_insert_slice(&data);
        Self { hnsw, d }
    }

    /// As [`top_k`]: the (approximately) `k` most similar of the indexed
    /// `rows` to the unit vector `query`, best first, skipping `exclude`;
    /// similarities are recomputed exactly from `rows`.
    pub fn top_k(
        &self,
        rows: &[f32],
        query: &[f32],
        k: usize,
        ef_search: usize,
        exclude: &[usize],
    ) -> Vec<(usize, f32)> {
        debug_assert_eq!(query.len(), self.d);
        let d = self.d;
        let want = k + exclude.len();
        let mut hits: Vec<(usize, f32)> = self
            .hnsw
            .search(query, want, ef_search.max(want))
            .into_iter()
            .filter(|h| !exclude.contains(&h.d_id))
            .map(|h| (h.d_id, rows[h.d_id * d..(h.d_id + 1) * d].iter().zip(query).map(|(a, b)| a * b).sum()))
            .collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.truncate(k);
        hits
    }
}

/// Mean fraction of each exact top-k list found in the approximate one.
pub fn recall_at_k(exact: &[Vec<(usize, f32)>], approx: &[Vec<(usize, f32)>]) -> f64 {
    let (mut sum, mut lists) = (0.0, 0usize);
    for (e, a) in exact.iter().zip(approx) {
        if e.is_empty() {
            continue;
        }
        let found = e.iter().filter(|(i, _)| a.iter().any(|(j, _)| j == i)).count();
        sum += found as f64 / e.len() as f64;
        lists += 1;
    }
    sum / lists.max(1) as f64
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
    fn label_precision_counts_positive_neighbours_against_the_base_rate() {
        // Two tight clusters on the axes: positives 0–3 near x, negatives
        // 4–9 near y, and one positive (10) among the negatives.
        let mut rows = Vec::new();
        for i in 0..11 {
            let e = 0.01 * i as f32;
            rows.extend(if i < 4 { [1.0, e] } else { [e, 1.0] });
        }
        normalise_rows(&mut rows, 2);
        let labels = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1];
        let p = label_precision(&rows, 2, &labels, 3).unwrap();
        assert_eq!((p.queries, p.k), (5, 3));
        // Positives 0–3 find the other three of their cluster (1 each); 10
        // finds three negatives (0).
        assert!((p.precision - 4.0 / 5.0).abs() < 1e-12, "{p:?}");
        assert!((p.base_rate - 4.0 / 10.0).abs() < 1e-12, "{p:?}");
        // No positive, or too few rows: nothing to measure.
        assert!(label_precision(&rows, 2, &[0; 11], 3).is_none());
        assert!(label_precision(&rows[..6], 2, &labels[..3], 3).is_none());
    }

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

    /// Clustered unit vectors, like representations of similar galaxies.
    pub(crate) fn clustered(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = tidalscope_core::Rng::new(seed);
        let centres: Vec<f32> = (0..50 * d).map(|_| rng.normal() as f32).collect();
        let mut rows: Vec<f32> = (0..n)
            .flat_map(|i| {
                let c = (i * 7) % 50;
                (0..d).map(|j| centres[c * d + j] + 0.5 * rng.normal() as f32).collect::<Vec<_>>()
            })
            .collect();
        normalise_rows(&mut rows, d);
        rows
    }

    #[test]
    fn approximate_index_recalls_the_exact_neighbours() {
        let (n, d, k) = (4000, 32, 10);
        let rows = clustered(n, d, 5);
        let index = AnnIndex::build(&rows, d, AnnParams::default());
        let queries: Vec<usize> = (0..50).map(|q| (q * 79) % n).collect();
        let exact: Vec<_> = queries.iter().map(|&i| top_k(&rows, d, &rows[i * d..(i + 1) * d], k, &[i])).collect();
        let approx: Vec<_> =
            queries.iter().map(|&i| index.top_k(&rows, &rows[i * d..(i + 1) * d], k, 128, &[i])).collect();
        let recall = recall_at_k(&exact, &approx);
        assert!(recall >= 0.95, "recall@{k} = {recall}");
        for (a, &i) in approx.iter().zip(&queries) {
            assert_eq!(a.len(), k);
            assert!(a.iter().all(|(j, _)| *j != i), "the query itself is excluded");
            for (j, s) in a {
                let exact_s: f32 =
                    rows[j * d..(j + 1) * d].iter().zip(&rows[i * d..(i + 1) * d]).map(|(x, y)| x * y).sum();
                assert!((s - exact_s).abs() < 1e-5, "reported similarity is the cosine");
            }
        }
        assert_eq!(recall_at_k(&exact, &exact), 1.0);
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
