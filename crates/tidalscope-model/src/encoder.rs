//! The NNCLR encoder of Desmons et al. (2023): a pre-activation bottleneck
//! ResNet ("ResNet-v2, CIFAR style", He et al. 2016) mapping a cutout to a
//! 128-d representation.
//!
//! Layout (the reference Keras model, layer by layer):
//! stem conv 3×3 (16, no bias) → BN → ReLU; three stages of bottleneck width
//! 16, 64, 128 and output channels 64, 128, 256 with strides 1, 2, 2; each
//! stage is a projection block then an identity block. A block applies
//! BN-ReLU-conv 1×1, BN-ReLU-conv 3×3 (stride), BN-ReLU-conv 1×1 and adds a
//! shortcut: a strided 1×1 conv of the block's input in projection blocks,
//! the input itself in identity blocks. Then global average pooling, Dense 128
//! (no bias) → BN → ReLU → Dense 128 (no bias) → BN. With 5 bands: 615,312
//! trainable parameters and 3,520 BatchNorm running statistics. Keras
//! defaults: Glorot-uniform kernels, BN momentum 0.99 (burn: 0.01) and
//! ε = 0.001; convolutions use TensorFlow's "same" padding.
//!
//! **Identity blocks start alive.** The reference starts the BN before each
//! identity block's last convolution with γ = 0 ("zero_gamma") to make the
//! block start as the identity — but a ReLU follows that BN, so the branch
//! outputs relu(0·x̂ + 0) = 0, the ReLU's gradient there is 0, and γ, β and
//! every weight of the branch get zero gradient for the whole run: 272k of
//! the paper encoder's 615k parameters never train. By default tidalscope
//! starts that γ at 1 (Keras' default for every other BN), so every branch
//! trains; [`EncoderConfig::zero_gamma`] (`--init reference`) restores the
//! reference for exact reproduction.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use tidalscope_kernels::resnet::Layer;

/// Builds an [`Encoder`]; saved as `encoder.json` next to the weights.
#[derive(Config, Debug, PartialEq)]
pub struct EncoderConfig {
    /// Input bands.
    #[config(default = 5)]
    pub bands: usize,
    /// Width multiplier on every convolution's channels (1 = the paper).
    #[config(default = 1.0)]
    pub width: f64,
    /// Size of the representation.
    #[config(default = 128)]
    pub repr_dim: usize,
    /// BatchNorm ε (Keras default 0.001).
    #[config(default = 1e-3)]
    pub bn_epsilon: f64,
    /// BatchNorm momentum in burn's convention, 1 − Keras momentum (0.99).
    #[config(default = 0.01)]
    pub bn_momentum: f64,
    /// Start each identity block's last BN with γ = 0, as the reference did
    /// (which leaves those branches untrainable: see the module docs).
    /// Off by default; configs saved before this option load as off, which
    /// only matters when such a config builds a fresh encoder.
    #[config(default = false)]
    pub zero_gamma: bool,
}

impl EncoderConfig {
    /// The reference encoder (615,312 parameters with 5 bands).
    pub fn paper(bands: usize) -> Self {
        Self::new().with_bands(bands)
    }

    /// Half-width encoder for CPU runs (about a quarter of the FLOPs).
    pub fn quick(bands: usize) -> Self {
        Self::new().with_bands(bands).with_width(0.5)
    }

    fn ch(&self, c: usize) -> usize {
        ((c as f64 * self.width).round() as usize).max(1)
    }

    fn conv(&self, cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
        Conv2dConfig::new([cin, cout], [k, k])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Same)
            .with_bias(false)
            .with_initializer(Initializer::XavierUniform { gain: 1.0 })
            .init(device)
    }

    fn bn(&self, c: usize, device: &Device) -> BatchNorm {
        BatchNormConfig::new(c).with_epsilon(self.bn_epsilon).with_momentum(self.bn_momentum).init(device)
    }

    fn block(
        &self,
        cin: usize,
        width: usize,
        cout: usize,
        stride: usize,
        projection: bool,
        device: &Device,
    ) -> Bottleneck {
        let mut bn_b = self.bn(width, device);
        if !projection && self.zero_gamma {
            // The reference's zero_gamma (dead branches; module docs).
            bn_b.gamma = crate::params::replaced(&bn_b.gamma, Tensor::zeros([width], device));
        }
        Bottleneck {
            bn_in: self.bn(cin, device),
            conv_a: self.conv(cin, width, 1, 1, device),
            bn_a: self.bn(width, device),
            conv_b: self.conv(width, width, 3, stride, device),
            bn_b,
            conv_c: self.conv(width, cout, 1, 1, device),
            shortcut: projection.then(|| self.conv(cin, cout, 1, stride, device)),
        }
    }

    /// Builds the encoder on `device`.
    pub fn init(&self, device: &Device) -> Encoder {
        let stem = self.ch(16);
        let mut blocks = Vec::new();
        let mut cin = stem;
        for (width, cout, stride) in [(16, 64, 1), (64, 128, 2), (128, 256, 2)] {
            let (width, cout) = (self.ch(width), self.ch(cout));
            blocks.push(self.block(cin, width, cout, stride, true, device));
            blocks.push(self.block(cout, width, cout, 1, false, device));
            cin = cout;
        }
        let dense = |i: usize, o: usize| {
            LinearConfig::new(i, o)
                .with_bias(false)
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device)
        };
        Encoder {
            stem: self.conv(self.bands, stem, 3, 1, device),
            stem_bn: self.bn(stem, device),
            blocks,
            dense1: dense(cin, self.repr_dim),
            dense1_bn: self.bn(self.repr_dim, device),
            dense2: dense(self.repr_dim, self.repr_dim),
            dense2_bn: self.bn(self.repr_dim, device),
        }
    }
}

/// A pre-activation bottleneck block.
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// BN of the block input (pre-activation).
    pub bn_in: BatchNorm,
    /// 1×1 reduction.
    pub conv_a: Conv2d,
    /// BN after `conv_a`.
    pub bn_a: BatchNorm,
    /// 3×3 convolution (carries the stride).
    pub conv_b: Conv2d,
    /// BN after `conv_b` (γ = 0 at start in identity blocks with
    /// [`EncoderConfig::zero_gamma`]).
    pub bn_b: BatchNorm,
    /// 1×1 expansion.
    pub conv_c: Conv2d,
    /// Strided 1×1 projection of the input (projection blocks only).
    pub shortcut: Option<Conv2d>,
}

impl Bottleneck {
    /// # Shapes
    /// `[N, C_in, H, W]` → `[N, C_out, H/stride, W/stride]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.conv_a.forward(relu(self.bn_in.forward(x.clone())));
        let h = self.conv_b.forward(relu(self.bn_a.forward(h)));
        let h = self.conv_c.forward(relu(self.bn_b.forward(h)));
        let skip = match &self.shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        h + skip
    }
}

/// The encoder: image → representation.
#[derive(Module, Debug)]
pub struct Encoder {
    /// Stem convolution.
    pub stem: Conv2d,
    /// Stem BN.
    pub stem_bn: BatchNorm,
    /// Six bottleneck blocks (projection, identity) × 3 stages.
    pub blocks: Vec<Bottleneck>,
    /// First dense layer.
    pub dense1: Linear,
    /// Its BN.
    pub dense1_bn: BatchNorm,
    /// Second dense layer.
    pub dense2: Linear,
    /// Its BN (the representation).
    pub dense2_bn: BatchNorm,
}

impl Encoder {
    /// Every BatchNorm layer, in a fixed order.
    pub fn batch_norms(&self) -> Vec<&BatchNorm> {
        let mut v = vec![&self.stem_bn];
        for b in &self.blocks {
            v.extend([&b.bn_in, &b.bn_a, &b.bn_b]);
        }
        v.extend([&self.dense1_bn, &self.dense2_bn]);
        v
    }

    /// # Shapes
    /// `[N, bands, H, W]` → `[N, repr_dim]` (H, W: any size, 96 in the paper).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let h = relu(self.dense1_bn.forward(self.dense1.forward(self.pooled(x))));
        self.dense2_bn.forward(self.dense2.forward(h)) // [N, 128]
    }

    /// The backbone's globally pooled features, before the dense layers.
    ///
    /// # Shapes
    /// `[N, bands, H, W]` → `[N, 256]` (times the width).
    pub fn pooled(&self, x: Tensor<4>) -> Tensor<2> {
        let mut h = relu(self.stem_bn.forward(self.stem.forward(x))); // [N, 16, H, W]
        for b in &self.blocks {
            h = b.forward(h);
        } // [N, 256, H/4, W/4]
        let [n, c, _, _] = h.dims();
        h.mean_dim(3).mean_dim(2).reshape([n, c])
    }

    /// The activations of `layer`.
    pub fn forward_to(&self, x: Tensor<4>, layer: Layer) -> Tensor<2> {
        match layer {
            Layer::Pooled => self.pooled(x),
            Layer::Representation => self.forward(x),
        }
    }
}
