//! The encoder under training, whichever engine runs its arithmetic: one
//! type with forward, backward-and-step and sync, so the training loops
//! (pretraining and fine-tuning) are written once.
//!
//! On the CPU the encoder trains on the fast kernels (with their own Adam);
//! its representations enter burn as tracked leaves, the head and the loss
//! stay in burn, and ∂L/∂h goes back to the kernels. Elsewhere (a GPU, or
//! `--kernels burn`) the encoder is the burn model's own and burn's Adam
//! steps it with the rest of the model. Adam is configured here, once, for
//! both.

use crate::batch;
use crate::encoder::Encoder;
use crate::fast::{self, Kernels, Moments, Trainer};
use burn::module::{Module, ModuleMapper, Param, RunningState};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Gradients;

/// Adam as every training loop uses it: Keras' defaults (β 0.9/0.999,
/// ε 1e-7) and Keras' L2 λ, which adds λ Σ w² to the loss: a 2λw penalty on
/// the gradient, as burn's coupled weight decay and the kernels' apply it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamSettings {
    /// Keras' L2 λ (0: none).
    pub l2: f64,
}

impl AdamSettings {
    /// Keras' ε.
    pub const EPSILON: f32 = 1e-7;

    /// burn's optimiser.
    pub fn burn(self) -> ModuleOptimizer {
        let mut c = AdamConfig::new().with_beta_1(0.9).with_beta_2(0.999).with_epsilon(Self::EPSILON);
        if self.l2 > 0.0 {
            c = c.with_weight_decay(Some(WeightDecayConfig::new((2.0 * self.l2) as f32)));
        }
        c.init()
    }

    /// The kernels' optimiser.
    pub fn kernels(self) -> tidalscope_kernels::adam::AdamConfig {
        fast::adam(Self::EPSILON, (2.0 * self.l2) as f32)
    }
}

/// The encoder under training.
pub enum TrainableEncoder {
    /// On the fast kernels, with their Adam state.
    Fast(Box<Trainer>),
    /// burn's: the encoder is the one inside the caller's model.
    Burn,
}

impl TrainableEncoder {
    /// Starts training `encoder` on `kernels` (resolved: `Fast` or `Burn`).
    pub fn new(kernels: Kernels, encoder: &Encoder, adam: AdamSettings) -> Self {
        match kernels {
            Kernels::Fast => Self::Fast(Box::new(Trainer::new(fast::to_resnet(encoder), adam.kernels()))),
            _ => Self::Burn,
        }
    }

    /// The kernels' trainer, when it runs on them (for checkpoints).
    pub fn trainer(&self) -> Option<&Trainer> {
        match self {
            Self::Fast(t) => Some(t),
            Self::Burn => None,
        }
    }

    /// Restores the kernels' Adam moments from a checkpoint; nothing to do
    /// on burn (its optimiser state is saved with the model's).
    ///
    /// # Errors
    /// When the moments do not fit the network.
    pub fn set_moments(&mut self, saved: Vec<Moments>) -> Result<(), String> {
        match self {
            Self::Fast(t) => t.set_moments(saved),
            Self::Burn => Ok(()),
        }
    }

    /// Representations `[n, repr_dim]` of views `x` (`[n, bands, crop,
    /// crop]` row-major), tracked for the backward pass. `view` numbers the
    /// forward passes of one step (NNCLR runs two): each keeps its own
    /// activations until [`backward_step`](Self::backward_step).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        encoder: &Encoder,
        view: usize,
        x: Vec<f32>,
        n: usize,
        bands: usize,
        crop: usize,
        device: &Device,
    ) -> Tensor<2> {
        match self {
            Self::Fast(t) => tracked(t.forward(view, &x, n, crop, crop), n, device),
            Self::Burn => encoder.forward(batch::images(x, n, bands, crop, device)),
        }
    }

    /// [`forward`](Self::forward) for views of another size than the
    /// encoder sees at inference (multi-crop's local views): the BatchNorm
    /// running statistics stay as they were.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_local(
        &mut self,
        encoder: &Encoder,
        view: usize,
        x: Vec<f32>,
        n: usize,
        bands: usize,
        crop: usize,
        device: &Device,
    ) -> Tensor<2> {
        if let Self::Fast(t) = self {
            return tracked(t.forward_keeping_running_stats(view, &x, n, crop, crop), n, device);
        }
        // value_sync folds in the pending update of the views before (burn
        // applies each at the next read), so `saved` is what a read after
        // them gives.
        let norms = encoder.batch_norms();
        let saved: Vec<_> = norms.iter().map(|b| (b.running_mean.value_sync(), b.running_var.value_sync())).collect();
        let h = self.forward(encoder, view, x, n, bands, crop, device);
        for (b, (mean, var)) in norms.into_iter().zip(saved) {
            restore(&b.running_mean, mean);
            restore(&b.running_var, var);
        }
        h
    }

    /// The representations of every view of one step, view `j` from
    /// `views[j]` (`[n, bands, crop, crop]` row-major, with its crop side
    /// and whether it is a local view: see
    /// [`forward_local`](Self::forward_local)). On the kernels the views'
    /// passes run side by side, with the same results as
    /// [`forward`](Self::forward) and [`forward_local`](Self::forward_local)
    /// one at a time; on burn they run one at a time. The views are
    /// borrowed, so that a training loop can fill the same buffers every
    /// step (burn copies each into its tensor).
    pub fn forward_views(
        &mut self,
        encoder: &Encoder,
        views: &[(&[f32], usize, bool)],
        n: usize,
        bands: usize,
        device: &Device,
    ) -> Vec<Tensor<2>> {
        if let Self::Fast(t) = self {
            let batches: Vec<tidalscope_kernels::resnet::View<'_>> = views
                .iter()
                .map(|&(x, crop, local)| tidalscope_kernels::resnet::View {
                    x,
                    n,
                    h: crop,
                    w: crop,
                    running_stats: !local,
                })
                .collect();
            return t.forward_views(&batches).into_iter().map(|h| tracked(h, n, device)).collect();
        }
        views
            .iter()
            .enumerate()
            .map(|(j, &(x, crop, local))| match local {
                true => self.forward_local(encoder, j, x.to_vec(), n, bands, crop, device),
                false => self.forward(encoder, j, x.to_vec(), n, bands, crop, device),
            })
            .collect()
    }

    /// After `loss.backward()`: on the kernels, ∂L/∂h of `reprs` (the
    /// tensors [`forward`](Self::forward) returned, in view order) goes back
    /// through the encoder and Adam takes a step at `lr`. On burn nothing
    /// happens here: burn's optimiser steps the encoder with the model.
    pub fn backward_step(&mut self, gradients: &Gradients, reprs: &[&Tensor<2>], lr: f64) {
        if let Self::Fast(t) = self {
            let dh: Vec<Vec<f32>> = reprs
                .iter()
                .map(|h| batch::to_vec(h.grad(gradients).expect("forward tracks the representation")))
                .collect();
            t.backward(&dh.iter().map(Vec::as_slice).collect::<Vec<_>>());
            t.step(lr as f32);
        }
    }

    /// `encoder` holding the trained weights and running statistics.
    pub fn synced(&self, encoder: Encoder, device: &Device) -> Encoder {
        match self {
            Self::Fast(t) => fast::load_resnet(encoder, &t.net, device),
            Self::Burn => encoder,
        }
    }
}

/// Sets `state` to `value`, dropping any update pending on it. A running
/// state's clones share its value, and mapping one replaces it.
fn restore(state: &RunningState<Tensor<1>>, value: Tensor<1>) {
    struct Set(Option<Tensor<1>>);
    impl ModuleMapper for Set {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let value = self.0.take().expect("a running state maps one tensor");
            let dims = param.val().dims();
            param.map(|_| value.reshape(dims))
        }
    }
    // Folds the pending update in, so that it cannot land after `value`.
    state.value_sync();
    let _ = state.clone().map(&mut Set(Some(value)));
}

/// The kernels' representations `h` of `n` views as a tracked `[n, dim]`
/// leaf, whose gradient [`TrainableEncoder::backward_step`] reads.
fn tracked(h: Vec<f32>, n: usize, device: &Device) -> Tensor<2> {
    let dim = h.len() / n.max(1);
    batch::vector(h, device).reshape([n, dim]).require_grad()
}
