//! Choosing where tensors live: burn's flex CPU backend by default, an
//! NVIDIA GPU with the `cuda` feature.

use burn::prelude::Device;
use std::str::FromStr;

/// A compute device as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// burn's flex CPU backend (all cores).
    Cpu,
    /// CUDA GPU number N (needs the `cuda` build feature).
    Cuda(usize),
}

impl FromStr for DeviceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" | "gpu" => Ok(DeviceKind::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceKind::Cuda).map_err(|_| format!("bad GPU number in {s:?}")),
                None => Err(format!("unknown device {s:?} (cpu, cuda, cuda:N)")),
            },
        }
    }
}

impl DeviceKind {
    /// The burn device (without autodiff).
    pub fn device(self) -> Result<Device, String> {
        match self {
            DeviceKind::Cpu => Ok(Device::flex()),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda(n) => Ok(Device::cuda(n)),
            #[cfg(not(feature = "cuda"))]
            DeviceKind::Cuda(_) => {
                Err("this tidalscope was built without CUDA support; rebuild with `--features cuda`".into())
            }
        }
    }
}
