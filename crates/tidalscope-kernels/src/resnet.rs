//! The encoder network (a pre-activation bottleneck ResNet: see
//! `tidalscope_model::encoder`) on these kernels: its weights in plain
//! layouts, a folded inference pass, and a training forward/backward pass
//! with Adam.
//!
//! Layouts: images NHWC; convolution weights HWIO `[k, k, cin, cout]`;
//! dense weights `[inputs, outputs]` (burn's `Linear`). The structure (which
//! blocks, strides, widths) is whatever the weights say: it is built by
//! converting a burn `Encoder`, never restated here.

use crate::adam::{AdamConfig, Moments};
use crate::conv::{Conv, Input, MakeFn};
use crate::gemm::{matmul, MatRef, Threads};
use crate::norm::{AffineMap, BatchMoments, BatchNorm, BatchStats, ChunkMoments, GradInto};
use crate::simd;
use crate::winograd::Winograd;
use rayon::prelude::*;
use std::cell::RefCell;

/// A convolution and its HWIO weights.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvLayer {
    /// Its shape.
    pub conv: Conv,
    /// `[k, k, cin, cout]`.
    pub weight: Vec<f32>,
}

/// A dense layer without bias.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    /// Inputs.
    pub inputs: usize,
    /// Outputs.
    pub outputs: usize,
    /// `[inputs, outputs]`.
    pub weight: Vec<f32>,
}

/// A pre-activation bottleneck block: BN-ReLU-conv 1×1, BN-ReLU-conv 3×3
/// (carrying the stride), BN-ReLU-conv 1×1, plus the input or its strided
/// 1×1 projection.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// BN of the block input.
    pub bn_in: BatchNorm,
    /// 1×1 reduction.
    pub conv_a: ConvLayer,
    /// BN after `conv_a`.
    pub bn_a: BatchNorm,
    /// 3×3 convolution.
    pub conv_b: ConvLayer,
    /// BN after `conv_b`.
    pub bn_b: BatchNorm,
    /// 1×1 expansion.
    pub conv_c: ConvLayer,
    /// Projection of the raw input (projection blocks).
    pub shortcut: Option<ConvLayer>,
}

/// The whole encoder: stem conv-BN-ReLU, the blocks, global average
/// pooling, dense-BN-ReLU, dense-BN.
#[derive(Clone, Debug, PartialEq)]
pub struct ResNet {
    /// Stem convolution.
    pub stem: ConvLayer,
    /// Stem BN.
    pub stem_bn: BatchNorm,
    /// Bottleneck blocks in order.
    pub blocks: Vec<Block>,
    /// First dense layer.
    pub dense1: Dense,
    /// Its BN (then ReLU).
    pub dense1_bn: BatchNorm,
    /// Second dense layer.
    pub dense2: Dense,
    /// Its BN: the representation.
    pub dense2_bn: BatchNorm,
}

impl ResNet {
    /// Input bands.
    pub fn bands(&self) -> usize {
        self.stem.conv.cin
    }

    /// Size of the representation.
    pub fn repr_dim(&self) -> usize {
        self.dense2.outputs
    }

    /// Every trainable tensor (weights, γ, β) in a fixed order.
    pub fn params(&self) -> Vec<&Vec<f32>> {
        let mut v: Vec<&Vec<f32>> = vec![&self.stem.weight, &self.stem_bn.gamma, &self.stem_bn.beta];
        for b in &self.blocks {
            v.extend([&b.bn_in.gamma, &b.bn_in.beta, &b.conv_a.weight, &b.bn_a.gamma, &b.bn_a.beta]);
            v.extend([&b.conv_b.weight, &b.bn_b.gamma, &b.bn_b.beta, &b.conv_c.weight]);
            v.extend(b.shortcut.as_ref().map(|s| &s.weight));
        }
        v.extend([&self.dense1.weight, &self.dense1_bn.gamma, &self.dense1_bn.beta]);
        v.extend([&self.dense2.weight, &self.dense2_bn.gamma, &self.dense2_bn.beta]);
        v
    }

    /// As [`params`](Self::params), mutably.
    pub fn params_mut(&mut self) -> Vec<&mut Vec<f32>> {
        let mut v: Vec<&mut Vec<f32>> = vec![&mut self.stem.weight, &mut self.stem_bn.gamma, &mut self.stem_bn.beta];
        for b in &mut self.blocks {
            v.extend([
                &mut b.bn_in.gamma,
                &mut b.bn_in.beta,
                &mut b.conv_a.weight,
                &mut b.bn_a.gamma,
                &mut b.bn_a.beta,
            ]);
            v.extend([&mut b.conv_b.weight, &mut b.bn_b.gamma, &mut b.bn_b.beta, &mut b.conv_c.weight]);
            v.extend(b.shortcut.as_mut().map(|s| &mut s.weight));
        }
        v.extend([&mut self.dense1.weight, &mut self.dense1_bn.gamma, &mut self.dense1_bn.beta]);
        v.extend([&mut self.dense2.weight, &mut self.dense2_bn.gamma, &mut self.dense2_bn.beta]);
        v
    }

    /// Every BatchNorm layer, in a fixed order.
    pub fn batch_norms(&self) -> Vec<&BatchNorm> {
        let mut v = vec![&self.stem_bn];
        for b in &self.blocks {
            v.extend([&b.bn_in, &b.bn_a, &b.bn_b]);
        }
        v.extend([&self.dense1_bn, &self.dense2_bn]);
        v
    }

    /// As [`batch_norms`](Self::batch_norms), mutably.
    pub(crate) fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        let mut v = vec![&mut self.stem_bn];
        for b in &mut self.blocks {
            v.extend([&mut b.bn_in, &mut b.bn_a, &mut b.bn_b]);
        }
        v.extend([&mut self.dense1_bn, &mut self.dense2_bn]);
        v
    }

    /// Multiply-adds ×2 of one forward pass on an `h × w` image.
    pub fn flops(&self, h: usize, w: usize) -> f64 {
        let conv = |c: &Conv, h: usize, w: usize| {
            let (ho, wo) = c.out_size(h, w);
            2.0 * (ho * wo * c.k * c.k * c.cin * c.cout) as f64
        };
        let mut total = conv(&self.stem.conv, h, w);
        let (mut h, mut w) = (h, w);
        for b in &self.blocks {
            total += conv(&b.conv_a.conv, h, w) + conv(&b.conv_b.conv, h, w);
            total += b.shortcut.as_ref().map_or(0.0, |s| conv(&s.conv, h, w));
            (h, w) = b.conv_b.conv.out_size(h, w);
            total += conv(&b.conv_c.conv, h, w);
        }
        total + 2.0 * (self.dense1.weight.len() + self.dense2.weight.len()) as f64
    }

    /// Checks an NCHW input's length against the network and the batch.
    fn check_input(&self, x: &[f32], n: usize, h: usize, w: usize) {
        assert_eq!(
            x.len(),
            n * self.bands() * h * w,
            "input of {} floats is not {n}×{}×{h}×{w}",
            x.len(),
            self.bands()
        );
    }
}

/// `[n, c, h, w]` → `[n, h, w, c]`.
pub fn nchw_to_nhwc(x: &[f32], n: usize, c: usize, h: usize, w: usize, out: &mut Vec<f32>) {
    out.resize(x.len(), 0.0);
    let plane = h * w;
    out.par_chunks_mut(plane * c).zip(x.par_chunks(plane * c)).take(n).for_each(|(o, xi)| {
        for ch in 0..c {
            for (p, v) in xi[ch * plane..(ch + 1) * plane].iter().enumerate() {
                o[p * c + ch] = *v;
            }
        }
    });
}

/// A convolution with the following BatchNorm, if any, folded in (weights
/// scaled per output channel, the shift as a bias).
#[derive(Clone, Debug)]
struct Folded {
    conv: Conv,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    /// The same weights in the Winograd domain, where that is faster.
    winograd: Option<Winograd>,
}

impl Folded {
    fn new(layer: &ConvLayer, bn: Option<&BatchNorm>, winograd: bool) -> Self {
        let mut weight = layer.weight.clone();
        let bias = bn.map(|bn| {
            let (scale, shift) = bn.inference_affine();
            for row in weight.chunks_exact_mut(layer.conv.cout) {
                for (v, s) in row.iter_mut().zip(&scale) {
                    *v *= s;
                }
            }
            shift
        });
        let winograd = (winograd && Winograd::pays(&layer.conv)).then(|| Winograd::new(&layer.conv, &weight));
        Self { conv: layer.conv, weight, bias, winograd }
    }

    /// `y = conv(x)` for one image (before the bias).
    fn forward_image(&self, x: &[f32], h: usize, w: usize, y: &mut [f32], accumulate: bool, threads: Threads) {
        match &self.winograd {
            Some(wg) => wg.forward_image(x, h, w, y, accumulate, threads),
            None => self.conv.forward_image(x, h, w, &self.weight, y, accumulate, threads),
        }
    }
}

#[derive(Clone, Debug)]
struct FoldedBlock {
    in_scale: Vec<f32>,
    in_shift: Vec<f32>,
    a: Folded,
    b: Folded,
    c: Folded,
    shortcut: Option<Folded>,
}

/// The per-thread buffers of [`Inference`], reused between images.
#[derive(Default)]
struct Workspace {
    x: Vec<f32>,
    t: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    out: Vec<f32>,
}

thread_local! {
    static WORKSPACE: RefCell<Workspace> = RefCell::new(Workspace::default());
}

/// Which activations an encoder's inference pass returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layer {
    /// The backbone's globally average-pooled feature map, before the two
    /// dense layers: in SimCLR-style work often the better input for a
    /// linear probe, because the contrastive loss shapes the layers after
    /// it most.
    Pooled,
    /// The representation: the second dense layer after its BatchNorm.
    #[default]
    Representation,
}

/// A trained network prepared for inference: every BatchNorm that follows a
/// convolution or dense layer folded into it, the others reduced to one
/// affine map; the 3×3 stride-1 convolutions on 32 channels or more in
/// the Winograd domain ([`crate::winograd`]); images run through the whole
/// network one per thread. Equivalent to the network's inference mode up
/// to float rounding.
#[derive(Clone, Debug)]
pub struct Inference {
    bands: usize,
    stem: Folded,
    blocks: Vec<FoldedBlock>,
    dense1: Folded,
    dense2: Folded,
}

impl Inference {
    /// Folds `net`'s running statistics into its layers.
    pub fn new(net: &ResNet) -> Self {
        Self::build(net, true)
    }

    /// [`new`](Self::new) with every convolution a direct product (on
    /// im2col's patches where k > 1), none in the Winograd domain: the
    /// reference the fast path is tested and timed against.
    pub fn without_winograd(net: &ResNet) -> Self {
        Self::build(net, false)
    }

    fn build(net: &ResNet, winograd: bool) -> Self {
        let dense = |d: &Dense, bn: &BatchNorm| {
            Folded::new(
                &ConvLayer { conv: Conv { k: 1, stride: 1, cin: d.inputs, cout: d.outputs }, weight: d.weight.clone() },
                Some(bn),
                false,
            )
        };
        Self {
            bands: net.bands(),
            stem: Folded::new(&net.stem, Some(&net.stem_bn), winograd),
            blocks: net
                .blocks
                .iter()
                .map(|b| {
                    let (in_scale, in_shift) = b.bn_in.inference_affine();
                    FoldedBlock {
                        in_scale,
                        in_shift,
                        a: Folded::new(&b.conv_a, Some(&b.bn_a), false),
                        b: Folded::new(&b.conv_b, Some(&b.bn_b), winograd),
                        c: Folded::new(&b.conv_c, None, false),
                        shortcut: b.shortcut.as_ref().map(|s| Folded::new(s, None, false)),
                    }
                })
                .collect(),
            dense1: dense(&net.dense1, &net.dense1_bn),
            dense2: dense(&net.dense2, &net.dense2_bn),
        }
    }

    /// Size of the representation.
    pub fn repr_dim(&self) -> usize {
        self.dense2.conv.cout
    }

    /// How many convolutions run in the Winograd domain.
    pub fn winograd_layers(&self) -> usize {
        let blocks = self.blocks.iter().flat_map(|b| [&b.a, &b.b, &b.c].into_iter().chain(&b.shortcut));
        std::iter::once(&self.stem).chain(blocks).filter(|f| f.winograd.is_some()).count()
    }

    /// Size of the activations of `layer`.
    pub fn dim(&self, layer: Layer) -> usize {
        match layer {
            Layer::Pooled => self.dense1.conv.cin,
            Layer::Representation => self.repr_dim(),
        }
    }

    /// Representations of a batch.
    ///
    /// # Shapes
    /// `x`: `[n, bands, h, w]` (NCHW, as burn batches are) → `[n, repr_dim]`.
    ///
    /// # Panics
    /// If `x` is not `n × bands × h × w` floats.
    pub fn forward(&self, x: &[f32], n: usize, h: usize, w: usize) -> Vec<f32> {
        self.forward_to(x, n, h, w, Layer::Representation)
    }

    /// The activations of `layer` for a batch: `[n, bands, h, w]` →
    /// `[n, self.dim(layer)]`.
    ///
    /// # Panics
    /// If `x` is not `n × bands × h × w` floats.
    pub fn forward_to(&self, x: &[f32], n: usize, h: usize, w: usize, layer: Layer) -> Vec<f32> {
        assert_eq!(x.len(), n * self.bands * h * w, "input of {} floats is not {n}×{}×{h}×{w}", x.len(), self.bands);
        let dim = self.dim(layer);
        let mut out = vec![0f32; n * dim];
        crate::conv::per_chunk(Input::Ready(x), self.bands * h * w, &mut out, dim, |_, xi, oi, threads| {
            let mut ws = WORKSPACE.with(|s| std::mem::take(&mut *s.borrow_mut()));
            self.image(xi, h, w, layer, oi, &mut ws, threads);
            WORKSPACE.with(|s| *s.borrow_mut() = ws);
        });
        out
    }

    /// One NCHW image through the network up to `layer`, into `out`
    /// (`self.dim(layer)` floats).
    #[allow(clippy::too_many_arguments)]
    fn image(
        &self,
        img: &[f32],
        h: usize,
        w: usize,
        layer: Layer,
        out: &mut [f32],
        ws: &mut Workspace,
        threads: Threads,
    ) {
        nchw_to_nhwc(img, 1, self.bands, h, w, &mut ws.t); // the stem's input
        let conv = |f: &Folded, x: &[f32], h: usize, w: usize, y: &mut Vec<f32>, relu: bool| {
            let (ho, wo) = f.conv.out_size(h, w);
            y.resize(ho * wo * f.conv.cout, 0.0);
            f.forward_image(x, h, w, y, false, threads);
            match &f.bias {
                Some(bias) => simd::bias_rows(y, bias, relu),
                // Only the shortcut projections are bare, and they have no ReLU.
                None => debug_assert!(!relu, "a bare convolution with a ReLU"),
            }
        };
        conv(&self.stem, &ws.t, h, w, &mut ws.x, true);
        let (mut h, mut w) = (h, w);
        for b in &self.blocks {
            ws.t.resize(ws.x.len(), 0.0);
            simd::affine_rows(&mut ws.t, &ws.x, &b.in_scale, &b.in_shift, true);
            conv(&b.a, &ws.t, h, w, &mut ws.a, true);
            conv(&b.b, &ws.a, h, w, &mut ws.b, true);
            let (ho, wo) = b.b.conv.out_size(h, w);
            match &b.shortcut {
                Some(s) => {
                    conv(s, &ws.x, h, w, &mut ws.out, false);
                    b.c.forward_image(&ws.b, ho, wo, &mut ws.out, true, threads);
                    std::mem::swap(&mut ws.x, &mut ws.out);
                }
                None => b.c.forward_image(&ws.b, ho, wo, &mut ws.x, true, threads),
            }
            (h, w) = (ho, wo);
        }
        // Global average pooling.
        let ch = self.dense1.conv.cin;
        let mut pooled = vec![0f32; ch];
        simd::add_rows(&mut pooled, &ws.x);
        let inv = 1.0 / (h * w) as f32;
        pooled.iter_mut().for_each(|p| *p *= inv);
        if layer == Layer::Pooled {
            out.copy_from_slice(&pooled);
            return;
        }
        let mut d1 = Vec::new();
        conv(&self.dense1, &pooled, 1, 1, &mut d1, true);
        let mut d2 = Vec::new();
        conv(&self.dense2, &d1, 1, 1, &mut d2, false);
        out.copy_from_slice(&d2);
    }
}

/// What the training forward pass of one block keeps.
#[derive(Default, Debug)]
struct BlockTape {
    /// Block input `[n, h, w, cin]` and its size.
    x: Vec<f32>,
    h: usize,
    w: usize,
    // Each convolution's input is its BatchNorm's map of the buffer
    // before it, made chunk by chunk where it is read, and kept where the
    // tape's `KeptInputs` says ([`made`]).
    /// bn_in's statistics.
    s_in: BatchStats,
    /// bn_in's map: relu(bn_in(x)) is conv_a's input.
    map_in: AffineMap,
    /// conv_a's input where it is kept.
    t: Vec<f32>,
    /// conv_a's output.
    a: Vec<f32>,
    /// bn_a's statistics.
    s_a: BatchStats,
    /// bn_a's map: relu(bn_a(a)) is conv_b's input.
    map_a: AffineMap,
    /// conv_b's input where it is kept.
    ta: Vec<f32>,
    /// conv_b's output.
    b: Vec<f32>,
    /// bn_b's statistics.
    s_b: BatchStats,
    /// bn_b's map: relu(bn_b(b)) is conv_c's input.
    map_b: AffineMap,
    /// conv_c's input where it is kept.
    tb: Vec<f32>,
    /// conv_b and its input gradient in the Winograd domain, where the
    /// tape's [`TrainingWinograd`] runs it there (its weight gradient then
    /// is too): this step's weights,
    /// transformed in the forward pass and in the backward pass (buffers
    /// reused between steps).
    winograd: Option<Winograd>,
    winograd_back: Option<Winograd>,
}

/// Floats in one image of a convolution's input above which the training
/// forward pass keeps the input it makes ([`Input::Kept`]) rather than
/// have the backward pass make it again ([`Input::Made`]): 256 KiB. The
/// quick preset's images are at most 74 kB (32 channels at 24 px), and a
/// chunk of them stays in a core's cache while it is made and read:
/// made again, training measured 10% faster and a two-view pretraining
/// step 5% (three pairs each), the peak memory of a training pass a third
/// lower. The paper encoder's are 295 kB to 2.4 MB; made again, all of
/// them or those above 1 MiB, its two-view pretraining step measured 5%
/// and 3% slower (three pairs each; a later rerun in one binary,
/// `step_timing`'s two-view step with `KEPT=all` and `KEPT=none`: 1.7%),
/// so it keeps them all, as before.
const KEEP_ABOVE: usize = 64 * 1024;

/// Which convolution inputs a training pass keeps on its tape for the
/// backward pass ([`Input::Kept`]) rather than making them again there
/// from their BatchNorm's input ([`Input::Made`]): the same values either
/// way, so the same bits; only the speed and the memory differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeptInputs {
    /// Those of more than 256 KiB per image: what `pretrain` and
    /// `finetune` run — at the paper size every one, at the quick
    /// preset's none.
    #[default]
    Large,
    /// Every one.
    All,
    /// None of them.
    Nothing,
}

impl KeptInputs {
    /// Whether the tape keeps a made input of `len` floats for a batch of
    /// `n` images ([`KEEP_ABOVE`] for [`KeptInputs::Large`]).
    fn keeps(self, len: usize, n: usize) -> bool {
        match self {
            Self::Large => len / n.max(1) > KEEP_ABOVE,
            Self::All => true,
            Self::Nothing => false,
        }
    }
}

/// The input `make` makes from `from` (`n` images) for a convolution in
/// the training forward pass: kept in `keep` where `kept` keeps it, else
/// made chunk by chunk and not kept (`keep` freed).
fn made<'a>(kept: KeptInputs, from: &'a [f32], n: usize, make: &'a MakeFn<'a>, keep: &'a mut Vec<f32>) -> Input<'a> {
    if kept.keeps(from.len(), n) {
        Input::Kept { from, into: resized(keep, from.len()), make }
    } else {
        *keep = Vec::new();
        Input::Made { from, make }
    }
}

/// The input [`made`] gave the forward pass, for the backward pass: what
/// it kept in `keep`, or made again from `from`.
fn remade<'a>(kept: KeptInputs, from: &'a [f32], n: usize, make: &'a MakeFn<'a>, keep: &'a [f32]) -> Input<'a> {
    if kept.keeps(from.len(), n) {
        Input::Ready(&keep[..from.len()])
    } else {
        Input::Made { from, make }
    }
}

/// Loads `weight` into the Winograd form of `conv` held in `slot` (made by
/// `make` the first time).
fn load_winograd<'a>(slot: &'a mut Option<Winograd>, weight: &[f32], make: impl FnOnce() -> Winograd) -> &'a Winograd {
    match slot {
        Some(wg) => wg.load(weight),
        None => *slot = Some(make()),
    }
    slot.as_ref().expect("just set")
}

/// The activations of a training forward pass, kept for the backward pass
/// and reused (not reallocated) from step to step.
#[derive(Default, Debug)]
pub struct Tape {
    n: usize,
    h: usize,
    w: usize,
    input: Vec<f32>,
    stem_out: Vec<f32>,
    stem_stats: BatchStats,
    blocks: Vec<BlockTape>,
    last: Vec<f32>,
    last_hw: (usize, usize),
    pooled: Vec<f32>,
    d1: Vec<f32>,
    d1_stats: BatchStats,
    d1_act: Vec<f32>,
    d2: Vec<f32>,
    d2_stats: BatchStats,
    /// Each BatchNorm layer's batch moments, in [`ResNet::batch_norms`]
    /// order, for the running statistics.
    moments: Vec<BatchMoments>,
    // Gradient buffers.
    g0: Vec<f32>,
    g1: Vec<f32>,
    g2: Vec<f32>,
    g3: Vec<f32>,
    /// Which 3×3 stride-1 convolutions run in the Winograd domain.
    winograd: TrainingWinograd,
    /// Which convolution inputs the next forward pass keeps.
    kept: KeptInputs,
    /// Which ones the last forward pass kept (what its backward pass reads).
    pass_kept: KeptInputs,
}

impl Tape {
    /// A tape whose passes run the convolutions `winograd` says in the
    /// Winograd domain (a default tape: [`TrainingWinograd::Large`]).
    pub fn new(winograd: TrainingWinograd) -> Self {
        Self { winograd, ..Self::default() }
    }

    /// Keeps the convolution inputs `which` says for the backward pass
    /// (default [`KeptInputs::Large`]), from the next forward pass on.
    pub fn set_kept_inputs(&mut self, which: KeptInputs) {
        self.kept = which;
    }
}

/// Which 3×3 stride-1 convolutions a training pass runs in the Winograd
/// domain, in all three passes (forward, input and weight gradients); the
/// others are direct products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TrainingWinograd {
    /// None.
    Off,
    /// Those on 32 channels or more whose maps are large enough for a
    /// training step to gain ([`Winograd::pays_in_training`]): what
    /// `pretrain` and `finetune` run — at the paper size the identity
    /// blocks of the second and third stages, at the quick preset's none.
    #[default]
    Large,
    /// Every one on 32 channels or more ([`Winograd::pays`]), whatever its
    /// map: for the tests, which hold it to the direct products on small
    /// images.
    Wide,
}

impl TrainingWinograd {
    /// Whether `conv` on an `h × w` input runs in the Winograd domain.
    pub fn runs(self, conv: &Conv, h: usize, w: usize) -> bool {
        match self {
            Self::Off => false,
            Self::Large => Winograd::pays_in_training(conv, h, w),
            Self::Wide => Winograd::pays(conv),
        }
    }
}

fn resized(v: &mut Vec<f32>, len: usize) -> &mut Vec<f32> {
    v.resize(len, 0.0);
    v
}

/// The first `len` floats of the scratch buffer `v`, grown with zeros
/// where it is shorter and never shrunk: the backward pass reuses a few
/// buffers for layers of every size, and resizing them to each layer
/// zeroed the grown part every time, though each layer writes all of its
/// output. The zeroing was 1–2% of a quick training profile's samples;
/// training steps measured 4–11% faster without it (the rest not pinned
/// down).
fn scratch(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

impl Dense {
    /// `y = x·W` on a batch of `n` rows.
    fn forward(&self, x: &[f32], n: usize, y: &mut [f32]) {
        let w = MatRef::new(&self.weight, self.inputs, self.outputs);
        matmul(y, self.outputs, MatRef::new(x, n, self.inputs), w, false, Threads::All);
    }

    /// From `dy = ∂L/∂y` for inputs `x`: `dweight = xᵀ·dy`, and `dx =
    /// dy·Wᵀ` into the first `n × inputs` floats of `dx` ([`scratch`]).
    fn backward(&self, x: &[f32], dy: &[f32], n: usize, dweight: &mut [f32], dx: &mut Vec<f32>) {
        let dym = MatRef::new(dy, n, self.outputs);
        matmul(dweight, self.outputs, MatRef::new(x, n, self.inputs).t(), dym, false, Threads::All);
        let wt = MatRef::new(&self.weight, self.inputs, self.outputs).t();
        matmul(scratch(dx, n * self.inputs), self.inputs, dym, wt, false, Threads::All);
    }
}

impl ResNet {
    /// Training forward pass: BatchNorm on batch statistics (its running
    /// statistics updated), activations kept in `tape`.
    ///
    /// # Shapes
    /// `x`: `[n, bands, h, w]` (NCHW) → `[n, repr_dim]`.
    ///
    /// # Panics
    /// If `x` is not `n × bands × h × w` floats.
    pub fn forward_train(&mut self, x: &[f32], n: usize, h: usize, w: usize, tape: &mut Tape) -> Vec<f32> {
        let out = self.forward_tape(x, n, h, w, tape);
        self.update_running(tape);
        out
    }

    /// Moves the BatchNorm running statistics towards the batch moments of
    /// the forward pass on `tape`.
    fn update_running(&mut self, tape: &Tape) {
        for (bn, m) in self.batch_norms_mut().into_iter().zip(&tape.moments) {
            bn.update_running(m);
        }
    }

    /// [`forward_train`](Self::forward_train) leaving the running statistics
    /// as they are: the batch moments stay on `tape` (see
    /// [`update_running`](Self::update_running)).
    fn forward_tape(&self, x: &[f32], n: usize, h: usize, w: usize, tape: &mut Tape) -> Vec<f32> {
        on_pool(|| self.forward_tape_here(x, n, h, w, tape))
    }

    /// [`forward_tape`](Self::forward_tape) on the calling thread.
    fn forward_tape_here(&self, x: &[f32], n: usize, h: usize, w: usize, tape: &mut Tape) -> Vec<f32> {
        self.check_input(x, n, h, w);
        tape.moments.clear();
        // The dense layers' BatchNorm: normalises, keeps the moments.
        let bn = |layer: &BatchNorm, x: &[f32], relu: bool, y: &mut [f32], moments: &mut Vec<BatchMoments>| {
            let (stats, m) = layer.forward_batch(x, relu, y);
            moments.push(m);
            stats
        };
        // The convolutions' BatchNorm layers, in `batch_norms` order too:
        // each takes its statistics from the moments the convolution before
        // it took of each chunk of its output as it wrote it, and its map is
        // applied by the convolution after it to each chunk of its input
        // just before reading it, and again by that convolution's weight
        // gradient in the backward pass where it is not kept ([`made`]).
        let stats = |layer: &BatchNorm, parts: &[ChunkMoments], moments: &mut Vec<BatchMoments>| {
            let (stats, m) = layer.stats_from_chunks(parts);
            moments.push(m);
            stats
        };
        (tape.n, tape.h, tape.w) = (n, h, w);
        tape.pass_kept = tape.kept;
        nchw_to_nhwc(x, n, self.bands(), h, w, &mut tape.input);
        let c = &self.stem.conv;
        resized(&mut tape.stem_out, n * h * w * c.cout);
        let stem_in = Input::Ready(&tape.input);
        let parts = c.forward_with(stem_in, n, h, w, &self.stem.weight, &mut tape.stem_out, false, |_, y| {
            self.stem_bn.chunk_moments(y)
        });
        tape.blocks.resize_with(self.blocks.len(), BlockTape::default);
        let mut act = std::mem::take(&mut tape.blocks[0].x);
        resized(&mut act, tape.stem_out.len());
        tape.stem_stats = stats(&self.stem_bn, &parts, &mut tape.moments);
        self.stem_bn.batch_map(&tape.stem_stats, true).apply_all(&tape.stem_out, &mut act);
        let (mut h, mut w) = (h, w);
        // Block 0's input is the stem's activation, not a convolution's output.
        let mut parts = self.blocks.first().map(|b| b.bn_in.moments_of(&act)).unwrap_or_default();
        for (i, b) in self.blocks.iter().enumerate() {
            let bt = &mut tape.blocks[i];
            bt.x = act;
            (bt.h, bt.w) = (h, w);
            bt.s_in = stats(&b.bn_in, &parts, &mut tape.moments);
            bt.map_in = b.bn_in.batch_map(&bt.s_in, true);
            let map = &bt.map_in;
            let make = |x: &[f32], y: &mut [f32]| map.apply(x, y);
            let t = made(tape.pass_kept, &bt.x, n, &make, &mut bt.t);
            let ca = &b.conv_a.conv;
            resized(&mut bt.a, n * h * w * ca.cout);
            let parts_a =
                ca.forward_with(t, n, h, w, &b.conv_a.weight, &mut bt.a, false, |_, y| b.bn_a.chunk_moments(y));
            bt.s_a = stats(&b.bn_a, &parts_a, &mut tape.moments);
            bt.map_a = b.bn_a.batch_map(&bt.s_a, true);
            let map = &bt.map_a;
            let cb = &b.conv_b.conv;
            let (ho, wo) = cb.out_size(h, w);
            resized(&mut bt.b, n * ho * wo * cb.cout);
            let moments_b = |_, y: &mut [f32]| b.bn_b.chunk_moments(y);
            let make = |x: &[f32], y: &mut [f32]| map.apply(x, y);
            let ta = made(tape.pass_kept, &bt.a, n, &make, &mut bt.ta);
            let parts_b = if tape.winograd.runs(cb, h, w) {
                let wg = load_winograd(&mut bt.winograd, &b.conv_b.weight, || Winograd::new(cb, &b.conv_b.weight));
                wg.forward_with(ta, n, h, w, &mut bt.b, false, moments_b)
            } else {
                cb.forward_with(ta, n, h, w, &b.conv_b.weight, &mut bt.b, false, moments_b)
            };
            bt.s_b = stats(&b.bn_b, &parts_b, &mut tape.moments);
            bt.map_b = b.bn_b.batch_map(&bt.s_b, true);
            let cc = &b.conv_c.conv;
            let next = match tape.blocks.get_mut(i + 1) {
                Some(nt) => &mut nt.x,
                None => &mut tape.last,
            };
            let mut out = std::mem::take(next);
            let bt = &mut tape.blocks[i];
            resized(&mut out, n * ho * wo * cc.cout);
            // A projection is written first and conv_c added onto it; an
            // identity is added onto each chunk of conv_c's output as it is
            // written, not copied in a pass of its own. Where conv_c's
            // inner dimension is one block of its product (every preset's
            // width), that is the same one addition, so the same bits.
            let identity = match &b.shortcut {
                Some(s) => {
                    s.conv.forward(&bt.x, n, h, w, &s.weight, &mut out, false);
                    None
                }
                None => Some(&bt.x),
            };
            // The block's output is the next block's BatchNorm input: its
            // moments are taken here, after the last write.
            let next_bn = self.blocks.get(i + 1).map(|nb| &nb.bn_in);
            let map = &bt.map_b;
            let make = |x: &[f32], y: &mut [f32]| map.apply(x, y);
            let tb = made(tape.pass_kept, &bt.b, n, &make, &mut bt.tb);
            let after = |at: usize, y: &mut [f32]| {
                if let Some(x) = identity {
                    simd::add_into(y, &x[at..at + y.len()]);
                }
                next_bn.map(|bn| bn.chunk_moments(y))
            };
            let parts_next = cc.forward_with(tb, n, ho, wo, &b.conv_c.weight, &mut out, identity.is_none(), after);
            parts = parts_next.into_iter().flatten().collect();
            act = out;
            (h, w) = (ho, wo);
        }
        tape.last = act;
        tape.last_hw = (h, w);
        // Global average pooling.
        let ch = self.dense1.inputs;
        let pooled = resized(&mut tape.pooled, n * ch);
        let inv = 1.0 / (h * w) as f32;
        pooled.par_chunks_mut(ch).zip(tape.last.par_chunks(h * w * ch)).for_each(|(p, img)| {
            p.fill(0.0);
            simd::add_rows(p, img);
            p.iter_mut().for_each(|p| *p *= inv);
        });
        self.dense1.forward(&tape.pooled, n, resized(&mut tape.d1, n * self.dense1.outputs));
        resized(&mut tape.d1_act, tape.d1.len());
        tape.d1_stats = bn(&self.dense1_bn, &tape.d1, true, &mut tape.d1_act, &mut tape.moments);
        self.dense2.forward(&tape.d1_act, n, resized(&mut tape.d2, n * self.dense2.outputs));
        let mut out = vec![0f32; tape.d2.len()];
        tape.d2_stats = bn(&self.dense2_bn, &tape.d2, false, &mut out, &mut tape.moments);
        out
    }

    /// Backward pass of the last [`forward_train`](Self::forward_train) from
    /// `dout = ∂L/∂output` (`[n, repr_dim]`): writes `∂L/∂param` into the
    /// matching tensor of `grads` (a network of the same shape).
    ///
    /// # Panics
    /// If `grads` or `dout` do not match the network and the tape.
    pub fn backward(&self, tape: &mut Tape, dout: &[f32], grads: &mut ResNet) {
        on_pool(|| self.backward_here(tape, dout, grads))
    }

    /// [`backward`](Self::backward) on the calling thread.
    fn backward_here(&self, tape: &mut Tape, dout: &[f32], grads: &mut ResNet) {
        let n = tape.n;
        assert_eq!(dout.len(), n * self.repr_dim(), "output gradient size");
        let t = tape;
        // Dense head: BN, then the dense layer, twice.
        let g = &mut grads.dense2_bn;
        let g0 = scratch(&mut t.g0, t.d2.len());
        self.dense2_bn.backward(&t.d2, &t.d2_stats, false, dout, g0, false, &mut g.gamma, &mut g.beta);
        self.dense2.backward(&t.d1_act, g0, n, &mut grads.dense2.weight, &mut t.g1);
        let g = &mut grads.dense1_bn;
        let (g0, g1) = (scratch(&mut t.g0, t.d1.len()), &t.g1[..t.d1.len()]);
        self.dense1_bn.backward(&t.d1, &t.d1_stats, true, g1, g0, false, &mut g.gamma, &mut g.beta);
        self.dense1.backward(&t.pooled, g0, n, &mut grads.dense1.weight, &mut t.g1);
        // Pooling: every pixel gets its image's gradient / (h·w).
        let (h, w) = t.last_hw;
        let ch = self.dense1.inputs;
        let inv = 1.0 / (h * w) as f32;
        let mut dy = std::mem::take(&mut t.g2);
        let mut dy_len = n * h * w * ch;
        scratch(&mut dy, dy_len).par_chunks_mut(h * w * ch).zip(t.g1[..n * ch].par_chunks(ch)).for_each(|(img, gp)| {
            for row in img.chunks_exact_mut(ch) {
                for (r, g) in row.iter_mut().zip(gp) {
                    *r = g * inv;
                }
            }
        });
        let mut dx = std::mem::take(&mut t.g3);
        for (i, b) in self.blocks.iter().enumerate().rev() {
            let cb = &b.conv_b.conv;
            let winograd = t.winograd.runs(cb, t.blocks[i].h, t.blocks[i].w);
            if winograd {
                let w = &b.conv_b.weight;
                load_winograd(&mut t.blocks[i].winograd_back, w, || Winograd::for_input_gradient(cb, w));
            }
            let bt = &t.blocks[i];
            let gb = &mut grads.blocks[i];
            let (h, w) = (bt.h, bt.w);
            let (ho, wo) = b.conv_b.conv.out_size(h, w);
            let dyb = &dy[..dy_len];
            // Each BatchNorm's sums are taken from each chunk of its output
            // gradient as the convolution after it writes the chunk.
            let (plan_b, plan_a, plan_in) =
                (b.bn_b.grad_plan(&bt.s_b, true), b.bn_a.grad_plan(&bt.s_a, true), b.bn_in.grad_plan(&bt.s_in, true));
            // Each convolution's input for its weight gradient, as the
            // forward pass kept it or made again from its BatchNorm's input.
            let make_b = |x: &[f32], y: &mut [f32]| bt.map_b.apply(x, y);
            let make_a = |x: &[f32], y: &mut [f32]| bt.map_a.apply(x, y);
            let make_in = |x: &[f32], y: &mut [f32]| bt.map_in.apply(x, y);
            let tb = remade(t.pass_kept, &bt.b, n, &make_b, &bt.tb);
            let ta = remade(t.pass_kept, &bt.a, n, &make_a, &bt.ta);
            let tx = remade(t.pass_kept, &bt.x, n, &make_in, &bt.t);
            // conv_c, then bn_b.
            b.conv_c.conv.backward_weight_with(tb, n, ho, wo, dyb, &mut gb.conv_c.weight);
            let g0 = scratch(&mut t.g0, bt.b.len());
            let sums = b.conv_c.conv.backward_input_with(dyb, n, ho, wo, &b.conv_c.weight, g0, false, |at, g| {
                plan_b.sums(&bt.b[at..at + g.len()], g)
            });
            let g1 = scratch(&mut t.g1, bt.b.len());
            plan_b.backward(&sums, &bt.b, g0, g1, GradInto::Write, &mut gb.bn_b.gamma, &mut gb.bn_b.beta);
            // conv_b (strided), then bn_a.
            if winograd {
                Winograd::weight_gradient(cb, ta, n, h, w, g1, &mut gb.conv_b.weight);
            } else {
                cb.backward_weight_with(ta, n, h, w, g1, &mut gb.conv_b.weight);
            }
            let g0 = scratch(&mut t.g0, bt.a.len());
            let sums_a = |at: usize, g: &mut [f32]| plan_a.sums(&bt.a[at..at + g.len()], g);
            let sums = match &bt.winograd_back {
                Some(wg) if winograd => wg.forward_with(Input::Ready(g1), n, h, w, g0, false, sums_a),
                _ => cb.backward_input_with(g1, n, h, w, &b.conv_b.weight, g0, false, sums_a),
            };
            let g1 = scratch(&mut t.g1, bt.a.len());
            plan_a.backward(&sums, &bt.a, g0, g1, GradInto::Write, &mut gb.bn_a.gamma, &mut gb.bn_a.beta);
            // conv_a, then bn_in into dx.
            b.conv_a.conv.backward_weight_with(tx, n, h, w, g1, &mut gb.conv_a.weight);
            let g0 = scratch(&mut t.g0, bt.x.len());
            let sums = b.conv_a.conv.backward_input_with(g1, n, h, w, &b.conv_a.weight, g0, false, |at, g| {
                plan_in.sums(&bt.x[at..at + g.len()], g)
            });
            let dxb = scratch(&mut dx, bt.x.len());
            // The shortcut: an identity's gradient is added as bn_in's is
            // written; a projection's after.
            let (bn_in_gamma, bn_in_beta) = (&mut gb.bn_in.gamma, &mut gb.bn_in.beta);
            match (&b.shortcut, &mut gb.shortcut) {
                (Some(s), Some(gs)) => {
                    plan_in.backward(&sums, &bt.x, g0, dxb, GradInto::Write, bn_in_gamma, bn_in_beta);
                    s.conv.backward_weight(&bt.x, n, h, w, dyb, &mut gs.weight);
                    s.conv.backward_input(dyb, n, h, w, &s.weight, dxb, true);
                }
                (None, None) => plan_in.backward(&sums, &bt.x, g0, dxb, GradInto::Plus(dyb), bn_in_gamma, bn_in_beta),
                _ => panic!("gradient network differs from the network in block {i}"),
            }
            std::mem::swap(&mut dy, &mut dx);
            dy_len = bt.x.len();
        }
        // Stem.
        let (h, w) = (t.h, t.w);
        let g0 = scratch(&mut t.g0, t.stem_out.len());
        let g = &mut grads.stem_bn;
        self.stem_bn.backward(&t.stem_out, &t.stem_stats, true, &dy[..dy_len], g0, false, &mut g.gamma, &mut g.beta);
        self.stem.conv.backward_weight(&t.input, n, h, w, g0, &mut grads.stem.weight);
        t.g2 = dy;
        t.g3 = dx;
    }
}

/// Runs `f` on a thread of the current rayon pool: in place when called
/// from one, otherwise on the global pool while the caller blocks until it
/// is done. A training pass makes hundreds of parallel calls, one or more
/// per layer; each made from a thread outside the pool hands its work to
/// the pool's threads and sleeps until they finish, two context switches,
/// while the pool's threads, idle between calls, spin and yield against
/// the caller for the same cores. Measured at the quick preset on 2 cores:
/// fine-tuning 17% and training from scratch 21% faster.
fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// One view's batch for [`Trainer::forward_views`].
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    /// `[n, bands, h, w]` (NCHW), as [`ResNet::forward_train`] takes it.
    pub x: &'a [f32],
    /// Images.
    pub n: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Whether its batch statistics move the running statistics (false for
    /// views of another size than inference sees; see
    /// [`Trainer::forward_keeping_running_stats`]).
    pub running_stats: bool,
}

/// A training session of a [`ResNet`] with Adam: the network, its gradient
/// buffers, the optimiser's moments and one activation tape per view (NNCLR
/// passes two augmented views through the encoder each step, each with its
/// own batch statistics), all reused from step to step.
pub struct Trainer {
    /// The network being trained.
    pub net: ResNet,
    /// `∂L/∂param` of the last backward pass, shaped like `net`.
    pub grads: ResNet,
    /// Adam's settings.
    pub adam: AdamConfig,
    moments: Vec<Moments>,
    tapes: Vec<Tape>,
    /// The gradients of views 1, 2, … before they are summed into `grads`.
    view_grads: Vec<ResNet>,
    /// Whether `grads` holds a backward pass not yet stepped on.
    fresh_grads: bool,
    /// Which 3×3 convolutions run in the Winograd domain.
    winograd: TrainingWinograd,
    /// Which convolution inputs the tapes keep for the backward passes.
    kept: KeptInputs,
    /// Whether several views' passes run side by side ([`forward_views`](Self::forward_views)).
    side_by_side: bool,
    /// The pools that run them, made on first use.
    lanes: Option<Lanes>,
}

/// Thread pools that run views side by side, each view's passes on one
/// pool, the pools sharing `threads` threads. Within a pool a pass's
/// layers split their work as everywhere else; the gain is that the
/// threads of different pools never wait for one another inside a layer.
struct Lanes {
    pools: Vec<rayon::ThreadPool>,
    threads: usize,
    /// Whether their threads flush denormals (as the caller's did).
    flush: bool,
}

impl Lanes {
    /// Runs `jobs` on the pools, job `j` on pool `j mod pools`, and returns
    /// their results in order. Views come in pairs of one size (two global
    /// views, then local views), so this shares the work evenly.
    fn run<T: Send>(&self, jobs: Vec<impl FnOnce() -> T + Send>) -> Vec<T> {
        let count = self.pools.len();
        let mut groups: Vec<Vec<(usize, _)>> = (0..count).map(|_| Vec::new()).collect();
        for (j, job) in jobs.into_iter().enumerate() {
            groups[j % count].push((j, job));
        }
        let mut results: Vec<Option<T>> =
            std::iter::repeat_with(|| None).take(groups.iter().map(Vec::len).sum()).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = groups
                .into_iter()
                .zip(&self.pools)
                .map(|(group, pool)| {
                    s.spawn(move || pool.install(|| group.into_iter().map(|(j, job)| (j, job())).collect::<Vec<_>>()))
                })
                .collect();
            for h in handles {
                match h.join() {
                    Ok(done) => done.into_iter().for_each(|(j, r)| results[j] = Some(r)),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
        results.into_iter().map(|r| r.expect("every job ran")).collect()
    }
}

impl Trainer {
    /// Starts training `net` with fresh Adam moments.
    pub fn new(net: ResNet, adam: AdamConfig) -> Self {
        let mut grads = net.clone();
        grads.params_mut().into_iter().for_each(|g| g.fill(0.0));
        let moments = vec![Moments::default(); net.params().len()];
        Self {
            net,
            grads,
            adam,
            moments,
            tapes: Vec::new(),
            view_grads: Vec::new(),
            side_by_side: true,
            lanes: None,
            fresh_grads: false,
            winograd: TrainingWinograd::default(),
            kept: KeptInputs::default(),
        }
    }

    /// Which 3×3 stride-1 convolutions the passes run in the Winograd
    /// domain (default [`TrainingWinograd::Large`], as `pretrain` and
    /// `finetune` run; `bench encoder` times it against
    /// [`TrainingWinograd::Off`]). Results agree to float rounding, which
    /// training's chaos grows over many steps as any change of rounding
    /// does.
    pub fn set_winograd(&mut self, which: TrainingWinograd) {
        self.winograd = which;
        self.tapes.iter_mut().for_each(|t| t.winograd = which);
    }

    /// Which convolution inputs the training passes keep for the backward
    /// passes (default [`KeptInputs::Large`]): the same results, bit for
    /// bit, so that the tests can hold the two paths to each other.
    pub fn set_kept_inputs(&mut self, which: KeptInputs) {
        self.kept = which;
        self.tapes.iter_mut().for_each(|t| t.kept = which);
    }

    /// Whether [`forward_views`](Self::forward_views) and
    /// [`backward`](Self::backward) run several views side by side (the
    /// default) or one after the other, each with every thread: the same
    /// results, so that `bench encoder` can time the two on one trainer.
    pub fn set_side_by_side(&mut self, on: bool) {
        self.side_by_side = on;
    }

    /// The pools to run `views` views side by side on: two (view j on pool
    /// j mod 2, so that pretraining's pairs of views of one size split
    /// evenly), sharing the caller's pool's threads. `None` where there is
    /// one view or one thread, where the trainer runs views one at a time,
    /// or where a pool cannot be made (then the views run one at a time,
    /// with the same results).
    ///
    /// Each pool's threads flush denormals if the calling thread does, as
    /// the command line's threads all do; a library caller whose threads
    /// differ in that gets the calling thread's rule. Called from inside
    /// parallel work (several trainers in a `par_iter`), each trainer still
    /// makes pools as large as the whole pool: run such trainers with
    /// [`set_side_by_side`](Self::set_side_by_side)`(false)`.
    fn lanes(&mut self, views: usize) -> Option<&Lanes> {
        let threads = rayon::current_num_threads();
        let count = views.min(threads).min(2);
        if !self.side_by_side || count < 2 {
            return None;
        }
        let flush = tidalscope_core::denormal::flushing();
        let fits = self.lanes.as_ref().is_some_and(|l| l.threads == threads && l.flush == flush);
        if !fits {
            // The first pool takes the odd thread out.
            let pool = |i: usize| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads / count + usize::from(i < threads % count))
                    .start_handler(move |_| {
                        if flush {
                            tidalscope_core::denormal::flush_denormals();
                        }
                    })
                    .build()
            };
            let pools: Result<Vec<_>, _> = (0..count).map(pool).collect();
            self.lanes = pools.ok().map(|pools| Lanes { pools, threads, flush });
        }
        self.lanes.as_ref()
    }

    /// Training forward pass of view number `view` (0, 1, …; see
    /// [`ResNet::forward_train`]). Views are kept until [`backward`](Self::backward).
    pub fn forward(&mut self, view: usize, x: &[f32], n: usize, h: usize, w: usize) -> Vec<f32> {
        self.tapes_for(view + 1);
        self.net.forward_train(x, n, h, w, &mut self.tapes[view])
    }

    /// At least `views` tapes.
    fn tapes_for(&mut self, views: usize) {
        if self.tapes.len() < views {
            let (winograd, kept) = (self.winograd, self.kept);
            self.tapes.resize_with(views, || Tape { kept, ..Tape::new(winograd) });
        }
    }

    /// [`forward`](Self::forward), leaving the BatchNorm running statistics
    /// as they were: for views of another size than inference sees (the
    /// small local crops of multi-crop pretraining), whose batch statistics
    /// would skew the ones inference normalises with.
    pub fn forward_keeping_running_stats(&mut self, view: usize, x: &[f32], n: usize, h: usize, w: usize) -> Vec<f32> {
        self.tapes_for(view + 1);
        self.net.forward_tape(x, n, h, w, &mut self.tapes[view])
    }

    /// The training forward passes of views 0, 1, … (`views` in order) side
    /// by side, on two thread pools where there are two threads or more: the
    /// same outputs, tapes and running statistics as [`forward`](Self::forward)
    /// (or [`forward_keeping_running_stats`](Self::forward_keeping_running_stats))
    /// view after view, bit for bit, with far fewer waits for the other
    /// thread than one layer at a time across all of them.
    pub fn forward_views(&mut self, views: &[View<'_>]) -> Vec<Vec<f32>> {
        self.tapes_for(views.len());
        let side_by_side = self.lanes(views.len()).is_some();
        let net = &self.net;
        let tapes = &mut self.tapes[..views.len()];
        let outs: Vec<Vec<f32>> = match &self.lanes {
            Some(lanes) if side_by_side => lanes.run(
                tapes
                    .iter_mut()
                    .zip(views)
                    .map(|(tape, v)| move || net.forward_tape(v.x, v.n, v.h, v.w, tape))
                    .collect(),
            ),
            _ => tapes.iter_mut().zip(views).map(|(tape, v)| net.forward_tape(v.x, v.n, v.h, v.w, tape)).collect(),
        };
        // The running statistics moved view after view, as one at a time would.
        for (tape, v) in self.tapes.iter().zip(views) {
            if v.running_stats {
                self.net.update_running(tape);
            }
        }
        outs
    }

    /// Backward pass from `∂L/∂output` of each view (in view order) into
    /// [`grads`](Self::grads), summed over the views. The views' passes run
    /// side by side (as in [`forward_views`](Self::forward_views)), each
    /// into its own gradients, which are then added in view order: the same
    /// sums as one view at a time.
    ///
    /// # Panics
    /// If there are more gradients than views run forward.
    pub fn backward(&mut self, douts: &[&[f32]]) {
        assert!(
            !douts.is_empty() && douts.len() <= self.tapes.len(),
            "{} output gradients for {} views",
            douts.len(),
            self.tapes.len()
        );
        self.fresh_grads = true;
        let extra = douts.len() - 1;
        while self.view_grads.len() < extra {
            self.view_grads.push(self.net.clone());
        }
        let side_by_side = self.lanes(douts.len()).is_some();
        let net = &self.net;
        let targets: Vec<&mut ResNet> =
            std::iter::once(&mut self.grads).chain(self.view_grads[..extra].iter_mut()).collect();
        let passes = targets.into_iter().zip(self.tapes[..douts.len()].iter_mut()).zip(douts);
        match &self.lanes {
            Some(lanes) if side_by_side => {
                lanes.run(passes.map(|((g, tape), dout)| move || net.backward(tape, dout, g)).collect());
            }
            _ => passes.for_each(|((g, tape), dout)| net.backward(tape, dout, g)),
        }
        for g in &self.view_grads[..extra] {
            for (total, part) in self.grads.params_mut().into_iter().zip(g.params()) {
                total.iter_mut().zip(part).for_each(|(t, p)| *t += p);
            }
        }
    }

    /// Adam's moments, one per parameter tensor in [`ResNet::params`]
    /// order: what a checkpoint must keep to resume exactly.
    pub fn moments(&self) -> &[Moments] {
        &self.moments
    }

    /// Restores moments saved from [`moments`](Self::moments).
    ///
    /// # Errors
    /// When their number or sizes do not match the network's parameters.
    pub fn set_moments(&mut self, saved: Vec<Moments>) -> Result<(), String> {
        let params = self.net.params();
        if saved.len() != params.len() {
            return Err(format!("{} moment tensors for {} parameters", saved.len(), params.len()));
        }
        for (i, (s, p)) in saved.iter().zip(&params).enumerate() {
            if !(s.m.is_empty() && s.v.is_empty()) && (s.m.len() != p.len() || s.v.len() != p.len()) {
                return Err(format!(
                    "moments of parameter {i}: {} and {} values for {}",
                    s.m.len(),
                    s.v.len(),
                    p.len()
                ));
            }
        }
        self.moments = saved;
        Ok(())
    }

    /// One Adam step on every parameter with the last gradients.
    ///
    /// # Panics
    /// Without a [`backward`](Self::backward) since the last step.
    pub fn step(&mut self, lr: f32) {
        assert!(std::mem::take(&mut self.fresh_grads), "an Adam step needs a backward pass first");
        let adam = self.adam;
        let grads = self.grads.params();
        let (params, moments) = (self.net.params_mut(), &mut self.moments);
        on_pool(|| {
            params
                .into_par_iter()
                .zip(grads.into_par_iter())
                .zip(moments.par_iter_mut())
                .for_each(|((p, g), m)| adam.step(lr, p, g, m))
        });
    }
}
