//! Scoring held-out objects and writing what the reference wrote (ROC
//! arrays and plot) plus the numbers astronomers quote (`metrics.json`:
//! AUC, completeness at 22% and at 5/10/20% contamination, average
//! precision, the confusion matrix at a threshold).

use crate::{labelled, write_npy, Reporter, Result};
use burn::prelude::*;
use serde::Serialize;
use std::path::Path;
use tidalscope_core::Cutout;
use tidalscope_data::split::ObjectRef;
use tidalscope_eval::metrics::Summary;
use tidalscope_eval::plot::{line_plot, Axes, Series, PALETTE};
use tidalscope_io::source::Source;
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
    Ok(infer::Predictor::classifier(&bundle.classifier, bundle.preprocess.crop, device).scores(images)?)
}

#[derive(Serialize)]
struct MetricsFile<'a> {
    summary: &'a Summary,
    precision_recall: &'a tidalscope_eval::metrics::PrecisionRecall,
    note: &'static str,
}

/// Where the labels of evaluated objects come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelsFrom {
    /// The selection's own labels (a recorded split: known to be labelled).
    Selection,
    /// The sources' catalogues (any objects: unlabelled ones stay so).
    Sources,
}

/// Scores `selection` of `sources` with `bundle` and writes the outputs
/// of [`write_outputs`] into `out`; the summary when both classes are
/// present.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    bundle: &ClassifierBundle,
    sources: &[&dyn Source],
    selection: &[ObjectRef],
    labels: LabelsFrom,
    out: &Path,
    threshold: f64,
    title: &str,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Option<Summary>> {
    let loaded = labelled::load(sources, selection, &bundle.preprocess)?;
    let labels_of: Vec<Vec<Option<u8>>> = match labels {
        LabelsFrom::Sources => sources.iter().map(|s| s.labels()).collect::<std::result::Result<_, _>>()?,
        LabelsFrom::Selection => Vec::new(),
    };
    let images: Vec<&Cutout> = selection.iter().map(|o| &loaded[o].image).collect();
    reporter.log(&format!("scoring {} objects", images.len()));
    let scores = score(bundle, &images, device)?;
    // Metadata columns of the first source (sources of one split share
    // them); none when objects disagree in their count.
    let meta_columns = sources.first().map(|s| s.info().meta_columns.clone()).unwrap_or_default();
    let keep_meta = selection.iter().all(|o| loaded[o].meta.len() == meta_columns.len());
    let scored: Vec<Scored> = selection
        .iter()
        .zip(&scores)
        .map(|(o, &score)| {
            let l = &loaded[o];
            let label = match labels {
                LabelsFrom::Sources => labels_of[o.source][o.index],
                LabelsFrom::Selection => Some(o.label),
            };
            Scored { id: l.id.clone(), label, score, meta: if keep_meta { l.meta.clone() } else { Vec::new() } }
        })
        .collect();
    let meta_columns = if keep_meta { meta_columns } else { Vec::new() };
    write_outputs(out, &scored, &meta_columns, threshold, title)
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
