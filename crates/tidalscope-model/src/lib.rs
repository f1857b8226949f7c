//! The models of tidalscope, in burn: the NNCLR encoder of Desmons et al.
//! (2023) (a pre-activation bottleneck ResNet, "ResNet-v2, CIFAR style"),
//! its projection head, the support queue, the NNCLR loss, and the
//! classifier (encoder + one sigmoid unit).
//!
//! Each model is a `Config` (which rebuilds it, and is saved as JSON next
//! to the weights) and a `Module`. The encoder never knows which loss
//! trains it; the queue is state outside the model; losses are pure
//! functions. Tensors are burn 0.22 device-dispatched tensors: the same code
//! runs on the flex CPU backend and, with the `cuda` feature, on NVIDIA GPUs.
#![deny(missing_docs)]

pub mod batch;
pub mod bundle;
pub mod classifier;
pub mod device;
pub mod encoder;
pub mod fast;
pub mod heads;
pub mod infer;
pub mod keras;
pub mod loss;
pub mod params;
pub mod queue;
pub mod store;
pub mod trainable;

pub use classifier::{Classifier, ClassifierConfig};
pub use encoder::{Encoder, EncoderConfig};
pub use heads::{ProjectionHead, ProjectionHeadConfig};
pub use queue::SupportQueue;
