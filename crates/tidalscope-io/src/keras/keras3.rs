//! Keras 3 `.keras` files: a zip holding `config.json` (the architecture)
//! and `model.weights.h5` (HDF5, read with the pure-Rust `hdf5-pure`).
//! Byte layout: `tests/fixtures/tensorflow/FORMAT.md` §3.
//!
//! Weights live at `layers/<name>/vars/<i>`, where `<name>` is not the
//! layer's name but the snake-cased class name made unique in layer order
//! within its model (`conv2d`, `conv2d_1`, …; a nested encoder is
//! `layers/functional/layers/…`). We rebuild those names from the config.

use super::network::{op_of, single_feed, KerasNetwork, Layer, UniqueNames, Weight};
use crate::{Error, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// Keras' `to_snake_case` of a class name (`BatchNormalization` →
/// `batch_normalization`, `ReLU` → `re_lu`, `Conv2D` → `conv2d`).
pub(crate) fn snake_case(class: &str) -> String {
    let c: Vec<char> = class.chars().filter(|c| c.is_alphanumeric() || *c == '_').collect();
    // (.)([A-Z][a-z]+) → \1_\2
    let mut a = String::new();
    for i in 0..c.len() {
        if i > 0 && c[i].is_ascii_uppercase() && c.get(i + 1).is_some_and(|n| n.is_ascii_lowercase()) {
            a.push('_');
        }
        a.push(c[i]);
    }
    // ([a-z])([A-Z]) → \1_\2, then lower case
    let a: Vec<char> = a.chars().collect();
    let mut out = String::new();
    for i in 0..a.len() {
        if i > 0 && a[i].is_ascii_uppercase() && a[i - 1].is_ascii_lowercase() {
            out.push('_');
        }
        out.push(a[i].to_ascii_lowercase());
    }
    out
}

/// Every `keras_history` layer name inside a Keras 3 `inbound_nodes` entry.
fn history_names(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(h) = m.get("config").and_then(|c| c.get("keras_history")).and_then(|h| h.as_array()) {
                if let Some(n) = h.first().and_then(|n| n.as_str()) {
                    out.push(n.to_string());
                    return;
                }
            }
            m.values().for_each(|x| history_names(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| history_names(x, out)),
        _ => {}
    }
}

struct Reader<'a> {
    path: &'a Path,
    h5: hdf5_pure::File,
}

impl Reader<'_> {
    fn err(&self, m: impl Into<String>) -> Error {
        Error::format(self.path, m)
    }

    /// The arrays of `group/vars/0..`, in order.
    fn vars(&self, group: &str) -> Result<Vec<Weight>> {
        let mut out = Vec::new();
        for i in 0.. {
            let name = format!("{group}/vars/{i}");
            let Ok(ds) = self.h5.dataset(&name) else { break };
            let shape: Vec<usize> =
                ds.shape().map_err(|e| self.err(format!("{name}: {e}")))?.into_iter().map(|d| d as usize).collect();
            let values = ds.read_f32().map_err(|e| self.err(format!("{name}: {e}")))?;
            if values.len() != shape.iter().product::<usize>() {
                return Err(self.err(format!("{name}: {} values for shape {shape:?}", values.len())));
            }
            out.push(Weight { shape, values });
        }
        Ok(out)
    }

    /// Appends the layers of the model described by `model` (a config with
    /// class_name and config.layers), stored under `group`.
    fn inline(
        &self,
        model: &serde_json::Value,
        path: &str,
        group: &str,
        input: Option<usize>,
        net: &mut KerasNetwork,
    ) -> Result<usize> {
        let class = model["class_name"].as_str().unwrap_or_default();
        let sequential = class == "Sequential";
        let layers =
            model["config"]["layers"].as_array().ok_or_else(|| self.err(format!("{path}: config has no layers")))?;
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut used = UniqueNames::default();
        let mut last = input;
        for l in layers {
            let lclass = l["class_name"].as_str().unwrap_or_default().to_string();
            let config = &l["config"];
            let name = config["name"].as_str().or(l["name"].as_str()).unwrap_or_default().to_string();
            let lpath = format!("{path}/{name}");
            let inputs: Vec<usize> = if sequential {
                last.into_iter().collect()
            } else {
                let mut names = Vec::new();
                if let Some(first) = l["inbound_nodes"].as_array().and_then(|n| n.first()) {
                    history_names(first, &mut names);
                }
                names
                    .iter()
                    .map(|n| {
                        by_name
                            .get(n)
                            .copied()
                            .ok_or_else(|| self.err(format!("layer {lpath:?}: input {n:?} is not defined before it")))
                    })
                    .collect::<Result<_>>()?
            };
            let out = if lclass == "InputLayer" {
                net.input_layer(&name, &lpath, config, input).map_err(|m| self.err(m))?
            } else {
                // The storage name: snake-cased class, made unique in order.
                let stored = used.next(&snake_case(&lclass));
                let lgroup = format!("{group}/layers/{stored}");
                if matches!(lclass.as_str(), "Sequential" | "Functional" | "Model") {
                    let feed = single_feed(&lpath, &inputs).map_err(|m| self.err(m))?;
                    self.inline(l, &lpath, &lgroup, feed, net)?
                } else {
                    let op = op_of(&lclass, config).map_err(|m| self.err(format!("{lpath}: {m}")))?;
                    let vars = self.vars(&lgroup)?;
                    let names = op.variable_names();
                    if vars.len() != names.len() {
                        return Err(self.err(format!(
                            "{lpath}: {} arrays under {lgroup}/vars, a {lclass} like this has {}",
                            vars.len(),
                            names.len()
                        )));
                    }
                    let weights = names.iter().map(|s| s.to_string()).zip(vars).collect();
                    net.layers.push(Layer {
                        name: name.clone(),
                        path: lpath,
                        class_name: lclass.clone(),
                        op,
                        inputs,
                        weights,
                    });
                    net.layers.len() - 1
                }
            };
            by_name.insert(name, out);
            last = Some(out);
        }
        if sequential {
            return last.ok_or_else(|| self.err(format!("{path}: empty Sequential")));
        }
        // ["name", 0, 0] or [["name", 0, 0], …]
        let outs = &model["config"]["output_layers"];
        let first = if outs.get(0).is_some_and(|v| v.is_array()) { &outs[0] } else { outs };
        let out_name = first
            .get(0)
            .and_then(|n| n.as_str())
            .ok_or_else(|| self.err(format!("{path}: config has no output_layers")))?;
        by_name
            .get(out_name)
            .copied()
            .ok_or_else(|| self.err(format!("{path}: output layer {out_name:?} is not among its layers")))
    }
}

/// Reads a `.keras` file.
pub fn read(path: &Path) -> Result<KerasNetwork> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| Error::format(path, format!("not a .keras file (zip): {e}")))?;
    let mut entry = |name: &str| -> Result<Vec<u8>> {
        let mut f =
            zip.by_name(name).map_err(|_| Error::format(path, format!("not a .keras file: {name} is missing")))?;
        let mut b = Vec::new();
        f.read_to_end(&mut b).map_err(|e| Error::format(path, format!("{name}: {e}")))?;
        Ok(b)
    };
    let config: serde_json::Value =
        serde_json::from_slice(&entry("config.json")?).map_err(|e| Error::format(path, format!("config.json: {e}")))?;
    let h5 = hdf5_pure::File::from_bytes(entry("model.weights.h5")?)
        .map_err(|e| Error::format(path, format!("model.weights.h5: {e}")))?;
    let name = config["config"]["name"].as_str().unwrap_or("model").to_string();
    let mut net = KerasNetwork {
        source: path.to_path_buf(),
        name: name.clone(),
        layers: Vec::new(),
        output: 0,
        declared_inputs: Vec::new(),
    };
    let r = Reader { path, h5 };
    net.output = r.inline(&config, &name, "", None, &mut net)?;
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn class_names_snake_case_as_keras_does() {
        for (c, s) in [
            ("Conv2D", "conv2d"),
            ("BatchNormalization", "batch_normalization"),
            ("ReLU", "re_lu"),
            ("GlobalAveragePooling2D", "global_average_pooling2d"),
            ("Dense", "dense"),
            ("Functional", "functional"),
            ("RandomFlip", "random_flip"),
        ] {
            assert_eq!(snake_case(c), s);
        }
    }
}
