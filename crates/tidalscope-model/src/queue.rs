//! The NNCLR support queue: a FIFO of L2-normalised projections that
//! answers "which stored projection is nearest to z?" (cosine similarity).
//! It is state outside the model and never receives gradients.

use burn::prelude::*;
use tidalscope_core::streams;
use tidalscope_core::Rng;

/// A queue of `size` unit vectors of `dim` dimensions, newest first.
#[derive(Debug, Clone)]
pub struct SupportQueue {
    entries: Tensor<2>,
}

impl SupportQueue {
    /// A queue of random unit vectors (as the reference initialises it),
    /// drawn from `seed`.
    pub fn random(size: usize, dim: usize, seed: u64, device: &Device) -> Self {
        let mut rng = Rng::for_stream(seed, streams::QUEUE_INIT);
        let mut v: Vec<f32> = (0..size * dim).map(|_| rng.normal() as f32).collect();
        for row in v.chunks_exact_mut(dim) {
            let n = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|x| *x /= n);
        }
        Self::from_vec(v, size, dim, device)
    }

    /// A queue with the given row-major entries.
    pub fn from_vec(values: Vec<f32>, size: usize, dim: usize, device: &Device) -> Self {
        Self { entries: Tensor::from_data(TensorData::new(values, [size, dim]), &device.clone().without_autodiff()) }
    }

    /// Entries, row-major (for checkpoints).
    pub fn to_vec(&self) -> Vec<f32> {
        self.entries.clone().into_data().try_into_vec::<f32>().expect("queue is float32")
    }

    /// `(size, dim)`.
    pub fn shape(&self) -> (usize, usize) {
        let [s, d] = self.entries.dims();
        (s, d)
    }

    /// The nearest entry to each row of `z` (unit vectors), as constants on
    /// `z`'s device: no gradient flows into the queue.
    /// # Shapes
    /// `[B, dim]` → `[B, dim]`.
    pub fn nearest(&self, z: &Tensor<2>) -> Tensor<2> {
        let target = z.device();
        let q = z.clone().detach().without_autodiff().to_device(&self.entries.device());
        let b = q.dims()[0];
        let idx = q.matmul(self.entries.clone().transpose()).argmax(1).reshape([b]); // [B]
        self.entries.clone().select(0, idx).to_device(&target)
    }

    /// Pushes a batch of unit vectors at the front, dropping the oldest.
    pub fn update(&mut self, z: &Tensor<2>) {
        let (size, _) = self.shape();
        let q = z.clone().detach().without_autodiff().to_device(&self.entries.device());
        let b = q.dims()[0].min(size);
        let q = q.slice(s![0..b, ..]);
        let kept = self.entries.clone().slice(s![0..size - b, ..]);
        self.entries = Tensor::cat(vec![q, kept], 0);
    }
}
