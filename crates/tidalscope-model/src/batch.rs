//! Turning prepared views (plain `f32` buffers) into device tensors.

use burn::prelude::*;

/// `n` views of `[bands, size, size]`, concatenated, as a `[n, bands, size,
/// size]` tensor on `device`.
pub fn images(values: Vec<f32>, n: usize, bands: usize, size: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, [n, bands, size, size]), device)
}

/// A vector as a `[n]` tensor.
pub fn vector(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

/// A tensor's values.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().expect("float tensor")
}
