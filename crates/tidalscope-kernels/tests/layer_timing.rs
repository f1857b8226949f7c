//! Per-layer timings of the encoder's convolutions and BatchNorm passes
//! (the README's per-layer figures under "Fast CPU kernels"). Ignored by
//! default, they measure, not check; run them in a release build:
//! `cargo test --release -p tidalscope-kernels --test layer_timing -- --ignored --nocapture --test-threads=1`
//! (`SPEC=paper N=32` for the paper encoder's layers; default the quick
//! preset's, `N=128`).

use std::time::Instant;
use tidalscope_kernels::conv::Conv;
use tidalscope_kernels::norm::BatchNorm;

/// The median of 7 timed runs of `f`, after one untimed, in seconds.
fn median_time(mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[3]
}

/// Deterministic values in [−0.5, 0.5).
fn values(n: usize, mul: usize, modulus: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * mul) % modulus) as f32 / modulus as f32 - 0.5).collect()
}

/// Every convolution shape of the preset's encoder (`SPEC`), forward,
/// input and weight gradients on a batch of `N`: ms and GFLOP/s each.
#[test]
#[ignore]
fn convolution_layers() {
    let paper = std::env::var("SPEC").is_ok_and(|s| s == "paper");
    let n: usize = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(if paper { 32 } else { 128 });
    // (k, stride, cin, cout, input side): stem, then each stage's layers.
    let (w, side, bands) = if paper { (2, 96, 5) } else { (1, 24, 15) };
    let c = |x: usize| x * w;
    let shapes = [
        (3, 1, bands, c(8), side),
        (1, 1, c(8), c(8), side),
        (3, 1, c(8), c(8), side),
        (1, 1, c(8), c(32), side),
        (1, 1, c(32), c(8), side),
        (1, 1, c(32), c(32), side),
        (3, 2, c(32), c(32), side),
        (1, 1, c(32), c(64), side / 2),
        (1, 2, c(32), c(64), side),
        (1, 1, c(64), c(32), side / 2),
        (3, 1, c(32), c(32), side / 2),
        (1, 1, c(64), c(64), side / 2),
        (3, 2, c(64), c(64), side / 2),
        (1, 1, c(64), c(128), side / 4),
        (1, 2, c(64), c(128), side / 2),
        (1, 1, c(128), c(64), side / 4),
        (3, 1, c(64), c(64), side / 4),
    ];
    let mut totals = [0f64; 3];
    for (k, stride, cin, cout, h) in shapes {
        let conv = Conv { k, stride, cin, cout };
        let (ho, wo) = conv.out_size(h, h);
        let x = values(n * h * h * cin, 7919, 1000);
        let wt = values(conv.weight_len(), 104_729, 997);
        let dy = values(n * ho * wo * cout, 31, 101);
        let (mut y, mut dx, mut dw) = (vec![0f32; dy.len()], vec![0f32; x.len()], vec![0f32; wt.len()]);
        let flops = 2.0 * (n * ho * wo * k * k * cin * cout) as f64;
        let t = [
            median_time(|| conv.forward(&x, n, h, h, &wt, &mut y, false)),
            median_time(|| conv.backward_input(&dy, n, h, h, &wt, &mut dx, false)),
            median_time(|| conv.backward_weight(&x, n, h, h, &dy, &mut dw)),
        ];
        let rate = |t: f64| flops / t / 1e9;
        println!(
            "{k}x{k} s{stride} {cin:>3}->{cout:>3} @{h:>2}: forward {:6.1} ms {:4.0} GFLOP/s | input grad {:6.1} ms {:4.0} | weight grad {:6.1} ms {:4.0}",
            t[0] * 1e3, rate(t[0]), t[1] * 1e3, rate(t[1]), t[2] * 1e3, rate(t[2])
        );
        totals.iter_mut().zip(t).for_each(|(s, t)| *s += t);
    }
    println!(
        "all layers: forward {:.1} ms, input grad {:.1} ms, weight grad {:.1} ms",
        totals[0] * 1e3,
        totals[1] * 1e3,
        totals[2] * 1e3
    );
}

/// A BatchNorm-ReLU layer's training passes on activations of the paper
/// and quick sizes: ms and the rate of the memory streams each reads and
/// writes.
#[test]
#[ignore]
fn batch_norm_passes() {
    for (c, rows) in [(64usize, 32 * 96 * 96usize), (16, 32 * 96 * 96), (32, 128 * 24 * 24), (8, 128 * 24 * 24)] {
        let bn = BatchNorm {
            gamma: vec![1.0; c],
            beta: vec![0.1; c],
            running_mean: vec![0.0; c],
            running_var: vec![1.0; c],
            epsilon: 1e-3,
            momentum: 0.1,
        };
        let (x, dy) = (values(c * rows, 7919, 1000), values(c * rows, 31, 101));
        let mut y = vec![0f32; x.len()];
        let mb = (x.len() * 4) as f64 / 1e6;
        let stats = bn.forward_batch(&x, true, &mut y).0;
        let forward = median_time(|| {
            bn.forward_batch(&x, true, &mut y);
        });
        let map = bn.batch_map(&stats, true);
        let apply = median_time(|| map.apply_all(&x, &mut y));
        let (mut dg, mut db) = (vec![0f32; c], vec![0f32; c]);
        let backward = median_time(|| bn.backward(&x, &stats, true, &dy, &mut y, false, &mut dg, &mut db));
        println!(
            "{c} channels × {rows} rows ({mb:.0} MB): forward {:.1} ms ({:.1} GB/s, 3 streams), map {:.1} ms ({:.1} GB/s, 2), backward {:.1} ms ({:.1} GB/s, 5)",
            forward * 1e3, 3.0 * mb / forward / 1e3, apply * 1e3, 2.0 * mb / apply / 1e3, backward * 1e3, 5.0 * mb / backward / 1e3
        );
    }
}
