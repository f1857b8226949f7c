//! A training step of the fast kernels timed in its two parts, forward
//! and backward (the README's split of the quick preset's step under
//! "Fast CPU kernels"), and a pretraining step of two views side by side.
//! Ignored by default: they measure, not check. Run in a release build:
//! `cargo test --release -p tidalscope-model --test step_timing --
//! --ignored --nocapture` (`SPEC=paper` for the paper encoder at batch
//! 32; default the quick preset's, batch 128; `KEPT=all` or `KEPT=none`
//! to keep every convolution input for the backward pass or none, rather
//! than those of large images).

use burn::prelude::*;
use std::time::Instant;
use tidalscope_kernels::resnet::{KeptInputs, ResNet, Tape, Trainer, TrainingWinograd, View};
use tidalscope_model::{fast, EncoderConfig};

/// The encoder `SPEC` names, at its preset's input size, and the inputs
/// `KEPT` says to keep: (network, bands, side, batch, kept).
fn spec(device: &Device) -> (ResNet, usize, usize, usize, KeptInputs) {
    let paper = std::env::var("SPEC").is_ok_and(|s| s == "paper");
    let (width, bands, side, n) = if paper { (1.0, 5, 96, 32) } else { (0.5, 15, 24, 128) };
    let net = fast::to_resnet(&EncoderConfig::new().with_bands(bands).with_width(width).init(device));
    let kept = match std::env::var("KEPT").as_deref() {
        Ok("all") => KeptInputs::All,
        Ok("none") => KeptInputs::Nothing,
        Ok(other) => panic!("KEPT={other}: expected all or none (unset: those of large images)"),
        Err(_) => KeptInputs::Large,
    };
    (net, bands, side, n, kept)
}

/// The median of `times` without the first (whose allocations the others
/// reuse).
fn median_after_first(mut times: Vec<f64>) -> f64 {
    times.remove(0);
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Medians of 12 forward and backward passes (after the first's
/// allocations), in ms, and the images/s of the two together.
#[test]
#[ignore]
fn training_step_forward_and_backward() {
    let (mut net, bands, side, n, kept) = spec(&Device::flex());
    let mut grads = net.clone();
    let x: Vec<f32> = (0..n * bands * side * side).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let dout: Vec<f32> = (0..n * net.repr_dim()).map(|i| ((i * 31) % 101) as f32 / 101.0 - 0.5).collect();
    let mut tape = Tape::new(TrainingWinograd::Large);
    tape.set_kept_inputs(kept);
    let (mut forward, mut backward) = (Vec::new(), Vec::new());
    for _ in 0..13 {
        let t = Instant::now();
        net.forward_train(&x, n, side, side, &mut tape);
        forward.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        net.backward(&mut tape, &dout, &mut grads);
        backward.push(t.elapsed().as_secs_f64());
    }
    let (f, b) = (median_after_first(forward), median_after_first(backward));
    println!(
        "{n} images of {side} px, kept inputs {kept:?}: forward {:.1} ms, backward {:.1} ms, {:.0} images/s",
        f * 1e3,
        b * 1e3,
        n as f64 / (f + b)
    );
}

/// A pretraining step's two global views run side by side on the
/// [`Trainer`]'s two pools, as `pretrain` runs them (forward, backward and
/// the Adam step): the median of 12 steps after the first's allocations,
/// in views/s. `SPEC` as above.
#[test]
#[ignore]
fn two_views_side_by_side() {
    let (net, bands, side, n, kept) = spec(&Device::flex());
    let dim = net.repr_dim();
    let mut trainer = Trainer::new(net, fast::adam(1e-7, 0.0));
    trainer.set_kept_inputs(kept);
    let xs: Vec<Vec<f32>> = (0..2)
        .map(|v| (0..n * bands * side * side).map(|i| (((i + v) * 7919) % 1000) as f32 / 500.0 - 1.0).collect())
        .collect();
    let dout: Vec<f32> = (0..n * dim).map(|i| ((i * 31) % 101) as f32 / 101.0 - 0.5).collect();
    let times: Vec<f64> = (0..13)
        .map(|_| {
            let t = Instant::now();
            let views: Vec<View<'_>> =
                xs.iter().map(|x| View { x, n, h: side, w: side, running_stats: true }).collect();
            trainer.forward_views(&views);
            trainer.backward(&[&dout, &dout]);
            trainer.step(1e-3);
            t.elapsed().as_secs_f64()
        })
        .collect();
    let t = median_after_first(times);
    println!(
        "2 views of {n} images of {side} px side by side, kept inputs {kept:?}: {:.1} ms a step, {:.0} views/s",
        t * 1e3,
        2.0 * n as f64 / t
    );
}
