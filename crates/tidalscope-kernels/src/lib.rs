//! Fast pure-Rust CPU kernels for the NNCLR encoder: the layers of
//! `tidalscope-model`'s pre-activation bottleneck ResNet written directly on
//! NHWC buffers (channels last, so a convolution is one cache-blocked GEMM
//! per image and a 1×1 convolution needs no copy at all), with BatchNorm
//! folded into the convolutions at inference, the wider 3×3 stride-1
//! convolutions in the Winograd domain at inference and on large maps in
//! training ([`winograd`]), fused BatchNorm-ReLU
//! passes in training, hand-written backward passes and buffers reused
//! between steps.
//!
//! burn's CPU backend runs the same network several times slower than
//! TensorFlow; these kernels are the fast path behind `tidalscope-model`'s
//! [`Encoder`](../tidalscope_model/struct.Encoder.html), which converts its
//! weights here and back. Nothing here knows about burn: the weights are
//! plain `Vec<f32>` in the layouts documented on each type, so the kernels
//! build and test in seconds.
//!
//! ```
//! use tidalscope_kernels::conv::Conv;
//! // 3×3, stride 2, 4 → 8 channels on one 5×5 image ("same" padding: 3×3 out).
//! let conv = Conv { k: 3, stride: 2, cin: 4, cout: 8 };
//! let x = vec![1.0f32; 5 * 5 * 4];
//! let w = vec![0.5f32; 3 * 3 * 4 * 8];
//! let mut y = vec![0.0f32; 3 * 3 * 8];
//! conv.forward(&x, 1, 5, 5, &w, &mut y, false);
//! assert_eq!(y[4 * 8], 3.0 * 3.0 * 4.0 * 0.5); // the centre sees no padding
//! ```
#![deny(missing_docs)]

pub mod adam;
pub mod average;
pub mod conv;
pub mod gemm;
mod narrow;
pub mod norm;
pub mod resnet;
mod simd;
pub mod winograd;
