//! tf.data `Dataset.save` folders as a source: the image under one key,
//! an `id`/`object_id` key gives ids, a scalar integer `label` key gives
//! labels, every other key is metadata.

use super::{default_bands, Layout, OpenOptions, Pixels, Record, Source, SourceInfo};
use crate::tfdata::{DType, TfDataset};
use crate::{Error, Result};
use std::path::Path;

/// A tf.data folder.
pub struct TfDataSource {
    info: SourceInfo,
    dataset: TfDataset,
    image: usize,
    id: Option<usize>,
    label: Option<usize>,
    meta: Vec<usize>,
    cycle: usize,
    layout: Layout,
}

impl TfDataSource {
    /// Opens a folder.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Self> {
        let dataset = TfDataset::open(path)?;
        let spec = &dataset.spec;
        let keys: Vec<&str> = spec.components.iter().map(|c| c.key.as_str()).collect();
        let image = spec.position(&opts.image_key).ok_or_else(|| {
            Error::format(
                path,
                format!("no image key {:?} in this dataset (keys: {})", opts.image_key, keys.join(", ")),
            )
        })?;
        let img_spec = &spec.components[image];
        let dims = match img_spec.shape.as_deref() {
            Some([Some(a), Some(b), Some(c)]) => Some([*a, *b, *c]),
            Some([_, _, _]) | None => None,
            Some(s) => {
                return Err(Error::format(
                    path,
                    format!("image key {:?} has {} dimensions; [H,W,C] images are expected", opts.image_key, s.len()),
                ))
            }
        };
        if img_spec.dtype == DType::Str {
            return Err(Error::format(path, format!("image key {:?} holds strings, not pixels", opts.image_key)));
        }
        let layout = dims.map(|d| opts.layout.resolve(d)).unwrap_or(if opts.layout == Layout::Chw {
            Layout::Chw
        } else {
            Layout::Hwc
        });
        let scalar = |k: usize| spec.components[k].shape.as_deref() == Some(&[]);
        let id = ["id", "object_id"].iter().filter_map(|k| spec.position(k)).find(|&k| scalar(k));
        let label = spec.position("label").filter(|&k| {
            scalar(k)
                && spec.components[k].dtype != DType::Str
                && spec.components[k].dtype != DType::F32
                && spec.components[k].dtype != DType::F64
        });
        // The id and label keys are the records' id and label, not metadata
        // again (a table of both would name them twice).
        let meta: Vec<usize> =
            (0..spec.components.len()).filter(|&k| k != image && Some(k) != id && Some(k) != label).collect();
        let (b, h, w) = dims.map(|d| layout.bhw(d)).unwrap_or((0, 0, 0));
        let info = SourceInfo {
            path: path.to_path_buf(),
            format: super::Format::TfData,
            len: dataset.num_elements()?,
            bands: default_bands(b),
            shape: dims.map(|_| [b, h, w]),
            dtype: img_spec.dtype.name().to_string(),
            meta_columns: meta.iter().map(|&k| spec.components[k].key.clone()).collect(),
            labelled: label.is_some(),
        };
        let cycle =
            opts.cycle_length.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        Ok(Self { info, dataset, image, id, label, meta, cycle, layout })
    }
}

impl Source for TfDataSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn records(&self, start: usize) -> Result<Box<dyn Iterator<Item = Result<Record>> + Send + '_>> {
        let path = self.dataset.path.clone();
        let file = path.display().to_string();
        Ok(Box::new(self.dataset.elements(self.cycle).enumerate().skip(start).map(move |(i, el)| {
            let tensors = el?;
            let t = &tensors[self.image];
            let dims: [usize; 3] = t
                .shape
                .as_slice()
                .try_into()
                .map_err(|_| Error::format(&path, format!("element {i}: image of shape {:?}", t.shape)))?;
            let values =
                t.to_f32().ok_or_else(|| Error::format(&path, format!("element {i}: image is not numeric")))?;
            let image = self.layout.cutout(dims, values).map_err(|e| Error::format(&path, format!("element {i}: {e}")));
            let label = match self.label {
                None => None,
                // -1 is an unlabelled object, as `convert --to tfdata` writes
                // one (an integer key cannot be empty).
                Some(k) => match tensors[k].to_text().as_str() {
                    "0" => Some(0),
                    "1" => Some(1),
                    "-1" => None,
                    other => return Err(Error::format(&path, format!("element {i}: label {other} is not 0, 1 or -1"))),
                },
            };
            Ok(Record {
                index: i,
                id: self.id.map(|k| tensors[k].to_text()).unwrap_or_else(|| i.to_string()),
                label,
                meta: self.meta.iter().map(|&k| tensors[k].to_text()).collect(),
                file: file.clone(),
                pixels: Pixels::Ready(image),
            })
        })))
    }
}
