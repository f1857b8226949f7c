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

/// Why a device cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// Not a device name.
    #[error("unknown device {0:?} (cpu, cuda, cuda:N)")]
    Unknown(String),
    /// `cuda:N` with N not a number.
    #[error("bad GPU number in {0:?} (cuda:N, N = 0, 1, …)")]
    BadGpuNumber(String),
    /// A GPU asked of a build without CUDA.
    #[error("this tidalscope was built without CUDA support; rebuild with `--features cuda`")]
    NoCuda,
}

impl FromStr for DeviceKind {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, DeviceError> {
        match s {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" | "gpu" => Ok(DeviceKind::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceKind::Cuda).map_err(|_| DeviceError::BadGpuNumber(s.into())),
                None => Err(DeviceError::Unknown(s.into())),
            },
        }
    }
}

impl std::fmt::Display for DeviceKind {
    /// The name [`FromStr`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceKind::Cpu => write!(f, "cpu"),
            DeviceKind::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceKind {
    /// The burn device (without autodiff).
    pub fn device(self) -> Result<Device, DeviceError> {
        match self {
            DeviceKind::Cpu => Ok(Device::flex()),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda(n) => Ok(Device::cuda(n)),
            #[cfg(not(feature = "cuda"))]
            DeviceKind::Cuda(_) => Err(DeviceError::NoCuda),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_ones_say_why() {
        for k in [DeviceKind::Cpu, DeviceKind::Cuda(0), DeviceKind::Cuda(3)] {
            assert_eq!(k.to_string().parse::<DeviceKind>(), Ok(k));
        }
        assert_eq!("gpu".parse::<DeviceKind>(), Ok(DeviceKind::Cuda(0)));
        assert_eq!("cuda:x".parse::<DeviceKind>(), Err(DeviceError::BadGpuNumber("cuda:x".into())));
        let e = "tpu".parse::<DeviceKind>().unwrap_err();
        assert!(e.to_string().contains("cpu, cuda, cuda:N"), "{e}");
    }
}
