//! The models against the reference's numbers and against slow, obviously
//! correct implementations written from the papers.

use burn::module::Module;
use burn::prelude::*;
use tidalscope_core::Rng;
use tidalscope_model::batch;
use tidalscope_model::classifier::ClassifierConfig;
use tidalscope_model::heads::ProjectionHeadConfig;
use tidalscope_model::{loss, params, EncoderConfig, SupportQueue};

fn cpu() -> Device {
    Device::flex()
}

fn unit_rows(rng: &mut Rng, n: usize, d: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n * d).map(|_| rng.normal()).collect();
    for r in v.chunks_exact_mut(d) {
        let s = r.iter().map(|x| x * x).sum::<f64>().sqrt();
        r.iter_mut().for_each(|x| *x /= s);
    }
    v
}

fn tensor(v: &[f64], n: usize, d: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.iter().map(|&x| x as f32).collect::<Vec<f32>>(), [n, d]), device)
}

#[test]
fn paper_encoder_has_the_reference_parameter_counts() {
    let d = cpu();
    let enc = EncoderConfig::paper(5).init(&d);
    let c = params::count(&enc);
    assert_eq!(c.trainable, 615_312, "Keras: 615,312 trainable parameters");
    assert_eq!(c.running_stats, 3_520, "Keras: 3,520 BatchNorm running statistics");
    assert_eq!(params::count(&ProjectionHeadConfig::new().init(&d)).trainable, 33_024);
    assert_eq!(params::count(&ClassifierConfig::head(128, &d)).trainable, 129);
    // 3 bands (RGB pictures) change only the stem: 3·3·(5−3)·16 fewer.
    assert_eq!(params::count(&EncoderConfig::paper(3).init(&d)).trainable, 615_312 - 288);
    let out = enc.valid().forward(Tensor::zeros([2, 5, 96, 96], &d));
    assert_eq!(out.dims(), [2, 128]);
}

/// Mean softmax cross-entropy of the rows of a·bᵀ/τ against the diagonal,
/// in f64.
fn slow_ce(a: &[f64], b: &[f64], n: usize, d: usize, tau: f64) -> f64 {
    let dot = |i: usize, j: usize| (0..d).map(|k| a[i * d + k] * b[j * d + k]).sum::<f64>();
    let mut total = 0.0;
    for i in 0..n {
        let logits: Vec<f64> = (0..n).map(|j| dot(i, j) / tau).collect();
        let max = logits.iter().cloned().fold(f64::MIN, f64::max);
        let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
        total += lse - logits[i];
    }
    total / n as f64
}

/// Slow NNCLR loss from the paper's pseudocode, in f64: nearest neighbours
/// by brute force, the four cross-entropies with the diagonal as targets.
fn slow_nnclr(z1: &[f64], z2: &[f64], p1: &[f64], p2: &[f64], n: usize, d: usize, tau: f64) -> f64 {
    let ce = |a: &[f64], b: &[f64]| slow_ce(a, b, n, d, tau);
    (ce(p1, z2) + ce(z2, p1) + ce(p2, z1) + ce(z1, p2)) / 4.0
}

fn slow_nearest(z: &[f64], queue: &[f64], n: usize, q: usize, d: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n * d);
    for i in 0..n {
        let best = (0..q).max_by(|&a, &b| {
            let sa: f64 = (0..d).map(|k| z[i * d + k] * queue[a * d + k]).sum();
            let sb: f64 = (0..d).map(|k| z[i * d + k] * queue[b * d + k]).sum();
            sa.total_cmp(&sb)
        });
        out.extend_from_slice(&queue[best.unwrap() * d..best.unwrap() * d + d]);
    }
    out
}

#[test]
fn nnclr_loss_matches_the_slow_version_and_gradients_skip_the_neighbour() {
    let (n, d, q, tau) = (6, 8, 20, 0.1);
    let mut rng = Rng::new(42);
    let z1 = unit_rows(&mut rng, n, d);
    let z2 = unit_rows(&mut rng, n, d);
    let qv = unit_rows(&mut rng, q, d);
    let dev = cpu();
    let queue = SupportQueue::from_vec(qv.iter().map(|&x| x as f32).collect(), q, d, &dev);
    let nn1 = slow_nearest(&z1, &qv, n, q, d);
    let nn2 = slow_nearest(&z2, &qv, n, q, d);
    let want = slow_nnclr(&z1, &z2, &nn1, &nn2, n, d, tau);

    let ad = dev.clone().autodiff();
    let t1 = tensor(&z1, n, d, &ad).require_grad();
    let t2 = tensor(&z2, n, d, &ad).require_grad();
    let (q1, q2) = (queue.nearest(&t1), queue.nearest(&t2));
    assert_eq!(batch::to_vec(q1.clone()), nn1.iter().map(|&x| x as f32).collect::<Vec<_>>(), "nearest neighbours");
    let l = loss::nnclr(t1.clone(), t2.clone(), q1, q2, tau);
    let got = l.clone().into_scalar::<f32>() as f64;
    assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "loss {got} vs slow {want}");

    // Straight-through: NN(z) enters with the value of the neighbour and the
    // gradient of z. Finite differences of the slow loss with p = NN + (z' − z).
    let grads = l.backward();
    let g1 = batch::to_vec(t1.grad(&grads).expect("z1 has a gradient"));
    let eps = 1e-6;
    for k in [0, 5, 17, 40] {
        let bump = |s: f64| {
            let mut z = z1.clone();
            z[k] += s;
            let mut p = nn1.clone();
            p[k] += s;
            slow_nnclr(&z, &z2, &p, &nn2, n, d, tau)
        };
        let fd = (bump(eps) - bump(-eps)) / (2.0 * eps);
        assert!(
            (g1[k] as f64 - fd).abs() < 2e-3 * fd.abs().max(1.0),
            "∂L/∂z1[{k}]: autodiff {} vs finite difference {fd}",
            g1[k]
        );
    }
    // The queue itself never changes through a backward pass.
    assert_eq!(queue.to_vec(), qv.iter().map(|&x| x as f32).collect::<Vec<_>>());
}

#[test]
fn queue_is_fifo_and_finds_the_most_similar_entry() {
    let dev = cpu();
    let mut rng = Rng::new(1);
    let mut q = SupportQueue::random(10, 4, 7, &dev);
    let rows = q.to_vec();
    for r in rows.chunks_exact(4) {
        assert!((r.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5, "random entries are unit vectors");
    }
    let batch_v = unit_rows(&mut rng, 3, 4);
    let b = tensor(&batch_v, 3, 4, &dev);
    q.update(&b);
    let after = q.to_vec();
    assert_eq!(q.shape(), (10, 4));
    assert_eq!(&after[..12], &batch_v.iter().map(|&x| x as f32).collect::<Vec<_>>()[..], "newest first");
    assert_eq!(&after[12..], &rows[..28], "the oldest three dropped");
    // a query equal to an entry finds that entry
    let probe = tensor(&after[20..24].iter().map(|&x| x as f64).collect::<Vec<_>>(), 1, 4, &dev);
    assert_eq!(batch::to_vec(q.nearest(&probe)), after[20..24].to_vec());
}

#[test]
fn saved_models_reload_to_identical_outputs_and_inference_is_deterministic() {
    let dev = cpu();
    dev.seed(3);
    let cfg = ClassifierConfig::new(EncoderConfig::new().with_bands(2).with_width(0.25));
    let model = cfg.init(&dev);
    params::materialize(&model);
    let mut rng = Rng::new(5);
    let x: Vec<f32> = (0..3 * 2 * 16 * 16).map(|_| rng.normal() as f32).collect();
    let input = || batch::images(x.clone(), 3, 2, 16, &dev);
    let eval = model.valid();
    let a = batch::to_vec(eval.forward(input()));
    let b = batch::to_vec(eval.forward(input()));
    assert_eq!(a, b, "inference is deterministic");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.bpk");
    tidalscope_model::store::save(eval.clone(), &p).unwrap();
    let loaded = tidalscope_model::store::load(cfg.init(&dev), &p).unwrap();
    assert_eq!(batch::to_vec(loaded.forward(input())), a, "saved → loaded gives identical outputs");
    // A file of another model is refused with a clear error, not a panic.
    let other = tidalscope_model::store::load(ClassifierConfig::new(EncoderConfig::new().with_bands(5)).init(&dev), &p);
    let e = other.unwrap_err().to_string();
    assert!(e.contains("c.bpk") && e.contains("do not fit"), "{e}");
}

#[derive(Module, Debug)]
struct Both {
    enc: tidalscope_model::Encoder,
    head: tidalscope_model::ProjectionHead,
}

#[test]
fn a_few_steps_on_a_fixed_batch_lower_the_nnclr_loss() {
    use burn::optim::{AdamConfig, GradientsParams};
    let dev = cpu().autodiff();
    dev.seed(9);
    let mut m = Both {
        enc: EncoderConfig::new().with_bands(2).with_width(0.25).init(&dev),
        head: ProjectionHeadConfig::new().init(&dev),
    };
    params::materialize(&m);
    let queue = SupportQueue::random(64, 128, 1, &cpu());
    let mut rng = Rng::new(2);
    let x1: Vec<f32> = (0..8 * 2 * 16 * 16).map(|_| rng.normal() as f32).collect();
    let x2: Vec<f32> = x1.iter().map(|v| v + 0.1 * rng.normal() as f32).collect();
    let mut opt = AdamConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..12 {
        let z1 = loss::l2_normalise(m.head.forward(m.enc.forward(batch::images(x1.clone(), 8, 2, 16, &dev))));
        let z2 = loss::l2_normalise(m.head.forward(m.enc.forward(batch::images(x2.clone(), 8, 2, 16, &dev))));
        let l = loss::nnclr(z1.clone(), z2.clone(), queue.nearest(&z1), queue.nearest(&z2), 0.1);
        let grads = GradientsParams::from_grads(l.backward(), &m);
        losses.push(l.into_scalar::<f32>());
        m = opt.step(1e-3, m, grads);
    }
    assert!(losses[11] < losses[0] - 0.1, "loss did not fall: {losses:?}");
}

/// Gradients of every identity block's branch (its three convolutions and
/// the γ of the BN before its last one) for one backward pass of a loss
/// that depends on the whole representation; max |∂L/∂w| per tensor.
fn identity_branch_gradients(zero_gamma: bool) -> Vec<(String, f32)> {
    let dev = cpu().autodiff();
    dev.seed(4);
    let enc = EncoderConfig::new().with_bands(2).with_width(0.25).with_zero_gamma(zero_gamma).init(&dev);
    params::materialize(&enc);
    let mut rng = Rng::new(6);
    let x: Vec<f32> = (0..4 * 2 * 16 * 16).map(|_| rng.normal() as f32).collect();
    let w: Vec<f32> = (0..4 * 128).map(|_| rng.normal() as f32).collect();
    let h = enc.forward(batch::images(x, 4, 2, 16, &dev));
    let l = (h * Tensor::<2>::from_data(TensorData::new(w, [4, 128]), &dev)).sum();
    let grads = l.backward();
    let max = |t: Tensor<4>| batch::to_vec(t.grad(&grads).expect("tracked")).iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut out = Vec::new();
    for (k, b) in enc.blocks.iter().enumerate().filter(|(_, b)| b.shortcut.is_none()) {
        out.push((format!("block {k} conv_a"), max(b.conv_a.weight.val())));
        out.push((format!("block {k} conv_b"), max(b.conv_b.weight.val())));
        out.push((format!("block {k} conv_c"), max(b.conv_c.weight.val())));
        let g = batch::to_vec(b.bn_b.gamma.val().grad(&grads).expect("tracked"));
        out.push((format!("block {k} bn_b γ"), g.iter().fold(0f32, |m, v| m.max(v.abs()))));
    }
    out
}

#[test]
fn the_default_init_trains_every_identity_branch_and_the_reference_init_none() {
    let alive = identity_branch_gradients(false);
    assert_eq!(alive.len(), 12, "three identity blocks, four tensors each");
    for (name, g) in &alive {
        assert!(*g > 1e-6, "{name}: no gradient with the default init ({alive:?})");
    }
    // The reference's γ = 0 followed by a ReLU: exactly zero, every tensor.
    for (name, g) in identity_branch_gradients(true) {
        assert_eq!(g, 0.0, "{name}: the reference init should leave this branch dead");
    }
}

/// Multi-crop NNCLR: each local view is paired both ways with both global
/// views' neighbours, and every term (the global loss, each local view's)
/// weighs the same; with no local views it is NNCLR itself.
#[test]
fn multi_crop_loss_matches_the_slow_version_and_rewards_matching_local_views() {
    let (n, d, q, tau) = (6, 8, 20, 0.1);
    let mut rng = Rng::new(7);
    let z1 = unit_rows(&mut rng, n, d);
    let z2 = unit_rows(&mut rng, n, d);
    let locals = [unit_rows(&mut rng, n, d), unit_rows(&mut rng, n, d)];
    let qv = unit_rows(&mut rng, q, d);
    let dev = cpu();
    let queue = SupportQueue::from_vec(qv.iter().map(|&x| x as f32).collect(), q, d, &dev);
    let (nn1, nn2) = (slow_nearest(&z1, &qv, n, q, d), slow_nearest(&z2, &qv, n, q, d));
    let ce = |a: &[f64], b: &[f64]| slow_ce(a, b, n, d, tau);
    let local_term = |zl: &[f64]| (ce(&nn1, zl) + ce(zl, &nn1) + ce(&nn2, zl) + ce(zl, &nn2)) / 4.0;
    let want = (slow_nnclr(&z1, &z2, &nn1, &nn2, n, d, tau) + local_term(&locals[0]) + local_term(&locals[1])) / 3.0;

    let ad = dev.clone().autodiff();
    let t1 = tensor(&z1, n, d, &ad).require_grad();
    let t2 = tensor(&z2, n, d, &ad).require_grad();
    let tl: Vec<Tensor<2>> = locals.iter().map(|l| tensor(l, n, d, &ad).require_grad()).collect();
    let (q1, q2) = (queue.nearest(&t1), queue.nearest(&t2));
    let l = loss::nnclr_multi_crop(t1.clone(), t2.clone(), q1.clone(), q2.clone(), &tl, tau);
    let got = l.clone().into_scalar::<f32>() as f64;
    assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "loss {got} vs slow {want}");
    let grads = l.backward();
    for (what, t) in [("z1", &t1), ("a local view", &tl[0])] {
        let g = batch::to_vec(t.grad(&grads).expect("tracked"));
        assert!(g.iter().any(|v| v.abs() > 1e-6), "{what} gets no gradient");
    }
    let plain = loss::nnclr(t1.clone(), t2.clone(), q1.clone(), q2.clone(), tau).into_scalar::<f32>();
    let none = loss::nnclr_multi_crop(t1.clone(), t2.clone(), q1.clone(), q2.clone(), &[], tau).into_scalar::<f32>();
    assert_eq!(plain, none, "no local views: NNCLR");

    // Local views that match their own image's neighbour cost less than the
    // same views given to the wrong images.
    let matching = vec![tensor(&nn1, n, d, &dev), tensor(&nn2, n, d, &dev)];
    let mut shifted = nn1.clone();
    shifted.rotate_left(d);
    let wrong = vec![tensor(&shifted, n, d, &dev), tensor(&shifted, n, d, &dev)];
    let (v1, v2) = (tensor(&z1, n, d, &dev), tensor(&z2, n, d, &dev));
    let (n1, n2) = (tensor(&nn1, n, d, &dev), tensor(&nn2, n, d, &dev));
    let good =
        loss::nnclr_multi_crop(v1.clone(), v2.clone(), n1.clone(), n2.clone(), &matching, tau).into_scalar::<f32>();
    let bad = loss::nnclr_multi_crop(v1, v2, n1, n2, &wrong, tau).into_scalar::<f32>();
    assert!(good < bad, "matching local views {good} vs mismatched {bad}");
}

/// Mean squared Pearson correlation over pairs of distinct columns, in f64.
fn slow_decorrelation(h: &[f64], n: usize, d: usize) -> f64 {
    let col = |j: usize| -> Vec<f64> {
        let c: Vec<f64> = (0..n).map(|i| h[i * d + j]).collect();
        let m = c.iter().sum::<f64>() / n as f64;
        let sd = (c.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64 + 1e-6).sqrt();
        c.iter().map(|x| (x - m) / sd).collect()
    };
    let cols: Vec<Vec<f64>> = (0..d).map(col).collect();
    let mut total = 0.0;
    for a in 0..d {
        for b in (0..d).filter(|&b| b != a) {
            let r = cols[a].iter().zip(&cols[b]).map(|(x, y)| x * y).sum::<f64>() / n as f64;
            total += r * r;
        }
    }
    total / (d * (d - 1)) as f64
}

#[test]
fn decorrelation_penalty_is_the_mean_squared_correlation_and_its_gradient_decorrelates() {
    let (n, d) = (64, 6);
    let mut rng = Rng::new(7);
    // Columns 0–2 share a common factor; 3–5 are independent.
    let mut h = vec![0.0; n * d];
    for i in 0..n {
        let f = rng.normal();
        for j in 0..d {
            h[i * d + j] = if j < 3 { f + 0.3 * rng.normal() } else { rng.normal() } * (1.0 + j as f64);
        }
    }
    let dev = cpu();
    let ad = dev.clone().autodiff();
    let want = slow_decorrelation(&h, n, d);
    let t = tensor(&h, n, d, &ad).require_grad();
    let l = loss::decorrelation(t.clone());
    let got = l.clone().into_scalar::<f32>() as f64;
    assert!((got - want).abs() < 1e-4, "penalty {got} vs slow {want}");
    // 6 of the 30 ordered pairs correlate at r² ≈ 1/1.09² ≈ 0.84: ≈ 0.17.
    assert!(want > 0.12, "three correlated columns give a large penalty, got {want}");

    // Scale-free: multiplying a column by 100 changes nothing.
    let scaled: Vec<f64> = h.iter().enumerate().map(|(k, &v)| if k % d == 4 { v * 100.0 } else { v }).collect();
    let s = loss::decorrelation(tensor(&scaled, n, d, &dev)).into_scalar::<f32>() as f64;
    assert!((s - got).abs() < 1e-4, "scaled column: {s} vs {got}");
    // Copies of one column: every pair correlates perfectly.
    let copies: Vec<f64> = (0..n * d).map(|k| h[(k / d) * d] * (1.0 + (k % d) as f64)).collect();
    let c = loss::decorrelation(tensor(&copies, n, d, &dev)).into_scalar::<f32>();
    assert!((c - 1.0).abs() < 1e-3, "copies: {c}");

    // The gradient matches finite differences of the slow penalty.
    let g = batch::to_vec(t.grad(&l.backward()).expect("h has a gradient"));
    let eps = 1e-5;
    for k in [0, 7, 100, 383] {
        let bump = |e: f64| {
            let mut v = h.clone();
            v[k] += e;
            slow_decorrelation(&v, n, d)
        };
        let fd = (bump(eps) - bump(-eps)) / (2.0 * eps);
        assert!((g[k] as f64 - fd).abs() < 1e-3 * fd.abs().max(1e-2), "∂/∂h[{k}]: {} vs {fd}", g[k]);
    }
    // Following it lowers the penalty.
    let lr = 0.01 / g.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
    let stepped: Vec<f64> = h.iter().zip(&g).map(|(v, gk)| v - lr * *gk as f64).collect();
    assert!(slow_decorrelation(&stepped, n, d) < want, "a step down the gradient decorrelates");
}
