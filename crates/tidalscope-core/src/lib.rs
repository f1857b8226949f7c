//! Shared types of tidalscope.
//!
//! Every other crate speaks in these terms: a [`Cutout`] is a multi-band image
//! stored band-major (`[bands, height, width]`, float32), a [`Band`] names a
//! survey filter, [`units`] converts between magnitudes, surface brightness and
//! coadd flux, and [`Rng`] is the project's one seeded random generator, so the
//! same seed gives the same bytes on every run.
//!
//! ```
//! use tidalscope_core::{units, Band, Cutout, Rng};
//!
//! let mut img = Cutout::zeros(5, 4, 4);
//! img.band_mut(Band::R.index())[0] = units::mag_to_flux(27.0, 27.0) as f32;
//! assert_eq!(img.band(1)[0], 1.0);
//!
//! let a = Rng::for_stream(42, 7).uniform();
//! let b = Rng::for_stream(42, 7).uniform();
//! assert_eq!(a, b);
//! ```
#![deny(missing_docs)]

mod band;
pub mod binning;
mod cutout;
pub mod denormal;
pub mod dispatch;
pub mod math;
mod rng;
pub mod stats;
pub mod units;

pub use band::{Band, UnknownBand};
pub use cutout::{Cutout, ShapeError};
pub use rng::{streams, Rng};

/// The version of tidalscope, written next to every output so a result can be
/// traced to the code that made it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
