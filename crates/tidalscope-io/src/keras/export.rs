//! Writing a [`KerasNetwork`] as a Keras 3 `.keras` file (zip, stored:
//! `metadata.json`, `config.json`, `model.weights.h5`), the layout
//! [`super::read`] and Keras 3's `keras.models.load_model` read.

use super::keras3::snake_case;
use super::network::{KerasNetwork, Op, UniqueNames};
use crate::{Error, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;

/// Per-example output shape of every layer (`None` where unknown).
fn shapes(net: &KerasNetwork) -> std::result::Result<Vec<Vec<Option<usize>>>, String> {
    let mut out: Vec<Vec<Option<usize>>> = Vec::with_capacity(net.layers.len());
    for l in &net.layers {
        let input = |k: usize| -> std::result::Result<Vec<Option<usize>>, String> {
            l.inputs.get(k).map(|&i| out[i].clone()).ok_or_else(|| format!("{}: no input", l.path))
        };
        let s = match &l.op {
            Op::Input { shape } => shape.clone(),
            Op::Conv2D { filters, kernel, strides, same, .. } => {
                let i = input(0)?;
                if !*same && i.iter().take(2).zip(kernel).any(|(d, k)| d.is_some_and(|d| d < *k)) {
                    return Err(format!("{}: input {i:?} smaller than the {kernel:?} kernel", l.path));
                }
                let dim = |d: Option<usize>, k: usize, s: usize| {
                    d.map(|d| if *same { d.div_ceil(s) } else { (d - k) / s + 1 })
                };
                vec![dim(i[0], kernel[0], strides[0]), dim(i[1], kernel[1], strides[1]), Some(*filters)]
            }
            Op::GlobalAveragePooling2D => vec![input(0)?.last().copied().flatten()],
            Op::Dense { units, .. } => vec![Some(*units)],
            Op::BatchNorm { .. } | Op::Activation(_) | Op::Add | Op::InferenceIdentity => input(0)?,
            Op::Unsupported => return Err(format!("{}: layer class {} cannot be written", l.path, l.class_name)),
        };
        out.push(s);
    }
    Ok(out)
}

fn tensor_ref(name: &str, shape: &[Option<usize>]) -> Value {
    let mut s: Vec<Value> = vec![Value::Null];
    s.extend(shape.iter().map(|d| d.map_or(Value::Null, |d| json!(d))));
    json!({"class_name": "__keras_tensor__", "config": {"shape": s, "dtype": "float32", "keras_history": [name, 0, 0]}})
}

fn layer_config(name: &str, op: &Op, shape: &[Option<usize>]) -> (String, Value) {
    let dtype =
        json!({"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null});
    match op {
        Op::Input { .. } => {
            let mut s: Vec<Value> = vec![Value::Null];
            s.extend(shape.iter().map(|d| d.map_or(Value::Null, |d| json!(d))));
            ("InputLayer".into(), json!({"batch_shape": s, "dtype": "float32", "sparse": false, "name": name}))
        }
        Op::Conv2D { filters, kernel, strides, same, bias, activation } => (
            "Conv2D".into(),
            json!({"name": name, "trainable": true, "dtype": dtype, "filters": filters, "kernel_size": kernel, "strides": strides,
                   "padding": if *same { "same" } else { "valid" }, "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1,
                   "activation": activation, "use_bias": bias}),
        ),
        Op::BatchNorm { epsilon, center, scale, .. } => (
            "BatchNormalization".into(),
            json!({"name": name, "trainable": true, "dtype": dtype, "axis": -1, "momentum": 0.99, "epsilon": epsilon, "center": center, "scale": scale}),
        ),
        Op::Activation(a) if a == "relu" => (
            "ReLU".into(),
            json!({"name": name, "trainable": true, "dtype": dtype, "max_value": null, "negative_slope": 0.0, "threshold": 0.0}),
        ),
        Op::Activation(a) => {
            ("Activation".into(), json!({"name": name, "trainable": true, "dtype": dtype, "activation": a}))
        }
        Op::Add => ("Add".into(), json!({"name": name, "trainable": true, "dtype": dtype})),
        Op::GlobalAveragePooling2D => (
            "GlobalAveragePooling2D".into(),
            json!({"name": name, "trainable": true, "dtype": dtype, "data_format": "channels_last", "keepdims": false}),
        ),
        Op::Dense { units, bias, activation } => (
            "Dense".into(),
            json!({"name": name, "trainable": true, "dtype": dtype, "units": units, "activation": activation, "use_bias": bias}),
        ),
        Op::InferenceIdentity | Op::Unsupported => unreachable!("refused before"),
    }
}

/// The order Keras 3 gives a functional model's layers when it rebuilds
/// one from its config (`keras.src.ops.function.map_graph`): by longest
/// distance from the output, deepest first, ties by first visit in a
/// depth-first walk from the output. Keras stores weights in this order
/// and names their groups by it, so the config must list layers so.
fn keras_order(net: &KerasNetwork) -> Vec<usize> {
    let n = net.layers.len();
    let mut visit = vec![usize::MAX; n];
    let mut next = 0;
    let mut stack = vec![net.output];
    while let Some(i) = stack.pop() {
        if visit[i] != usize::MAX {
            continue;
        }
        visit[i] = next;
        next += 1;
        stack.extend(net.layers[i].inputs.iter().rev());
    }
    let mut depth = vec![0usize; n];
    for i in (0..n).rev() {
        for &j in &net.layers[i].inputs {
            depth[j] = depth[j].max(depth[i] + 1);
        }
    }
    let mut order: Vec<usize> = (0..n).filter(|&i| visit[i] != usize::MAX).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(depth[i]), visit[i]));
    order
}

/// Writes `net` (one functional model, no nested sub-models) to `path`.
pub fn write_keras3(path: &Path, net: &KerasNetwork, producer: &str) -> Result<()> {
    let err = |m: String| Error::format(path, m);
    if let Some(l) = net.layers.iter().find(|l| matches!(l.op, Op::InferenceIdentity | Op::Unsupported)) {
        return Err(err(format!("layer {} ({}) cannot be exported", l.path, l.class_name)));
    }
    let shapes = shapes(net).map_err(err)?;
    let mut layers = Vec::new();
    let mut h5 = hdf5_pure::FileBuilder::new();
    let mut layers_group = h5.create_group("layers");
    let mut names = UniqueNames::default();
    for i in keras_order(net) {
        let l = &net.layers[i];
        let (class, config) = layer_config(&l.name, &l.op, &shapes[i]);
        let args: Vec<Value> = l.inputs.iter().map(|&j| tensor_ref(&net.layers[j].name, &shapes[j])).collect();
        let inbound = match (&l.op, args.len()) {
            (_, 0) => json!([]),
            (Op::Add, _) => json!([{"args": [args], "kwargs": {}}]),
            _ => json!([{"args": args, "kwargs": {}}]),
        };
        layers.push(json!({"module": "keras.layers", "class_name": class, "config": config, "registered_name": null, "name": l.name, "inbound_nodes": inbound}));
        if matches!(l.op, Op::Input { .. }) {
            continue;
        }
        // Weights in Keras' variable order, under the snake-cased class
        // name; every variable the config implies must be there, or Keras
        // would load the next one in its place.
        let stored = names.next(&snake_case(&class));
        let order = l.op.variable_names();
        let mut lg = layers_group.create_group(&stored);
        let mut vars = lg.create_group("vars");
        for (k, name) in order.iter().enumerate() {
            let w = l.weights.get(*name).ok_or_else(|| err(format!("layer {}: weight {name:?} is missing", l.path)))?;
            let shape: Vec<u64> = w.shape.iter().map(|&d| d as u64).collect();
            vars.create_dataset(&k.to_string()).with_f32_data(&w.values).with_shape(&shape);
        }
        lg.add_group(vars.finish());
        layers_group.add_group(lg.finish());
    }
    h5.add_group(layers_group.finish());
    let root_vars = h5.create_group("vars");
    h5.add_group(root_vars.finish());
    let weights = h5.finish().map_err(|e| err(format!("writing model.weights.h5: {e}")))?;
    let input = net
        .layers
        .iter()
        .find(|l| matches!(l.op, Op::Input { .. }))
        .ok_or_else(|| err("the model has no input".into()))?;
    let config = json!({
        "module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
        "config": {"name": net.name, "trainable": true, "layers": layers,
                   "input_layers": [[input.name, 0, 0]], "output_layers": [[net.layers[net.output].name, 0, 0]]}
    });
    let metadata = json!({"keras_version": "3.15.0", "date_saved": "", "producer": producer});
    // Small (2.5 MB for the paper encoder): built in memory, then written
    // atomically.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in [
        ("metadata.json", serde_json::to_vec(&metadata).expect("json")),
        ("config.json", serde_json::to_vec(&config).expect("json")),
        ("model.weights.h5", weights),
    ] {
        zip.start_file(name, opts).map_err(|e| err(format!("{name}: {e}")))?;
        zip.write_all(&bytes).map_err(|e| Error::io(path, e))?;
    }
    let bytes = zip.finish().map_err(|e| err(format!("finishing the zip: {e}")))?.into_inner();
    crate::atomic::write(path, &bytes)
}
