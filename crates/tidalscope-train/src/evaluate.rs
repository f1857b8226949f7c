//! Scoring held-out objects and writing what the reference wrote (ROC
//! arrays and plot) plus the numbers astronomers quote (`metrics.json`:
//! AUC, completeness at 22% and at 5/10/20% contamination, average
//! precision, the confusion matrix at a threshold).

use crate::{write_npy, Reporter, Result, TrainError};
use burn::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use tidalscope_core::Cutout;
use tidalscope_data::split::ObjectRef;
use tidalscope_data::stream::{constant_text, non_finite_text, scores_header, stream_selected, Failed, ERRORS_HEADER};
use tidalscope_eval::metrics::Summary;
use tidalscope_eval::plot::{line_plot, Axes, Series, PALETTE};
use tidalscope_io::csv::CsvWriter;
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
    /// Fraction of its pixels that were not finite as read (0 in what the
    /// model saw), as `predict` reports it.
    pub non_finite: f64,
    /// Its input bands of one value over all the model saw, as
    /// `predict` reports them.
    pub constant_bands: Vec<String>,
    /// Metadata columns.
    pub meta: Vec<String>,
}

#[derive(Serialize)]
struct MetricsFile<'a> {
    summary: &'a Summary,
    /// Selected objects that could not be scored (in errors.csv): not in
    /// the summary.
    failed: usize,
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

/// What [`evaluate`] did.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// The summary of the scored objects, when both classes are present.
    pub summary: Option<Summary>,
    /// Objects scored.
    pub scored: usize,
    /// Objects that could not be prepared (missing file, a band with no
    /// finite pixel, …): listed in `errors.csv`, left out of the summary.
    pub failed: usize,
    /// Objects scored with some non-finite pixels (set to 0; their
    /// fraction is `scores.csv`'s `nonfinite_fraction`).
    pub flagged: usize,
    /// Objects scored with a band of one value in the model's view (named in
    /// `scores.csv`'s `constant_bands`).
    pub constant: usize,
}

/// Objects read and scored together.
const CHUNK: usize = 256;

/// Scores `selection` of `sources` with `bundle` and writes the outputs
/// of [`write_outputs`] into `out`. Objects are streamed (memory holds one
/// chunk); one that cannot be prepared is skipped into `errors.csv`, as
/// `predict` does, not the end of the run.
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
) -> Result<Evaluated> {
    // Each source's selected records, ascending, each once.
    let indices: Vec<Vec<usize>> = (0..sources.len())
        .map(|s| {
            let mut v: Vec<usize> = selection.iter().filter(|o| o.source == s).map(|o| o.index).collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    let wanted: usize = indices.iter().map(Vec::len).sum();
    if wanted == 0 {
        return Err(TrainError::Other(
            "nothing to evaluate: the selection holds no object (a split the classifier was trained without?)".into(),
        ));
    }
    reporter.log(&format!("scoring {wanted} objects"));
    reporter.start("evaluate", wanted as u64);
    let predictor = infer::Predictor::classifier(&bundle.classifier, bundle.preprocess.crop, device);
    let mut by_object: HashMap<(usize, usize), Scored> = HashMap::with_capacity(wanted);
    let mut failed: Vec<Failed> = Vec::new();
    for (s, (source, indices)) in sources.iter().zip(&indices).enumerate() {
        let before = by_object.len() + failed.len();
        stream_selected(*source, indices, &bundle.preprocess, CHUNK, |ok, bad| -> Result<()> {
            let images: Vec<&Cutout> = ok.iter().map(|p| &p.image).collect();
            let scores = if images.is_empty() { Vec::new() } else { predictor.scores(&images)? };
            for (p, score) in ok.into_iter().zip(scores) {
                let (non_finite, constant_bands) = (p.non_finite, p.constant_bands);
                let scored = Scored { id: p.id, label: p.label, score, non_finite, constant_bands, meta: p.meta };
                by_object.insert((s, p.index), scored);
            }
            failed.extend(bad);
            reporter.step((by_object.len() + failed.len()) as u64, "");
            Ok(())
        })?;
        let read = by_object.len() + failed.len() - before;
        if read != indices.len() {
            return Err(TrainError::Other(format!(
                "{}: read {read} of the {} selected objects: the data do not hold the others",
                source.info().path.display(),
                indices.len()
            )));
        }
    }
    reporter.finish();
    // Metadata columns of the first source (sources of one split share
    // them); none when objects disagree in their count.
    let meta_columns = sources.first().map(|s| s.info().meta_columns.clone()).unwrap_or_default();
    let keep_meta = by_object.values().all(|o| o.meta.len() == meta_columns.len());
    let scored: Vec<Scored> = selection
        .iter()
        .filter_map(|o| {
            let mut scored = by_object.remove(&(o.source, o.index))?;
            // From the sources, each record's own label (unlabelled ones
            // stay so), as `predict` writes it.
            if labels == LabelsFrom::Selection {
                scored.label = Some(o.label);
            }
            if !keep_meta {
                scored.meta.clear();
            }
            Some(scored)
        })
        .collect();
    let meta_columns = if keep_meta { meta_columns } else { Vec::new() };
    let flagged = scored.iter().filter(|s| s.non_finite > 0.0).count();
    let constant = scored.iter().filter(|s| !s.constant_bands.is_empty()).count();
    let summary = write_outputs(out, &scored, &meta_columns, &failed, threshold, title)?;
    Ok(Evaluated { summary, scored: scored.len(), failed: failed.len(), flagged, constant })
}

/// Writes `scores.csv` (`predict`'s columns, with the label), `errors.csv`
/// (the objects in `failed`) and, when both classes are present,
/// `FPR.npy`, `TPR.npy`, `Thresholds.npy`, `ROC_curve.png` and
/// `metrics.json`. Returns the summary (None without both classes).
pub fn write_outputs(
    out: &Path,
    scored: &[Scored],
    meta_columns: &[String],
    failed: &[Failed],
    threshold: f64,
    title: &str,
) -> Result<Option<Summary>> {
    std::fs::create_dir_all(out).map_err(|e| tidalscope_io::Error::io(out, e))?;
    let mut w = CsvWriter::create(&out.join("scores.csv"), &scores_header(true, meta_columns))?;
    for s in scored {
        let label = s.label.map(|l| l.to_string()).unwrap_or_default();
        let score = tidalscope_data::stream::score_text(s.score);
        let mut row = vec![s.id.clone(), label, score, non_finite_text(s.non_finite), constant_text(&s.constant_bands)];
        row.extend(s.meta.iter().cloned());
        w.row(&row)?;
    }
    w.finish()?;
    let mut errors = CsvWriter::create(&out.join("errors.csv"), &ERRORS_HEADER)?;
    for f in failed {
        errors.row([&f.id, &f.file, &f.reason])?;
    }
    errors.finish()?;
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
        failed: failed.len(),
        precision_recall: &pr,
        note: "contamination = false-positive rate read off the ROC curve, as Desmons et al. (2023); completeness_at_fpr lists (fpr, completeness); precision_recall lists precision and recall at every distinct score threshold",
    })
    .expect("serialisable");
    tidalscope_io::atomic::write(&out.join("metrics.json"), text.as_bytes())?;
    Ok(Some(summary))
}
