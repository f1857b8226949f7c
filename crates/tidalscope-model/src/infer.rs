//! Deterministic inference: preprocessed images → centre-crop views →
//! representations or scores, in batches, with models in inference mode
//! (BatchNorm running statistics, no noise, no random crop). On the CPU the
//! encoder runs on the fast kernels (see [`crate::fast`]), elsewhere on burn.

use crate::batch;
use crate::classifier::Classifier;
use crate::encoder::Encoder;
use crate::fast;
use burn::prelude::*;
use tidalscope_core::{Cutout, Rng};
use tidalscope_data::augment::Augment;

/// Centre-crop views of `images` as one `[n, bands, crop, crop]` tensor.
pub fn views(images: &[&Cutout], crop: usize, device: &Device) -> Result<Tensor<4>, String> {
    let (buf, bands) = view_values(images, crop)?;
    Ok(batch::images(buf, images.len(), bands, crop, device))
}

/// Centre-crop views of `images`, `[n, bands, crop, crop]` row-major, and
/// the number of bands.
fn view_values(images: &[&Cutout], crop: usize) -> Result<(Vec<f32>, usize), String> {
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
    Ok((buf, bands))
}

/// Representations on the fast CPU kernels.
fn embed_fast(encoder: &Encoder, images: &[&Cutout], crop: usize) -> Result<Vec<f32>, String> {
    let (x, bands) = view_values(images, crop)?;
    let net = fast::to_resnet(encoder);
    if bands != net.bands() {
        return Err(format!("images have {bands} bands, the encoder expects {}", net.bands()));
    }
    Ok(fast::Inference::new(&net).forward(&x, images.len(), crop, crop))
}

/// Representations `[n × repr_dim]` (row-major) of preprocessed images.
pub fn embed(encoder: &Encoder, images: &[&Cutout], crop: usize, device: &Device) -> Result<Vec<f32>, String> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    if fast::enabled_on(device) {
        return embed_fast(encoder, images, crop);
    }
    Ok(batch::to_vec(encoder.forward(views(images, crop, device)?)))
}

/// Tidal-feature probabilities of preprocessed images.
pub fn score(classifier: &Classifier, images: &[&Cutout], crop: usize, device: &Device) -> Result<Vec<f32>, String> {
    Ok(logits(classifier, images, crop, device)?.into_iter().map(|l| 1.0 / (1.0 + (-l).exp())).collect())
}

/// Classifier logits of preprocessed images (the probability is their
/// sigmoid), with the model in inference mode.
pub fn logits(classifier: &Classifier, images: &[&Cutout], crop: usize, device: &Device) -> Result<Vec<f32>, String> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    if fast::enabled_on(device) {
        let h = embed_fast(&classifier.encoder, images, crop)?;
        let w = batch::to_vec(classifier.head.weight.val()); // [repr_dim, 1]
        let b = classifier.head.bias.as_ref().map_or(0.0, |b| batch::to_vec(b.val())[0]);
        return Ok(h.chunks_exact(w.len()).map(|r| r.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>() + b).collect());
    }
    Ok(batch::to_vec(classifier.forward(views(images, crop, device)?)))
}
