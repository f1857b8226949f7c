//! The projection head of self-supervised training.
//!
//! Dwibedi et al. (2021), NNCLR: "we use a projection head of [dense,
//! ReLU, dense] on top of the backbone"; the reference uses Dense 128 + ReLU,
//! Dense 128 (with biases): 33,024 parameters.

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// Builds a [`ProjectionHead`].
#[derive(Config, Debug, PartialEq)]
pub struct ProjectionHeadConfig {
    /// Input (representation) size.
    #[config(default = 128)]
    pub input: usize,
    /// Hidden and output size.
    #[config(default = 128)]
    pub width: usize,
}

impl ProjectionHeadConfig {
    /// Builds the head on `device`.
    pub fn init(&self, device: &Device) -> ProjectionHead {
        let dense =
            |i, o| LinearConfig::new(i, o).with_initializer(Initializer::XavierUniform { gain: 1.0 }).init(device);
        ProjectionHead { dense1: dense(self.input, self.width), dense2: dense(self.width, self.width) }
    }
}

/// Dense + ReLU + Dense.
#[derive(Module, Debug)]
pub struct ProjectionHead {
    /// First layer.
    pub dense1: Linear,
    /// Second layer.
    pub dense2: Linear,
}

impl ProjectionHead {
    /// # Shapes
    /// `[N, input]` → `[N, width]`.
    pub fn forward(&self, h: Tensor<2>) -> Tensor<2> {
        self.dense2.forward(relu(self.dense1.forward(h)))
    }
}
