//! Deterministic inference: preprocessed images → centre-crop views →
//! representations or scores, in batches, with models in inference mode
//! (BatchNorm running statistics, no noise, no random crop), through one
//! [`Predictor`]. On the CPU the encoder runs on the fast kernels (see
//! [`crate::fast`]), elsewhere on burn; give burn models in inference mode
//! (`.valid()`).

use crate::batch;
use crate::classifier::Classifier;
use crate::encoder::Encoder;
use crate::fast;
use burn::prelude::*;
use tidalscope_core::{Cutout, Rng};
use tidalscope_data::augment::{Augment, TooSmall};
pub use tidalscope_kernels::resnet::Layer;

/// Why images cannot go through a [`Predictor`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferError {
    /// An image is smaller than the model's view.
    #[error(transparent)]
    TooSmall(#[from] TooSmall),
    /// Images of different band counts in one call.
    #[error("images with {0} and {1} bands in one batch")]
    MixedBands(usize, usize),
    /// Images with another band count than the model's.
    #[error("images have {got} bands, the encoder expects {expected}")]
    Bands {
        /// The images'.
        got: usize,
        /// The encoder's.
        expected: usize,
    },
}

/// Centre-crop views of `images`, `[n, bands, crop, crop]` row-major, and
/// the number of bands.
fn view_values(images: &[&Cutout], crop: usize) -> Result<(Vec<f32>, usize), InferError> {
    let bands = images.first().map_or(0, |i| i.bands());
    let aug = Augment::inference(crop);
    let mut buf = vec![0f32; images.len() * bands * crop * crop];
    let mut rng = Rng::new(0); // unused by the inference view
    for (img, out) in images.iter().zip(buf.chunks_exact_mut(bands * crop * crop)) {
        if img.bands() != bands {
            return Err(InferError::MixedBands(bands, img.bands()));
        }
        aug.view(img, &[], &mut rng, out)?;
    }
    Ok((buf, bands))
}

/// How many images go through the network at once: bounds the memory of
/// the views while keeping every thread busy.
pub const BATCH: usize = 64;

/// What runs a [`Predictor`]'s network.
enum Engine {
    /// The fast CPU kernels, BatchNorm folded once.
    Fast(Box<fast::Inference>),
    /// burn, on any device.
    Burn(Box<Encoder>, Device),
}

/// The one way to run an encoder (and optionally a classifier's Dense(1)
/// head) for inference: weights converted and BatchNorm folded once, images
/// batched inside, the model in inference mode (running statistics, centre
/// crop, no noise).
pub struct Predictor {
    engine: Engine,
    /// (weights, bias) of the Dense(1) head, when there is one.
    head: Option<(Vec<f32>, f32)>,
    bands: usize,
    crop: usize,
}

impl Predictor {
    /// Runs `encoder` on `crop`×`crop` centre views, on `device` (the fast
    /// kernels when the device is the CPU and they are enabled).
    pub fn encoder(encoder: &Encoder, crop: usize, device: &Device) -> Self {
        let bands = encoder.stem.weight.dims()[1];
        let engine = if fast::enabled_on(device) {
            Engine::Fast(Box::new(fast::Inference::new(&fast::to_resnet(encoder))))
        } else {
            Engine::Burn(Box::new(encoder.clone()), device.clone())
        };
        Self { engine, head: None, bands, crop }
    }

    /// Runs `classifier` (its encoder, then its head) likewise.
    pub fn classifier(classifier: &Classifier, crop: usize, device: &Device) -> Self {
        let w = batch::to_vec(classifier.head.weight.val()); // [repr_dim, 1]
        let b = classifier.head.bias.as_ref().map_or(0.0, |b| batch::to_vec(b.val())[0]);
        Self { head: Some((w, b)), ..Self::encoder(&classifier.encoder, crop, device) }
    }

    /// Representations `[n × repr_dim]` (row-major) of preprocessed images.
    pub fn embed(&self, images: &[&Cutout]) -> Result<Vec<f32>, InferError> {
        self.features(images, Layer::Representation)
    }

    /// The activations of `layer`, `[n × dim]` (row-major), of
    /// preprocessed images.
    pub fn features(&self, images: &[&Cutout], layer: Layer) -> Result<Vec<f32>, InferError> {
        let mut out = Vec::new();
        for chunk in images.chunks(BATCH) {
            let (x, bands) = view_values(chunk, self.crop)?;
            if bands != self.bands {
                return Err(InferError::Bands { got: bands, expected: self.bands });
            }
            match &self.engine {
                Engine::Fast(net) => out.extend(net.forward_to(&x, chunk.len(), self.crop, self.crop, layer)),
                Engine::Burn(enc, device) => out.extend(batch::to_vec(
                    enc.forward_to(batch::images(x, chunk.len(), bands, self.crop, device), layer),
                )),
            }
        }
        Ok(out)
    }

    /// Classifier logits (the probability is their sigmoid).
    ///
    /// # Panics
    /// If the predictor was made from an encoder alone.
    pub fn logits(&self, images: &[&Cutout]) -> Result<Vec<f32>, InferError> {
        let (w, b) = self.head.as_ref().expect("logits need a classifier's head");
        Ok(head_logits(&self.embed(images)?, w, *b))
    }

    /// Tidal-feature probabilities.
    pub fn scores(&self, images: &[&Cutout]) -> Result<Vec<f32>, InferError> {
        Ok(self.logits(images)?.into_iter().map(|l| 1.0 / (1.0 + (-l).exp())).collect())
    }
}

/// Logits of a Dense(1) head (`weights`, `bias`) on representations `h`
/// (`[n × weights.len()]`, row-major).
pub fn head_logits(h: &[f32], weights: &[f32], bias: f32) -> Vec<f32> {
    h.chunks_exact(weights.len()).map(|r| r.iter().zip(weights).map(|(a, w)| a * w).sum::<f32>() + bias).collect()
}
