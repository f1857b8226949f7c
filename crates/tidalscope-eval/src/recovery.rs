//! Injection–recovery statistics: the fraction of objects with a known
//! feature that a classifier finds, by bins of a property (feature surface
//! brightness, host magnitude) or by category (feature type, negative
//! kind), with binomial confidence intervals; and the threshold that gives
//! a chosen false-positive rate.

/// One bin of a recovery curve.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Bin {
    /// The bin's label: its range `[lo, hi)` or a category name.
    pub label: String,
    /// Lower edge (NaN for a category).
    pub lo: f64,
    /// Upper edge (NaN for a category).
    pub hi: f64,
    /// Objects in the bin.
    pub n: usize,
    /// Of which detected.
    pub detected: usize,
    /// `detected / n` (NaN when empty).
    pub fraction: f64,
    /// 68% Wilson interval, lower end.
    pub ci_lo: f64,
    /// 68% Wilson interval, upper end.
    pub ci_hi: f64,
}

/// The Wilson score interval for `k` of `n` at `z` standard deviations.
pub fn wilson(k: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let den = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / den;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / den;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

fn bin(label: String, lo: f64, hi: f64, n: usize, detected: usize) -> Bin {
    let (ci_lo, ci_hi) = wilson(detected, n, 1.0);
    let fraction = if n > 0 { detected as f64 / n as f64 } else { f64::NAN };
    Bin { label, lo, hi, n, detected, fraction, ci_lo, ci_hi }
}

/// Detection fraction in bins `[edges[i], edges[i+1])` of `values`
/// (non-finite values are left out).
pub fn binned(values: &[f64], detected: &[bool], edges: &[f64]) -> Vec<Bin> {
    edges
        .windows(2)
        .map(|e| {
            let inside: Vec<bool> = values
                .iter()
                .zip(detected)
                .filter(|(v, _)| v.is_finite() && **v >= e[0] && **v < e[1])
                .map(|(_, d)| *d)
                .collect();
            bin(format!("{:.1}–{:.1}", e[0], e[1]), e[0], e[1], inside.len(), inside.iter().filter(|d| **d).count())
        })
        .collect()
}

/// Detection fraction per category, categories in first-seen order. An
/// object may belong to several (e.g. a stream and a shell).
pub fn by_category(categories: &[Vec<String>], detected: &[bool]) -> Vec<Bin> {
    let mut order: Vec<String> = Vec::new();
    for c in categories.iter().flatten() {
        if !order.contains(c) {
            order.push(c.clone());
        }
    }
    order
        .into_iter()
        .map(|c| {
            let inside: Vec<bool> =
                categories.iter().zip(detected).filter(|(cs, _)| cs.contains(&c)).map(|(_, d)| *d).collect();
            bin(c, f64::NAN, f64::NAN, inside.len(), inside.iter().filter(|d| **d).count())
        })
        .collect()
}

/// Edges every `step` covering `[min, max]` of the finite values, aligned
/// to multiples of `step`.
pub fn edges(values: &[f64], step: f64) -> Vec<f64> {
    let finite = values.iter().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return Vec::new();
    }
    let start = (lo / step).floor() * step;
    let n = (((hi - start) / step).floor() as usize) + 1;
    (0..=n).map(|i| start + i as f64 * step).collect()
}

/// The score threshold at which a fraction `fpr` of the negatives score
/// strictly above it (the smallest such threshold among the negatives'
/// scores): objects with `score > threshold` are "detected".
pub fn threshold_at_fpr(negative_scores: &[f64], fpr: f64) -> f64 {
    let mut s: Vec<f64> = negative_scores.iter().copied().filter(|v| v.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(|a, b| b.total_cmp(a));
    let allowed = (fpr * s.len() as f64).floor() as usize;
    // At most `allowed` negatives may lie above; ties stay below.
    if allowed >= s.len() {
        return f64::NEG_INFINITY;
    }
    s[allowed]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binning_and_completeness_on_a_hand_made_case() {
        let sb = [25.1, 25.4, 25.6, 26.2, 26.9, 27.0, f64::NAN, 24.0];
        let det = [true, true, false, true, false, false, true, true];
        let e = edges(&sb, 0.5);
        assert_eq!(e, vec![24.0, 24.5, 25.0, 25.5, 26.0, 26.5, 27.0, 27.5]);
        let b = binned(&sb, &det, &e);
        let counts: Vec<(usize, usize)> = b.iter().map(|b| (b.n, b.detected)).collect();
        assert_eq!(counts, vec![(1, 1), (0, 0), (2, 2), (1, 0), (1, 1), (1, 0), (1, 0)]);
        assert_eq!(b[2].fraction, 1.0);
        assert!(b[1].fraction.is_nan());
        assert!(b[2].ci_lo < 1.0 && b[2].ci_hi == 1.0);
    }

    #[test]
    fn categories_count_objects_with_several_features_in_each() {
        let cats =
            vec![vec!["stream".to_string()], vec!["stream".into(), "shell".into()], vec!["shell".into()], vec![]];
        let det = [true, false, true, true];
        let b = by_category(&cats, &det);
        assert_eq!(
            b.iter().map(|b| (b.label.as_str(), b.n, b.detected)).collect::<Vec<_>>(),
            vec![("stream", 2, 1), ("shell", 2, 1)]
        );
    }

    #[test]
    fn threshold_gives_the_requested_false_positive_rate() {
        let neg: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
        let t = threshold_at_fpr(&neg, 0.22);
        let above = neg.iter().filter(|&&s| s > t).count();
        assert_eq!(above, 22);
        // Ties: never more than the allowed fraction above.
        let tied = vec![0.5; 10];
        assert_eq!(tied.iter().filter(|&&s| s > threshold_at_fpr(&tied, 0.3)).count(), 0);
        assert!(threshold_at_fpr(&[], 0.1).is_nan());
    }

    #[test]
    fn wilson_interval_matches_the_formula() {
        // k = 5 of n = 10 at z = 1: centre 0.5, half-width sqrt(0.025 + 1/400)/1.1.
        let (lo, hi) = wilson(5, 10, 1.0);
        let half = (0.025f64 + 0.0025).sqrt() / 1.1;
        assert!((lo - (0.5 - half)).abs() < 1e-12 && (hi - (0.5 + half)).abs() < 1e-12);
        assert!(wilson(0, 0, 1.0).0.is_nan());
    }
}
