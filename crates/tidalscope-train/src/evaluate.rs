//! Scoring held-out objects and writing what the reference wrote (ROC
//! arrays and plot) plus the numbers astronomers quote (`metrics.json`:
//! AUC, completeness at 22% and at 5/10/20% contamination, average
//! precision, the confusion matrix at a threshold).

use crate::{write_npy, Result, TrainError};
use burn::prelude::*;
use serde::Serialize;
use std::path::Path;
use tidalscope_core::Cutout;
use tidalscope_eval::metrics::Summary;
use tidalscope_eval::plot::{line_plot, Axes, Series, PALETTE};
use tidalscope_model::bundle::ClassifierBundle;
use tidalscope_model::infer;

/// One scored object.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Id.
    pub id: String,
    /// Label, when known.
    pub label: Option<u8>,
    /// Probability of a tidal feature.
    pub score: f32,
    /// Metadata columns.
    pub meta: Vec<String>,
}

/// Probabilities of preprocessed images.
pub fn score(bundle: &ClassifierBundle, images: &[&Cutout], device: &Device) -> Result<Vec<f32>> {
    infer::Predictor::classifier(&bundle.classifier, bundle.preprocess.crop, device)
        .scores(images)
        .map_err(TrainError::Other)
}

#[derive(Serialize)]
struct MetricsFile<'a> {
    summary: &'a Summary,
    precision_recall: &'a tidalscope_eval::metrics::PrecisionRecall,
    note: &'static str,
}

/// Writes `scores.csv` and, when both classes are present, `FPR.npy`,
/// `TPR.npy`, `Thresholds.npy`, `ROC_curve.png` and `metrics.json`.
/// Returns the summary (None without both classes).
pub fn write_outputs(
    out: &Path,
    scored: &[Scored],
    meta_columns: &[String],
    threshold: f64,
    title: &str,
) -> Result<Option<Summary>> {
    std::fs::create_dir_all(out).map_err(|e| tidalscope_io::Error::io(out, e))?;
    let mut header = vec!["id".to_string(), "label".to_string(), "score".to_string()];
    header.extend(meta_columns.iter().cloned());
    let mut w = tidalscope_io::csv::CsvWriter::create(&out.join("scores.csv"), &header)?;
    for s in scored {
        let mut row = vec![s.id.clone(), s.label.map(|l| l.to_string()).unwrap_or_default(), format!("{:.6}", s.score)];
        row.extend(s.meta.iter().cloned());
        w.row(&row)?;
    }
    w.finish()?;
    let labelled: Vec<&Scored> = scored.iter().filter(|s| s.label.is_some()).collect();
    let scores: Vec<f64> = labelled.iter().map(|s| s.score as f64).collect();
    let labels: Vec<u8> = labelled.iter().map(|s| s.label.unwrap_or(0)).collect();
    if !(labels.contains(&0) && labels.contains(&1)) {
        return Ok(None);
    }
    let (summary, roc, pr) = Summary::compute(&scores, &labels, threshold)?;
    let as32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    write_npy(&out.join("FPR.npy"), &as32(&roc.fpr), &[roc.fpr.len()])?;
    write_npy(&out.join("TPR.npy"), &as32(&roc.tpr), &[roc.tpr.len()])?;
    write_npy(&out.join("Thresholds.npy"), &as32(&roc.thresholds), &[roc.thresholds.len()])?;
    let mut axes = Axes::new(title, "contamination (false-positive rate)", "completeness (true-positive rate)");
    axes.x_range = Some((0.0, 1.0));
    axes.y_range = Some((0.0, 1.02));
    axes.diagonal = true;
    axes.vlines.push((0.22, format!(" 22%: completeness {:.0}%", 100.0 * summary.completeness_at_22pct_fpr)));
    let mut s = Series::line(
        format!("AUC = {:.3} ({} objects)", summary.auc, summary.n),
        roc.fpr.clone(),
        roc.tpr.clone(),
        PALETTE[0],
    );
    s.markers = roc.fpr.len() < 60;
    line_plot(&out.join("ROC_curve.png"), &axes, &[s])?;
    let text = serde_json::to_string_pretty(&MetricsFile {
        summary: &summary,
        precision_recall: &pr,
        note: "contamination = false-positive rate read off the ROC curve, as Desmons et al. (2023); completeness_at_fpr lists (fpr, completeness); precision_recall lists precision and recall at every distinct score threshold",
    })
    .expect("serialisable");
    tidalscope_io::atomic::write(&out.join("metrics.json"), text.as_bytes())?;
    Ok(Some(summary))
}
