//! Keras models in tidalscope: the published NNCLR encoder and fine-tuned
//! classifier of Desmons et al. (2023), read by `tidalscope_io::keras`, are
//! mapped onto [`Encoder`] and [`Classifier`] by their structure, and any
//! small Keras network of supported layers can be run as it is
//! ([`run_network`]) to check a mapping against TensorFlow's numbers.
//!
//! The mapping follows the graph from the input — stem, then each block's
//! pre-activation path and shortcut, then the dense head — so layer names
//! and Keras' per-session counters (`conv2d_17`) never matter. A model that
//! differs from ours gets one error listing every difference found.
//!
//! Layouts: Keras Conv2D kernels are `[kh, kw, in, out]`, burn's
//! `[out, in, kh, kw]`; Dense kernels are `[in, out]` in both. BatchNorm ε
//! comes from each layer's config.

use crate::classifier::{Classifier, ClassifierConfig};
use crate::encoder::{Bottleneck, Encoder, EncoderConfig};
use crate::params::replaced;
use burn::module::RunningState;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::TensorData;
use tidalscope_io::keras::{KerasNetwork, Layer, Op, UniqueNames, Weight};

/// Why a Keras model could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KerasError {
    /// Its layers are not those of our encoder or classifier.
    #[error("{file}: the Keras model's layers do not match tidalscope's {target}:\n  - {}", differences.join("\n  - "))]
    Mismatch {
        /// The file or folder.
        file: String,
        /// "encoder" or "classifier".
        target: &'static str,
        /// Every difference found.
        differences: Vec<String>,
    },
    /// A layer's weights are missing or mis-shaped, or a layer cannot run.
    #[error("{file}: layer {layer}: {message}")]
    Layer {
        /// The file or folder.
        file: String,
        /// The layer's path.
        layer: String,
        /// What is wrong.
        message: String,
    },
}

fn layer_error(net: &KerasNetwork, l: &Layer, message: impl Into<String>) -> KerasError {
    KerasError::Layer { file: net.source.display().to_string(), layer: l.path.clone(), message: message.into() }
}

fn weight<'a>(net: &KerasNetwork, l: &'a Layer, name: &str, shape: &[usize]) -> Result<&'a Weight, KerasError> {
    let w = l.weights.get(name).ok_or_else(|| layer_error(net, l, format!("weight {name:?} is missing")))?;
    if w.shape != shape {
        return Err(layer_error(net, l, format!("weight {name:?} has shape {:?}, expected {shape:?}", w.shape)));
    }
    Ok(w)
}

fn tensor<const D: usize>(w: &Weight, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(w.values.clone(), w.shape.clone()), device)
}

/// A burn convolution holding a Keras Conv2D's weights (`in_ch` inputs).
fn conv(net: &KerasNetwork, l: &Layer, in_ch: usize, device: &Device) -> Result<Conv2d, KerasError> {
    let Op::Conv2D { filters, kernel, strides, same, bias, .. } = &l.op else {
        return Err(layer_error(net, l, "not a Conv2D"));
    };
    let k = weight(net, l, "kernel", &[kernel[0], kernel[1], in_ch, *filters])?;
    let mut c = Conv2dConfig::new([in_ch, *filters], *kernel)
        .with_stride(*strides)
        .with_padding(if *same { PaddingConfig2d::Same } else { PaddingConfig2d::Valid })
        .with_bias(*bias)
        .init(device);
    c.weight = replaced(&c.weight, tensor::<4>(k, device).permute([3, 2, 0, 1])); // HWIO → OIHW
    if *bias {
        let b = weight(net, l, "bias", &[*filters])?;
        c.bias = c.bias.as_ref().map(|old| replaced(old, tensor::<1>(b, device)));
    }
    Ok(c)
}

/// A burn BatchNorm holding a Keras BatchNormalization's weights.
fn batch_norm(
    net: &KerasNetwork,
    l: &Layer,
    ch: usize,
    momentum: f64,
    device: &Device,
) -> Result<BatchNorm, KerasError> {
    let Op::BatchNorm { epsilon, center, scale, .. } = &l.op else {
        return Err(layer_error(net, l, "not a BatchNormalization"));
    };
    let mut bn = BatchNormConfig::new(ch).with_epsilon(*epsilon).with_momentum(momentum).init(device);
    if *scale {
        bn.gamma = replaced(&bn.gamma, tensor::<1>(weight(net, l, "gamma", &[ch])?, device));
    }
    if *center {
        bn.beta = replaced(&bn.beta, tensor::<1>(weight(net, l, "beta", &[ch])?, device));
    }
    bn.running_mean = RunningState::new(tensor::<1>(weight(net, l, "moving_mean", &[ch])?, device));
    bn.running_var = RunningState::new(tensor::<1>(weight(net, l, "moving_variance", &[ch])?, device));
    Ok(bn)
}

/// A burn Linear holding a Keras Dense's weights.
fn dense(net: &KerasNetwork, l: &Layer, in_dim: usize, device: &Device) -> Result<Linear, KerasError> {
    let Op::Dense { units, bias, .. } = &l.op else {
        return Err(layer_error(net, l, "not a Dense"));
    };
    let mut d = LinearConfig::new(in_dim, *units).with_bias(*bias).init(device);
    d.weight = replaced(&d.weight, tensor::<2>(weight(net, l, "kernel", &[in_dim, *units])?, device));
    if *bias {
        let b = weight(net, l, "bias", &[*units])?;
        d.bias = d.bias.as_ref().map(|old| replaced(old, tensor::<1>(b, device)));
    }
    Ok(d)
}

/// A value flowing through [`run_network`].
#[derive(Clone)]
enum Value {
    /// `[N, C, H, W]`.
    Map(Tensor<4>),
    /// `[N, F]`.
    Flat(Tensor<2>),
}

fn activate(net: &KerasNetwork, l: &Layer, name: &str, v: Value) -> Result<Value, KerasError> {
    let f = |t: Value, g: &dyn Fn(Tensor<4>) -> Tensor<4>, h: &dyn Fn(Tensor<2>) -> Tensor<2>| match t {
        Value::Map(x) => Value::Map(g(x)),
        Value::Flat(x) => Value::Flat(h(x)),
    };
    Ok(match name {
        "linear" => v,
        "relu" => f(v, &relu, &relu),
        "sigmoid" => f(v, &sigmoid, &sigmoid),
        other => return Err(layer_error(net, l, format!("activation {other:?} is not supported"))),
    })
}

/// Runs a Keras network as it is, layer by layer, in inference mode
/// (augmentation layers are identities; BatchNorm uses its moving
/// statistics). Supports Conv2D, BatchNormalization, ReLU/Activation
/// (relu, sigmoid, linear), Add, GlobalAveragePooling2D and Dense.
///
/// # Shapes
/// `input`: `[N, C, H, W]` → `[N, F]` (the output layer's values).
pub fn run_network(net: &KerasNetwork, input: Tensor<4>) -> Result<Tensor<2>, KerasError> {
    let device = input.device();
    let mut values: Vec<Option<Value>> = vec![None; net.layers.len()];
    let channels = |v: &Value| match v {
        Value::Map(x) => x.dims()[1],
        Value::Flat(x) => x.dims()[1],
    };
    for (i, l) in net.layers.iter().enumerate() {
        let arg = |k: usize| -> Result<Value, KerasError> {
            let j = *l.inputs.get(k).ok_or_else(|| layer_error(net, l, "has no input"))?;
            values[j].clone().ok_or_else(|| layer_error(net, l, "input not computed"))
        };
        let out = match &l.op {
            Op::Input { .. } => Value::Map(input.clone()),
            Op::InferenceIdentity => arg(0)?,
            Op::Conv2D { activation, .. } => {
                let Value::Map(x) = arg(0)? else { return Err(layer_error(net, l, "Conv2D on a flat input")) };
                let c = conv(net, l, x.dims()[1], &device)?;
                activate(net, l, activation, Value::Map(c.forward(x)))?
            }
            Op::BatchNorm { axis, .. } => {
                let x = arg(0)?;
                let last = match &x {
                    Value::Map(_) => [-1, 3],
                    Value::Flat(_) => [-1, 1],
                };
                if !last.contains(axis) {
                    return Err(layer_error(net, l, format!("normalises axis {axis}, not the channels")));
                }
                let bn = batch_norm(net, l, channels(&x), 0.01, &device)?;
                match x {
                    Value::Map(x) => Value::Map(bn.forward(x)),
                    Value::Flat(x) => Value::Flat(bn.forward(x)),
                }
            }
            Op::Activation(a) => activate(net, l, a, arg(0)?)?,
            Op::Add => {
                let mut sum = arg(0)?;
                for k in 1..l.inputs.len() {
                    sum = match (sum, arg(k)?) {
                        (Value::Map(a), Value::Map(b)) => Value::Map(a + b),
                        (Value::Flat(a), Value::Flat(b)) => Value::Flat(a + b),
                        _ => return Err(layer_error(net, l, "adds a map to a flat vector")),
                    };
                }
                sum
            }
            Op::GlobalAveragePooling2D => {
                let Value::Map(x) = arg(0)? else { return Err(layer_error(net, l, "pooling a flat input")) };
                let [n, c, _, _] = x.dims();
                Value::Flat(x.mean_dim(3).mean_dim(2).reshape([n, c]))
            }
            Op::Dense { activation, .. } => {
                let Value::Flat(x) = arg(0)? else {
                    return Err(layer_error(net, l, "Dense on a 4-D input (Flatten is not supported)"));
                };
                let d = dense(net, l, x.dims()[1], &device)?;
                activate(net, l, activation, Value::Flat(d.forward(x)))?
            }
            Op::Unsupported => {
                return Err(layer_error(net, l, format!("layer class {} is not supported", l.class_name)))
            }
        };
        values[i] = Some(out);
    }
    match values[net.output].take() {
        Some(Value::Flat(x)) => Ok(x),
        Some(Value::Map(x)) => {
            let [n, c, h, w] = x.dims();
            Ok(x.permute([0, 2, 3, 1]).reshape([n, h * w * c]))
        }
        None => Err(KerasError::Layer {
            file: net.source.display().to_string(),
            layer: "output".into(),
            message: "not computed".into(),
        }),
    }
}

/// A structural walk through a Keras graph that records differences from
/// what it expects instead of stopping at the first.
struct Walk<'a> {
    net: &'a KerasNetwork,
    differences: Vec<String>,
}

/// What a layer must be at a step of the walk.
#[derive(Clone, Copy)]
enum Want {
    Conv { k: usize },
    Bn,
    Relu,
    Add,
    Pool,
    Dense,
}

impl Want {
    fn matches(self, op: &Op) -> bool {
        match (self, op) {
            (Want::Conv { k }, Op::Conv2D { kernel, .. }) => *kernel == [k, k],
            (Want::Bn, Op::BatchNorm { .. }) => true,
            (Want::Relu, Op::Activation(a)) => a == "relu",
            (Want::Add, Op::Add) => true,
            (Want::Pool, Op::GlobalAveragePooling2D) => true,
            (Want::Dense, Op::Dense { .. }) => true,
            _ => false,
        }
    }
    fn name(self) -> String {
        match self {
            Want::Conv { k } => format!("Conv2D {k}×{k}"),
            Want::Bn => "BatchNormalization".into(),
            Want::Relu => "ReLU".into(),
            Want::Add => "Add".into(),
            Want::Pool => "GlobalAveragePooling2D".into(),
            Want::Dense => "Dense".into(),
        }
    }
}

/// The layers fed by `i`, looking through inference identities (dropout,
/// augmentation layers).
fn consumers_through(net: &KerasNetwork, i: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for c in net.consumers(i) {
        if matches!(net.layers[c].op, Op::InferenceIdentity) {
            out.extend(consumers_through(net, c));
        } else {
            out.push(c);
        }
    }
    out
}

/// The layer whose value `i` passes on, looking back through inference
/// identities.
fn source_through(net: &KerasNetwork, mut i: usize) -> usize {
    while matches!(net.layers[i].op, Op::InferenceIdentity) && net.layers[i].inputs.len() == 1 {
        i = net.layers[i].inputs[0];
    }
    i
}

impl<'a> Walk<'a> {
    fn consumers(&self, i: usize) -> Vec<usize> {
        consumers_through(self.net, i)
    }

    /// The one layer of kind `want` fed by `i`, or a recorded difference.
    fn next(&mut self, i: usize, want: Want, role: &str) -> Option<usize> {
        let cs = self.consumers(i);
        let found: Vec<usize> = cs.iter().copied().filter(|&c| want.matches(&self.net.layers[c].op)).collect();
        if found.len() == 1 {
            return Some(found[0]);
        }
        let seen = if cs.is_empty() {
            "nothing (the model ends)".to_string()
        } else {
            cs.iter().map(|&c| self.net.describe(c)).collect::<Vec<_>>().join(", ")
        };
        self.differences.push(format!("{role}: expected {} after {}, found {seen}", want.name(), self.net.describe(i)));
        None
    }

    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.differences.push(what());
        }
    }
}

/// The layers of a Keras NNCLR encoder, by role.
struct EncoderLayers {
    stem: usize,
    stem_bn: usize,
    blocks: Vec<BlockLayers>,
    dense1: usize,
    dense1_bn: usize,
    dense2: usize,
    dense2_bn: usize,
}

struct BlockLayers {
    bn_in: usize,
    conv_a: usize,
    bn_a: usize,
    conv_b: usize,
    bn_b: usize,
    conv_c: usize,
    shortcut: Option<usize>,
}

/// A convolution's `(filters, stride, same padding with equal strides,
/// differs from ours: a bias or an activation)`.
fn conv_of(net: &KerasNetwork, i: usize) -> (usize, usize, bool, bool) {
    match &net.layers[i].op {
        Op::Conv2D { filters, strides, same, bias, activation, .. } => {
            (*filters, strides[0], *same && strides[0] == strides[1], *bias || activation != "linear")
        }
        _ => (0, 0, false, true),
    }
}

/// Finds our encoder's layers in `net` by following its graph from the
/// input; returns the layers and the differences found on the way.
fn find_encoder(net: &KerasNetwork) -> (Option<EncoderLayers>, Vec<String>) {
    let mut w = Walk { net, differences: Vec::new() };
    let Some(input) = net.layers.iter().position(|l| matches!(l.op, Op::Input { .. })) else {
        return (None, vec!["the model has no input layer".into()]);
    };
    let found = (|| {
        let stem = w.next(input, Want::Conv { k: 3 }, "stem")?;
        let stem_bn = w.next(stem, Want::Bn, "stem")?;
        let mut x = w.next(stem_bn, Want::Relu, "stem")?;
        let mut blocks = Vec::new();
        loop {
            let cs = w.consumers(x);
            if cs.iter().any(|&c| matches!(net.layers[c].op, Op::GlobalAveragePooling2D)) {
                break;
            }
            let role = format!("block {}", blocks.len() + 1);
            let shortcut = cs.iter().copied().find(|&c| matches!(net.layers[c].op, Op::Conv2D { .. }));
            let bn_in = w.next(x, Want::Bn, &role)?;
            let conv_a = {
                let r = w.next(bn_in, Want::Relu, &role)?;
                w.next(r, Want::Conv { k: 1 }, &role)?
            };
            let bn_a = w.next(conv_a, Want::Bn, &role)?;
            let conv_b = {
                let r = w.next(bn_a, Want::Relu, &role)?;
                w.next(r, Want::Conv { k: 3 }, &role)?
            };
            let bn_b = w.next(conv_b, Want::Bn, &role)?;
            let conv_c = {
                let r = w.next(bn_b, Want::Relu, &role)?;
                w.next(r, Want::Conv { k: 1 }, &role)?
            };
            let add = w.next(conv_c, Want::Add, &role)?;
            let other: Vec<usize> = net.layers[add].inputs.iter().copied().filter(|&i| i != conv_c).collect();
            let expected_other = shortcut.unwrap_or(x);
            if other != [expected_other] {
                w.differences.push(format!(
                    "{role}: {} should add the block's {} to its main path",
                    net.describe(add),
                    if shortcut.is_some() { "1×1 projection shortcut" } else { "input" }
                ));
                return None;
            }
            if let Some(s) = shortcut {
                w.check(matches!(net.layers[s].op, Op::Conv2D { kernel: [1, 1], .. }), || {
                    format!("{role}: the shortcut {} is not 1×1", net.describe(s))
                });
            }
            blocks.push(BlockLayers { bn_in, conv_a, bn_a, conv_b, bn_b, conv_c, shortcut });
            x = add;
        }
        let pool = w.next(x, Want::Pool, "head")?;
        let dense1 = w.next(pool, Want::Dense, "head")?;
        let dense1_bn = w.next(dense1, Want::Bn, "head")?;
        let dense2 = {
            let r = w.next(dense1_bn, Want::Relu, "head")?;
            w.next(r, Want::Dense, "head")?
        };
        let dense2_bn = w.next(dense2, Want::Bn, "head")?;
        Some(EncoderLayers { stem, stem_bn, blocks, dense1, dense1_bn, dense2, dense2_bn })
    })();
    (found, w.differences)
}

/// The encoder configuration that reproduces `found`, with the differences
/// between the Keras layers and what that configuration builds.
fn encoder_config(net: &KerasNetwork, found: &EncoderLayers) -> (EncoderConfig, Vec<String>) {
    let mut diffs = Vec::new();
    let stem_w = net.layers[found.stem].weights.get("kernel").map(|w| w.shape.clone()).unwrap_or_default();
    let bands = stem_w.get(2).copied().unwrap_or(0);
    let (stem_ch, ..) = conv_of(net, found.stem);
    let width = stem_ch as f64 / 16.0;
    let repr_dim = match net.layers[found.dense2].op {
        Op::Dense { units, .. } => units,
        _ => 0,
    };
    let eps: Vec<f64> = net
        .layers
        .iter()
        .filter_map(|l| if let Op::BatchNorm { epsilon, .. } = l.op { Some(epsilon) } else { None })
        .collect();
    let epsilon = eps.first().copied().unwrap_or(1e-3);
    if eps.iter().any(|&e| e != epsilon) {
        diffs.push(format!("BatchNorm ε differs between layers ({eps:?}); ours is one value"));
    }
    let config = EncoderConfig::paper(bands).with_width(width).with_repr_dim(repr_dim).with_bn_epsilon(epsilon);
    let ours = config.init(&Device::default());
    // Every convolution: 'same' padding, square stride, no bias, linear.
    let all_convs = std::iter::once(found.stem)
        .chain(found.blocks.iter().flat_map(|b| [b.conv_a, b.conv_b, b.conv_c].into_iter().chain(b.shortcut)));
    for c in all_convs {
        let (_, _, same, biased) = conv_of(net, c);
        if !same || biased {
            diffs.push(format!(
                "{}: ours uses 'same' padding, equal strides, no bias and no activation",
                net.describe(c)
            ));
        }
    }
    if ours.blocks.len() != found.blocks.len() {
        diffs.push(format!("{} residual blocks, ours has {}", found.blocks.len(), ours.blocks.len()));
    }
    for (k, (b, o)) in found.blocks.iter().zip(&ours.blocks).enumerate() {
        let (wa, ..) = conv_of(net, b.conv_a);
        let (_, stride, ..) = conv_of(net, b.conv_b);
        let (cout, ..) = conv_of(net, b.conv_c);
        let [o_wa, ..] = o.conv_a.weight.dims();
        let [o_cout, ..] = o.conv_c.weight.dims();
        let o_stride = o.conv_b.stride[0];
        if (wa, cout, stride, b.shortcut.is_some()) != (o_wa, o_cout, o_stride, o.shortcut.is_some()) {
            diffs.push(format!(
                "block {}: bottleneck {wa}, output {cout}, stride {stride}, {} shortcut; ours: bottleneck {o_wa}, output {o_cout}, stride {o_stride}, {} shortcut",
                k + 1,
                if b.shortcut.is_some() { "projection" } else { "identity" },
                if o.shortcut.is_some() { "projection" } else { "identity" }
            ));
        }
        if let Some(s) = b.shortcut {
            let (_, s_stride, ..) = conv_of(net, s);
            if s_stride != stride {
                diffs.push(format!("block {}: shortcut stride {s_stride} differs from the 3×3 stride {stride}", k + 1));
            }
        }
    }
    for d in [found.dense1, found.dense2] {
        if let Op::Dense { bias, activation, .. } = &net.layers[d].op {
            if *bias || activation != "linear" {
                diffs.push(format!("{}: ours has no bias and no activation", net.describe(d)));
            }
        }
    }
    if let Op::Dense { units, .. } = net.layers[found.dense1].op {
        if units != repr_dim {
            diffs.push(format!("{}: ours has {repr_dim} units, as the last Dense", net.describe(found.dense1)));
        }
    }
    (config, diffs)
}

fn mismatch(net: &KerasNetwork, target: &'static str, differences: Vec<String>) -> KerasError {
    KerasError::Mismatch { file: net.source.display().to_string(), target, differences }
}

fn block_from_keras(
    net: &KerasNetwork,
    b: &BlockLayers,
    o: &Bottleneck,
    m: f64,
    device: &Device,
) -> Result<Bottleneck, KerasError> {
    let [width, cin, ..] = o.conv_a.weight.dims();
    Ok(Bottleneck {
        bn_in: batch_norm(net, &net.layers[b.bn_in], cin, m, device)?,
        conv_a: conv(net, &net.layers[b.conv_a], cin, device)?,
        bn_a: batch_norm(net, &net.layers[b.bn_a], width, m, device)?,
        conv_b: conv(net, &net.layers[b.conv_b], width, device)?,
        bn_b: batch_norm(net, &net.layers[b.bn_b], width, m, device)?,
        conv_c: conv(net, &net.layers[b.conv_c], width, device)?,
        shortcut: match b.shortcut {
            Some(s) => Some(conv(net, &net.layers[s], cin, device)?),
            None => None,
        },
    })
}

/// Our encoder with the weights of a Keras NNCLR encoder.
fn encoder_from(
    net: &KerasNetwork,
    found: &EncoderLayers,
    config: &EncoderConfig,
    device: &Device,
) -> Result<Encoder, KerasError> {
    let shape = config.init(device);
    let m = config.bn_momentum;
    let stem_ch = shape.stem.weight.dims()[0];
    let blocks = found
        .blocks
        .iter()
        .zip(&shape.blocks)
        .map(|(b, o)| block_from_keras(net, b, o, m, device))
        .collect::<Result<Vec<_>, _>>()?;
    let last = shape.dense1.weight.dims()[0];
    Ok(Encoder {
        stem: conv(net, &net.layers[found.stem], config.bands, device)?,
        stem_bn: batch_norm(net, &net.layers[found.stem_bn], stem_ch, m, device)?,
        blocks,
        dense1: dense(net, &net.layers[found.dense1], last, device)?,
        dense1_bn: batch_norm(net, &net.layers[found.dense1_bn], config.repr_dim, m, device)?,
        dense2: dense(net, &net.layers[found.dense2], config.repr_dim, device)?,
        dense2_bn: batch_norm(net, &net.layers[found.dense2_bn], config.repr_dim, m, device)?,
    })
}

/// What a Keras model turned out to be.
#[derive(Debug)]
pub enum Imported {
    /// An NNCLR encoder.
    Encoder {
        /// Rebuilds it.
        config: EncoderConfig,
        /// The weights.
        encoder: Encoder,
        /// The encoder's input side in pixels, when the model declares it.
        input_size: Option<usize>,
    },
    /// Encoder + Dense(1, sigmoid).
    Classifier {
        /// Rebuilds it.
        config: ClassifierConfig,
        /// The weights.
        classifier: Classifier,
        /// The encoder's input side in pixels, when the model declares it.
        input_size: Option<usize>,
    },
}

/// Maps a Keras model onto our encoder or (when a Dense(1, sigmoid) follows
/// the encoder) our classifier.
pub fn import(net: &KerasNetwork, device: &Device) -> Result<Imported, KerasError> {
    let (found, mut diffs) = find_encoder(net);
    let output = source_through(net, net.output);
    let head = found.as_ref().and_then(|f| {
        let after: Vec<usize> = consumers_through(net, f.dense2_bn);
        (!after.is_empty()).then_some(after)
    });
    let target = if head.is_some() { "classifier" } else { "encoder" };
    let Some(found) = found else {
        diffs.extend(count_differences(net));
        return Err(mismatch(net, target, diffs));
    };
    let (config, more) = encoder_config(net, &found);
    diffs.extend(more);
    let head = match head.as_deref() {
        None => None,
        Some([d]) => match &net.layers[*d].op {
            Op::Dense { units: 1, bias: true, activation } if activation == "sigmoid" && *d == output => Some(*d),
            _ => {
                diffs.push(format!(
                    "after the encoder: expected the output Dense(1, sigmoid, bias), found {}",
                    net.describe(*d)
                ));
                None
            }
        },
        Some(many) => {
            diffs.push(format!("the encoder output feeds {} layers, ours feeds one Dense(1)", many.len()));
            None
        }
    };
    if head.is_none() && target == "encoder" && output != found.dense2_bn {
        diffs.push(format!("the model's output is {}, not the encoder's last BatchNorm", net.describe(output)));
    }
    if !diffs.is_empty() {
        return Err(mismatch(net, target, diffs));
    }
    let input_size = encoder_input_size(net);
    let encoder = encoder_from(net, &found, &config, device)?;
    Ok(match head {
        None => Imported::Encoder { config, encoder, input_size },
        Some(d) => Imported::Classifier {
            classifier: Classifier { encoder, head: dense(net, &net.layers[d], config.repr_dim, device)? },
            config: ClassifierConfig::new(config),
            input_size,
        },
    })
}

/// Layer counts by class that differ from our paper encoder's, as a
/// summary after the first structural difference.
fn count_differences(net: &KerasNetwork) -> Vec<String> {
    let bands = net.declared_inputs.first().and_then(|(_, s)| s.last().copied().flatten()).unwrap_or(5);
    let config = EncoderConfig::paper(bands);
    let ours = to_network(&config.init(&Device::flex()), &config, 96, None);
    let count = |n: &KerasNetwork| {
        let mut m: std::collections::BTreeMap<String, usize> = Default::default();
        for l in n.layers.iter().filter(|l| !matches!(l.op, Op::Input { .. } | Op::InferenceIdentity)) {
            *m.entry(l.class_name.clone()).or_default() += 1;
        }
        m
    };
    let (theirs, ours) = (count(net), count(&ours));
    let classes: std::collections::BTreeSet<&String> = theirs.keys().chain(ours.keys()).collect();
    classes
        .into_iter()
        .filter_map(|c| {
            let (t, o) = (theirs.get(c).copied().unwrap_or(0), ours.get(c).copied().unwrap_or(0));
            (t != o).then(|| format!("{t} {c} layers, ours has {o}"))
        })
        .collect()
}

/// The encoder's declared input side: the innermost input declaration
/// whose spatial size is known (a nested encoder declares 96 inside a
/// classifier that takes 128).
fn encoder_input_size(net: &KerasNetwork) -> Option<usize> {
    net.declared_inputs.iter().rev().find_map(|(_, shape)| match shape.as_slice() {
        [Some(h), Some(w), _] if h == w => Some(*h),
        _ => None,
    })
}

/// Builds the Keras description of our encoder (and Dense(1, sigmoid)
/// head, for a classifier), with Keras layer names and weight layouts —
/// what [`tidalscope_io::keras::write_keras3`] saves and [`import`] reads.
pub fn to_network(encoder: &Encoder, config: &EncoderConfig, input_size: usize, head: Option<&Linear>) -> KerasNetwork {
    let mut b = NetBuilder {
        net: KerasNetwork {
            source: "tidalscope".into(),
            name: if head.is_some() { "classifier" } else { "encoder" }.into(),
            layers: Vec::new(),
            output: 0,
            declared_inputs: Vec::new(),
        },
        names: UniqueNames::default(),
    };
    let shape = vec![Some(input_size), Some(input_size), Some(config.bands)];
    b.net.declared_inputs.push(("encoder_input".into(), shape.clone()));
    let input = b.push("encoder_input".into(), "InputLayer", Op::Input { shape }, vec![], vec![]);
    let stem = b.conv(&encoder.stem, input);
    let bn = b.bn(&encoder.stem_bn, stem);
    let mut x = b.relu(bn);
    for blk in &encoder.blocks {
        let a = b.bn(&blk.bn_in, x);
        let pre = b.relu(a);
        let skip = blk.shortcut.as_ref().map(|s| b.conv(s, x)).unwrap_or(x);
        let h = b.conv(&blk.conv_a, pre);
        let h = b.bn(&blk.bn_a, h);
        let h = b.relu(h);
        let h = b.conv(&blk.conv_b, h);
        let h = b.bn(&blk.bn_b, h);
        let h = b.relu(h);
        let h = b.conv(&blk.conv_c, h);
        let name = b.name("add");
        x = b.push(name, "Add", Op::Add, vec![h, skip], vec![]);
    }
    let name = b.name("global_average_pooling2d");
    let pool = b.push(name, "GlobalAveragePooling2D", Op::GlobalAveragePooling2D, vec![x], vec![]);
    let d = b.dense(&encoder.dense1, pool, "linear");
    let d = b.bn(&encoder.dense1_bn, d);
    let d = b.relu(d);
    let d = b.dense(&encoder.dense2, d, "linear");
    let mut out = b.bn(&encoder.dense2_bn, d);
    if let Some(h) = head {
        out = b.dense(h, out, "sigmoid");
    }
    b.net.output = out;
    b.net
}

struct NetBuilder {
    net: KerasNetwork,
    names: UniqueNames,
}

fn weight_of<const D: usize>(t: Tensor<D>) -> Weight {
    let shape = t.dims().to_vec();
    Weight { shape, values: crate::batch::to_vec(t) }
}

impl NetBuilder {
    /// Keras' automatic names: `conv2d`, `conv2d_1`, …
    fn name(&mut self, base: &str) -> String {
        self.names.next(base)
    }

    fn push(&mut self, name: String, class: &str, op: Op, inputs: Vec<usize>, weights: Vec<(&str, Weight)>) -> usize {
        let path = format!("{}/{name}", self.net.name);
        let weights = weights.into_iter().map(|(k, w)| (k.to_string(), w)).collect();
        self.net.layers.push(Layer { name, path, class_name: class.into(), op, inputs, weights });
        self.net.layers.len() - 1
    }

    fn conv(&mut self, c: &Conv2d, x: usize) -> usize {
        let [filters, _, kh, kw] = c.weight.dims();
        let mut w = vec![("kernel", weight_of(c.weight.val().permute([2, 3, 1, 0])))]; // OIHW → HWIO
        if let Some(bias) = &c.bias {
            w.push(("bias", weight_of(bias.val())));
        }
        let op = Op::Conv2D {
            filters,
            kernel: [kh, kw],
            strides: c.stride,
            same: true,
            bias: c.bias.is_some(),
            activation: "linear".into(),
        };
        let name = self.name("conv2d");
        self.push(name, "Conv2D", op, vec![x], w)
    }

    fn bn(&mut self, bn: &BatchNorm, x: usize) -> usize {
        let w = vec![
            ("gamma", weight_of(bn.gamma.val())),
            ("beta", weight_of(bn.beta.val())),
            ("moving_mean", weight_of(bn.running_mean.value())),
            ("moving_variance", weight_of(bn.running_var.value())),
        ];
        let name = self.name("batch_normalization");
        self.push(
            name,
            "BatchNormalization",
            Op::BatchNorm { axis: -1, epsilon: bn.epsilon, center: true, scale: true },
            vec![x],
            w,
        )
    }

    fn relu(&mut self, x: usize) -> usize {
        let name = self.name("re_lu");
        self.push(name, "ReLU", Op::Activation("relu".into()), vec![x], vec![])
    }

    fn dense(&mut self, d: &Linear, x: usize, activation: &str) -> usize {
        let [_, units] = d.weight.dims();
        let mut w = vec![("kernel", weight_of(d.weight.val()))];
        if let Some(bias) = &d.bias {
            w.push(("bias", weight_of(bias.val())));
        }
        let op = Op::Dense { units, bias: d.bias.is_some(), activation: activation.into() };
        let name = self.name("dense");
        self.push(name, "Dense", op, vec![x], w)
    }
}
