//! The fast CPU kernels against the plain burn path on the same encoder:
//! inference outputs, training outputs, running statistics, every
//! parameter's gradient and one Adam step, on odd image sizes (so "same"
//! padding is asymmetric and strided layers round up), with strides 1 and
//! 2 (the architecture has both) and batches of 1 and 7; and the Winograd
//! convolutions against the plain path.

use burn::module::Param;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use tidalscope_core::Rng;
use tidalscope_kernels::adam;
use tidalscope_kernels::resnet::{Inference, KeptInputs, Layer, ResNet, Trainer, TrainingWinograd};
use tidalscope_model::fast::{self, Kernels, ReadParam};
use tidalscope_model::trainable::{AdamSettings, TrainableEncoder};
use tidalscope_model::{batch, Encoder, EncoderConfig};

/// A small encoder (width 0.25, 3 bands, 24-d output) whose BatchNorm
/// parameters and running statistics are random too, so no layer is an
/// identity and the folded inference path is exercised.
fn random_encoder(device: &Device, seed: u64) -> (Encoder, ResNet) {
    random_encoder_of_width(device, seed, 0.25)
}

/// Width 0.5 is the quick preset's: its 8-channel layers run on the
/// kernels' narrow 8-output path, and the 8-input 3×3 layers' input
/// gradients too. Width 1 (the paper encoder's, in the cases chained on
/// below) has 16-channel layers, on the narrow 16-output path on AVX-512.
const WIDTHS: [f64; 2] = [0.25, 0.5];

/// [`random_encoder`] of another width.
fn random_encoder_of_width(device: &Device, seed: u64, width: f64) -> (Encoder, ResNet) {
    random_encoder_with(device, seed, width, 3)
}

/// [`random_encoder`] of another width and number of input channels (10:
/// five bands and their rotational residuals; 15: with their mirror
/// residuals too, the quick preset's input).
fn random_encoder_with(device: &Device, seed: u64, width: f64, bands: usize) -> (Encoder, ResNet) {
    let cfg = EncoderConfig::new().with_bands(bands).with_width(width).with_repr_dim(24);
    device.seed(seed);
    let e = cfg.init(device);
    let mut net = fast::to_resnet(&e);
    let mut rng = Rng::new(seed);
    let mut bns = vec![&mut net.stem_bn, &mut net.dense1_bn, &mut net.dense2_bn];
    for b in &mut net.blocks {
        bns.extend([&mut b.bn_in, &mut b.bn_a, &mut b.bn_b]);
    }
    for bn in bns {
        for v in &mut bn.gamma {
            *v = 0.6 + 0.8 * rng.uniform() as f32;
        }
        for v in bn.beta.iter_mut().chain(&mut bn.running_mean) {
            *v = 0.4 * rng.normal() as f32;
        }
        for v in &mut bn.running_var {
            *v = 0.5 + rng.uniform() as f32;
        }
    }
    (fast::load_resnet(e, &net, device), net)
}

fn input(n: usize, h: usize, w: usize, seed: u64) -> Vec<f32> {
    input_with(n, 3, h, w, seed)
}

fn input_with(n: usize, bands: usize, h: usize, w: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n * bands * h * w).map(|_| rng.normal() as f32).collect()
}

/// max |got − want| ≤ 1e-4 · max |want| (with a floor for tensors that are
/// all but zero in both).
fn assert_close(got: &[f32], want: &[f32], floor: f32, what: &str) {
    assert_close_abs(got, want, floor, 0.0, what);
}

/// As [`assert_close`], allowing `abs` more.
fn assert_close_abs(got: &[f32], want: &[f32], floor: f32, abs: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(floor, |m, v| m.max(v.abs()));
    let (i, err) =
        got.iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .enumerate()
            .fold((0, 0f32), |m, (i, e)| if e > m.1 { (i, e) } else { m });
    assert!(err <= 1e-4 * scale + abs, "{what}: |Δ| {err:e} at {i} ({} vs {}), scale {scale:e}", got[i], want[i]);
}

/// Values after Adam's first step, which moves each weight by
/// lr·g/(|g| + ε). Where |g| ≫ ε the step is ±lr whatever the rounding, so
/// the values must agree to [`assert_close`]'s tolerance; where |g| is near
/// ε (or the two sides' gradients straddle 0) the step's slope reaches
/// lr/ε, so gradients that already agree to 1e-4 of their scale may move
/// the weight differently by up to that slope times their difference. The
/// bound is that slope at the smaller |g| (1% over it, for the step's own
/// rounding), applied to the observed gradient difference.
fn assert_adam_step_close(
    got: &[f32],
    want: &[f32],
    got_grad: &[f32],
    want_grad: &[f32],
    lr: f32,
    eps: f32,
    what: &str,
) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    assert_eq!(got.len(), got_grad.len(), "{what}: gradient lengths");
    let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for i in 0..got.len() {
        let (a, b) = (got_grad[i], want_grad[i]);
        let smallest = if a.signum() == b.signum() { a.abs().min(b.abs()) } else { 0.0 };
        let slope = lr * eps / (smallest + eps).powi(2);
        let allowed = 1e-4 * scale + 1.01 * slope * (a - b).abs();
        let err = (got[i] - want[i]).abs();
        assert!(
            err <= allowed,
            "{what}: |Δ| {err:e} at {i} ({} vs {}), gradients {a:e} vs {b:e}, allowed {allowed:e}",
            got[i],
            want[i]
        );
    }
}

fn all_values(net: &ResNet) -> Vec<Vec<f32>> {
    let mut v: Vec<Vec<f32>> = net.params().into_iter().cloned().collect();
    let mut bns = vec![&net.stem_bn, &net.dense1_bn, &net.dense2_bn];
    bns.extend(net.blocks.iter().flat_map(|b| [&b.bn_in, &b.bn_a, &b.bn_b]));
    for bn in bns {
        v.push(bn.running_mean.clone());
        v.push(bn.running_var.clone());
    }
    v
}

struct Grads<'a>(&'a burn::tensor::Gradients);

impl ReadParam for Grads<'_> {
    fn read<const D: usize>(&self, p: &Param<Tensor<D>>) -> Vec<f32> {
        let v = p.val();
        match v.grad(self.0) {
            Some(g) => batch::to_vec(g),
            None => vec![0.0; v.shape().num_elements()],
        }
    }
}

#[test]
fn inference_matches_burn_on_odd_sizes_and_batches_of_one_and_seven() {
    let device = Device::flex();
    let sizes = WIDTHS.iter().flat_map(|&wd| [(1, 13, 11, wd, 3), (7, 13, 11, wd, 3), (7, 16, 16, wd, 3)]);
    for (n, h, w, width, bands) in sizes.chain([(7, 16, 16, 0.5, 10), (7, 16, 16, 0.5, 15), (7, 16, 16, 1.0, 5)]) {
        let (e, net) = random_encoder_with(&device, 3, width, bands);
        let x = input_with(n, bands, h, w, 5);
        let want = batch::to_vec(e.forward(batch_images(&x, n, h, w, &device)));
        let got = Inference::new(&net).forward(&x, n, h, w);
        assert_close(&got, &want, 1e-3, &format!("inference, width {width}, {bands} bands, batch {n}, {h}×{w}"));
    }
}

/// The 3×3 convolutions on 32 channels or more run in the Winograd domain
/// (here the last stage's identity block); the network's output stays that
/// of the plain path (inference runs one image per thread: batches of one
/// and of several).
#[test]
fn winograd_inference_matches_the_plain_path() {
    let device = Device::flex();
    let (_, net) = random_encoder(&device, 5);
    let (fast, plain) = (Inference::new(&net), Inference::without_winograd(&net));
    assert_eq!(fast.winograd_layers(), 1);
    assert_eq!(plain.winograd_layers(), 0);
    for (n, h, w) in [(1, 9, 7), (6, 24, 24)] {
        let x = input(n, h, w, 8);
        let want = plain.forward(&x, n, h, w);
        assert_close(&fast.forward(&x, n, h, w), &want, 1e-3, &format!("Winograd, batch {n}, {h}×{w}"));
    }
}

/// Training with the Winograd convolutions (the last stage's identity
/// block, 32 channels, in all three passes) gives the plain path's outputs,
/// running statistics and gradients, with one view and with two (and two
/// images per product).
#[test]
fn winograd_training_matches_the_plain_path() {
    let device = Device::flex();
    let (_, net) = random_encoder(&device, 8);
    for (n, h, w, views) in [(1, 13, 11, 1), (9, 16, 16, 2)] {
        let what = |s: &str| format!("{s}, batch {n}, {h}×{w}, {views} views");
        let mut fast = winograd_trainer(net.clone(), TrainingWinograd::Wide);
        let mut plain = winograd_trainer(net.clone(), TrainingWinograd::Off);
        let mut douts = Vec::new();
        for v in 0..views {
            let x = input(n, h, w, 20 + v as u64);
            let (got, want) = (fast.forward(v, &x, n, h, w), plain.forward(v, &x, n, h, w));
            assert_close(&got, &want, 1e-3, &what("output"));
            douts.push(want);
        }
        let douts: Vec<&[f32]> = douts.iter().map(|d| d.as_slice()).collect();
        fast.backward(&douts);
        plain.backward(&douts);
        // Within 5e-4 of the largest gradient: float rounding through the
        // BatchNorm backward passes of a batch of 9 moves the plain kernels
        // about as far from burn (measured: after one Adam step, 4e-4 of the
        // largest value in places; these two paths' gradients, 2e-4 of the
        // largest), a wrong transform far more.
        let global = plain.grads.params().iter().flat_map(|t| t.iter()).fold(0f32, |m, v| m.max(v.abs()));
        for (k, (g, p)) in fast.grads.params().iter().zip(plain.grads.params()).enumerate() {
            assert_close_abs(g, p, 1e-3 * global, 5e-4 * global, &what(&format!("gradient {k}")));
        }
        for (k, (g, p)) in all_values(&fast.net).iter().zip(all_values(&plain.net)).enumerate() {
            assert_close(g, &p, 1e-3, &what(&format!("parameter or running statistic {k}")));
        }
    }
}

/// A trainer that runs `which` 3×3 convolutions in the Winograd domain.
fn winograd_trainer(net: ResNet, which: TrainingWinograd) -> Trainer {
    let mut trainer = Trainer::new(net, adam::AdamConfig::default());
    trainer.set_winograd(which);
    trainer
}

/// What `pretrain` and `finetune` run by default: on small maps (the
/// quick preset's) no Winograd at all, bit for bit the direct products;
/// on maps of 24 px and more (here the last stage's identity block, 32
/// channels, at 24×24 from a 96 px input) the Winograd convolutions, with
/// the direct products' outputs and gradients to float rounding.
#[test]
fn default_training_takes_winograd_on_large_maps_only() {
    let device = Device::flex();
    let (_, net) = random_encoder(&device, 9);
    let pass = |which: Option<TrainingWinograd>, n: usize, s: usize| {
        let mut trainer = Trainer::new(net.clone(), adam::AdamConfig::default());
        if let Some(which) = which {
            trainer.set_winograd(which);
        }
        let out = trainer.forward(0, &input(n, s, s, 31), n, s, s);
        trainer.backward(&[&out]);
        (out, trainer.grads.params().into_iter().cloned().collect::<Vec<_>>())
    };
    let (default, off) = (pass(None, 4, 16), pass(Some(TrainingWinograd::Off), 4, 16));
    assert_eq!(default, off, "small maps: the direct products");
    let (default, off) = (pass(None, 2, 96), pass(Some(TrainingWinograd::Off), 2, 96));
    assert_eq!(default, pass(Some(TrainingWinograd::Wide), 2, 96), "96 px: every wide layer is on a large map");
    assert_ne!(default.0, off.0, "96 px: the Winograd convolutions ran");
    assert_close(&default.0, &off.0, 1e-3, "output at 96 px");
    let global = off.1.iter().flat_map(|t| t.iter()).fold(0f32, |m, v| m.max(v.abs()));
    for (k, (g, p)) in default.1.iter().zip(&off.1).enumerate() {
        assert_close_abs(g, p, 1e-3 * global, 5e-4 * global, &format!("gradient {k} at 96 px"));
    }
}

/// Keeping every convolution input on the tape for the backward pass, or
/// making each again there from its BatchNorm's input, gives the same
/// outputs and gradients bit for bit, with direct convolutions and with
/// Winograd ones (whose weight gradient then reads the made input too);
/// so does the default, which at 96 px keeps the 16-channel 96×96 inputs
/// (147,456 floats an image, above its 65,536) and makes the 4-channel
/// ones again. A setting changed between a forward and a backward pass
/// takes effect from the next forward pass: the backward pass reads what
/// its own forward pass kept.
#[test]
fn kept_and_made_convolution_inputs_train_alike_bit_for_bit() {
    let device = Device::flex();
    let (_, net) = random_encoder(&device, 12);
    let cases = [(TrainingWinograd::Off, 19, 3), (TrainingWinograd::Wide, 20, 3), (TrainingWinograd::Large, 96, 2)];
    for (which, s, n) in cases {
        let x = input(n, s, s, 41);
        // Kept as `forward` says, then backward with `backward` set.
        let pass = |forward: KeptInputs, backward: KeptInputs| {
            let mut trainer = winograd_trainer(net.clone(), which);
            trainer.set_kept_inputs(forward);
            let out = trainer.forward(0, &x, n, s, s);
            trainer.set_kept_inputs(backward);
            trainer.backward(&[&out]);
            (out, trainer.grads.params().into_iter().cloned().collect::<Vec<_>>())
        };
        let all = pass(KeptInputs::All, KeptInputs::All);
        assert_eq!(all, pass(KeptInputs::Nothing, KeptInputs::Nothing), "{which:?} at {s} px: made again");
        assert_eq!(all, pass(KeptInputs::Large, KeptInputs::Large), "{which:?} at {s} px: the default");
        assert_eq!(all, pass(KeptInputs::Nothing, KeptInputs::All), "{which:?} at {s} px: set between passes");
    }
}

/// A training step's Winograd filters are transformed from that step's
/// weights: after an Adam step, the next forward pass on the same tapes
/// gives what a fresh trainer on the stepped network gives.
#[test]
fn winograd_training_follows_the_weights_from_step_to_step() {
    let device = Device::flex();
    let (_, net) = random_encoder(&device, 6);
    let (n, h, w) = (3, 16, 16);
    let x = input(n, h, w, 12);
    let mut trainer = winograd_trainer(net, TrainingWinograd::Wide);
    let out = trainer.forward(0, &x, n, h, w);
    trainer.backward(&[&out]);
    trainer.step(1e-2);
    let again = trainer.forward(0, &x, n, h, w);
    let mut fresh = winograd_trainer(trainer.net.clone(), TrainingWinograd::Wide);
    assert_eq!(again, fresh.forward(0, &x, n, h, w));
    assert_ne!(again, out, "the step changed nothing");
}

/// The pooled backbone features (what the backbone probe reads) agree
/// between the two paths, and are the dense layers' input: a different
/// layer from the representation, of the backbone's width.
#[test]
fn pooled_features_match_burn() {
    let device = Device::flex();
    let (e, net) = random_encoder(&device, 4);
    let (n, h, w) = (5, 13, 11);
    let x = input(n, h, w, 6);
    let want = batch::to_vec(e.pooled(batch_images(&x, n, h, w, &device)));
    let inference = Inference::new(&net);
    let got = inference.forward_to(&x, n, h, w, Layer::Pooled);
    assert_eq!(inference.dim(Layer::Pooled), net.dense1.inputs);
    assert_eq!(got.len(), n * net.dense1.inputs);
    assert_close(&got, &want, 1e-3, "pooled features");
    let repr = inference.forward_to(&x, n, h, w, Layer::Representation);
    assert_eq!(repr, inference.forward(&x, n, h, w));
    assert_eq!(repr.len(), n * 24);
}

fn batch_images(x: &[f32], n: usize, h: usize, w: usize, device: &Device) -> Tensor<4> {
    let bands = x.len() / (n * h * w);
    Tensor::from_data(TensorData::new(x.to_vec(), [n, bands, h, w]), device)
}

/// One view with a batch of 1; two views (as NNCLR runs them: two forward
/// passes, each with its own batch statistics, gradients summed) with 7.
#[test]
fn training_outputs_gradients_and_an_adam_step_match_burn() {
    let device = Device::flex().autodiff();
    let sizes = WIDTHS.iter().flat_map(|&wd| [(1, 13, 11, 1, wd, 3), (7, 13, 11, 2, wd, 3)]);
    // Width 1 with 5 images. With 7, the 16-output direct convolution
    // (its outputs within 4e-7 of the patch-copying path's, which agreed
    // with burn) left one stage-2 layer's parameter gradients 1e-3 of their
    // scale from burn's, and earlier layers' 3e-4; three other sizes agree
    // to 8e-6. Most likely a pre-activation within rounding of ReLU's kink
    // (64,000 of them in that layer): its pixel's gradient is dropped on
    // one side only.
    let more = [(7, 13, 11, 2, 0.5, 10), (7, 13, 11, 2, 0.5, 15), (5, 13, 11, 2, 1.0, 5)];
    for (n, h, w, views, width, bands) in sizes.chain(more) {
        let what = |s: &str| format!("{s}, width {width}, {bands} bands, batch {n}, {h}×{w}, {views} views");
        let (e, net) = random_encoder_with(&device, 7, width, bands);
        let xs: Vec<Vec<f32>> = (0..views).map(|v| input_with(n, bands, h, w, 9 + v as u64)).collect();
        let mut rng = Rng::new(11);
        let rs: Vec<Vec<f32>> = (0..views).map(|_| (0..n * 24).map(|_| rng.normal() as f32).collect()).collect();

        // burn: L = Σ_views Σ output · r, so ∂L/∂output = r for each view.
        let mut want_outs = Vec::new();
        let mut loss = Tensor::<1>::zeros([1], &device);
        for (x, r) in xs.iter().zip(&rs) {
            let out = e.forward(batch_images(x, n, h, w, &device));
            want_outs.push(batch::to_vec(out.clone()));
            let r = Tensor::<2>::from_data(TensorData::new(r.clone(), [n, 24]), &device);
            loss = loss + (out * r).sum().reshape([1]);
        }
        let grads = loss.backward();
        let want_grads = fast::to_resnet_with(&e, &Grads(&grads));
        let lr = 1e-2;
        // Both sides take their constants from one config, so the bound
        // below uses the ε both steps were taken with.
        let kcfg = adam::AdamConfig::default();
        let stepped = AdamConfig::new()
            .with_beta_1(kcfg.beta1)
            .with_beta_2(kcfg.beta2)
            .with_epsilon(kcfg.epsilon)
            .init()
            .step(lr, e.clone(), GradientsParams::from_grads(grads, &e));

        let mut trainer = Trainer::new(net, kcfg);
        for (v, (x, want)) in xs.iter().zip(&want_outs).enumerate() {
            let got = trainer.forward(v, x, n, h, w);
            assert_close(&got, want, 1e-3, &what(&format!("training output of view {v}")));
        }
        let after_forward = fast::to_resnet(&e);
        for (i, (g, wv)) in all_values(&trainer.net).iter().zip(&all_values(&after_forward)).enumerate() {
            assert_close(g, wv, 1e-3, &what(&format!("value {i} after the forward passes (running statistics)")));
        }
        let douts: Vec<&[f32]> = rs.iter().map(|r| &r[..]).collect();
        trainer.backward(&douts);
        let global = want_grads.params().iter().flat_map(|t| t.iter()).fold(0f32, |m, v| m.max(v.abs()));
        for (i, (g, wv)) in trainer.grads.params().iter().zip(want_grads.params()).enumerate() {
            assert_close(g, wv, 1e-3 * global, &what(&format!("gradient of parameter {i}")));
        }
        let got_grads: Vec<Vec<f32>> = trainer.grads.params().into_iter().cloned().collect();
        let n_params = got_grads.len();
        trainer.step(lr as f32);
        let values = all_values(&trainer.net);
        let want_values = all_values(&fast::to_resnet(&stepped));
        for (i, (g, wv)) in values.iter().zip(&want_values).enumerate() {
            let what = what(&format!("value {i} after one Adam step"));
            if i < n_params {
                assert_adam_step_close(g, wv, &got_grads[i], want_grads.params()[i], lr as f32, kcfg.epsilon, &what);
            } else {
                assert_close(g, wv, 1e-3, &what);
            }
        }
    }
}

/// The one trainable-encoder type takes the same step whichever engine
/// runs it: forward (two views, and a local view of half their size that
/// leaves the running statistics alone), backward-and-step, sync, with the
/// Adam both training loops use.
#[test]
fn the_trainable_encoder_steps_alike_on_the_kernels_and_on_burn() {
    let device = Device::flex().autodiff();
    let (n, s) = (5, 12);
    let (e, _) = random_encoder(&device, 17);
    let xs = [input(n, s, s, 18), input(n, s, s, 19)];
    let mut rng = Rng::new(20);
    let local = input(n, s / 2, s / 2, 21);
    let rs: Vec<Tensor<2>> = (0..3)
        .map(|_| {
            let r: Vec<f32> = (0..n * 24).map(|_| rng.normal() as f32).collect();
            Tensor::from_data(TensorData::new(r, [n, 24]), &device)
        })
        .collect();
    let adam = AdamSettings { l2: 5e-4 };
    let lr = 1e-2;
    let stepped: Vec<ResNet> = [Kernels::Fast, Kernels::Burn]
        .into_iter()
        .map(|kernels| {
            let mut t = TrainableEncoder::new(kernels, &e, adam);
            let mut optim = adam.burn();
            let mut hs: Vec<Tensor<2>> =
                xs.iter().enumerate().map(|(v, x)| t.forward(&e, v, x.clone(), n, 3, s, &device)).collect();
            hs.push(t.forward_local(&e, 2, local.clone(), n, 3, s / 2, &device));
            let loss = hs.iter().zip(&rs).map(|(h, r)| (h.clone() * r.clone()).sum()).reduce(|a, b| a + b).unwrap();
            let grads = loss.backward();
            t.backward_step(&grads, &hs.iter().collect::<Vec<_>>(), lr);
            let model = optim.step(lr, e.clone(), GradientsParams::from_grads(grads, &e));
            assert_eq!(t.trainer().is_some(), kernels == Kernels::Fast);
            fast::to_resnet(&t.synced(model, &device))
        })
        .collect();
    let before = fast::to_resnet(&e);
    let moved: f32 = stepped[0].params().iter().zip(before.params()).map(|(a, b)| (a[0] - b[0]).abs()).sum();
    assert!(moved > 0.0, "the step changed nothing");
    for (i, (f, b)) in all_values(&stepped[0]).iter().zip(&all_values(&stepped[1])).enumerate() {
        assert_close_abs(f, b, 1e-3, 2e-2 * lr as f32, &format!("value {i} after one step"));
    }
}

/// Same inputs, same bits, whatever the thread count: every sum runs in a
/// fixed order. Also from a thread outside any pool (the command line's
/// main thread), whose training passes run on the global pool's threads.
#[test]
fn results_do_not_depend_on_the_number_of_threads() {
    let device = Device::flex();
    for width in WIDTHS.into_iter().chain([1.0]) {
        let (_, net) = random_encoder_of_width(&device, 13, width);
        // 20 images: the 8×8 and 4×4 maps run several images per product.
        let (n, h, w) = (20, 16, 16);
        let x = input(n, h, w, 15);
        let pass = || {
            let inferred = Inference::new(&net).forward(&x, n, h, w);
            let mut trainer = Trainer::new(net.clone(), adam::AdamConfig::default());
            let out = trainer.forward(0, &x, n, h, w);
            trainer.backward(&[&out]);
            let grads: Vec<Vec<f32>> = trainer.grads.params().into_iter().cloned().collect();
            trainer.step(1e-3);
            let stepped: Vec<Vec<f32>> = trainer.net.params().into_iter().cloned().collect();
            (inferred, out, grads, stepped)
        };
        let run = |threads: usize| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(pass);
        let one = run(1);
        for threads in [2, 3] {
            assert!(run(threads) == one, "width {width}: results with {threads} threads differ from one thread's");
        }
        assert!(pass() == one, "width {width}: results from outside a pool differ from one thread's");
    }
}

/// Views side by side (`forward_views`, and the backward pass that runs
/// them so) give the bits of one view at a time: outputs, running
/// statistics, summed gradients and the Adam step, for two global and two
/// smaller local views, with 1 to 3 threads (more views than threads, and
/// as many).
#[test]
fn views_side_by_side_give_the_bits_of_one_view_at_a_time() {
    use tidalscope_kernels::resnet::View;
    let device = Device::flex();
    let (_, net) = random_encoder_of_width(&device, 14, 0.5);
    let n = 5;
    let xs = [input(n, 16, 16, 40), input(n, 16, 16, 41), input(n, 8, 8, 42), input(n, 8, 8, 43)];
    let views: Vec<View<'_>> = xs
        .iter()
        .enumerate()
        .map(|(j, x)| {
            let s = if j < 2 { 16 } else { 8 };
            View { x, n, h: s, w: s, running_stats: j < 2 }
        })
        .collect();
    // One at a time through the single-view calls, as pretraining ran them.
    let mut plain = Trainer::new(net.clone(), adam::AdamConfig::default());
    let mut want = Vec::new();
    for (j, v) in views.iter().enumerate() {
        want.push(match v.running_stats {
            true => plain.forward(j, v.x, n, v.h, v.w),
            false => plain.forward_keeping_running_stats(j, v.x, n, v.h, v.w),
        });
    }
    plain.set_side_by_side(false);
    plain.backward(&want.iter().map(Vec::as_slice).collect::<Vec<_>>());
    plain.step(1e-3);
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut t = Trainer::new(net.clone(), adam::AdamConfig::default());
        pool.install(|| {
            // Twice: the second step runs on pools made by the first.
            for round in 0..2 {
                let outs = t.forward_views(&views);
                t.backward(&outs.iter().map(Vec::as_slice).collect::<Vec<_>>());
                if round == 0 {
                    assert!(outs == want, "{threads} threads: outputs differ from one view at a time");
                    assert!(
                        running_stats(&t.net) == running_stats(&plain.net),
                        "{threads} threads: running statistics differ"
                    );
                    assert!(t.grads.params() == plain.grads.params(), "{threads} threads: gradients differ");
                    t.step(1e-3);
                    assert!(all_values(&t.net) == all_values(&plain.net), "{threads} threads: the step differs");
                }
            }
        });
    }
}

/// Multi-crop's local views: a forward pass that keeps the running
/// statistics gives the ordinary pass's output, leaves the statistics as
/// the global view left them, and its gradient joins the global view's as
/// an ordinary view's does, whatever its size.
#[test]
fn local_views_train_like_any_view_and_keep_the_running_statistics() {
    let device = Device::flex();
    let (_, net) = random_encoder(&device, 10);
    let n = 4;
    let (global, local) = (input(n, 16, 16, 30), input(n, 8, 8, 31));
    let mut keeping = Trainer::new(net.clone(), adam::AdamConfig::default());
    let mut ordinary = Trainer::new(net.clone(), adam::AdamConfig::default());
    let mut global_only = Trainer::new(net, adam::AdamConfig::default());
    let g = keeping.forward(0, &global, n, 16, 16);
    assert_eq!(g, ordinary.forward(0, &global, n, 16, 16));
    global_only.forward(0, &global, n, 16, 16);
    let l = keeping.forward_keeping_running_stats(1, &local, n, 8, 8);
    assert_eq!(l, ordinary.forward(1, &local, n, 8, 8), "the local view's output");
    assert_eq!(all_values(&keeping.net), all_values(&global_only.net), "running statistics moved");
    assert_ne!(all_values(&keeping.net), all_values(&ordinary.net), "the ordinary pass moves them");
    keeping.backward(&[&g, &l]);
    ordinary.backward(&[&g, &l]);
    global_only.backward(&[&g]);
    assert_eq!(keeping.grads.params(), ordinary.grads.params(), "gradients");
    assert_ne!(keeping.grads.params(), global_only.grads.params(), "the local view adds nothing");
}

/// On burn, a local view's pass leaves every BatchNorm's running
/// statistics bit for bit where the global views left them (burn applies
/// each update at the next read); an ordinary pass of the same view moves
/// them.
#[test]
fn a_local_view_on_burn_keeps_the_running_statistics_exactly() {
    let device = Device::flex().autodiff();
    let (e, _) = random_encoder(&device, 23);
    let mut t = TrainableEncoder::new(Kernels::Burn, &e, AdamSettings { l2: 0.0 });
    let (n, s) = (3, 12);
    let stats = |e: &Encoder| -> Vec<Vec<f32>> {
        e.batch_norms()
            .iter()
            .flat_map(|b| [b.running_mean.value_sync(), b.running_var.value_sync()])
            .map(batch::to_vec)
            .collect()
    };
    let start = stats(&e);
    t.forward(&e, 0, input(n, s, s, 24), n, 3, s, &device);
    t.forward(&e, 1, input(n, s, s, 25), n, 3, s, &device);
    let after_global = stats(&e);
    assert_ne!(after_global, start, "the global views move them");
    t.forward_local(&e, 2, input(n, s / 2, s / 2, 26), n, 3, s / 2, &device);
    assert_eq!(stats(&e), after_global, "the local view moved them");
    t.forward(&e, 3, input(n, s / 2, s / 2, 26), n, 3, s / 2, &device);
    assert_ne!(stats(&e), after_global, "an ordinary pass moves them");
}

/// Running statistics of every BatchNorm layer, in a fixed order.
fn running_stats(net: &ResNet) -> Vec<Vec<f32>> {
    all_values(net).split_off(net.params().len())
}

/// The weight average is the plain mean of the snapshots' trainable
/// values, and takes the latest snapshot's running statistics until they
/// are measured again.
#[test]
fn the_weight_average_is_the_mean_of_the_snapshots() {
    use tidalscope_kernels::average::WeightAverage;
    let dev = Device::flex();
    let nets: Vec<ResNet> = (0..3).map(|s| random_encoder(&dev, 40 + s).1).collect();
    let mut avg = WeightAverage::new(&nets[0]);
    avg.add(&nets[1]);
    avg.add(&nets[2]);
    assert_eq!(avg.snapshots(), 3);
    let got = avg.net().params();
    for (i, g) in got.iter().enumerate() {
        let want: Vec<f32> = (0..g.len())
            .map(|j| {
                ((nets[0].params()[i][j] as f64 + nets[1].params()[i][j] as f64 + nets[2].params()[i][j] as f64) / 3.0)
                    as f32
            })
            .collect();
        assert_close(g, &want, 1e-3, &format!("tensor {i}"));
    }
    assert_eq!(running_stats(avg.net()), running_stats(&nets[2]));
    // A saved average resumed goes on as if never interrupted.
    let mut resumed = WeightAverage::resume(WeightAverage::new(&nets[0]).into_net(), 1);
    resumed.add(&nets[1]);
    resumed.add(&nets[2]);
    assert_eq!(resumed, avg);
}

/// Measured again, the running statistics are the plain mean of each
/// batch's statistics: two batches together give the mean of what each
/// gives alone, whatever the statistics were before, and the weights do
/// not move.
#[test]
fn running_statistics_measured_again_are_the_mean_over_batches() {
    use tidalscope_kernels::average::RunningStatsPass;
    let dev = Device::flex();
    let (_, net) = random_encoder(&dev, 7);
    let (a, b) = (input(5, 16, 16, 1), input(5, 16, 16, 2));
    let measure = |batches: &[&[f32]]| {
        let mut n = net.clone();
        let mut pass = RunningStatsPass::start(&mut n);
        for x in batches {
            pass.add(&mut n, x, 5, 16, 16);
        }
        assert_eq!(pass.batches(), batches.len());
        assert_eq!(n.params(), net.params(), "measuring statistics moved the weights");
        n
    };
    let (alone_a, alone_b, both) = (measure(&[&a]), measure(&[&b]), measure(&[&a, &b]));
    assert_ne!(running_stats(&alone_a), running_stats(&net), "the old statistics were kept");
    for (i, ((x, y), z)) in
        running_stats(&alone_a).iter().zip(running_stats(&alone_b)).zip(running_stats(&both)).enumerate()
    {
        let mean: Vec<f32> = x.iter().zip(&y).map(|(x, y)| (x + y) / 2.0).collect();
        assert_close(&z, &mean, 1e-3, &format!("statistics {i}"));
    }
    // The momentum training uses is left as it was.
    assert_eq!(both.stem_bn.momentum, net.stem_bn.momentum);
}
