//! The checkpoint's object graph (TrackableObjectGraph) and Keras'
//! `keras_metadata.pb` (SavedMetadata).

use crate::protobuf::{Field, Reader};

/// One node of the object graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectNode {
    /// `(child node id, local name)`.
    pub children: Vec<(usize, String)>,
    /// `(name, full name, checkpoint key)` of saved tensors.
    pub attributes: Vec<(String, String, String)>,
}

/// The TrackableObjectGraph: node 0 is the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectGraph {
    /// Nodes by id.
    pub nodes: Vec<ObjectNode>,
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl ObjectGraph {
    /// Parses the serialised graph.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut g = ObjectGraph::default();
        for (n, f) in Reader::fields(bytes).ok_or("malformed TrackableObjectGraph")? {
            let (1, Field::Len(node)) = (n, f) else { continue };
            let mut obj = ObjectNode::default();
            for (m, h) in Reader::fields(node).ok_or("malformed TrackableObject")? {
                match (m, h) {
                    (1, Field::Len(c)) => {
                        let (mut id, mut name) = (0usize, String::new());
                        for (k, v) in Reader::fields(c).ok_or("malformed ObjectReference")? {
                            match (k, v) {
                                (1, Field::Varint(x)) => id = x as usize,
                                (2, Field::Len(s)) => name = string(s),
                                _ => {}
                            }
                        }
                        obj.children.push((id, name));
                    }
                    (2, Field::Len(a)) => {
                        let (mut name, mut full, mut key) = (String::new(), String::new(), String::new());
                        for (k, v) in Reader::fields(a).ok_or("malformed SerializedTensor")? {
                            match (k, v) {
                                (1, Field::Len(s)) => name = string(s),
                                (2, Field::Len(s)) => full = string(s),
                                (3, Field::Len(s)) => key = string(s),
                                _ => {}
                            }
                        }
                        obj.attributes.push((name, full, key));
                    }
                    _ => {}
                }
            }
            g.nodes.push(obj);
        }
        for (i, n) in g.nodes.iter().enumerate() {
            if let Some((c, _)) = n.children.iter().find(|(c, _)| *c >= g.nodes.len()) {
                return Err(format!("node {i} points to node {c}, beyond the {} nodes", g.nodes.len()));
            }
        }
        Ok(g)
    }
}

/// One Keras object of `keras_metadata.pb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KerasObject {
    /// Node id (shared with the object graph).
    pub node_id: usize,
    /// Path from the root, e.g. `root.layer_with_weights-0`.
    pub node_path: String,
    /// Kind: `_tf_keras_layer`, `_tf_keras_network`, …
    pub identifier: String,
    /// JSON: name, class_name, config.
    pub metadata: String,
}

/// Parses `keras_metadata.pb`.
pub fn parse_metadata(bytes: &[u8]) -> Result<Vec<KerasObject>, String> {
    let mut out = Vec::new();
    for (n, f) in Reader::fields(bytes).ok_or("malformed SavedMetadata")? {
        let (1, Field::Len(node)) = (n, f) else { continue };
        let mut o =
            KerasObject { node_id: 0, node_path: String::new(), identifier: String::new(), metadata: String::new() };
        for (k, v) in Reader::fields(node).ok_or("malformed SavedObject")? {
            match (k, v) {
                (2, Field::Varint(x)) => o.node_id = x as usize,
                (3, Field::Len(s)) => o.node_path = string(s),
                (4, Field::Len(s)) => o.identifier = string(s),
                (5, Field::Len(s)) => o.metadata = string(s),
                _ => {}
            }
        }
        out.push(o);
    }
    Ok(out)
}
