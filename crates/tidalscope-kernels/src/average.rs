//! Weight averaging over a training run (stochastic weight averaging,
//! Izmailov et al. 2018) and the BatchNorm statistics an averaged network
//! needs.
//!
//! At a constant, high learning rate the weights keep wandering about a
//! region of low loss instead of settling; the mean of snapshots taken
//! along the way lies nearer that region's centre than any one of them.
//! The running statistics of the snapshots' BatchNorm layers belong to
//! their own weights, not to the mean's, so they are measured again on the
//! averaged network ([`RunningStatsPass`]) rather than averaged.

use crate::resnet::{ResNet, Tape};

/// The running mean of a network's trainable values (weights, γ, β) over
/// the snapshots [`add`](Self::add)ed. Running statistics are those of the
/// latest snapshot until a [`RunningStatsPass`] replaces them.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightAverage {
    net: ResNet,
    snapshots: usize,
}

impl WeightAverage {
    /// An average of one snapshot.
    pub fn new(first: &ResNet) -> Self {
        Self { net: first.clone(), snapshots: 1 }
    }

    /// An average of `snapshots` snapshots whose mean is `net` (a saved
    /// average, resumed; 0 snapshots count as 1, `net` itself).
    pub fn resume(net: ResNet, snapshots: usize) -> Self {
        Self { net, snapshots: snapshots.max(1) }
    }

    /// Folds one more snapshot in.
    ///
    /// # Panics
    /// If `net` differs from the averaged network in shape.
    pub fn add(&mut self, net: &ResNet) {
        self.snapshots += 1;
        let k = self.snapshots as f64;
        let ours = self.net.params_mut();
        let theirs = net.params();
        assert_eq!(ours.len(), theirs.len(), "averaging networks of different shapes");
        for (a, x) in ours.into_iter().zip(theirs) {
            assert_eq!(a.len(), x.len(), "averaging networks of different shapes");
            // The step is taken in f64; the mean is still rounded to f32
            // once per snapshot, as the checkpoint stores it.
            for (a, &x) in a.iter_mut().zip(x) {
                *a = (*a as f64 + (x as f64 - *a as f64) / k) as f32;
            }
        }
        for (a, x) in self.net.batch_norms_mut().into_iter().zip(net.batch_norms()) {
            a.running_mean.clone_from(&x.running_mean);
            a.running_var.clone_from(&x.running_var);
        }
    }

    /// Snapshots averaged so far.
    pub fn snapshots(&self) -> usize {
        self.snapshots
    }

    /// The averaged network.
    pub fn net(&self) -> &ResNet {
        &self.net
    }

    /// The averaged network, by value.
    pub fn into_net(self) -> ResNet {
        self.net
    }
}

/// Measures a network's BatchNorm running statistics afresh, as the plain
/// mean of the batch statistics over the batches passed through it (every
/// batch weighs the same, however many there are), instead of the
/// exponential average training keeps.
#[derive(Debug)]
pub struct RunningStatsPass {
    tape: Tape,
    batches: usize,
}

impl RunningStatsPass {
    /// Forgets `net`'s running statistics; [`add`](Self::add), given the
    /// same `net` every time, then measures them.
    pub fn start(net: &mut ResNet) -> Self {
        for b in net.batch_norms_mut() {
            b.running_mean.iter_mut().for_each(|v| *v = 0.0);
            b.running_var.iter_mut().for_each(|v| *v = 1.0);
        }
        Self { tape: Tape::default(), batches: 0 }
    }

    /// Passes one batch (`x`: `[n, bands, h, w]`, NCHW) through `net` in
    /// training mode and folds its statistics into the mean.
    ///
    /// # Panics
    /// If `x` is not `n × bands × h × w` floats.
    pub fn add(&mut self, net: &mut ResNet, x: &[f32], n: usize, h: usize, w: usize) {
        self.batches += 1;
        let weight = 1.0 / self.batches as f32;
        let momenta: Vec<f32> =
            net.batch_norms_mut().into_iter().map(|b| std::mem::replace(&mut b.momentum, weight)).collect();
        net.forward_train(x, n, h, w, &mut self.tape);
        for (b, m) in net.batch_norms_mut().into_iter().zip(momenta) {
            b.momentum = m;
        }
    }

    /// Batches measured so far.
    pub fn batches(&self) -> usize {
        self.batches
    }
}
