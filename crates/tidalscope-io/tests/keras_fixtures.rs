//! Keras SavedModel folders written by real TensorFlow 2.11
//! (tests/fixtures/tensorflow/models, made by make/gen_models.py): every
//! checkpoint variable reads back exactly as TensorFlow's own checkpoint
//! reader gives it, and the object graph yields the models' layers.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tidalscope_io::keras::{Op, SavedModel};
use tidalscope_io::tfdata::{DType, TensorData};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tensorflow/models")
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(models().join("expected_variables.json")).unwrap()).unwrap()
}

#[test]
fn every_fixture_variable_reads_exactly() {
    let exp = expected();
    for model in ["tiny_encoder_savedmodel", "tiny_finetuned_savedmodel"] {
        let sm = SavedModel::open(&models().join(model)).unwrap();
        let want = exp[model].as_object().unwrap();
        let keys: Vec<&String> = sm.bundle.entries.keys().collect();
        let mut want_keys: Vec<&String> = want.keys().collect();
        want_keys.sort();
        assert_eq!(keys, want_keys, "{model}: the key list");
        for (key, w) in want {
            let t = sm.bundle.read(key).unwrap_or_else(|e| panic!("{model} {key}: {e}"));
            let shape: Vec<usize> =
                w["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            assert_eq!(t.shape, shape, "{model} {key}");
            match w["dtype"].as_str().unwrap() {
                "string" => {
                    let TensorData::Str(s) = &t.data else { panic!("{key}: not strings") };
                    let digest = format!("{:x}", Sha256::digest(&s[0]));
                    assert_eq!(digest, w["sha256"].as_str().unwrap(), "{model} {key}");
                }
                "float32" => {
                    assert_eq!(t.dtype, DType::F32);
                    let got = t.to_f32().unwrap();
                    let want: Vec<f32> =
                        w["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
                    assert_eq!(
                        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "{model} {key}"
                    );
                }
                "int64" => {
                    assert_eq!(t.dtype, DType::I64);
                    let TensorData::Raw(b) = &t.data else { panic!() };
                    let got: Vec<i64> = b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
                    let want: Vec<i64> = w["values"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
                    assert_eq!(got, want, "{model} {key}");
                }
                d => panic!("unexpected dtype {d}"),
            }
        }
    }
}

#[test]
fn the_object_graph_gives_layers_their_weights() {
    let exp = expected();
    // The finetuned model nests the encoder in a Sequential: its weights are
    // stored under `variables/N` keys, yet the graph walk finds them by
    // layer. Weight j in model.weights holds base + 0.1·j + 0.001·(k+1).
    let sm = SavedModel::open(&models().join("tiny_finetuned_savedmodel")).unwrap();
    let net = sm.network().unwrap();
    let names: Vec<&str> =
        exp["finetuned_weight_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let mut seen = 0;
    for (j, full) in names.iter().enumerate() {
        let (layer, var) = full.trim_end_matches(":0").split_once('/').unwrap();
        let l = net.layers.iter().find(|l| l.name == layer).unwrap_or_else(|| panic!("no layer {layer}"));
        let w = &l.weights[var];
        let base = w.values[0] as f64 - 0.1 * j as f64 - 0.001;
        for (k, v) in w.values.iter().enumerate() {
            assert!((*v as f64 - (base + 0.1 * j as f64 + 0.001 * (k + 1) as f64)).abs() < 1e-5, "{full}[{k}]");
        }
        seen += 1;
    }
    assert_eq!(seen, 19);
    // The structure: augmenters are identities at inference, then the
    // encoder's layers, then Dense(1, sigmoid) as the output.
    let classes: Vec<&str> = net.layers.iter().map(|l| l.class_name.as_str()).collect();
    assert_eq!(classes.first(), Some(&"InputLayer"));
    assert!(
        matches!(&net.layers[net.output].op, Op::Dense { units: 1, bias: true, activation } if activation == "sigmoid")
    );
    let conv = net.layers.iter().find(|l| l.name == "conv2d").unwrap();
    assert!(
        matches!(conv.op, Op::Conv2D { filters: 4, kernel: [3, 3], strides: [1, 1], same: true, bias: false, .. }),
        "{:?}",
        conv.op
    );
    assert_eq!(conv.weights["kernel"].shape, vec![3, 3, 5, 4]);
    for l in &net.layers {
        for &i in &l.inputs {
            assert!(i < net.layers.len() && net.layers[i].path != l.path, "topological order");
        }
    }
}

#[test]
fn a_folder_that_is_not_a_savedmodel_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = SavedModel::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("keras_metadata.pb") && err.contains(&dir.path().display().to_string()), "{err}");
    // A truncated data shard: the checksum catches it.
    let copy = dir.path().join("m");
    std::fs::create_dir_all(copy.join("variables")).unwrap();
    let src = models().join("tiny_encoder_savedmodel");
    std::fs::copy(src.join("keras_metadata.pb"), copy.join("keras_metadata.pb")).unwrap();
    std::fs::copy(src.join("variables/variables.index"), copy.join("variables/variables.index")).unwrap();
    let mut data = std::fs::read(src.join("variables/variables.data-00000-of-00001")).unwrap();
    let n = data.len();
    data[n / 2] ^= 0x40;
    std::fs::write(copy.join("variables/variables.data-00000-of-00001"), &data).unwrap();
    let err = SavedModel::open(&copy).and_then(|m| m.network()).unwrap_err().to_string();
    assert!(err.contains("checksum") || err.contains("object graph"), "{err}");
}

#[test]
fn keras3_files_are_read_through_their_config() {
    // gen_keras3.py rebuilt the tiny encoder in Keras 3 with weight j of
    // model.weights = 0.1·j + 0.001·(k+1), and wrapped the same encoder
    // object in the fine-tuned Sequential (whose Dense(1) stays random).
    let k3 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tensorflow/keras3");
    let saved = tidalscope_io::keras::read(&models().join("tiny_encoder_savedmodel")).unwrap();
    // Keras 3 saves BatchNorm's axis as −1 where tf.keras 2 wrote 3 or 1.
    let classes = |n: &tidalscope_io::keras::KerasNetwork| {
        n.layers
            .iter()
            .map(|l| {
                let op = match &l.op {
                    Op::BatchNorm { epsilon, center, scale, .. } => {
                        Op::BatchNorm { axis: -1, epsilon: *epsilon, center: *center, scale: *scale }
                    }
                    op => op.clone(),
                };
                (l.class_name.clone(), op, l.inputs.clone())
            })
            .collect::<Vec<_>>()
    };
    for file in ["tiny_encoder.keras", "tiny_finetuned.keras"] {
        let net = tidalscope_io::keras::read(&k3.join(file)).unwrap();
        let enc: Vec<_> = net.layers.iter().filter(|l| l.path.contains("encoder/") || net.name == "encoder").collect();
        let order = [
            "conv2d",
            "batch_normalization",
            "conv2d_1",
            "dense",
            "batch_normalization_1",
            "dense_1",
            "batch_normalization_2",
        ];
        let var_order = |class: &str| -> &[&str] {
            match class {
                "Conv2D" | "Dense" => &["kernel", "bias"],
                _ => &["gamma", "beta", "moving_mean", "moving_variance"],
            }
        };
        let mut j = 0;
        for name in order {
            let l = enc.iter().find(|l| l.name == name).unwrap_or_else(|| panic!("{file}: no {name}"));
            for v in var_order(&l.class_name) {
                let Some(w) = l.weights.get(*v) else { continue };
                for (k, x) in w.values.iter().enumerate() {
                    assert_eq!(*x, (0.1 * j as f64 + 0.001 * (k + 1) as f64) as f32, "{file} {name}/{v}[{k}]");
                }
                j += 1;
            }
        }
        assert_eq!(j, 17, "{file}");
        if file == "tiny_encoder.keras" {
            // Same graph as the SavedModel of the same architecture.
            assert_eq!(classes(&net), classes(&saved));
            assert_eq!(net.declared_inputs[0].1, vec![Some(8), Some(8), Some(5)]);
        } else {
            assert!(
                matches!(&net.layers[net.output].op, Op::Dense { units: 1, bias: true, activation } if activation == "sigmoid")
            );
            assert_eq!(net.layers[net.output].weights["kernel"].shape, vec![3, 1]);
        }
    }
    let err = tidalscope_io::keras::read(&models().join("expected_predictions.json")).unwrap_err().to_string();
    assert!(err.contains("expected_predictions.json") && err.contains(".keras"), "{err}");
}
