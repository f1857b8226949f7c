//! Retraining on the labels given so far: a converged, cross-validated
//! linear probe on the cached embeddings (the same probe `finetune` fits
//! and `experiment labels` measures: on the standardised and the whitened
//! input, the one that cross-validates clearly better, else both heads
//! averaged, the whitening fitted on the whole catalogue's embeddings),
//! every object rescored, and an honest estimate
//! of how well the labels so far separate the classes.

use super::catalogue::Catalogue;
use anyhow::ensure;
use rayon::prelude::*;
use serde::Serialize;
use tidalscope_eval::logistic::stratified_folds;
use tidalscope_eval::whiten::{Spectrum, Whitening};
use tidalscope_train::config::FinetuneConfig;
use tidalscope_train::finetune::{linear_probe, Probe};
use tidalscope_train::representation::MAX_OBJECTS;

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
    /// L2 strength chosen on all labels (of the standardised input when
    /// the probe averages two heads).
    pub l2: f64,
    /// The probe's input, in words.
    pub input: String,
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
    let whitening = catalogue_whitening(cat);
    let x: Vec<f32> = labelled.iter().flat_map(|&(r, _)| cat.vectors[r * d..(r + 1) * d].iter().copied()).collect();
    let y: Vec<f32> = labelled.iter().map(|&(_, y)| f32::from(y)).collect();
    let probe = linear_probe(&x, d, &y, seed, whitening.as_ref());
    let (cv_auc, cv_folds) = cross_validated_auc(&x, d, &y, seed, whitening.as_ref());
    let fit_seconds = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let scores: Vec<f32> = cat.vectors.par_chunks_exact(d).map(|r| score(&probe, r)).collect();
    Ok(Retrained {
        scores,
        positives,
        negatives,
        cv_auc,
        cv_folds,
        l2: probe.cv().chosen,
        input: probe.input.to_string(),
        fit_seconds,
        score_seconds: t1.elapsed().as_secs_f64(),
    })
}

/// The probe's whitening, fitted on up to [`MAX_OBJECTS`] of the
/// catalogue's rows, evenly spaced (labels unread); `None` when the rows
/// cannot give one (fewer than two finite rows, or no spread).
fn catalogue_whitening(cat: &Catalogue) -> Option<Whitening> {
    let d = cat.dim;
    let n = cat.vectors.len() / d.max(1);
    let step = n.div_ceil(MAX_OBJECTS).max(1);
    let rows: Vec<f32> = cat.vectors.chunks_exact(d.max(1)).step_by(step).flatten().copied().collect();
    Spectrum::fit(&rows, d).ok()?.whitening(FinetuneConfig::PROBE_VARIANCE).ok()
}

/// P(tidal) of one representation (non-finite numbers count as 0).
fn score(probe: &Probe, r: &[f32]) -> f32 {
    let z = probe.bias + r.iter().zip(&probe.weights).filter(|(v, _)| v.is_finite()).map(|(v, w)| v * w).sum::<f32>();
    1.0 / (1.0 + (-z).exp())
}

/// Pooled out-of-fold AUC over stratified folds, each fold's probe (its
/// input and L2 strength) chosen by its own inner cross-validation.
fn cross_validated_auc(
    x: &[f32],
    d: usize,
    y: &[f32],
    seed: u64,
    whitening: Option<&Whitening>,
) -> (Option<f64>, usize) {
    let n = y.len();
    let y8: Vec<u8> = y.iter().map(|&v| u8::from(v > 0.5)).collect();
    let count = |c: u8| y8.iter().filter(|&&v| v == c).count();
    let k = 5.min(count(0)).min(count(1));
    if k < 2 {
        return (None, 0);
    }
    // Other folds than the inner cross-validation's.
    let fold = stratified_folds(&y8, k, seed ^ 0x5eed_cafe);
    let held: Vec<Vec<(usize, f64)>> = (0..k)
        .into_par_iter()
        .map(|f| {
            let train: Vec<usize> = (0..n).filter(|&i| fold[i] != f).collect();
            let test: Vec<usize> = (0..n).filter(|&i| fold[i] == f).collect();
            let rows: Vec<f32> = train.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect();
            let yt: Vec<f32> = train.iter().map(|&i| y[i]).collect();
            let p = linear_probe(&rows, d, &yt, seed, whitening);
            test.iter().map(|&i| (i, f64::from(score(&p, &x[i * d..(i + 1) * d])))).collect()
        })
        .collect();
    let mut p = vec![0.0; n];
    for (i, s) in held.into_iter().flatten() {
        p[i] = s;
    }
    let auc = tidalscope_eval::metrics::roc(&p, &y8).ok().map(|r| r.auc());
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
