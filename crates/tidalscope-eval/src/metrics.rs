//! Classification metrics as astronomers quote them: the ROC curve and its
//! area, **completeness** (true-positive rate) at a fixed **contamination**
//! (false-positive rate, as Desmons et al. 2023 read it off the ROC curve),
//! precision–recall, and the confusion matrix at a threshold.
//!
//! Conventions: an object is called tidal when its score is ≥ the
//! threshold. ROC points are kept at every distinct score (no points are
//! dropped), starting at (0, 0) with threshold +∞, as scikit-learn's
//! `roc_curve(..., drop_intermediate=False)`.

use serde::Serialize;

/// Inputs that cannot give a metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// Scores and labels differ in length.
    #[error("{scores} scores for {labels} labels")]
    Length {
        /// Number of scores.
        scores: usize,
        /// Number of labels.
        labels: usize,
    },
    /// One class is absent: ROC needs both.
    #[error("{0}")]
    OneClass(String),
    /// A score is NaN.
    #[error("score {0} is NaN")]
    NaN(usize),
}

/// A receiver operating characteristic curve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Roc {
    /// False-positive rate (contamination) at each threshold, increasing.
    pub fpr: Vec<f64>,
    /// True-positive rate (completeness).
    pub tpr: Vec<f64>,
    /// Score thresholds, decreasing (the first is +∞).
    pub thresholds: Vec<f64>,
}

fn check(scores: &[f64], labels: &[u8]) -> Result<(usize, usize), MetricsError> {
    if scores.len() != labels.len() {
        return Err(MetricsError::Length { scores: scores.len(), labels: labels.len() });
    }
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(MetricsError::NaN(i));
    }
    let pos = labels.iter().filter(|&&l| l == 1).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return Err(MetricsError::OneClass(format!("{pos} positives and {neg} negatives: ROC needs both classes")));
    }
    Ok((pos, neg))
}

/// Indices sorted by decreasing score.
fn by_score(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// The ROC curve of `scores` for labels 0/1.
pub fn roc(scores: &[f64], labels: &[u8]) -> Result<Roc, MetricsError> {
    let (pos, neg) = check(scores, labels)?;
    let order = by_score(scores);
    let mut r = Roc { fpr: vec![0.0], tpr: vec![0.0], thresholds: vec![f64::INFINITY] };
    let (mut tp, mut fp) = (0usize, 0usize);
    for (k, &i) in order.iter().enumerate() {
        if labels[i] == 1 {
            tp += 1;
        } else {
            fp += 1;
        }
        // Emit a point after the last object of each distinct score.
        if k + 1 == order.len() || scores[order[k + 1]] != scores[i] {
            r.fpr.push(fp as f64 / neg as f64);
            r.tpr.push(tp as f64 / pos as f64);
            r.thresholds.push(scores[i]);
        }
    }
    Ok(r)
}

impl Roc {
    /// Area under the curve (trapezoidal rule, exact for the ROC step curve
    /// with ties counted as half).
    pub fn auc(&self) -> f64 {
        self.fpr.windows(2).zip(self.tpr.windows(2)).map(|(f, t)| (f[1] - f[0]) * (t[1] + t[0]) / 2.0).sum()
    }

    /// Completeness at contamination ≤ `fpr`: the highest true-positive rate
    /// of any threshold whose false-positive rate does not exceed `fpr`,
    /// with that threshold.
    pub fn completeness_at(&self, fpr: f64) -> (f64, f64) {
        let mut best = (0.0, f64::INFINITY);
        for k in 0..self.fpr.len() {
            if self.fpr[k] <= fpr + 1e-12 && self.tpr[k] >= best.0 {
                best = (self.tpr[k], self.thresholds[k]);
            }
        }
        best
    }
}

/// Counts at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Confusion {
    /// Positives called positive.
    pub tp: usize,
    /// Negatives called positive.
    pub fp: usize,
    /// Negatives called negative.
    pub tn: usize,
    /// Positives called negative (`fn` in `metrics.json`; `fn` is a Rust keyword).
    #[serde(rename = "fn")]
    pub fn_: usize,
}

impl Confusion {
    /// Confusion matrix of calling `score ≥ threshold` tidal.
    pub fn at(scores: &[f64], labels: &[u8], threshold: f64) -> Self {
        let mut c = Confusion { tp: 0, fp: 0, tn: 0, fn_: 0 };
        for (&s, &l) in scores.iter().zip(labels) {
            match (s >= threshold, l == 1) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, false) => c.tn += 1,
                (false, true) => c.fn_ += 1,
            }
        }
        c
    }

    /// Accuracy.
    pub fn accuracy(&self) -> f64 {
        (self.tp + self.tn) as f64 / (self.tp + self.tn + self.fp + self.fn_).max(1) as f64
    }
}

/// Precision and recall at every distinct threshold (decreasing), and the
/// average precision Σ (R_k − R_{k−1}) P_k.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrecisionRecall {
    /// Precision (purity) per threshold.
    pub precision: Vec<f64>,
    /// Recall (completeness) per threshold.
    pub recall: Vec<f64>,
    /// Thresholds, decreasing.
    pub thresholds: Vec<f64>,
    /// Average precision.
    pub average_precision: f64,
}

/// Precision–recall curve.
pub fn precision_recall(scores: &[f64], labels: &[u8]) -> Result<PrecisionRecall, MetricsError> {
    let (pos, _) = check(scores, labels)?;
    let order = by_score(scores);
    let mut pr =
        PrecisionRecall { precision: Vec::new(), recall: Vec::new(), thresholds: Vec::new(), average_precision: 0.0 };
    let (mut tp, mut n) = (0usize, 0usize);
    let mut last_recall = 0.0;
    for (k, &i) in order.iter().enumerate() {
        n += 1;
        tp += usize::from(labels[i] == 1);
        if k + 1 == order.len() || scores[order[k + 1]] != scores[i] {
            let p = tp as f64 / n as f64;
            let r = tp as f64 / pos as f64;
            pr.average_precision += (r - last_recall) * p;
            last_recall = r;
            pr.precision.push(p);
            pr.recall.push(r);
            pr.thresholds.push(scores[i]);
        }
    }
    Ok(pr)
}

/// The headline numbers of an evaluation, as written to `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Objects evaluated.
    pub n: usize,
    /// Positives among them.
    pub positives: usize,
    /// Area under the ROC curve.
    pub auc: f64,
    /// Completeness at 22% contamination (the paper's operating point).
    pub completeness_at_22pct_fpr: f64,
    /// Threshold that achieves it.
    pub threshold_at_22pct_fpr: f64,
    /// Completeness at 5%, 10% and 20% contamination.
    pub completeness_at_fpr: Vec<(f64, f64)>,
    /// Average precision.
    pub average_precision: f64,
    /// Threshold used for the confusion matrix.
    pub threshold: f64,
    /// Confusion matrix at `threshold`.
    pub confusion: Confusion,
    /// Accuracy at `threshold`.
    pub accuracy: f64,
}

impl Summary {
    /// Computes every number, with the confusion matrix at `threshold`.
    pub fn compute(
        scores: &[f64],
        labels: &[u8],
        threshold: f64,
    ) -> Result<(Self, Roc, PrecisionRecall), MetricsError> {
        let r = roc(scores, labels)?;
        let pr = precision_recall(scores, labels)?;
        let (c22, t22) = r.completeness_at(0.22);
        let confusion = Confusion::at(scores, labels, threshold);
        let s = Summary {
            n: scores.len(),
            positives: labels.iter().filter(|&&l| l == 1).count(),
            auc: r.auc(),
            completeness_at_22pct_fpr: c22,
            threshold_at_22pct_fpr: t22,
            completeness_at_fpr: [0.05, 0.10, 0.20].iter().map(|&f| (f, r.completeness_at(f).0)).collect(),
            average_precision: pr.average_precision,
            threshold,
            accuracy: confusion.accuracy(),
            confusion,
        };
        Ok((s, r, pr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obviously correct AUC: the fraction of (positive, negative) pairs
    /// ranked correctly, ties counting half.
    fn naive_auc(scores: &[f64], labels: &[u8]) -> f64 {
        let (mut good, mut pairs) = (0.0, 0.0);
        for (i, &si) in scores.iter().enumerate() {
            for (j, &sj) in scores.iter().enumerate() {
                if labels[i] == 1 && labels[j] == 0 {
                    pairs += 1.0;
                    good += if si > sj {
                        1.0
                    } else if si == sj {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        good / pairs
    }

    #[test]
    fn auc_matches_pair_counting_with_and_without_ties() {
        let mut rng = tidalscope_core::Rng::new(2);
        for trial in 0..20 {
            let n = 30 + trial * 7;
            let labels: Vec<u8> = (0..n).map(|_| u8::from(rng.bernoulli(0.3))).collect();
            // Coarse scores make ties common on odd trials.
            let scores: Vec<f64> = labels
                .iter()
                .map(|&l| {
                    let s = rng.normal() + l as f64;
                    if trial % 2 == 1 {
                        (s * 2.0).round() / 2.0
                    } else {
                        s
                    }
                })
                .collect();
            if labels.iter().all(|&l| l == labels[0]) {
                continue;
            }
            let r = roc(&scores, &labels).unwrap();
            assert!((r.auc() - naive_auc(&scores, &labels)).abs() < 1e-12, "trial {trial}");
        }
    }

    #[test]
    fn completeness_at_fixed_contamination_on_a_hand_made_case() {
        // scores: P 0.9, N 0.8, P 0.7, P 0.6, N 0.5, N 0.4, P 0.3, N 0.2
        let scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2];
        let labels = [1, 0, 1, 1, 0, 0, 1, 0];
        let r = roc(&scores, &labels).unwrap();
        assert_eq!(r.fpr, vec![0.0, 0.0, 0.25, 0.25, 0.25, 0.5, 0.75, 0.75, 1.0]);
        assert_eq!(r.tpr, vec![0.0, 0.25, 0.25, 0.5, 0.75, 0.75, 0.75, 1.0, 1.0]);
        // at ≤ 22% contamination only FPR 0 is allowed: completeness 25% at threshold 0.9
        assert_eq!(r.completeness_at(0.22), (0.25, 0.9));
        // at 25%: 75% at threshold 0.6
        assert_eq!(r.completeness_at(0.25), (0.75, 0.6));
        let c = Confusion::at(&scores, &labels, 0.6);
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (3, 1, 3, 1));
        assert_eq!(serde_json::to_value(c).unwrap()["fn"], 1, "written as fn, beside tp, fp and tn");
        let pr = precision_recall(&scores, &labels).unwrap();
        assert_eq!(pr.precision[..4], [1.0, 0.5, 2.0 / 3.0, 0.75]);
        // AP = 0.25·1 + 0.25·(2/3) + 0.25·0.75 + 0.25·(4/7)
        assert!((pr.average_precision - 0.25 * (1.0 + 2.0 / 3.0 + 0.75 + 4.0 / 7.0)).abs() < 1e-12);
        assert!(roc(&[0.1, 0.2], &[1, 1]).is_err());
        assert!(roc(&[0.1], &[1, 0]).is_err());
        assert_eq!(roc(&[f64::NAN, 0.2], &[1, 0]).unwrap_err(), MetricsError::NaN(0));
    }
}
