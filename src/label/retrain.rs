//! Retraining on the labels given so far: a converged, cross-validated
//! linear probe on the cached embeddings (the same probe `experiment
//! labels` measures), every object rescored, and an honest estimate of how
//! well the labels so far separate the classes.

use super::catalogue::Catalogue;
use anyhow::ensure;
use rayon::prelude::*;
use serde::Serialize;
use tidalscope_eval::logistic::{default_grid, stratified_folds, Logistic};

/// Fewest labels of each class a retrain accepts.
pub const MIN_PER_CLASS: usize = 3;

/// What a retrain produced.
#[derive(Debug, Clone, Serialize)]
pub struct Retrained {
    /// P(tidal) of every row (the server moves them into its scores).
    #[serde(skip)]
    pub scores: Vec<f32>,
    /// Tidal labels used.
    pub positives: usize,
    /// Not-tidal labels used.
    pub negatives: usize,
    /// AUC of out-of-fold predictions (nested: each fold's L2 strength is
    /// chosen without its held-out labels); `None` with too few labels.
    pub cv_auc: Option<f64>,
    /// Folds of that estimate.
    pub cv_folds: usize,
    /// L2 strength chosen on all labels.
    pub l2: f64,
    /// Seconds spent fitting.
    pub fit_seconds: f64,
    /// Seconds spent rescoring every object.
    pub score_seconds: f64,
}

/// Fits the probe on `labelled` (row, 0/1) and rescores every row.
pub fn retrain(cat: &Catalogue, labelled: &[(usize, u8)], seed: u64) -> anyhow::Result<Retrained> {
    let positives = labelled.iter().filter(|(_, y)| *y == 1).count();
    let negatives = labelled.len() - positives;
    ensure!(
        positives >= MIN_PER_CLASS && negatives >= MIN_PER_CLASS,
        "retraining needs at least {MIN_PER_CLASS} tidal and {MIN_PER_CLASS} not-tidal labels (have {positives} and {negatives})"
    );
    let t0 = std::time::Instant::now();
    let d = cat.dim;
    let x: Vec<f64> =
        labelled.iter().flat_map(|&(r, _)| cat.vectors[r * d..(r + 1) * d].iter().map(|&v| v as f64)).collect();
    let y: Vec<u8> = labelled.iter().map(|&(_, y)| y).collect();
    let grid = default_grid();
    let (model, report) = Logistic::fit_cv(&x, d, &y, &grid, 5, seed);
    let (cv_auc, cv_folds) = cross_validated_auc(&x, d, &y, &grid, seed);
    let fit_seconds = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let (w, b) = model.affine();
    let w: Vec<f32> = w.iter().map(|&v| v as f32).collect();
    let scores: Vec<f32> = cat
        .vectors
        .par_chunks_exact(d)
        .map(|r| {
            let z = b as f32 + r.iter().zip(&w).filter(|(v, _)| v.is_finite()).map(|(v, w)| v * w).sum::<f32>();
            1.0 / (1.0 + (-z).exp())
        })
        .collect();
    Ok(Retrained {
        scores,
        positives,
        negatives,
        cv_auc,
        cv_folds,
        l2: report.chosen,
        fit_seconds,
        score_seconds: t1.elapsed().as_secs_f64(),
    })
}

/// Pooled out-of-fold AUC over stratified folds, each fold's model chosen
/// by its own inner cross-validation.
fn cross_validated_auc(x: &[f64], d: usize, y: &[u8], grid: &[f64], seed: u64) -> (Option<f64>, usize) {
    let n = y.len();
    let count = |c: u8| y.iter().filter(|&&v| v == c).count();
    let k = 5.min(count(0)).min(count(1));
    if k < 2 {
        return (None, 0);
    }
    // Other folds than the inner cross-validation's.
    let fold = stratified_folds(y, k, seed ^ 0x5eed_cafe);
    let held: Vec<Vec<(usize, f64)>> = (0..k)
        .into_par_iter()
        .map(|f| {
            let train: Vec<usize> = (0..n).filter(|&i| fold[i] != f).collect();
            let test: Vec<usize> = (0..n).filter(|&i| fold[i] == f).collect();
            let rows =
                |idx: &[usize]| -> Vec<f64> { idx.iter().flat_map(|&i| x[i * d..(i + 1) * d].to_vec()).collect() };
            let yt: Vec<u8> = train.iter().map(|&i| y[i]).collect();
            let (m, _) = Logistic::fit_cv(&rows(&train), d, &yt, grid, 5, seed);
            test.iter().copied().zip(m.predict(&rows(&test))).collect()
        })
        .collect();
    let mut p = vec![0.0; n];
    for (i, s) in held.into_iter().flatten() {
        p[i] = s;
    }
    let auc = tidalscope_eval::metrics::roc(&p, y).ok().map(|r| r.auc());
    (auc, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_ranks_separable_objects_and_reports_a_cross_validated_auc() {
        // Two clusters in 4-D: rows with a positive first coordinate are tidal.
        let mut rng = tidalscope_core::Rng::new(5);
        let n = 400;
        let d = 4;
        let mut vectors = Vec::new();
        for i in 0..n {
            let c = if i % 2 == 0 { 1.5 } else { -1.5 };
            vectors.push((c + rng.normal()) as f32);
            for _ in 1..d {
                vectors.push(rng.normal() as f32);
            }
        }
        let emb_ids: Vec<String> = (0..n).map(|i| format!("o{i}")).collect();
        let mut unit = vectors.clone();
        tidalscope_eval::search::normalise_rows(&mut unit, d);
        let cat = Catalogue {
            by_id: emb_ids.iter().enumerate().map(|(i, s)| (s.clone(), i)).collect(),
            ids: emb_ids,
            index: (0..n).collect(),
            meta_columns: vec![],
            meta: vec![vec![]; n],
            dim: d,
            vectors,
            unit,
        };
        let labelled: Vec<(usize, u8)> = (0..40).map(|r| (r, (r % 2 == 0) as u8)).collect();
        let r = retrain(&cat, &labelled, 1).unwrap();
        assert_eq!((r.positives, r.negatives, r.cv_folds), (20, 20, 5));
        assert!(r.cv_auc.unwrap() > 0.9, "{:?}", r.cv_auc);
        let truth: Vec<u8> = (0..n).map(|i| (i % 2 == 0) as u8).collect();
        let all: Vec<f64> = r.scores.iter().map(|&s| s as f64).collect();
        assert!(tidalscope_eval::metrics::roc(&all, &truth).unwrap().auc() > 0.9);
        let few: Vec<(usize, u8)> = vec![(0, 1), (1, 0), (2, 1), (3, 0)];
        let err = retrain(&cat, &few, 1).unwrap_err().to_string();
        assert!(err.contains("at least 3 tidal"), "{err}");
    }
}
