//! Keras SavedModel folders (`model.save(dir)` with tf.keras 2.x), read
//! without TensorFlow: the checkpoint bundle (`variables/variables.index`, a
//! LevelDB table, and `variables.data-*`), the checkpoint's object graph,
//! and `keras_metadata.pb` (each Keras object's path, kind and JSON config).
//! Byte layouts: `tests/fixtures/tensorflow/FORMAT.md` §2.
//!
//! Layers are found by walking the object graph from a network's node to
//! the layer of a given name and from there to its variables — never by
//! parsing checkpoint keys or layer counters, which differ between saves.

mod bundle;
mod export;
mod graph;
mod keras3;
mod network;

pub use bundle::{Bundle, BundleEntry};
pub use export::write_keras3;
pub use graph::{parse_metadata, KerasObject, ObjectGraph};
pub use network::{KerasNetwork, Layer, Op, UniqueNames, Weight};

use crate::tensor::Tensor;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Reads a Keras model: a SavedModel folder, or a Keras 3 `.keras` file.
pub fn read(path: &Path) -> Result<KerasNetwork> {
    if path.is_dir() {
        SavedModel::open(path)?.network()
    } else if path.is_file() {
        keras3::read(path)
    } else {
        Err(Error::format(path, "no such Keras model (expected a SavedModel folder or a .keras file)"))
    }
}

/// A layer of a Keras functional network, from its saved config.
#[derive(Debug, Clone, PartialEq)]
pub struct KerasLayer {
    /// Unique name within its network.
    pub name: String,
    /// Keras class (`Conv2D`, `BatchNormalization`, …).
    pub class_name: String,
    /// Its config (`filters`, `strides`, `use_bias`, `epsilon`, …).
    pub config: serde_json::Value,
    /// Names of the layers feeding it (its first inbound node).
    pub inbound: Vec<String>,
}

/// An opened SavedModel folder.
#[derive(Debug)]
pub struct SavedModel {
    /// The folder.
    pub dir: PathBuf,
    /// Variables.
    pub bundle: Bundle,
    /// The checkpoint's object graph.
    pub graph: ObjectGraph,
    /// Keras objects by node id.
    pub objects: HashMap<usize, KerasObject>,
}

impl SavedModel {
    /// Opens `dir` (it must hold `keras_metadata.pb` and `variables/`).
    pub fn open(dir: &Path) -> Result<Self> {
        let meta_path = dir.join("keras_metadata.pb");
        if !meta_path.is_file() {
            return Err(Error::format(dir, "not a Keras SavedModel folder: keras_metadata.pb is missing"));
        }
        let bundle = Bundle::open(&dir.join("variables").join("variables"))?;
        let graph_tensor = bundle.read("_CHECKPOINTABLE_OBJECT_GRAPH")?;
        let graph_bytes = match graph_tensor.data {
            crate::tensor::TensorData::Str(s) if s.len() == 1 => s.into_iter().next().expect("one string"),
            _ => return Err(Error::format(&bundle.index_path, "_CHECKPOINTABLE_OBJECT_GRAPH is not a string scalar")),
        };
        let graph = ObjectGraph::parse(&graph_bytes)
            .map_err(|m| Error::format(&bundle.index_path, format!("object graph: {m}")))?;
        let bytes = std::fs::read(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        let objects = graph::parse_metadata(&bytes)
            .map_err(|m| Error::format(&meta_path, m))?
            .into_iter()
            .map(|o| (o.node_id, o))
            .collect();
        Ok(Self { dir: dir.to_path_buf(), bundle, graph, objects })
    }

    /// Node ids of Keras networks (functional models and Sequentials),
    /// outermost first.
    pub fn networks(&self) -> Vec<usize> {
        let mut ids: Vec<usize> = self
            .objects
            .values()
            .filter(|o| {
                o.identifier == "_tf_keras_network"
                    || o.identifier == "_tf_keras_sequential"
                    || o.identifier == "_tf_keras_model"
            })
            .map(|o| o.node_id)
            .collect();
        ids.sort_by_key(|&id| (self.objects[&id].node_path.matches('.').count(), id));
        ids
    }

    /// The JSON metadata of a node.
    pub fn metadata(&self, node: usize) -> Result<serde_json::Value> {
        let o = self
            .objects
            .get(&node)
            .ok_or_else(|| Error::format(&self.dir, format!("object {node} has no Keras metadata")))?;
        serde_json::from_str(&o.metadata)
            .map_err(|e| Error::format(&self.dir, format!("{}: bad metadata JSON: {e}", o.node_path)))
    }

    /// The layers of network `node`, in config order.
    pub fn layers(&self, node: usize) -> Result<Vec<KerasLayer>> {
        let meta = self.metadata(node)?;
        let layers = meta["config"]["layers"]
            .as_array()
            .ok_or_else(|| Error::format(&self.dir, format!("{}: no config.layers", self.objects[&node].node_path)))?;
        Ok(layers
            .iter()
            .map(|l| {
                let config = l["config"].clone();
                let name = l["name"].as_str().or(config["name"].as_str()).unwrap_or_default().to_string();
                let inbound = l["inbound_nodes"]
                    .as_array()
                    .and_then(|n| n.first())
                    .and_then(|n| n.as_array())
                    .map(|n| {
                        n.iter()
                            .filter_map(|x| {
                                x.as_array().and_then(|x| x.first()).and_then(|v| v.as_str()).map(String::from)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                KerasLayer {
                    name,
                    class_name: l["class_name"].as_str().unwrap_or_default().to_string(),
                    config,
                    inbound,
                }
            })
            .collect())
    }

    /// The node of the layer called `name` under network `network` (found
    /// through the Keras metadata's names and node paths).
    pub fn layer_node(&self, network: usize, name: &str) -> Result<usize> {
        let prefix = format!("{}.", self.objects[&network].node_path);
        let mut found: Vec<&KerasObject> = self
            .objects
            .values()
            .filter(|o| {
                o.node_path.starts_with(&prefix)
                    && o.identifier.starts_with("_tf_keras_")
                    && serde_json::from_str::<serde_json::Value>(&o.metadata).ok().is_some_and(|m| m["name"] == name)
            })
            .collect();
        // A layer reachable by several paths: the shortest is the layer itself.
        found.sort_by_key(|o| (o.node_path.len(), o.node_id));
        found
            .first()
            .map(|o| o.node_id)
            .ok_or_else(|| Error::format(&self.dir, format!("layer {name:?} not found in the object graph")))
    }

    /// The variables of layer node `node`, by local name (`kernel`, `bias`,
    /// `gamma`, `beta`, `moving_mean`, `moving_variance`).
    pub fn layer_weights(&self, node: usize) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        let layer = self
            .graph
            .nodes
            .get(node)
            .ok_or_else(|| Error::format(&self.dir, format!("object graph has no node {node}")))?;
        for (child, local) in &layer.children {
            let var = &self.graph.nodes[*child];
            if let Some(key) = var.attributes.iter().find(|a| a.0 == "VARIABLE_VALUE").map(|a| a.2.clone()) {
                out.insert(local.clone(), self.bundle.read(&key)?);
            }
        }
        Ok(out)
    }

    /// The whole model as a flat [`KerasNetwork`] (nested models inlined,
    /// weights read and checked).
    pub fn network(&self) -> Result<KerasNetwork> {
        let root = *self
            .networks()
            .first()
            .ok_or_else(|| Error::format(&self.dir, "keras_metadata.pb describes no Keras model"))?;
        let name = self.metadata(root)?["name"].as_str().unwrap_or("model").to_string();
        let mut net = KerasNetwork {
            source: self.dir.clone(),
            name: name.clone(),
            layers: Vec::new(),
            output: 0,
            declared_inputs: Vec::new(),
        };
        net.output = self.inline(root, &name, None, &mut net)?;
        Ok(net)
    }

    /// Appends the layers of network node `node` to `net`, feeding its input
    /// from layer `input` (or a new input layer); returns its output layer.
    fn inline(&self, node: usize, path: &str, input: Option<usize>, net: &mut KerasNetwork) -> Result<usize> {
        let meta = self.metadata(node)?;
        let class = meta["class_name"].as_str().unwrap_or_default().to_string();
        let layers = self.layers(node)?;
        let sequential = class == "Sequential";
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut last = input;
        for layer in &layers {
            let lpath = format!("{path}/{}", layer.name);
            let inputs: Vec<usize> = if sequential {
                last.into_iter().collect()
            } else {
                layer
                    .inbound
                    .iter()
                    .map(|n| {
                        by_name.get(n).copied().ok_or_else(|| {
                            Error::format(&self.dir, format!("layer {lpath:?}: input {n:?} is not defined before it"))
                        })
                    })
                    .collect::<Result<_>>()?
            };
            let out = if layer.class_name == "InputLayer" {
                net.input_layer(&layer.name, &lpath, &layer.config, input).map_err(|m| Error::format(&self.dir, m))?
            } else if matches!(layer.class_name.as_str(), "Sequential" | "Functional" | "Model") {
                let child = self.layer_node(node, &layer.name)?;
                let feed = network::single_feed(&lpath, &inputs).map_err(|m| Error::format(&self.dir, m))?;
                self.inline(child, &lpath, feed, net)?
            } else {
                let op = network::op_of(&layer.class_name, &layer.config)
                    .map_err(|m| Error::format(&self.dir, format!("{lpath}: {m}")))?;
                let mut weights = HashMap::new();
                if matches!(op, Op::Conv2D { .. } | Op::Dense { .. } | Op::BatchNorm { .. }) {
                    let obj = self.layer_node(node, &layer.name)?;
                    for (k, t) in self.layer_weights(obj)? {
                        if t.dtype != crate::tensor::DType::F32 {
                            return Err(Error::format(
                                &self.dir,
                                format!("{lpath}: weight {k:?} is {}, not float32", t.dtype.name()),
                            ));
                        }
                        let values = t.to_f32().expect("float32 converts");
                        weights.insert(k, Weight { shape: t.shape.clone(), values });
                    }
                }
                net.layers.push(Layer {
                    name: layer.name.clone(),
                    path: lpath,
                    class_name: layer.class_name.clone(),
                    op,
                    inputs,
                    weights,
                });
                net.layers.len() - 1
            };
            by_name.insert(layer.name.clone(), out);
            last = Some(out);
        }
        if sequential {
            return last.ok_or_else(|| Error::format(&self.dir, format!("{path}: empty Sequential")));
        }
        let out_name = meta["config"]["output_layers"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|o| o.as_array())
            .and_then(|o| o.first())
            .and_then(|n| n.as_str())
            .ok_or_else(|| Error::format(&self.dir, format!("{path}: config has no output_layers")))?;
        by_name.get(out_name).copied().ok_or_else(|| {
            Error::format(&self.dir, format!("{path}: output layer {out_name:?} is not among its layers"))
        })
    }
}
