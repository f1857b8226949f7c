//! Realistic, labelled mock survey cutouts with tidal features.
//!
//! The simulator reads like GalSim: light [`profile`]s and tidal
//! [`feature`]s are small values in sky units; a [`scene::Scene`] composes
//! them with a host, companions, background galaxies and stars; only
//! [`render::Renderer`] touches pixels (draw → PSF convolution → noise). The
//! [`survey`] presets hold pixel scale, zero point, PSF and depth. Every
//! object draws its own random stream from the run seed, so the same seed
//! gives the same bytes whatever the thread count.
//!
//! ```
//! use tidalscope_sim::{SimConfig, Simulator};
//!
//! let sim = Simulator::new(SimConfig { size: 48, ..SimConfig::default() }, 4).unwrap();
//! let mut renderer = sim.renderer();
//! let mock = sim.simulate(0, &mut renderer);
//! assert_eq!(mock.image.shape(), [5, 48, 48]);
//! assert_eq!(mock.truth.id, 0);
//! ```
#![deny(missing_docs)]

pub mod convolve;
pub mod cosmology;
pub mod draw;
pub mod fastmath;
pub mod feature;
pub mod noise;
pub mod profile;
pub mod render;
pub mod scene;
pub mod special;
pub mod survey;

use render::Renderer;
use scene::{sample_scene, Scene, SceneParams, Truth};
use survey::{Survey, SurveyName};
use tidalscope_core::streams;
use tidalscope_core::{Cutout, Rng};

/// Settings of a simulation run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SimConfig {
    /// Survey preset.
    pub survey: SurveyName,
    /// Cutout side in pixels.
    pub size: usize,
    /// Fraction of objects with a visible tidal feature (label 1).
    pub tidal_fraction: f64,
    /// Fraction of negatives that carry a feature too faint to see.
    pub near_miss_fraction: f64,
    /// Probability of a bright projected companion, for every object.
    pub companion_probability: f64,
    /// Density of background galaxies and stars as a multiple of the
    /// default (about 90 galaxies brighter than r = 27.5 and 2 stars per
    /// arcmin²): crowded fields, for testing a model on images unlike the
    /// ones it learnt from.
    #[serde(default = "one")]
    pub crowding: f64,
    /// Hosts' half-light radii as a multiple of the size–luminosity
    /// relations' (Shen et al. 2003): larger hosts fill more of the cutout
    /// (and a companion's size, drawn relative to its host's, follows).
    #[serde(default = "one")]
    pub host_size: f64,
    /// How much fainter (mag/arcsec²) than a feature the host must be
    /// where the feature lies ([`FEATURE_CONTRAST`] by default: the
    /// feature more than doubles the light there). 0 puts features where
    /// they equal the host's light; negative values on brighter host light
    /// (−0.5: the feature adds 63% to it), as on images where features are
    /// faint bumps on a galaxy's halo; between [`MIN_CONTRAST`] and
    /// [`MAX_CONTRAST`].
    #[serde(default = "default_contrast")]
    pub feature_contrast: f64,
    /// Sky-subtraction residuals (gradients across the cutout) as a
    /// multiple of the default, whose RMS is 5–15% of the pixel noise, 0
    /// to [`MAX_SCALE`]: poorer sky subtraction (near bright stars, in
    /// shallower pipelines), for testing a model on images unlike its
    /// training set's.
    #[serde(default = "one")]
    pub sky_residual: f64,
    /// Run seed.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            survey: SurveyName::HscUd,
            size: 128,
            tidal_fraction: 0.3,
            near_miss_fraction: 0.25,
            companion_probability: 0.15,
            crowding: 1.0,
            host_size: 1.0,
            feature_contrast: FEATURE_CONTRAST,
            sky_residual: 1.0,
            seed: 1,
        }
    }
}

/// The default of the scale factors (run records written before them).
fn one() -> f64 {
    1.0
}

/// The default [`SimConfig::feature_contrast`] (and that of run records
/// written before it existed).
pub const FEATURE_CONTRAST: f64 = 1.0;

/// Smallest [`SimConfig::feature_contrast`] accepted: 3 mag below the
/// host's light a feature adds 6% to it.
pub const MIN_CONTRAST: f64 = -3.0;

/// Largest [`SimConfig::feature_contrast`] accepted: beyond it most
/// features would have to be brightened to fit in the cutout.
pub const MAX_CONTRAST: f64 = 3.0;

/// [`FEATURE_CONTRAST`], for run records written before it existed.
fn default_contrast() -> f64 {
    FEATURE_CONTRAST
}

/// Largest [`SimConfig::crowding`], [`SimConfig::host_size`] and
/// [`SimConfig::sky_residual`] accepted:
/// beyond them the cutouts are no longer galaxies with surroundings (and
/// the drawing time grows without bound).
pub const MAX_SCALE: f64 = 10.0;

/// A simulation setting that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// The cutout is too small to hold a galaxy and its surroundings.
    #[error("cutout size {0} px is too small (minimum 16)")]
    SizeTooSmall(usize),
    /// A setting outside its range: a probability outside [0, 1], or a
    /// scale factor outside its own.
    #[error("{name} must lie in [{min}, {max}], got {value}")]
    OutOfRange {
        /// Setting name.
        name: &'static str,
        /// Its value.
        value: f64,
        /// Smallest accepted.
        min: f64,
        /// Largest accepted.
        max: f64,
    },
}

/// Makes the cutouts of one run: object `i` is always the same image.
#[derive(Debug, Clone)]
pub struct Simulator {
    config: SimConfig,
    params: SceneParams,
    labels: Vec<u8>,
}

impl Simulator {
    /// A run of `n` objects. Exactly `round(n × tidal_fraction)` are
    /// positives, placed by a seeded shuffle.
    pub fn new(config: SimConfig, n: usize) -> Result<Self, SimError> {
        if config.size < 16 {
            return Err(SimError::SizeTooSmall(config.size));
        }
        // Probabilities, then scale factors: hosts need a size, a field
        // may be empty.
        for (name, value, min, max) in [
            ("tidal fraction", config.tidal_fraction, 0.0, 1.0),
            ("near-miss fraction", config.near_miss_fraction, 0.0, 1.0),
            ("companion probability", config.companion_probability, 0.0, 1.0),
            ("crowding", config.crowding, 0.0, MAX_SCALE),
            ("host size", config.host_size, 0.1, MAX_SCALE),
            ("feature contrast", config.feature_contrast, MIN_CONTRAST, MAX_CONTRAST),
            ("sky residual", config.sky_residual, 0.0, MAX_SCALE),
        ] {
            if !(min..=max).contains(&value) {
                return Err(SimError::OutOfRange { name, value, min, max });
            }
        }
        let survey = Survey::preset(config.survey);
        let positives = (n as f64 * config.tidal_fraction).round() as usize;
        let mut labels: Vec<u8> = (0..n).map(|i| u8::from(i < positives)).collect();
        Rng::for_stream(config.seed, streams::SIM_LABELS).shuffle(&mut labels);
        let params = SceneParams {
            grid_size: convolve::padded_size(config.size, render::PSF_RADIUS_PX),
            survey,
            size: config.size,
            near_miss_fraction: config.near_miss_fraction,
            companion_probability: config.companion_probability,
            crowding: config.crowding,
            host_size: config.host_size,
            feature_contrast: config.feature_contrast,
            sky_residual: config.sky_residual,
        };
        Ok(Self { config, params, labels })
    }

    /// Number of objects in the run.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True for a run of no objects.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The run's settings.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The survey preset in use.
    pub fn survey(&self) -> &Survey {
        &self.params.survey
    }

    /// A renderer for this run's cutouts (one per thread).
    pub fn renderer(&self) -> Renderer {
        Renderer::new(&self.params.survey, self.config.size)
    }

    fn scene_and_rng(&self, id: usize) -> (Scene, Rng) {
        let mut rng = Rng::for_stream(self.config.seed, streams::SIM_OBJECT + id as u64);
        let scene = sample_scene(&self.params, id as u64, self.labels[id], self.config.seed, &mut rng);
        (scene, rng)
    }

    /// The label of object `id` (1 = visible tidal feature), without
    /// drawing its scene.
    pub fn scene_label(&self, id: usize) -> u8 {
        self.labels[id]
    }

    /// The scene of object `id`, before rendering.
    pub fn scene(&self, id: usize) -> Scene {
        self.scene_and_rng(id).0
    }

    /// Object `id` as observed, with its truth.
    pub fn simulate(&self, id: usize, renderer: &mut Renderer) -> Mock {
        let (scene, mut rng) = self.scene_and_rng(id);
        let image = renderer.render(&scene, &mut rng);
        Mock { image, noise_sigma: scene.noise_sigma, truth: scene.truth }
    }
}

/// One simulated object.
#[derive(Debug, Clone, PartialEq)]
pub struct Mock {
    /// The cutout, g, r, i, z, y, in coadd flux units.
    pub image: Cutout,
    /// Per-pixel noise σ of each band (for a variance plane).
    pub noise_sigma: [f64; 5],
    /// What is in it.
    pub truth: Truth,
}
