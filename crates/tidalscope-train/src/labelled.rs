//! Labelled objects for the classifier: making the split (reference layout
//! or stratified), recording it so `evaluate` finds the same held-out
//! objects, and loading the chosen images into memory.

use crate::config::SplitSpec;
use crate::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::convert::Infallible;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use tidalscope_core::Cutout;
use tidalscope_data::loader::{for_each_batch, LoaderConfig};
use tidalscope_data::preprocess::Preprocess;
use tidalscope_data::split::{self, ClassSizes, ObjectRef, Splits};
use tidalscope_io::source::Source;

/// The split a classifier was trained with, saved as `split.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRecord {
    /// Data paths, in source order (ObjectRef::source indexes this).
    pub sources: Vec<PathBuf>,
    /// Object count of each source when the split was made.
    pub lengths: Vec<usize>,
    /// How it was made.
    pub spec: SplitSpec,
    /// Training labels kept (0 = all).
    pub labels: usize,
    /// Seed.
    pub seed: u64,
    /// The objects.
    pub splits: Splits,
}

impl SplitRecord {
    /// Writes `split.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        tidalscope_io::atomic::write(path, serde_json::to_string(self).expect("serialisable").as_bytes())?;
        Ok(())
    }

    /// Reads `split.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| tidalscope_io::Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| TrainError::Other(format!("{}: {e}", path.display())))
    }

    /// Checks that `sources` are the ones the split was made on.
    pub fn check(&self, sources: &[&dyn Source]) -> Result<()> {
        let lengths: Vec<usize> = sources.iter().map(|s| s.info().len).collect();
        if lengths != self.lengths {
            return Err(TrainError::Other(format!(
                "the data ({lengths:?} objects) is not what the classifier's split was made on ({:?} objects in {:?})",
                self.lengths, self.sources
            )));
        }
        Ok(())
    }
}

/// Makes the split: `Reference` wants sources [unlabelled, tidal];
/// `Stratified` reads labels from every source.
pub fn make_split(sources: &[&dyn Source], spec: &SplitSpec, labels: usize, seed: u64) -> Result<Splits> {
    let mut splits = match spec {
        SplitSpec::Reference { train, val, test } => {
            if sources.len() != 2 {
                return Err(TrainError::Other("the reference layout needs --unlabelled and --tidal".into()));
            }
            split::reference(
                0,
                sources[0].info().len,
                1,
                sources[1].info().len,
                ClassSizes { train: *train, val: *val, test: *test },
                seed,
            )?
        }
        SplitSpec::Stratified { val, test } => {
            let mut objects = Vec::new();
            for (s, src) in sources.iter().enumerate() {
                for (index, l) in src.labels()?.into_iter().enumerate() {
                    if let Some(label) = l {
                        objects.push(ObjectRef { source: s, index, label });
                    }
                }
            }
            if objects.is_empty() {
                return Err(TrainError::Other(
                    "no labelled objects: give a catalogue with a 'label' column, a simulate folder, or --unlabelled and --tidal".into(),
                ));
            }
            split::stratified(&objects, *val, *test, seed)?
        }
    };
    if labels > 0 {
        splits.limit_train(labels, seed)?;
    }
    Ok(splits)
}

/// One loaded object.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Its id.
    pub id: String,
    /// Its metadata.
    pub meta: Vec<String>,
    /// Preprocessed pixels.
    pub image: Cutout,
}

/// Loads the selected objects, preprocessed, into memory.
pub fn load(
    sources: &[&dyn Source],
    selection: &[ObjectRef],
    preprocess: &Preprocess,
) -> Result<HashMap<ObjectRef, Loaded>> {
    // Bands named in another order than the model's reach their inputs.
    let reordered = sources
        .iter()
        .map(|s| Ok(preprocess.band_order(s.info())?.map(|order| tidalscope_io::source::BandOrder::new(*s, order))))
        .collect::<Result<Vec<_>>>()?;
    let sources: Vec<&dyn Source> =
        sources.iter().zip(&reordered).map(|(s, r)| r.as_ref().map_or(*s, |r| r as &dyn Source)).collect();
    let transform = |img: &Cutout, _: ObjectRef| preprocess.apply(img);
    let mut out = HashMap::with_capacity(selection.len());
    let cfg = LoaderConfig { batch: 64, shuffle_buffer: 1, prefetch: 2, seed: 0, drop_last: false };
    let ControlFlow::Continue(()) = for_each_batch(&sources, Some(selection), &transform, cfg, |batch| {
        for e in batch {
            out.insert(e.object, Loaded { id: e.id, meta: e.meta, image: e.image });
        }
        ControlFlow::<Infallible>::Continue(())
    })?;
    if out.len() != selection.len() {
        return Err(TrainError::Other(format!("loaded {} of {} selected objects", out.len(), selection.len())));
    }
    Ok(out)
}
