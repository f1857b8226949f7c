//! A Keras model as a flat graph of layers with their weights, whatever
//! file it came from: nested Sequentials and functional sub-models are
//! inlined so that a consumer sees one topologically ordered list.

use std::collections::HashMap;
use std::path::PathBuf;

/// What a layer computes (at inference), with the settings that matter.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The model input; `shape` is `[H, W, C]` when the config gives it.
    Input {
        /// Per-example shape (`None` dimensions unknown).
        shape: Vec<Option<usize>>,
    },
    /// 2-D convolution (channels last).
    Conv2D {
        /// Output channels.
        filters: usize,
        /// `[kh, kw]`.
        kernel: [usize; 2],
        /// `[sh, sw]`.
        strides: [usize; 2],
        /// TensorFlow "same" padding (else "valid").
        same: bool,
        /// Has a bias.
        bias: bool,
        /// Activation applied after (`linear` for none).
        activation: String,
    },
    /// Batch normalisation over the last axis.
    BatchNorm {
        /// Normalised axis as saved (−1, or the last axis' index: 3 after a
        /// convolution, 1 after a dense layer).
        axis: i64,
        /// ε from the config.
        epsilon: f64,
        /// Has β.
        center: bool,
        /// Has γ.
        scale: bool,
    },
    /// An activation layer (`ReLU`, or `Activation` with a name).
    Activation(String),
    /// Element-wise sum of the inputs.
    Add,
    /// Mean over height and width.
    GlobalAveragePooling2D,
    /// Fully connected.
    Dense {
        /// Output size.
        units: usize,
        /// Has a bias.
        bias: bool,
        /// Activation applied after.
        activation: String,
    },
    /// A layer that is the identity at inference (random augmentations,
    /// dropout); kept so the structure stays visible.
    InferenceIdentity,
    /// Anything else: the importer reports it by class name.
    Unsupported,
}

/// One layer of a [`KerasNetwork`].
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// Layer name (unique within its own Keras model).
    pub name: String,
    /// Where it sits: sub-model names and the layer name, `/`-joined.
    pub path: String,
    /// Keras class name.
    pub class_name: String,
    /// What it computes.
    pub op: Op,
    /// Indices of the layers feeding it.
    pub inputs: Vec<usize>,
    /// Weights by Keras name (`kernel`, `bias`, `gamma`, `beta`,
    /// `moving_mean`, `moving_variance`), in Keras layouts.
    pub weights: HashMap<String, Weight>,
}

/// A weight array in Keras' layout (Conv2D HWIO, Dense `[in, out]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
}

/// A whole model, flattened: `layers` in an order where every layer comes
/// after its inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct KerasNetwork {
    /// The file or folder read.
    pub source: PathBuf,
    /// Name of the outermost model.
    pub name: String,
    /// Layers, topologically ordered.
    pub layers: Vec<Layer>,
    /// Index of the output layer.
    pub output: usize,
    /// Every input declaration met, outermost first, with its per-example
    /// shape: a nested sub-model keeps its own (a 96×96 encoder inside a
    /// classifier that takes 128×128 cutouts).
    pub declared_inputs: Vec<(String, Vec<Option<usize>>)>,
}

/// Classes that do nothing at inference. The reference's custom
/// augmentation layers (`RandomGaussianNoise`, `RandomResizedCrop`) ignored
/// the training flag (REFERENCE.md flaw 1); tidalscope replaces them by the
/// deterministic centre crop of its preprocessing.
fn identity_at_inference(class: &str) -> bool {
    class.starts_with("Random") || matches!(class, "Dropout" | "SpatialDropout2D" | "GaussianNoise" | "GaussianDropout")
}

fn pair(v: &serde_json::Value) -> Option<[usize; 2]> {
    // tf.keras 2 writes {"class_name": "__tuple__", "items": [3, 3]}; Keras 3 a list.
    let items = v.get("items").unwrap_or(v);
    match items {
        serde_json::Value::Array(a) if a.len() == 2 => Some([a[0].as_u64()? as usize, a[1].as_u64()? as usize]),
        serde_json::Value::Number(n) => Some([n.as_u64()? as usize; 2]),
        _ => None,
    }
}

/// The one layer feeding a nested model (`None`: the model declares its
/// own input); `Err` for a sub-model with several inputs.
pub(crate) fn single_feed(path: &str, inputs: &[usize]) -> Result<Option<usize>, String> {
    match inputs {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(format!("{path}: a sub-model with several inputs is not supported")),
    }
}

/// Reads a layer's op from its class and config; `Err` names the missing key.
pub(crate) fn op_of(class: &str, config: &serde_json::Value) -> Result<Op, String> {
    let usize_of =
        |k: &str| config[k].as_u64().map(|v| v as usize).ok_or(format!("{class} config has no integer {k:?}"));
    let activation = || config["activation"].as_str().unwrap_or("linear").to_string();
    Ok(match class {
        "InputLayer" => {
            let shape = config.get("batch_input_shape").or_else(|| config.get("batch_shape"));
            let dims =
                shape.and_then(|s| s.get("items").or(Some(s))).and_then(|s| s.as_array()).cloned().unwrap_or_default();
            Op::Input { shape: dims.iter().skip(1).map(|d| d.as_u64().map(|v| v as usize)).collect() }
        }
        "Conv2D" => {
            if config["data_format"].as_str().is_some_and(|f| f != "channels_last") {
                return Err("Conv2D with data_format other than channels_last".into());
            }
            if pair(&config["dilation_rate"]).is_some_and(|d| d != [1, 1])
                || config["groups"].as_u64().is_some_and(|g| g != 1)
            {
                return Err("dilated or grouped Conv2D".into());
            }
            Op::Conv2D {
                filters: usize_of("filters")?,
                kernel: pair(&config["kernel_size"]).ok_or("Conv2D config has no kernel_size")?,
                strides: pair(&config["strides"]).unwrap_or([1, 1]),
                same: config["padding"].as_str() == Some("same"),
                bias: config["use_bias"].as_bool().unwrap_or(true),
                activation: activation(),
            }
        }
        "BatchNormalization" => {
            let axis = &config["axis"];
            let axis = match axis.as_array() {
                Some(a) if a.len() == 1 => a[0].as_i64(),
                Some(_) => None,
                None if axis.is_null() => Some(-1),
                None => axis.as_i64(),
            }
            .ok_or(format!("BatchNormalization over axes {axis}: only one axis is supported"))?;
            Op::BatchNorm {
                axis,
                epsilon: config["epsilon"].as_f64().unwrap_or(1e-3),
                center: config["center"].as_bool().unwrap_or(true),
                scale: config["scale"].as_bool().unwrap_or(true),
            }
        }
        "ReLU" => {
            let plain =
                ["max_value", "threshold"].iter().all(|k| config[*k].is_null() || config[*k].as_f64() == Some(0.0))
                    && config["negative_slope"].as_f64().unwrap_or(0.0) == 0.0;
            if !plain {
                return Err("ReLU with max_value, threshold or negative slope".into());
            }
            Op::Activation("relu".into())
        }
        "Activation" => Op::Activation(activation()),
        "Add" => Op::Add,
        "GlobalAveragePooling2D" => {
            if config["keepdims"].as_bool() == Some(true) {
                return Err("GlobalAveragePooling2D with keepdims".into());
            }
            Op::GlobalAveragePooling2D
        }
        "Dense" => Op::Dense {
            units: usize_of("units")?,
            bias: config["use_bias"].as_bool().unwrap_or(true),
            activation: activation(),
        },
        c if identity_at_inference(c) => Op::InferenceIdentity,
        _ => Op::Unsupported,
    })
}

impl Op {
    /// The layer's variables in Keras' order (the order of `vars/0, 1, …`
    /// in a `.keras` file): kernel and bias; γ, β (when scaled and
    /// centred), moving mean and variance.
    pub fn variable_names(&self) -> Vec<&'static str> {
        match self {
            Op::Conv2D { bias, .. } | Op::Dense { bias, .. } => {
                if *bias {
                    vec!["kernel", "bias"]
                } else {
                    vec!["kernel"]
                }
            }
            Op::BatchNorm { center, scale, .. } => {
                let mut v = Vec::new();
                if *scale {
                    v.push("gamma");
                }
                if *center {
                    v.push("beta");
                }
                v.extend(["moving_mean", "moving_variance"]);
                v
            }
            _ => vec![],
        }
    }
}

/// Keras' automatic names within one model: `base`, then `base_1`,
/// `base_2`, … — the names Keras gives layers, and the group names a
/// `.keras` file stores their weights under.
#[derive(Debug, Default)]
pub struct UniqueNames(HashMap<String, usize>);

impl UniqueNames {
    /// The next name for `base`.
    pub fn next(&mut self, base: &str) -> String {
        let n = self.0.entry(base.to_string()).or_insert(0);
        let name = if *n == 0 { base.to_string() } else { format!("{base}_{n}") };
        *n += 1;
        name
    }
}

impl KerasNetwork {
    /// An `InputLayer` at `path`: records its declared shape and returns
    /// the layer that feeds the (sub-)model — `input` for a nested model,
    /// otherwise a new input layer. `Err` says what is wrong with its config.
    pub(crate) fn input_layer(
        &mut self,
        name: &str,
        path: &str,
        config: &serde_json::Value,
        input: Option<usize>,
    ) -> Result<usize, String> {
        let op = op_of("InputLayer", config).map_err(|m| format!("{path}: {m}"))?;
        if let Op::Input { shape } = &op {
            self.declared_inputs.push((path.to_string(), shape.clone()));
        }
        Ok(input.unwrap_or_else(|| {
            let layer = Layer {
                name: name.to_string(),
                path: path.to_string(),
                class_name: "InputLayer".into(),
                op,
                inputs: vec![],
                weights: HashMap::new(),
            };
            self.layers.push(layer);
            self.layers.len() - 1
        }))
    }

    /// A one-line description of layer `i` (class, name, settings).
    pub fn describe(&self, i: usize) -> String {
        let l = &self.layers[i];
        let detail = match &l.op {
            Op::Conv2D { filters, kernel, strides, bias, .. } => {
                format!(
                    " {}×{}, {filters} filters, stride {}{}",
                    kernel[0],
                    kernel[1],
                    strides[0],
                    if *bias { ", bias" } else { "" }
                )
            }
            Op::Dense { units, bias, activation } => {
                format!(" {units} units{}, {activation}", if *bias { ", bias" } else { "" })
            }
            Op::Activation(a) if l.class_name == "Activation" => format!(" {a}"),
            _ => String::new(),
        };
        format!("{} {:?}{detail}", l.class_name, l.path)
    }

    /// The layers that take layer `i` as an input.
    pub fn consumers(&self, i: usize) -> Vec<usize> {
        (0..self.layers.len()).filter(|&j| self.layers[j].inputs.contains(&i)).collect()
    }
}
