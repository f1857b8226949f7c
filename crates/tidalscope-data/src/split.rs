//! Labelled splits, reproducible by seed.
//!
//! Two ways to get labelled objects:
//! * the **reference layout** (Desmons et al. 2023): positives drawn from a
//!   set of tidal galaxies, negatives from the unlabelled set, with fixed
//!   per-class train/validation/test sizes (default 300/30/50);
//! * a **labelled catalogue**: a stratified split by class with fractions.
//!
//! Either can then keep only N training labels, balanced over the classes,
//! for label-efficiency studies; validation and test sets stay the same.

use tidalscope_core::streams;
use tidalscope_core::Rng;

/// One object: which source and which record, and its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ObjectRef {
    /// Index of the source in the caller's list.
    pub source: usize,
    /// Record index within the source.
    pub index: usize,
    /// 1 = tidal feature, 0 = none.
    pub label: u8,
}

impl ObjectRef {
    /// Every record of sources holding `lengths` records each, in order,
    /// labelled 0: for work that reads the images but never the labels.
    pub fn every(lengths: impl IntoIterator<Item = usize>) -> Vec<ObjectRef> {
        lengths
            .into_iter()
            .enumerate()
            .flat_map(|(source, len)| (0..len).map(move |index| ObjectRef { source, index, label: 0 }))
            .collect()
    }
}

/// Train, validation and test objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Splits {
    /// Training set.
    pub train: Vec<ObjectRef>,
    /// Validation set (for the per-epoch validation loss).
    pub val: Vec<ObjectRef>,
    /// Held-out test set.
    pub test: Vec<ObjectRef>,
}

/// Per-class sizes of the reference layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClassSizes {
    /// Training objects per class.
    pub train: usize,
    /// Validation objects per class.
    pub val: usize,
    /// Test objects per class.
    pub test: usize,
}

impl Default for ClassSizes {
    fn default() -> Self {
        Self { train: 300, val: 30, test: 50 }
    }
}

/// Splits that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A class has fewer objects than the sizes ask for.
    #[error("the {class} set has {have} objects, but {need} are needed ({sizes}); choose smaller split sizes")]
    TooFew {
        /// Which set.
        class: &'static str,
        /// Available.
        have: usize,
        /// Needed.
        need: usize,
        /// The sizes asked for.
        sizes: String,
    },
    /// No labelled objects at all, or only one class.
    #[error("{0}")]
    Labels(String),
}

/// The reference layout: `n_unlabelled` objects of source `unlabelled`
/// (negatives), `n_tidal` of source `tidal` (positives).
pub fn reference(
    unlabelled: usize,
    n_unlabelled: usize,
    tidal: usize,
    n_tidal: usize,
    sizes: ClassSizes,
    seed: u64,
) -> Result<Splits, SplitError> {
    let need = sizes.train + sizes.val + sizes.test;
    let desc = format!("{}/{}/{} per class", sizes.train, sizes.val, sizes.test);
    for (class, have) in [("tidal", n_tidal), ("unlabelled", n_unlabelled)] {
        if have < need {
            return Err(SplitError::TooFew { class, have, need, sizes: desc.clone() });
        }
    }
    let mut splits = Splits::default();
    for (k, (source, n, label)) in [(tidal, n_tidal, 1u8), (unlabelled, n_unlabelled, 0u8)].into_iter().enumerate() {
        let picked = choose(n, need, &mut Rng::for_stream(seed, streams::SPLIT_PICK + k as u64));
        let refs: Vec<ObjectRef> = picked.into_iter().map(|index| ObjectRef { source, index, label }).collect();
        splits.train.extend_from_slice(&refs[..sizes.train]);
        splits.val.extend_from_slice(&refs[sizes.train..sizes.train + sizes.val]);
        splits.test.extend_from_slice(&refs[sizes.train + sizes.val..]);
    }
    splits.sort();
    Ok(splits)
}

/// `k` distinct indices of `0..n` in random order (partial Fisher–Yates
/// over a sparse swap map, so choosing 380 of 45,000 costs 380 steps).
fn choose(n: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
    let mut swaps = std::collections::HashMap::new();
    (0..k)
        .map(|i| {
            let j = i + rng.below((n - i) as u64) as usize;
            let vj = *swaps.get(&j).unwrap_or(&j);
            let vi = *swaps.get(&i).unwrap_or(&i);
            swaps.insert(j, vi);
            vj
        })
        .collect()
}

/// Stratified split of labelled objects: per class, `val` and `test`
/// fractions go to validation and test, the rest to training.
pub fn stratified(objects: &[ObjectRef], val: f64, test: f64, seed: u64) -> Result<Splits, SplitError> {
    if !(0.0..1.0).contains(&(val + test)) || val < 0.0 || test < 0.0 {
        return Err(SplitError::Labels(format!(
            "validation ({val}) and test ({test}) fractions must be ≥ 0 and sum below 1"
        )));
    }
    let mut splits = Splits::default();
    for label in [0u8, 1] {
        let mut class: Vec<ObjectRef> = objects.iter().copied().filter(|o| o.label == label).collect();
        if class.is_empty() {
            return Err(SplitError::Labels(format!("no objects with label {label}: a classifier needs both classes")));
        }
        class.sort();
        Rng::for_stream(seed, streams::SPLIT_SHUFFLE + label as u64).shuffle(&mut class);
        let n = class.len();
        let n_val = (val * n as f64).round() as usize;
        let n_test = (test * n as f64).round() as usize;
        splits.val.extend_from_slice(&class[..n_val]);
        splits.test.extend_from_slice(&class[n_val..n_val + n_test]);
        splits.train.extend_from_slice(&class[n_val + n_test..]);
    }
    splits.sort();
    Ok(splits)
}

impl Splits {
    fn sort(&mut self) {
        self.train.sort();
        self.val.sort();
        self.test.sort();
    }

    /// Keeps `n` training objects, half of each class where possible (the
    /// rest from the larger class), chosen by seed; validation and test are
    /// untouched.
    pub fn limit_train(&mut self, n: usize, seed: u64) -> Result<(), SplitError> {
        if n >= self.train.len() {
            return Ok(());
        }
        if n < 2 {
            return Err(SplitError::Labels("at least 2 training labels (one per class) are needed".into()));
        }
        let mut by_class: [Vec<ObjectRef>; 2] = [Vec::new(), Vec::new()];
        for o in &self.train {
            by_class[o.label as usize].push(*o);
        }
        for (k, c) in by_class.iter_mut().enumerate() {
            Rng::for_stream(seed, streams::SPLIT_LIMIT + k as u64).shuffle(c);
        }
        let half = n / 2;
        let take1 = half.min(by_class[1].len()).max(n.saturating_sub(by_class[0].len()));
        let take0 = n - take1;
        let mut kept: Vec<ObjectRef> = by_class[0][..take0].to_vec();
        kept.extend_from_slice(&by_class[1][..take1]);
        kept.sort();
        self.train = kept;
        Ok(())
    }

    /// Counts of (negatives, positives) in a set.
    pub fn counts(set: &[ObjectRef]) -> (usize, usize) {
        let pos = set.iter().filter(|o| o.label == 1).count();
        (set.len() - pos, pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_object_lists_each_record_of_each_source_once_in_order() {
        let all = ObjectRef::every([2, 0, 1]);
        let got: Vec<(usize, usize, u8)> = all.iter().map(|o| (o.source, o.index, o.label)).collect();
        assert_eq!(got, vec![(0, 0, 0), (0, 1, 0), (2, 0, 0)]);
    }

    #[test]
    fn reference_layout_has_the_per_class_sizes_and_no_overlap() {
        let s = reference(0, 45_000, 1, 400, ClassSizes::default(), 3).unwrap();
        assert_eq!(Splits::counts(&s.train), (300, 300));
        assert_eq!(Splits::counts(&s.val), (30, 30));
        assert_eq!(Splits::counts(&s.test), (50, 50));
        let mut all: Vec<_> = s.train.iter().chain(&s.val).chain(&s.test).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "an object is in two sets");
        assert!(s.train.iter().all(|o| (o.label == 1) == (o.source == 1)));
        assert_eq!(s, reference(0, 45_000, 1, 400, ClassSizes::default(), 3).unwrap(), "same seed, same split");
        assert_ne!(s, reference(0, 45_000, 1, 400, ClassSizes::default(), 4).unwrap());
        let err = reference(0, 45_000, 1, 100, ClassSizes::default(), 3).unwrap_err().to_string();
        assert!(err.contains("tidal set has 100") && err.contains("380"), "{err}");
    }

    #[test]
    fn stratified_split_keeps_class_fractions_and_label_limit_balances() {
        let objs: Vec<ObjectRef> =
            (0..1000).map(|i| ObjectRef { source: 0, index: i, label: u8::from(i % 10 < 3) }).collect();
        let mut s = stratified(&objs, 0.1, 0.2, 1).unwrap();
        assert_eq!(Splits::counts(&s.test), (140, 60));
        assert_eq!(Splits::counts(&s.val), (70, 30));
        assert_eq!(Splits::counts(&s.train), (490, 210));
        let test_before = s.test.clone();
        s.limit_train(50, 2).unwrap();
        assert_eq!(Splits::counts(&s.train), (25, 25));
        assert_eq!(s.test, test_before);
        assert!(stratified(&objs[..3], 0.1, 0.2, 1).is_err(), "one class only");
    }
}
