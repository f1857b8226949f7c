//! Random scenes: what is in one cutout, in sky units, before any pixel is
//! drawn — and the truth that travels with it.
//!
//! Choices and sources (all sizes are drawn in physical units and projected
//! with [`crate::cosmology`]):
//! * Hosts: redshift from the comoving volume in 0.03 < z < 0.3; absolute
//!   magnitude M_r ~ N(−21.0, 0.9) (red sequence) or N(−20.6, 0.9) (blue
//!   cloud); kept if 14 < m_r < 20.5 (a magnitude-limited sample like the
//!   reference's), with an approximate K-correction (2.5z red, 0.8z blue).
//!   Half-light radii from the SDSS size–luminosity relations of Shen et al.
//!   (2003, their eq. 14 and 15 with table 1), with 0.13/0.17 dex scatter.
//!   Red hosts: single Sérsic n ∈ [3, 5.5] or bulge+disk with B/T ∈ [0.4, 0.85];
//!   blue hosts: bulge+disk with B/T ∈ [0, 0.35] or a single Sérsic n ∈ [0.8, 1.6].
//!   Observed colours of the red sequence and blue cloud shift with z.
//! * Background galaxies: 90 per arcmin² brighter than r = 27.5 with
//!   d log N / dm = 0.31 (deep-field counts), sizes shrinking with magnitude.
//! * Stars: 2 per arcmin² with 15 < r < 25 along an approximate stellar locus.
//! * Companion (a hard negative when no feature is present): with
//!   probability `companion_probability`, a galaxy within 2.5 mag of the host,
//!   projected nearby, independent of the label so it is no giveaway.
//! * Tidal features: positives carry one (30%: two) features whose r-band
//!   surface brightness lies between 24.5 mag/arcsec² and the survey's
//!   visibility limit; near-miss negatives carry one that is 1–2.5 mag fainter
//!   than the limit. Each lies outside the radius where the host is
//!   [`SceneParams::feature_contrast`] mag fainter than it.

use crate::cosmology;
use crate::feature::{Curve, Feature, FeatureKind, Plume, Ridge, ShellArc};
use crate::profile::{Frame, Profile, Sersic};
use crate::survey::Survey;
use std::f64::consts::{PI, TAU};
use tidalscope_core::{units, Rng};

/// A light profile with its brightness in the five bands: `profile` is
/// normalised in the reference band r, `band_factors[b]` scales it to band b.
#[derive(Debug, Clone)]
pub struct Component {
    /// Shape and r-band normalisation.
    pub shape: Shape,
    /// Flux ratio of each band to r (g, r, i, z, y).
    pub band_factors: [f64; 5],
    /// Drawing accuracy in (0, 1] (see [`crate::draw::DrawParams::accuracy`]).
    pub accuracy: f64,
}

impl Component {
    /// Accuracy for faint background galaxies.
    pub const COARSE: f64 = 0.25;

    /// A component drawn with full accuracy.
    pub fn new(shape: Shape, band_factors: [f64; 5]) -> Self {
        Self { shape, band_factors, accuracy: 1.0 }
    }

    /// The same component drawn with coarser pixel integration: for sources
    /// so faint that a few per cent of their flux is far below their noise.
    pub fn coarse(self) -> Self {
        Self { accuracy: Self::COARSE, ..self }
    }
}

/// The shapes a component can take.
#[derive(Debug, Clone)]
pub enum Shape {
    /// A galaxy or part of one.
    Sersic(Sersic),
    /// A tidal feature (boxed: a tail holds two ridges, far larger than a
    /// Sérsic).
    Feature(Box<Feature>),
}

impl Shape {
    /// The shape as a drawable profile.
    pub fn profile(&self) -> &dyn Profile {
        match self {
            Shape::Sersic(s) => s,
            Shape::Feature(f) => f.as_ref(),
        }
    }
}

/// A point source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Star {
    /// Sky position (arcsec from the cutout centre).
    pub x: f64,
    /// Sky position (arcsec).
    pub y: f64,
    /// Flux in g, r, i, z, y.
    pub flux: [f64; 5],
}

/// What kind of object a cutout shows, for the catalogue and for
/// per-kind false-positive rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A visible tidal feature (label 1).
    Tidal,
    /// No feature, no companion.
    Plain,
    /// No feature, but a bright projected companion.
    Companion,
    /// A feature too faint to see (label 0).
    NearMiss,
}

impl ObjectKind {
    /// Name used in catalogues.
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Tidal => "tidal",
            ObjectKind::Plain => "plain",
            ObjectKind::Companion => "companion",
            ObjectKind::NearMiss => "near_miss",
        }
    }
}

/// Ground truth of one cutout: one row of `catalog.csv`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Truth {
    /// Object id (its index in the run).
    pub id: u64,
    /// 1 = a visible tidal feature, 0 = none.
    pub label: u8,
    /// tidal, plain, companion or near_miss.
    pub kind: ObjectKind,
    /// Feature kinds separated by `;`, primary first (empty when none).
    pub feature_types: String,
    /// r-band surface brightness (mag/arcsec²) of the primary feature (the
    /// first listed, which sets the label), as defined in
    /// [`crate::feature`]; empty when none.
    pub feature_sb: Option<f64>,
    /// Host r-band magnitude.
    pub host_mag_r: f64,
    /// Host redshift.
    pub redshift: f64,
    /// Host half-light radius (arcsec, circularised).
    pub r_half: f64,
    /// Sérsic index of the host (of its bulge for bulge+disk hosts).
    pub sersic_n: f64,
    /// Bulge-to-total flux ratio (single Sérsic hosts: 1 if n ≥ 2.5, else 0).
    pub bt: f64,
    /// Ellipticity 1 − b/a of the host's dominant component.
    pub ellipticity: f64,
    /// Position angle of the host's major axis, degrees counter-clockwise
    /// from the +x (column) axis.
    pub pa_deg: f64,
    /// Background galaxies brighter than r = 24 with centres in the cutout.
    pub n_neighbours: u32,
    /// Stars with centres in the cutout.
    pub n_stars: u32,
    /// Bright projected companions.
    pub n_companions: u32,
    /// PSF FWHM in r (arcsec) of this cutout.
    pub psf_fwhm_r: f64,
    /// Right ascension of the cutout centre (degrees, ICRS), in a deep
    /// field of the survey (COSMOS for hsc-ud, ECDFS for lsst-y10).
    pub ra: f64,
    /// Declination of the cutout centre (degrees).
    pub dec: f64,
    /// Run seed.
    pub seed: u64,
    /// Survey preset.
    pub survey: String,
}

/// Everything in one cutout.
#[derive(Debug, Clone)]
pub struct Scene {
    /// Extended sources (host, features, companions, background galaxies).
    pub components: Vec<Component>,
    /// Point sources.
    pub stars: Vec<Star>,
    /// PSF FWHM per band (arcsec), jittered around the survey's.
    pub psf_fwhm: [f64; 5],
    /// Per-pixel noise σ per band, jittered around the survey's depth.
    pub noise_sigma: [f64; 5],
    /// Sky-residual RMS as a fraction of the pixel noise.
    pub sky_residual: f64,
    /// Sub-pixel offset of the host from the cutout centre (arcsec).
    pub centre: (f64, f64),
    /// The truth.
    pub truth: Truth,
}

impl Truth {
    /// Column names of [`Truth::csv_fields`], in order.
    pub const CSV_COLUMNS: [&'static str; 20] = [
        "id",
        "label",
        "kind",
        "feature_types",
        "feature_sb",
        "host_mag_r",
        "redshift",
        "r_half",
        "sersic_n",
        "bt",
        "ellipticity",
        "pa_deg",
        "n_neighbours",
        "n_stars",
        "n_companions",
        "psf_fwhm_r",
        "ra",
        "dec",
        "seed",
        "survey",
    ];

    /// The truth as CSV fields, with sensible precision per column
    /// (magnitudes to 1e-4, coordinates to 1e-7 degree); empty for none.
    pub fn csv_fields(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.label.to_string(),
            self.kind.name().to_string(),
            self.feature_types.clone(),
            self.feature_sb.map(|v| format!("{v:.4}")).unwrap_or_default(),
            format!("{:.4}", self.host_mag_r),
            format!("{:.5}", self.redshift),
            format!("{:.4}", self.r_half),
            format!("{:.3}", self.sersic_n),
            format!("{:.3}", self.bt),
            format!("{:.3}", self.ellipticity),
            format!("{:.2}", self.pa_deg),
            self.n_neighbours.to_string(),
            self.n_stars.to_string(),
            self.n_companions.to_string(),
            format!("{:.4}", self.psf_fwhm_r),
            format!("{:.7}", self.ra),
            format!("{:.7}", self.dec),
            self.seed.to_string(),
            self.survey.clone(),
        ]
    }
}

impl Scene {
    /// An empty field at the survey's nominal PSF and depth, without sky
    /// residuals: a canvas for injecting sources by hand.
    pub fn blank(survey: &Survey) -> Self {
        Scene {
            components: Vec::new(),
            stars: Vec::new(),
            psf_fwhm: survey.bands.map(|b| b.psf_fwhm),
            noise_sigma: survey.bands.map(|b| b.noise_sigma),
            sky_residual: 0.0,
            centre: (0.0, 0.0),
            truth: Truth {
                id: 0,
                label: 0,
                kind: ObjectKind::Plain,
                feature_types: String::new(),
                feature_sb: None,
                host_mag_r: f64::NAN,
                redshift: f64::NAN,
                r_half: f64::NAN,
                sersic_n: f64::NAN,
                bt: f64::NAN,
                ellipticity: f64::NAN,
                pa_deg: f64::NAN,
                n_neighbours: 0,
                n_stars: 0,
                n_companions: 0,
                psf_fwhm_r: survey.bands[1].psf_fwhm,
                ra: 0.0,
                dec: 0.0,
                seed: 0,
                survey: survey.name.name().to_string(),
            },
        }
    }
}

/// The parameters of a scene that are not random.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneParams {
    /// Survey.
    pub survey: Survey,
    /// Cutout side (pixels).
    pub size: usize,
    /// Side of the padded drawing grid (pixels): sources are placed over it.
    pub grid_size: usize,
    /// Probability that a negative is a near miss.
    pub near_miss_fraction: f64,
    /// Probability of a bright projected companion.
    pub companion_probability: f64,
    /// Background galaxy and star densities as a multiple of the default.
    pub crowding: f64,
    /// Host half-light radii as a multiple of the size–luminosity
    /// relations' (a companion's size follows its host's).
    pub host_size: f64,
    /// How much fainter (mag/arcsec²) than a feature the host must be
    /// at the radius outside which the feature lies.
    pub feature_contrast: f64,
    /// Sky-subtraction residuals as a multiple of the default.
    pub sky_residual: f64,
}

/// Colour offsets (m_b − m_r for g, r, i, z, y) of a population at redshift z.
fn colours(red: bool, z: f64, rng: &mut Rng, scatter: f64) -> [f64; 5] {
    let (gr, ri, iz, zy) = if red {
        (0.75 + 1.5 * z, 0.40 + 0.6 * z, 0.22 + 0.3 * z, 0.10)
    } else {
        (0.40 + 0.5 * z, 0.20 + 0.3 * z, 0.10 + 0.1 * z, 0.05)
    };
    let gr = gr + rng.gaussian(0.0, scatter);
    let ri = ri + rng.gaussian(0.0, scatter);
    let iz = iz + rng.gaussian(0.0, scatter);
    let zy = zy + rng.gaussian(0.0, scatter);
    [gr, 0.0, -ri, -ri - iz, -ri - iz - zy]
}

/// Flux ratios to r from colour offsets.
fn factors(offsets: [f64; 5]) -> [f64; 5] {
    offsets.map(|d| 10f64.powf(-0.4 * d))
}

fn sample_redshift(rng: &mut Rng) -> f64 {
    let (lo, hi) = (0.03, 0.3);
    let wmax = cosmology::volume_weight(hi);
    loop {
        let z = rng.range(lo, hi);
        if rng.uniform() * wmax < cosmology::volume_weight(z) {
            return z;
        }
    }
}

/// Circularised half-light radius of a set of concentric Sérsic components
/// (each treated as round with radius r_e √q), by bisection.
fn half_light_radius(parts: &[Sersic]) -> f64 {
    let total: f64 = parts.iter().map(|s| s.flux()).sum();
    let enclosed = |r: f64| -> f64 {
        parts.iter().map(|s| s.flux() * s.enclosed_fraction(r / s.frame().q.sqrt())).sum::<f64>() / total
    };
    let (mut lo, mut hi) = (0.0, parts.iter().map(|s| s.r_e()).fold(0.0, f64::max) * 50.0);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if enclosed(mid) < 0.5 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// A host galaxy and its description.
struct Host {
    components: Vec<Component>,
    mag_r: f64,
    z: f64,
    r_half: f64,
    n: f64,
    bt: f64,
    q: f64,
    pa: f64,
    colour: [f64; 5],
}

fn sample_host(rng: &mut Rng, zp: f64, centre: (f64, f64), size_scale: f64) -> Host {
    let (z, red, m_abs, mag_r) = loop {
        let z = sample_redshift(rng);
        let red = rng.bernoulli(0.5);
        let m_abs = if red { rng.gaussian(-21.0, 0.9) } else { rng.gaussian(-20.6, 0.9) };
        let k = if red { 2.5 * z } else { 0.8 * z };
        let mag_r = m_abs + cosmology::distance_modulus(z) + k;
        if (-23.8..=-18.5).contains(&m_abs) && (14.0..=20.5).contains(&mag_r) {
            break (z, red, m_abs, mag_r);
        }
    };
    // Shen et al. (2003): early types log R = -0.4 a M + b (a = 0.65,
    // b = -5.06); late types log R = -0.4 α M + (β-α) log(1 + 10^(-0.4(M-M0))) + γ.
    let log_r_kpc = if red {
        -0.4 * 0.65 * m_abs - 5.06 + rng.gaussian(0.0, 0.13)
    } else {
        let (alpha, beta, gamma, m0) = (0.21, 0.53, -1.31, -20.52);
        -0.4 * alpha * m_abs
            + (beta - alpha) * (1.0 + 10f64.powf(-0.4 * (m_abs - m0))).log10()
            + gamma
            + rng.gaussian(0.0, 0.17)
    };
    let r_half = 10f64.powf(log_r_kpc) / cosmology::kpc_per_arcsec(z) * size_scale;
    let flux_r = units::mag_to_flux(mag_r, zp);
    let pa = rng.range(0.0, PI);
    let colour = colours(red, z, rng, 0.04);
    let red_colour = colours(true, z, rng, 0.03);
    let single = if red { rng.bernoulli(0.6) } else { rng.bernoulli(0.3) };
    let (parts, n, bt, q) = if single {
        let n = if red { rng.range(3.0, 5.5) } else { rng.range(0.8, 1.6) };
        let q = if red { rng.range(0.55, 1.0) } else { rng.range(0.25, 1.0) };
        let s = Sersic::new(n, 1.0, flux_r).shear(q, pa).shift(centre.0, centre.1);
        (vec![(s, factors(colour))], n, if n >= 2.5 { 1.0 } else { 0.0 }, q)
    } else {
        let bt = if red { rng.range(0.4, 0.85) } else { rng.range(0.0, 0.35) };
        let nb = if red { rng.range(3.0, 4.5) } else { rng.range(1.5, 4.0) };
        // A thin disk seen at random inclination (intrinsic thickness 0.15).
        let cos_i: f64 = rng.uniform();
        let q_disk = (cos_i * cos_i * (1.0 - 0.0225) + 0.0225).sqrt();
        let q_bulge = rng.range(0.6, 1.0);
        let r_ratio = rng.range(0.2, 0.5);
        let disk = Sersic::new(1.0, 1.0, flux_r * (1.0 - bt)).shear(q_disk, pa).shift(centre.0, centre.1);
        let bulge = Sersic::new(nb, r_ratio, flux_r * bt).shear(q_bulge, pa).shift(centre.0, centre.1);
        let q = if bt >= 0.5 { q_bulge } else { q_disk };
        (vec![(bulge, factors(red_colour)), (disk, factors(colour))], nb, bt, q)
    };
    // Scale radii so the combined circularised half-light radius is r_half.
    let parts: Vec<(Sersic, [f64; 5])> = parts.into_iter().filter(|(s, _)| s.flux() > 0.0).collect();
    let profiles: Vec<Sersic> = parts.iter().map(|(s, _)| *s).collect();
    let scale = r_half / half_light_radius(&profiles);
    let components = parts
        .into_iter()
        .map(|(s, f)| {
            let s = s.with_r_e(s.r_e() * scale);
            Component::new(Shape::Sersic(s), f)
        })
        .collect();
    Host { components, mag_r, z, r_half, n, bt, q, pa, colour }
}

/// Mean r-band surface brightness (flux per arcsec²) of the host on the
/// circle of radius `r` arcsec around its centre.
fn host_sb(host: &Host, centre: (f64, f64), r: f64) -> f64 {
    let n = 16;
    (0..n)
        .map(|k| {
            let t = TAU * k as f64 / n as f64;
            let (x, y) = (centre.0 + r * t.cos(), centre.1 + r * t.sin());
            host.components.iter().map(|c| c.shape.profile().sb(x, y)).sum::<f64>()
        })
        .sum::<f64>()
        / n as f64
}

/// Where a feature of r-band SB `mu` can sit so that the host does not
/// swamp it: the radius beyond which the host is `contrast` mag fainter
/// than the feature (at the default 1 the feature more than doubles the
/// light there), and never inside 1.2 half-light radii or 2″. A visible feature
/// (`visible`) that would have to sit outside the cutout is brightened
/// until it fits at 0.6 of the half-width, so a label of 1 always means
/// something a person could see. Returns the (possibly brightened) SB and
/// that radius.
fn placement(
    host: &Host,
    centre: (f64, f64),
    (mu, contrast): (f64, f64),
    visible: bool,
    half_fov: f64,
    zp: f64,
) -> (f64, f64) {
    let target = units::sb_to_flux_density(mu + contrast, zp);
    let (mut lo, mut hi) = (0.0, 3.0 * half_fov);
    if host_sb(host, centre, hi) > target {
        lo = hi;
    } else {
        for _ in 0..40 {
            let mid = 0.5 * (lo + hi);
            if host_sb(host, centre, mid) > target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
    }
    let r0 = lo.max(1.2 * host.r_half).max(2.0);
    let limit = 0.6 * half_fov;
    if r0 <= limit {
        (mu, r0)
    } else if visible {
        let brighter = units::flux_density_to_sb(host_sb(host, centre, limit), zp) - contrast;
        (brighter.min(mu), limit)
    } else {
        (mu, limit)
    }
}

/// Geometry and brightness of one feature of `kind` with r-band SB `mu`,
/// placed outside radius `r0` (see [`placement`]) where it is not hidden by
/// the host. Returns the feature and its catalogued SB.
#[allow(clippy::too_many_arguments)]
fn sample_feature(
    kind: FeatureKind,
    mu: f64,
    r0: f64,
    host: &Host,
    centre: (f64, f64),
    half_fov: f64,
    zp: f64,
    rng: &mut Rng,
) -> (Feature, f64) {
    let amp = units::sb_to_flux_density(mu, zp);
    let re = host.r_half.max(0.6);
    let (cx, cy) = centre;
    match kind {
        FeatureKind::Stream => {
            // Pericentre beyond r0; the orbit may leave the cutout.
            let e = rng.range(0.0, 0.6);
            let p = r0 * (1.0 + e) * rng.range(1.0, 1.5);
            let frame = Frame::new(cx, cy, rng.range(0.0, PI), rng.range(0.3, 1.0));
            let width = (rng.range(0.3, 0.7) * (re / 3.0).clamp(1.0, 2.5)).clamp(0.35, 2.0);
            let ridge = Ridge {
                frame,
                curve: Curve::Orbit { p, e, kappa: rng.range(0.7, 1.0), omega: rng.range(0.0, TAU) },
                start: rng.range(0.0, TAU),
                length: rng.range(0.6 * PI, 2.2 * PI),
                width,
                width_growth: rng.range(0.0, 0.5),
                taper_in: 0.15,
                taper_out: 0.15,
                amplitude: amp,
            };
            (Feature::Stream(ridge), mu)
        }
        FeatureKind::Tail => {
            // Tails leave the host body and curve out well beyond r0.
            let start_r = rng.range(0.8, 1.5) * re;
            let r_end = (r0 * rng.range(1.6, 2.4)).max(start_r + 3.0).min(1.3 * half_fov.max(start_r + 3.0));
            let length = rng.range(0.5 * PI, 1.2 * PI);
            let frame = Frame::new(cx, cy, rng.range(0.0, PI), rng.range(0.5, 1.0));
            // Arms trail either way round.
            let frame = if rng.bernoulli(0.5) { frame.mirrored() } else { frame };
            let start = rng.range(0.0, TAU);
            let width = (rng.range(0.4, 0.9) * (re / 2.0).clamp(1.0, 3.0)).clamp(0.4, 3.0);
            let arm = |start: f64, amplitude: f64| Ridge {
                frame,
                curve: Curve::Spiral { r0: start_r, slope: (r_end - start_r) / length },
                start,
                length,
                width,
                width_growth: TAIL_WIDTH_GROWTH,
                taper_in: 0.1,
                taper_out: 0.45,
                amplitude,
            };
            let ratio = rng.range(0.4, 1.0);
            (Feature::Tail([arm(start, amp), arm(start + PI, amp * ratio)]), mu)
        }
        FeatureKind::Shell => {
            let count = 1 + rng.below(4) as usize;
            let r1 = r0 * rng.range(1.0, 1.4);
            let ratio = rng.range(1.3, 1.6);
            let interleaved = rng.bernoulli(0.6);
            let frame = Frame::new(cx, cy, host.pa, host.q.sqrt());
            let side = if rng.bernoulli(0.5) { 0.0 } else { PI };
            let first = ShellArc::amplitude_for_mean_sb(amp);
            let shells = (0..count)
                .map(|k| {
                    let radius = r1 * ratio.powi(k as i32);
                    let direction =
                        if interleaved { side + PI * (k % 2) as f64 } else { side } + rng.gaussian(0.0, 0.15);
                    ShellArc {
                        frame,
                        radius,
                        direction,
                        half_opening: rng.range(50f64.to_radians(), 100f64.to_radians()),
                        taper: 0.3,
                        inner_scale: 0.2 * radius,
                        edge: 0.12,
                        amplitude: first * 0.75f64.powi(k as i32),
                    }
                })
                .collect();
            (Feature::Shells(shells), mu)
        }
        FeatureKind::Plume => {
            let radius = r0 * rng.range(1.1, 1.5);
            let plume = Plume {
                frame: Frame::new(cx, cy, 0.0, 1.0),
                radius,
                radial_width: radius * rng.range(0.3, 0.5),
                direction: rng.range(0.0, TAU),
                angular_width: rng.range(0.35, 0.8),
                amplitude: amp,
            };
            (Feature::Plume(plume), mu)
        }
        FeatureKind::DoubleNucleus => {
            // A merging nucleus sits within the host's body but clear of its
            // core, so it can be told apart from it.
            let mag = host.mag_r + rng.range(0.75, 2.5);
            let r_e = rng.range(0.2, 0.6);
            let sep = (rng.range(0.4, 1.0) * re).clamp(0.9, 4.0);
            let ang = rng.range(0.0, TAU);
            let s = Sersic::new(rng.range(1.5, 4.0), r_e, units::mag_to_flux(mag, zp))
                .shear(rng.range(0.6, 1.0), rng.range(0.0, PI))
                .shift(cx + sep * ang.cos(), cy + sep * ang.sin());
            let mu_e = units::flux_density_to_sb(s.mean_sb_within_r_e(), zp);
            (Feature::DoubleNucleus(s), mu_e)
        }
    }
}

/// Tails widen by 60% along their length: thin near the host, fanning out.
const TAIL_WIDTH_GROWTH: f64 = 0.6;

/// Draws the scene of object `id` with label `label`.
pub fn sample_scene(params: &SceneParams, id: u64, label: u8, seed: u64, rng: &mut Rng) -> Scene {
    let survey = &params.survey;
    let zp = survey.zero_point;
    let scale = survey.pixel_scale;
    let half_fov = params.size as f64 * scale / 2.0;
    let half_grid = params.grid_size as f64 * scale / 2.0;
    let centre = (rng.range(-0.5, 0.5) * scale, rng.range(-0.5, 0.5) * scale);

    let host = sample_host(rng, zp, centre, params.host_size);
    let mut components = host.components.clone();

    // Negatives: near miss, or plain; companions are independent of label.
    let near_miss = label == 0 && rng.bernoulli(params.near_miss_fraction);
    let limit = survey.visibility_limit();
    let mut kinds: Vec<FeatureKind> = Vec::new();
    let mut sbs: Vec<f64> = Vec::new();
    let weights = [0.25, 0.2, 0.25, 0.2, 0.1];
    if label == 1 {
        let first = FeatureKind::ALL[rng.weighted(&weights)];
        kinds.push(first);
        sbs.push(rng.range(24.5, limit));
        if rng.bernoulli(0.3) || (first == FeatureKind::Tail && rng.bernoulli(0.4)) {
            let second = if first == FeatureKind::Tail && rng.bernoulli(0.5) {
                FeatureKind::DoubleNucleus
            } else {
                loop {
                    let k = FeatureKind::ALL[rng.weighted(&weights)];
                    if k != first {
                        break k;
                    }
                }
            };
            if !kinds.contains(&second) {
                kinds.push(second);
                // A second feature can be of any brightness, visible or not.
                sbs.push(rng.range(24.5, limit + 2.0));
            }
        }
    } else if near_miss {
        kinds.push(FeatureKind::ALL[rng.weighted(&weights[..4])]);
        sbs.push(rng.range(limit + 1.0, limit + 2.5));
    }
    // The first feature sets the label; its SB is the one catalogued.
    let mut feature_sb: Option<f64> = None;
    for (k, (&kind, &mu)) in kinds.iter().zip(&sbs).enumerate() {
        let (mu, r0) = placement(&host, centre, (mu, params.feature_contrast), label == 1 && k == 0, half_fov, zp);
        let (feature, recorded) = sample_feature(kind, mu, r0, &host, centre, half_fov, zp, rng);
        // Features share the host's colours, shifted; tails are often bluer.
        let mut off = host.colour;
        let shift = rng.gaussian(if kind == FeatureKind::Tail { -0.15 } else { 0.0 }, 0.1);
        for (b, o) in off.iter_mut().enumerate() {
            *o += shift * (1.0 - b as f64) * 0.5;
        }
        components.push(Component::new(Shape::Feature(Box::new(feature)), factors(off)));
        if k == 0 {
            feature_sb = Some(recorded);
        }
    }

    // Companion.
    let mut n_companions = 0;
    if rng.bernoulli(params.companion_probability) {
        let mag = host.mag_r + rng.range(0.0, 2.5);
        let red = rng.bernoulli(0.5);
        let r_e = host.r_half * 10f64.powf(-0.2 * (mag - host.mag_r)) * rng.range(0.7, 1.3);
        let sep = rng.range((2.0 * host.r_half).max(3.0).min(0.6 * half_fov), 0.8 * half_fov);
        let ang = rng.range(0.0, TAU);
        let n = if red { rng.range(2.5, 5.0) } else { rng.range(0.8, 1.5) };
        let s = Sersic::new(n, r_e.max(0.3), units::mag_to_flux(mag, zp))
            .shear(rng.range(0.3, 1.0), rng.range(0.0, PI))
            .shift(centre.0 + sep * ang.cos(), centre.1 + sep * ang.sin());
        components.push(Component::new(Shape::Sersic(s), factors(colours(red, rng.range(0.03, 0.6), rng, 0.05))));
        n_companions = 1;
    }

    // Background galaxies over the whole padded grid, so light from just
    // outside the cutout spills in as it does in a real image.
    let area_arcmin2 = (2.0 * half_grid / 60.0).powi(2);
    let (m_lo, m_hi, slope) = (18.0, 27.5, 0.31);
    let n_bg = rng.poisson(90.0 * area_arcmin2 * params.crowding);
    let mut n_neighbours = 0;
    let u_min = 10f64.powf(slope * (m_lo - m_hi));
    for _ in 0..n_bg {
        let mag = m_hi + rng.range(u_min, 1.0).log10() / slope;
        let x = rng.range(-half_grid, half_grid);
        let y = rng.range(-half_grid, half_grid);
        let r_e = 0.7 * 10f64.powf(-0.12 * (mag - 22.0)) * 10f64.powf(rng.gaussian(0.0, 0.2));
        let s = Sersic::new(rng.range(0.5, 2.0), r_e, units::mag_to_flux(mag, zp))
            .shear(rng.range(0.2, 1.0), rng.range(0.0, PI))
            .shift(x, y);
        let red = rng.bernoulli(0.35);
        let galaxy = Component::new(Shape::Sersic(s), factors(colours(red, rng.range(0.1, 1.2), rng, 0.1)));
        components.push(if mag > 24.0 { galaxy.coarse() } else { galaxy });
        if mag < 24.0 && x.abs() < half_fov && y.abs() < half_fov {
            n_neighbours += 1;
        }
    }

    // Stars.
    let n_star = rng.poisson(2.0 * area_arcmin2 * params.crowding);
    let mut stars = Vec::with_capacity(n_star as usize);
    let mut n_stars = 0;
    let (s_lo, s_hi, s_slope) = (15.0, 25.0, 0.12);
    let su_min = 10f64.powf(s_slope * (s_lo - s_hi));
    for _ in 0..n_star {
        let mag = s_hi + rng.range(su_min, 1.0).log10() / s_slope;
        let gr = rng.range(0.3, 1.5);
        let ri = 0.1 + 0.45 * gr + rng.gaussian(0.0, 0.03);
        let iz = 0.05 + 0.2 * gr;
        let zy = 0.02 + 0.1 * gr;
        let off = [gr, 0.0, -ri, -ri - iz, -ri - iz - zy];
        let f_r = units::mag_to_flux(mag, zp);
        let x = rng.range(-half_grid, half_grid);
        let y = rng.range(-half_grid, half_grid);
        if x.abs() < half_fov && y.abs() < half_fov {
            n_stars += 1;
        }
        stars.push(Star { x, y, flux: off.map(|d| f_r * 10f64.powf(-0.4 * d)) });
    }

    // Observing conditions of this cutout.
    let seeing = rng.range(0.9, 1.1);
    let psf_fwhm: [f64; 5] = std::array::from_fn(|b| survey.bands[b].psf_fwhm * seeing * rng.range(0.97, 1.03));
    let depth = rng.range(-0.2, 0.2);
    let noise_sigma: [f64; 5] = std::array::from_fn(|b| survey.bands[b].noise_sigma * 10f64.powf(-0.4 * depth));

    let (ra0, dec0) = match survey.name {
        crate::survey::SurveyName::HscUd => (150.12, 2.21),
        crate::survey::SurveyName::LsstY10 => (53.13, -27.81),
    };
    let dec = dec0 + rng.range(-0.5, 0.5);
    let ra = ra0 + rng.range(-0.5, 0.5) / dec.to_radians().cos();

    let kind = if label == 1 {
        ObjectKind::Tidal
    } else if near_miss {
        ObjectKind::NearMiss
    } else if n_companions > 0 {
        ObjectKind::Companion
    } else {
        ObjectKind::Plain
    };
    let truth = Truth {
        id,
        label,
        kind,
        feature_types: kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(";"),
        feature_sb,
        host_mag_r: host.mag_r,
        redshift: host.z,
        r_half: host.r_half,
        sersic_n: host.n,
        bt: host.bt,
        ellipticity: 1.0 - host.q,
        pa_deg: host.pa.to_degrees(),
        n_neighbours,
        n_stars,
        n_companions,
        psf_fwhm_r: psf_fwhm[1],
        ra,
        dec,
        seed,
        survey: survey.name.name().to_string(),
    };
    Scene {
        components,
        stars,
        psf_fwhm,
        noise_sigma,
        sky_residual: rng.range(0.05, 0.15) * params.sky_residual,
        centre,
        truth,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feature_sits_where_the_host_is_contrast_mag_fainter_than_it() {
        let zp = 27.0;
        let mut rng = Rng::new(3);
        let mut placed = 0;
        for _ in 0..50 {
            let host = sample_host(&mut rng, zp, (0.0, 0.0), 1.0);
            let mu = rng.range(24.5, 27.5);
            let mut last = f64::INFINITY;
            for contrast in [1.0, 0.0, -0.5, -1.0] {
                // A cutout wide enough that nothing is brightened to fit.
                let (got, r0) = placement(&host, (0.0, 0.0), (mu, contrast), true, 1e4, zp);
                assert_eq!(got, mu, "not brightened");
                assert!(r0 <= last, "lower contrast, no farther out: {r0} after {last}");
                last = r0;
                // Where the host's own light sets the radius (not the floor
                // of 1.2 half-light radii or 2″), it is `contrast` mag
                // fainter there than the feature.
                if r0 > (1.2 * host.r_half).max(2.0) + 1e-9 {
                    let host_mu = units::flux_density_to_sb(host_sb(&host, (0.0, 0.0), r0), zp);
                    assert!((host_mu - (mu + contrast)).abs() < 1e-6, "{host_mu} vs {mu} + {contrast}");
                    placed += 1;
                }
            }
        }
        assert!(placed > 50, "only {placed} placements were set by the host's light");
    }
}
