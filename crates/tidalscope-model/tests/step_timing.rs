//! A training step of the fast kernels timed in its two parts, forward
//! and backward (the README's split of the quick preset's step under
//! "Fast CPU kernels"). Ignored by default: it measures, not checks. Run
//! in a release build: `cargo test --release -p tidalscope-model --test
//! step_timing -- --ignored --nocapture` (`SPEC=paper` for the paper
//! encoder at batch 32; default the quick preset's, batch 128).

use burn::prelude::*;
use std::time::Instant;
use tidalscope_kernels::resnet::{ResNet, Tape, TrainingWinograd};
use tidalscope_model::{fast, EncoderConfig};

/// Medians of 12 forward and backward passes (after the first's
/// allocations), in ms, and the images/s of the two together.
#[test]
#[ignore]
fn training_step_forward_and_backward() {
    let device = Device::flex();
    let paper = std::env::var("SPEC").is_ok_and(|s| s == "paper");
    let (width, bands, side, n) = if paper { (1.0, 5, 96, 32) } else { (0.5, 15, 24, 128) };
    let mut net: ResNet = fast::to_resnet(&EncoderConfig::new().with_bands(bands).with_width(width).init(&device));
    let mut grads = net.clone();
    let x: Vec<f32> = (0..n * bands * side * side).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let dout: Vec<f32> = (0..n * net.repr_dim()).map(|i| ((i * 31) % 101) as f32 / 101.0 - 0.5).collect();
    let mut tape = Tape::new(TrainingWinograd::Large);
    let (mut forward, mut backward) = (Vec::new(), Vec::new());
    for _ in 0..13 {
        let t = Instant::now();
        net.forward_train(&x, n, side, side, &mut tape);
        forward.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        net.backward(&mut tape, &dout, &mut grads);
        backward.push(t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.remove(0);
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (f, b) = (median(&mut forward), median(&mut backward));
    println!(
        "{n} images of {side} px: forward {:.1} ms, backward {:.1} ms, {:.0} images/s",
        f * 1e3,
        b * 1e3,
        n as f64 / (f + b)
    );
}
