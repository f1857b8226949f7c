//! Deterministic inference: preprocessed images → centre-crop views →
//! representations or scores, in batches, with models in inference mode
//! (BatchNorm running statistics, no noise, no random crop).

use crate::batch;
use crate::classifier::Classifier;
use crate::encoder::Encoder;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use tidalscope_core::{Cutout, Rng};
use tidalscope_data::augment::Augment;

/// Centre-crop views of `images` as one `[n, bands, crop, crop]` tensor.
pub fn views(images: &[&Cutout], crop: usize, device: &Device) -> Result<Tensor<4>, String> {
    let bands = images.first().map_or(0, |i| i.bands());
    let aug = Augment::inference(crop);
    let mut buf = vec![0f32; images.len() * bands * crop * crop];
    let mut rng = Rng::new(0); // unused by the inference view
    for (img, out) in images.iter().zip(buf.chunks_exact_mut(bands * crop * crop)) {
        if img.bands() != bands {
            return Err(format!("images with {} and {} bands in one batch", bands, img.bands()));
        }
        aug.view(img, &[], &mut rng, out)?;
    }
    Ok(batch::images(buf, images.len(), bands, crop, device))
}

/// Representations `[n × repr_dim]` (row-major) of preprocessed images.
pub fn embed(encoder: &Encoder, images: &[&Cutout], crop: usize, device: &Device) -> Result<Vec<f32>, String> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    Ok(batch::to_vec(encoder.forward(views(images, crop, device)?)))
}

/// Tidal-feature probabilities of preprocessed images.
pub fn score(classifier: &Classifier, images: &[&Cutout], crop: usize, device: &Device) -> Result<Vec<f32>, String> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    Ok(batch::to_vec(sigmoid(classifier.forward(views(images, crop, device)?))))
}
