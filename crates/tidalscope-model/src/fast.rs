//! The fast CPU path: an [`Encoder`]'s weights converted to
//! `tidalscope-kernels`' layouts (NHWC activations, HWIO convolution
//! weights) and back, so inference and training on the CPU run on those
//! kernels instead of burn's generic CPU backend. The model code stays the
//! burn `Encoder`; only the arithmetic moves. Set `TIDALSCOPE_KERNELS=burn`
//! to run the plain burn path instead (for comparison or as a fallback).

use crate::batch;
use crate::encoder::{Bottleneck, Encoder};
use crate::params::replaced;
use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use tidalscope_kernels::conv::Conv;
use tidalscope_kernels::norm;
use tidalscope_kernels::resnet::{Block, ConvLayer, Dense};

pub use tidalscope_kernels::adam::Moments;
pub use tidalscope_kernels::average::{RunningStatsPass, WeightAverage};
pub use tidalscope_kernels::resnet::{Inference, ResNet, Trainer, TrainingWinograd};

/// Which implementation runs the encoder's arithmetic; recorded in training
/// configurations so a run says what trained it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// The fast kernels on the CPU, burn on a GPU, unless
    /// `TIDALSCOPE_KERNELS=burn`.
    #[default]
    Auto,
    /// tidalscope's CPU kernels (on a GPU, burn: these are CPU kernels).
    Fast,
    /// burn's backend.
    Burn,
}

impl Kernels {
    /// `Fast` or `Burn` for work on `device`.
    pub fn resolve(self, device: &Device) -> Kernels {
        let cpu = device.clone().inner() == Device::flex();
        match self {
            _ if !cpu => Kernels::Burn,
            Kernels::Auto if std::env::var("TIDALSCOPE_KERNELS").is_ok_and(|v| v == "burn") => Kernels::Burn,
            Kernels::Auto => Kernels::Fast,
            k => k,
        }
    }
}

/// Whether inference on `device` takes the fast CPU kernels: on burn's flex
/// CPU device (not its autodiff wrapper), unless `TIDALSCOPE_KERNELS=burn`.
pub fn enabled_on(device: &Device) -> bool {
    *device == Device::flex() && Kernels::Auto.resolve(device) == Kernels::Fast
}

/// Adam as tidalscope's training loops configure burn's (β 0.9/0.999, the
/// given ε, Keras' L2 λ as a 2λ penalty on the gradient), for the kernels.
pub fn adam(epsilon: f32, weight_decay: f32) -> tidalscope_kernels::adam::AdamConfig {
    tidalscope_kernels::adam::AdamConfig { beta1: 0.9, beta2: 0.999, epsilon, weight_decay }
}

/// Reads a parameter tensor: its value, or (in tests) its gradient.
pub trait ReadParam {
    /// The tensor's values, row-major.
    fn read<const D: usize>(&self, p: &Param<Tensor<D>>) -> Vec<f32>;
}

/// Reads parameter values.
pub struct Values;

impl ReadParam for Values {
    fn read<const D: usize>(&self, p: &Param<Tensor<D>>) -> Vec<f32> {
        batch::to_vec(p.val())
    }
}

fn conv_layer(c: &Conv2d, read: &impl ReadParam) -> ConvLayer {
    let [cout, cin, k, kw] = c.weight.dims();
    assert!(
        k == kw && c.stride[0] == c.stride[1] && c.groups == 1 && c.bias.is_none(),
        "encoder convolutions are square, ungrouped and bias-free"
    );
    assert!(matches!(c.padding, PaddingConfig2d::Same) || k == 1, "encoder convolutions use \"same\" padding");
    let conv = Conv { k, stride: c.stride[0], cin, cout };
    ConvLayer { conv, weight: permute(conv, &read.read(&c.weight), true) }
}

/// burn's OIHW convolution weights as the kernels' HWIO (`to_hwio`), or back.
fn permute(c: Conv, w: &[f32], to_hwio: bool) -> Vec<f32> {
    let Conv { k, cin, cout, .. } = c;
    let mut out = vec![0f32; w.len()];
    for co in 0..cout {
        for ci in 0..cin {
            for p in 0..k * k {
                let (hwio, oihw) = ((p * cin + ci) * cout + co, (co * cin + ci) * k * k + p);
                if to_hwio {
                    out[hwio] = w[oihw];
                } else {
                    out[oihw] = w[hwio];
                }
            }
        }
    }
    out
}

fn batch_norm(b: &BatchNorm, read: &impl ReadParam) -> norm::BatchNorm {
    norm::BatchNorm {
        gamma: read.read(&b.gamma),
        beta: read.read(&b.beta),
        running_mean: batch::to_vec(b.running_mean.value_sync()),
        running_var: batch::to_vec(b.running_var.value_sync()),
        epsilon: b.epsilon as f32,
        momentum: b.momentum as f32,
    }
}

fn dense(l: &Linear, read: &impl ReadParam) -> Dense {
    assert!(l.bias.is_none(), "encoder dense layers are bias-free");
    let [inputs, outputs] = l.weight.dims();
    Dense { inputs, outputs, weight: read.read(&l.weight) }
}

/// The encoder in the kernels' layouts, its tensors read by `read`.
pub fn to_resnet_with(e: &Encoder, read: &impl ReadParam) -> ResNet {
    let block = |b: &Bottleneck| Block {
        bn_in: batch_norm(&b.bn_in, read),
        conv_a: conv_layer(&b.conv_a, read),
        bn_a: batch_norm(&b.bn_a, read),
        conv_b: conv_layer(&b.conv_b, read),
        bn_b: batch_norm(&b.bn_b, read),
        conv_c: conv_layer(&b.conv_c, read),
        shortcut: b.shortcut.as_ref().map(|s| conv_layer(s, read)),
    };
    ResNet {
        stem: conv_layer(&e.stem, read),
        stem_bn: batch_norm(&e.stem_bn, read),
        blocks: e.blocks.iter().map(block).collect(),
        dense1: dense(&e.dense1, read),
        dense1_bn: batch_norm(&e.dense1_bn, read),
        dense2: dense(&e.dense2, read),
        dense2_bn: batch_norm(&e.dense2_bn, read),
    }
}

/// The encoder's weights and running statistics in the kernels' layouts.
pub fn to_resnet(e: &Encoder) -> ResNet {
    to_resnet_with(e, &Values)
}

fn tensor<const D: usize>(values: &[f32], shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

fn load_conv(mut c: Conv2d, l: &ConvLayer, device: &Device) -> Conv2d {
    let Conv { k, cin, cout, .. } = l.conv;
    c.weight = replaced(&c.weight, tensor(&permute(l.conv, &l.weight, false), [cout, cin, k, k], device));
    c
}

fn load_bn(mut b: BatchNorm, n: &norm::BatchNorm, device: &Device) -> BatchNorm {
    let c = n.channels();
    b.gamma = replaced(&b.gamma, tensor(&n.gamma, [c], device));
    b.beta = replaced(&b.beta, tensor(&n.beta, [c], device));
    b.running_mean = RunningState::new(tensor(&n.running_mean, [c], device));
    b.running_var = RunningState::new(tensor(&n.running_var, [c], device));
    b
}

fn load_dense(mut l: Linear, d: &Dense, device: &Device) -> Linear {
    l.weight = replaced(&l.weight, tensor(&d.weight, [d.inputs, d.outputs], device));
    l
}

/// `e` with the weights and running statistics of `net` (parameter ids
/// kept, so optimiser state and records still match).
///
/// # Panics
/// If `net` does not have `e`'s structure (it came from another encoder).
pub fn load_resnet(e: Encoder, net: &ResNet, device: &Device) -> Encoder {
    assert_eq!(e.blocks.len(), net.blocks.len(), "encoder and kernel network differ in blocks");
    let blocks = e
        .blocks
        .into_iter()
        .zip(&net.blocks)
        .map(|(b, n)| Bottleneck {
            bn_in: load_bn(b.bn_in, &n.bn_in, device),
            conv_a: load_conv(b.conv_a, &n.conv_a, device),
            bn_a: load_bn(b.bn_a, &n.bn_a, device),
            conv_b: load_conv(b.conv_b, &n.conv_b, device),
            bn_b: load_bn(b.bn_b, &n.bn_b, device),
            conv_c: load_conv(b.conv_c, &n.conv_c, device),
            shortcut: match (b.shortcut, &n.shortcut) {
                (Some(s), Some(l)) => Some(load_conv(s, l, device)),
                (None, None) => None,
                _ => panic!("encoder and kernel network differ in their shortcuts"),
            },
        })
        .collect();
    Encoder {
        stem: load_conv(e.stem, &net.stem, device),
        stem_bn: load_bn(e.stem_bn, &net.stem_bn, device),
        blocks,
        dense1: load_dense(e.dense1, &net.dense1, device),
        dense1_bn: load_bn(e.dense1_bn, &net.dense1_bn, device),
        dense2: load_dense(e.dense2, &net.dense2, device),
        dense2_bn: load_bn(e.dense2_bn, &net.dense2_bn, device),
    }
}
