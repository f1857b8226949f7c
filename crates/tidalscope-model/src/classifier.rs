//! The tidal-feature classifier: the encoder and one sigmoid unit
//! (Dense(1)), as the reference's fine-tuned model.

use crate::encoder::{Encoder, EncoderConfig};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;

/// Builds a [`Classifier`]; saved as `classifier.json`.
#[derive(Config, Debug, PartialEq)]
pub struct ClassifierConfig {
    /// The encoder.
    pub encoder: EncoderConfig,
}

impl ClassifierConfig {
    /// Builds a classifier with a fresh encoder (load weights afterwards).
    pub fn init(&self, device: &Device) -> Classifier {
        Classifier { encoder: self.encoder.init(device), head: Self::head(self.encoder.repr_dim, device) }
    }

    /// A fresh Dense(1) head.
    pub fn head(repr_dim: usize, device: &Device) -> Linear {
        LinearConfig::new(repr_dim, 1).with_initializer(Initializer::XavierUniform { gain: 1.0 }).init(device)
    }

    /// A Dense(1) head with given weights (one per representation value)
    /// and bias: logit = bias + Σ weights_j h_j.
    pub fn head_with(weights: &[f32], bias: f32, device: &Device) -> Linear {
        let mut head = Self::head(weights.len(), device);
        let w = Tensor::from_data(TensorData::new(weights.to_vec(), [weights.len(), 1]), device);
        head.weight = crate::params::replaced(&head.weight, w);
        if let Some(b) = &head.bias {
            head.bias = Some(crate::params::replaced(b, Tensor::from_data(TensorData::new(vec![bias], [1]), device)));
        }
        head
    }
}

/// Encoder + Dense(1); the probability is sigmoid(logit).
#[derive(Module, Debug)]
pub struct Classifier {
    /// The encoder.
    pub encoder: Encoder,
    /// Dense(1) on the representation.
    pub head: Linear,
}

impl Classifier {
    /// Logits.
    /// # Shapes
    /// `[N, bands, H, W]` → `[N]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<1> {
        let z = self.head.forward(self.encoder.forward(x)); // [N, 1]
        let n = z.dims()[0];
        z.reshape([n])
    }
}
