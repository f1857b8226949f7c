//! Keras models written by real TensorFlow 2.11, run through our code:
//! the tiny fixture network as it is, and the keras-paper encoder and
//! classifier mapped onto our [`Encoder`] and [`Classifier`].

use burn::prelude::*;
use std::path::{Path, PathBuf};
use tidalscope_io::keras::SavedModel;
use tidalscope_io::npy;
use tidalscope_model::keras::{import, run_network, Imported, KerasError};

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// NHWC values → an `[N, C, H, W]` tensor.
fn nchw(values: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
    Tensor::<4>::from_data(TensorData::new(values, shape), &Device::flex()).permute([0, 3, 1, 2])
}

fn assert_close(got: &[f32], want: &[f32], rel: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= rel * w.abs().max(1e-3 * scale), "{what}[{i}]: {g} vs TensorFlow {w}");
    }
}

#[test]
fn tiny_encoder_reproduces_tensorflow() {
    let dir = shared().join("tensorflow/models");
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected_predictions.json")).unwrap()).unwrap();
    let want: Vec<f32> =
        want["encoder_output"][0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let net = SavedModel::open(&dir.join("tiny_encoder_savedmodel")).unwrap().network().unwrap();
    let x = nchw((0..320).map(|v| v as f32 / 100.0).collect(), [1, 8, 8, 5]);
    let got = run_network(&net, x).unwrap().into_data().try_to_vec::<f32>().unwrap();
    assert_close(&got, &want, 1e-5, "tiny encoder");
}

#[test]
fn a_model_unlike_ours_is_refused_with_what_differs() {
    let dir = shared().join("tensorflow/models/tiny_encoder_savedmodel");
    let net = SavedModel::open(&dir).unwrap().network().unwrap();
    let err = import(&net, &Device::flex()).unwrap_err();
    let KerasError::Mismatch { differences, .. } = &err else { panic!("{err}") };
    let text = err.to_string();
    // The tiny model's stem is followed by a biased 1×1 conv, not a block.
    assert!(!differences.is_empty(), "{text}");
    assert!(
        text.contains("tiny_encoder_savedmodel") && text.contains("BatchNormalization") && text.contains("conv2d_1"),
        "{text}"
    );
}

fn paper_input() -> (Tensor<4>, usize) {
    let (shape, values) = npy::read_f32(&shared().join("keras-paper/input_128.npy")).unwrap();
    assert_eq!(shape, vec![3, 128, 128, 5]);
    let x = nchw(values, [3, 128, 128, 5]);
    (x.slice([0..3, 0..5, 16..112, 16..112]), 3)
}

#[test]
fn paper_encoder_imports_and_reproduces_tensorflow() {
    let dir = shared().join("keras-paper");
    let net = SavedModel::open(&dir.join("encoder")).unwrap().network().unwrap();
    let Imported::Encoder { config, encoder, input_size } = import(&net, &Device::flex()).unwrap() else {
        panic!("not an encoder")
    };
    assert_eq!((config.bands, config.width, config.repr_dim, input_size), (5, 1.0, 128, Some(96)));
    let (x, n) = paper_input();
    let (_, want) = npy::read_f32(&dir.join("expected_encoder.npy")).unwrap();
    let got = encoder.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(got.len(), n * 128);
    assert_close(&got, &want, 1e-4, "paper encoder (mapped)");
    // The layer-by-layer run agrees too.
    let direct = run_network(&net, x).unwrap().into_data().try_to_vec::<f32>().unwrap();
    assert_close(&direct, &want, 1e-4, "paper encoder (as is)");
}

#[test]
fn paper_classifier_imports_and_reproduces_tensorflow() {
    let dir = shared().join("keras-paper");
    let net = SavedModel::open(&dir.join("classifier")).unwrap().network().unwrap();
    let Imported::Classifier { classifier, input_size, .. } = import(&net, &Device::flex()).unwrap() else {
        panic!("not a classifier")
    };
    assert_eq!(input_size, Some(96));
    let (x, _) = paper_input();
    let (_, want) = npy::read_f32(&dir.join("expected_classifier.npy")).unwrap();
    let got = burn::tensor::activation::sigmoid(classifier.forward(x)).into_data().try_to_vec::<f32>().unwrap();
    assert_close(&got, &want, 1e-4, "paper classifier");
}

#[test]
fn keras3_tiny_encoder_reproduces_tensorflow() {
    // gen_keras3.py gave the Keras 3 encoder the SavedModel's closed-form
    // weights, so TensorFlow's output for the SavedModel applies.
    let dir = shared().join("tensorflow");
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("models/expected_predictions.json")).unwrap()).unwrap();
    let want: Vec<f32> =
        want["encoder_output"][0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let net = tidalscope_io::keras::read(&dir.join("keras3/tiny_encoder.keras")).unwrap();
    let x = nchw((0..320).map(|v| v as f32 / 100.0).collect(), [1, 8, 8, 5]);
    let got = run_network(&net, x).unwrap().into_data().try_to_vec::<f32>().unwrap();
    assert_close(&got, &want, 1e-5, "Keras 3 tiny encoder");
}

/// Gives every value of a module a distinct random value (BatchNorm
/// variances and scales stay positive), so a mapping error cannot hide
/// behind default weights.
struct Scramble {
    rng: tidalscope_core::Rng,
    path: Vec<String>,
}

impl burn::module::ModuleMapper for Scramble {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: burn::module::Param<Tensor<D>>) -> burn::module::Param<Tensor<D>> {
        let last = self.path.last().map(String::as_str).unwrap_or("");
        let old = param.val();
        let dims = old.dims();
        let n: usize = dims.iter().product();
        let positive = matches!(last, "running_var" | "gamma");
        let v: Vec<f32> = (0..n)
            .map(|_| if positive { 0.5 + self.rng.uniform() as f32 } else { 0.2 * (self.rng.uniform() as f32 - 0.5) })
            .collect();
        let t = Tensor::<D>::from_data(TensorData::new(v, dims), &old.device());
        tidalscope_model::params::replaced(&param, t)
    }
}

#[test]
fn our_paper_encoder_and_classifier_round_trip_through_keras3_files() {
    use burn::module::Module;
    use tidalscope_model::keras::to_network;
    use tidalscope_model::{ClassifierConfig, EncoderConfig};
    let dev = Device::flex();
    let config = EncoderConfig::paper(5);
    let clf = ClassifierConfig::new(config.clone())
        .init(&dev)
        .map(&mut Scramble { rng: tidalscope_core::Rng::new(7), path: vec![] });
    let x = Tensor::<4>::random([2, 5, 32, 32], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
    let dir = tempfile::tempdir().unwrap();

    let enc_file = dir.path().join("encoder.keras");
    tidalscope_io::keras::write_keras3(&enc_file, &to_network(&clf.encoder, &config, 96, None), "test").unwrap();
    let net = tidalscope_io::keras::read(&enc_file).unwrap();
    let Imported::Encoder { config: back, encoder, input_size } = import(&net, &dev).unwrap() else {
        panic!("not an encoder")
    };
    assert_eq!((back, input_size), (config.clone(), Some(96)));
    let (a, b) = (
        clf.encoder.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap(),
        encoder.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap(),
    );
    assert_eq!(a, b, "encoder outputs after export and import");
    assert!(a.iter().all(|v| v.is_finite()) && a.iter().any(|v| v.abs() > 1e-3));

    let clf_file = dir.path().join("classifier.keras");
    tidalscope_io::keras::write_keras3(&clf_file, &to_network(&clf.encoder, &config, 96, Some(&clf.head)), "test")
        .unwrap();
    let Imported::Classifier { classifier, .. } =
        import(&tidalscope_io::keras::read(&clf_file).unwrap(), &dev).unwrap()
    else {
        panic!("not a classifier")
    };
    assert_eq!(
        clf.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap(),
        classifier.forward(x).into_data().try_to_vec::<f32>().unwrap()
    );
}
