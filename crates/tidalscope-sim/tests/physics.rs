//! The physics of the simulator, measured on noise-free renders the way an
//! astronomer would measure a real image.

use std::f64::consts::PI;
use tidalscope_core::{units, Rng};
use tidalscope_sim::draw::{draw, DrawParams, Grid};
use tidalscope_sim::feature::{Feature, Ridge, ShellArc};
use tidalscope_sim::profile::{Frame, Profile, Sersic};
use tidalscope_sim::render::Renderer;
use tidalscope_sim::scene::{Scene, Shape, Star};
use tidalscope_sim::survey::{Survey, SurveyName};
use tidalscope_sim::{SimConfig, Simulator};

const HSC_SCALE: f64 = 0.168;

/// A drawn image on a full grid.
fn draw_full(profile: &dyn Profile, grid: &Grid) -> Vec<f32> {
    let stamp = draw(profile, grid, &DrawParams { floor: 1e-12, ..DrawParams::default() });
    let mut img = vec![0f32; grid.nx * grid.ny];
    stamp.add_to(&mut img, grid.nx, 1.0);
    img
}

#[test]
fn sersic_flux_matches_its_magnitude_within_one_percent() {
    let zp = 27.0;
    let grid = Grid::centred(400, HSC_SCALE);
    for n in [0.5, 1.0, 2.5, 4.0, 6.0] {
        for r_e in [0.25, 1.0, 2.0] {
            let mag = 18.0;
            let s = Sersic::new(n, r_e, units::mag_to_flux(mag, zp)).shear(0.6, 0.7).shift(0.05, -0.03);
            let img = draw_full(&s, &grid);
            // Sum inside the ellipse of semi-major axis a; compare with the
            // analytic enclosed flux, so wings beyond the grid do not count.
            let a = 0.45 * 400.0 * HSC_SCALE;
            let mut sum = 0.0;
            for iy in 0..grid.ny {
                for ix in 0..grid.nx {
                    let (x, y) = grid.pixel_centre(ix, iy);
                    let (u, v) = s.frame().to_local(x, y);
                    if u.hypot(v) < a {
                        sum += img[iy * grid.nx + ix] as f64;
                    }
                }
            }
            let want = s.flux() * s.enclosed_fraction(a);
            let measured_mag = units::flux_to_mag(sum / s.enclosed_fraction(a), zp);
            assert!(
                (sum / want - 1.0).abs() < 0.01,
                "n={n} r_e={r_e}: drawn {sum:.4} vs {want:.4} (mag {measured_mag:.4})"
            );
        }
    }
}

/// FWHM along a row and a column through the brightest pixel, with linear
/// interpolation of the half-maximum crossings.
fn measure_fwhm(img: &[f32], w: usize) -> f64 {
    let (peak_i, _) = img.iter().enumerate().fold((0, f32::MIN), |m, (i, &v)| if v > m.1 { (i, v) } else { m });
    let (px, py) = (peak_i % w, peak_i / w);
    let peak = img[peak_i] as f64;
    let half = peak / 2.0;
    let width_along = |get: &dyn Fn(isize) -> f64| {
        let crossing = |dir: isize| {
            let mut k = 0isize;
            while get(k + dir) > half {
                k += dir;
            }
            let (a, b) = (get(k), get(k + dir));
            k as f64 + dir as f64 * (a - half) / (a - b)
        };
        crossing(1) - crossing(-1)
    };
    let row = |d: isize| img[py * w + (px as isize + d) as usize] as f64;
    let col = |d: isize| img[(py as isize + d) as usize * w + px] as f64;
    0.5 * (width_along(&row) + width_along(&col))
}

#[test]
fn star_fwhm_matches_the_band_psf_within_five_percent() {
    for name in [SurveyName::HscUd, SurveyName::LsstY10] {
        let survey = Survey::preset(name);
        let mut scene = Scene::blank(&survey);
        scene.stars.push(Star { x: 0.0, y: 0.0, flux: [1000.0; 5] });
        let mut r = Renderer::new(&survey, 64);
        let img = r.render_clean(&scene);
        for b in 0..5 {
            let fwhm = measure_fwhm(img.band(b), 64) * survey.pixel_scale;
            let want = survey.bands[b].psf_fwhm;
            assert!((fwhm / want - 1.0).abs() < 0.05, "{name} band {b}: FWHM {fwhm:.3}\" vs {want}\"");
            let flux: f64 = img.band(b).iter().map(|&v| v as f64).sum();
            assert!((flux / 1000.0 - 1.0).abs() < 1e-3, "star flux {flux}");
        }
    }
}

/// Bilinear interpolation of an image at continuous pixel coordinates.
fn bilinear(img: &[f32], w: usize, fx: f64, fy: f64) -> f64 {
    let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
    let (tx, ty) = (fx - x0 as f64, fy - y0 as f64);
    let at = |x: usize, y: usize| img[y * w + x] as f64;
    (1.0 - ty) * ((1.0 - tx) * at(x0, y0) + tx * at(x0 + 1, y0))
        + ty * ((1.0 - tx) * at(x0, y0 + 1) + tx * at(x0 + 1, y0 + 1))
}

/// Sky position of frame-local polar coordinates.
fn sky(frame: &Frame, r: f64, phi: f64) -> (f64, f64) {
    let (u, v) = (r * phi.cos(), frame.handedness * frame.q * r * phi.sin());
    let (s, c) = frame.pa.sin_cos();
    (frame.x0 + u * c - v * s, frame.y0 + u * s + v * c)
}

/// Median ridge SB (mag/arcsec²) over the untapered part of a ridge.
fn ridge_sb(img: &[f32], grid: &Grid, ridge: &Ridge, zp: f64) -> f64 {
    let mut vals = Vec::new();
    let (a, b) = (ridge.taper_in + 0.02, 1.0 - ridge.taper_out - 0.02);
    for i in 0..200 {
        let s = a + (b - a) * i as f64 / 199.0;
        let phi = ridge.start + s * ridge.length;
        let r = match ridge.curve {
            tidalscope_sim::feature::Curve::Orbit { p, e, kappa, omega } => {
                p / (1.0 + e * (kappa * (phi - omega)).cos())
            }
            tidalscope_sim::feature::Curve::Spiral { r0, slope } => r0 + slope * (phi - ridge.start),
        };
        let (x, y) = sky(&ridge.frame, r, phi);
        let (fx, fy) = grid.to_pixel(x, y);
        if fx < 1.0 || fy < 1.0 || fx > grid.nx as f64 - 2.0 || fy > grid.ny as f64 - 2.0 {
            continue;
        }
        vals.push(bilinear(img, grid.nx, fx, fy));
    }
    vals.sort_by(f64::total_cmp);
    units::pixel_to_sb(vals[vals.len() / 2], grid.scale, zp)
}

/// Mean SB between a shell's edge and one scale length inside it, on the
/// untapered arc.
fn shell_sb(img: &[f32], grid: &Grid, shell: &ShellArc, zp: f64) -> f64 {
    let (mut sum, mut n) = (0.0, 0);
    let plateau = shell.half_opening * (1.0 - shell.taper);
    for iy in 0..grid.ny {
        for ix in 0..grid.nx {
            let (x, y) = grid.pixel_centre(ix, iy);
            let (rho, phi) = shell.frame.to_polar(x, y);
            let dphi = (phi - shell.direction + PI).rem_euclid(2.0 * PI) - PI;
            if dphi.abs() < plateau && rho > shell.radius - shell.inner_scale && rho < shell.radius {
                sum += img[iy * grid.nx + ix] as f64;
                n += 1;
            }
        }
    }
    units::pixel_to_sb(sum / n as f64, grid.scale, zp)
}

#[test]
fn feature_surface_brightness_matches_the_catalogue_within_a_tenth_of_a_mag() {
    // Every feature kind, with the random geometry the simulator gives it:
    // each one drawn alone, before the PSF, and measured by its definition.
    let sim = Simulator::new(SimConfig { tidal_fraction: 1.0, seed: 11, ..SimConfig::default() }, 200).unwrap();
    let zp = sim.survey().zero_point;
    let grid = Grid::centred(192, HSC_SCALE);
    let mut seen = std::collections::HashSet::new();
    for id in 0..sim.len() {
        let scene = sim.scene(id);
        let feats: Vec<&Feature> = scene
            .components
            .iter()
            .filter_map(|c| if let Shape::Feature(f) = &c.shape { Some(f.as_ref()) } else { None })
            .collect();
        if feats.len() != 1 {
            continue;
        }
        let f = feats[0];
        let want = scene.truth.feature_sb.unwrap();
        let img = draw_full(f, &grid);
        let got = match f {
            Feature::Stream(r) => ridge_sb(&img, &grid, r, zp),
            Feature::Tail(arms) => {
                // the fainter arm may cross the brighter: measure arm 0 on its own
                let alone = draw_full(&arms[0], &grid);
                ridge_sb(&alone, &grid, &arms[0], zp)
            }
            Feature::Shells(s) => {
                // The band is only a few pixels wide: measure it on a grid
                // four times finer than the survey's, as the definition is
                // about the light, not the pixels.
                let fine = Grid::centred(768, HSC_SCALE / 4.0);
                shell_sb(&draw_full(&s[0], &fine), &fine, &s[0], zp)
            }
            Feature::Plume(_) => {
                let peak = img.iter().cloned().fold(f32::MIN, f32::max) as f64;
                units::pixel_to_sb(peak, grid.scale, zp)
            }
            Feature::DoubleNucleus(s) => {
                // mean SB inside the half-light ellipse
                let (mut sum, mut area) = (0.0, 0.0);
                for iy in 0..grid.ny {
                    for ix in 0..grid.nx {
                        let (x, y) = grid.pixel_centre(ix, iy);
                        let (u, v) = s.frame().to_local(x, y);
                        if u.hypot(v) < s.r_e() {
                            sum += img[iy * grid.nx + ix] as f64;
                            area += grid.scale * grid.scale;
                        }
                    }
                }
                if area < 40.0 * grid.scale * grid.scale {
                    continue; // too few pixels to measure a compact nucleus
                }
                units::flux_density_to_sb(sum / area, zp)
            }
        };
        assert!((got - want).abs() < 0.1, "object {id} {:?}: measured {got:.3} vs catalogue {want:.3}", f.kind());
        seen.insert(f.kind());
    }
    assert!(seen.len() >= 4, "only measured {seen:?}");
}

#[test]
fn wide_stream_keeps_its_surface_brightness_through_psf_and_bands() {
    // Through the whole renderer: r-band pixels, PSF, crop.
    let survey = Survey::preset(SurveyName::HscUd);
    let mu = 25.5;
    let ridge = Ridge {
        frame: Frame::new(0.0, 0.0, 0.3, 1.0),
        curve: tidalscope_sim::feature::Curve::Orbit { p: 6.0, e: 0.0, kappa: 1.0, omega: 0.0 },
        start: 0.0,
        length: 1.5 * PI,
        width: 1.5,
        width_growth: 0.0,
        taper_in: 0.15,
        taper_out: 0.15,
        amplitude: units::sb_to_flux_density(mu, survey.zero_point),
    };
    let mut scene = Scene::blank(&survey);
    scene.components.push(tidalscope_sim::scene::Component::new(
        Shape::Feature(Box::new(Feature::Stream(ridge))),
        [2.0, 1.0, 1.0, 1.0, 1.0],
    ));
    let mut r = Renderer::new(&survey, 96);
    let img = r.render_clean(&scene);
    let grid = Grid::centred(96, survey.pixel_scale);
    let got = ridge_sb(img.band(1), &grid, &ridge, survey.zero_point);
    assert!((got - mu).abs() < 0.1, "r band: {got:.3} vs {mu}");
    let got_g = ridge_sb(img.band(0), &grid, &ridge, survey.zero_point);
    assert!((got_g - (mu - 2.5 * 2f64.log10())).abs() < 0.1, "g band: {got_g:.3}");
}

#[test]
fn empty_field_noise_matches_the_depth_formula_within_five_percent() {
    for name in [SurveyName::HscUd, SurveyName::LsstY10] {
        let survey = Survey::preset(name);
        let mut scene = Scene::blank(&survey);
        scene.sky_residual = 0.1; // realistic residuals included
        let mut r = Renderer::new(&survey, 128);
        let img = r.render(&scene, &mut Rng::new(3));
        for b in 0..5 {
            let px = img.band(b);
            let mean = px.iter().map(|&v| v as f64).sum::<f64>() / px.len() as f64;
            let rms = (px.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / px.len() as f64).sqrt();
            let want = survey.bands[b].noise_sigma;
            assert!((rms / want - 1.0).abs() < 0.05, "{name} band {b}: RMS {rms:.5} vs depth formula {want:.5}");
        }
    }
}

#[test]
fn same_seed_same_bytes_and_label_fraction_is_exact() {
    let cfg = SimConfig { size: 48, seed: 9, tidal_fraction: 0.3, ..SimConfig::default() };
    let a = Simulator::new(cfg.clone(), 20).unwrap();
    let b = Simulator::new(cfg, 20).unwrap();
    let (mut ra, mut rb) = (a.renderer(), b.renderer());
    // b renders in reverse order: object i must not depend on what came before.
    let imgs_b: Vec<_> = (0..20).rev().map(|i| b.simulate(i, &mut rb)).collect();
    for i in 0..20 {
        let ma = a.simulate(i, &mut ra);
        let mb = &imgs_b[19 - i];
        assert_eq!(ma.image.data(), mb.image.data(), "object {i}");
        assert_eq!(&ma.truth, &mb.truth);
    }
    let positives = (0..20).filter(|&i| a.scene(i).truth.label == 1).count();
    assert_eq!(positives, 6);
}

#[test]
fn crowding_scales_the_field_host_size_the_hosts_and_contrast_moves_the_features() {
    let base = SimConfig { seed: 21, ..SimConfig::default() };
    let n = 200;
    let scenes = |cfg: SimConfig| {
        let sim = Simulator::new(cfg, n).unwrap();
        (0..n).map(|i| sim.scene(i)).collect::<Vec<_>>()
    };
    let plain = scenes(base.clone());
    let crowded = scenes(SimConfig { crowding: 3.0, ..base.clone() });
    let empty = scenes(SimConfig { crowding: 0.0, ..base.clone() });
    let big = scenes(SimConfig { host_size: 1.5, ..base.clone() });
    let faint = scenes(SimConfig { feature_contrast: -0.5, ..base.clone() });
    // The host, its features and the companion are drawn before the field,
    // so an empty field leaves exactly them: the rest of each scene is the
    // field's galaxies and stars.
    let field = |s: &[Scene]| -> usize {
        s.iter().zip(&empty).map(|(s, e)| s.components.len() - e.components.len() + s.stars.len()).sum()
    };
    assert!(empty.iter().all(|s| s.stars.is_empty() && s.truth.n_neighbours == 0));
    let ratio = field(&crowded) as f64 / field(&plain) as f64;
    assert!((2.8..3.2).contains(&ratio), "3× crowding gave {ratio:.2}× the field sources");
    for (((p, c), e), b) in plain.iter().zip(&crowded).zip(&empty).zip(&big) {
        assert_eq!((p.truth.label, p.truth.kind), (c.truth.label, c.truth.kind));
        assert_eq!((p.truth.r_half, p.truth.host_mag_r), (c.truth.r_half, c.truth.host_mag_r));
        assert_eq!(p.truth.r_half, e.truth.r_half);
        assert!((b.truth.r_half / p.truth.r_half - 1.5).abs() < 1e-12, "host size 1.5");
        assert_eq!((p.truth.label, p.truth.host_mag_r), (b.truth.label, b.truth.host_mag_r));
    }
    // Features on brighter host light: the same objects and feature types,
    // placed further in (so fewer visible ones need brightening to fit).
    for (p, f) in plain.iter().zip(&faint) {
        assert_eq!(
            (p.truth.label, p.truth.kind, p.truth.host_mag_r),
            (f.truth.label, f.truth.kind, f.truth.host_mag_r)
        );
        assert_eq!(p.truth.feature_types, f.truth.feature_types);
        assert_eq!((p.components.len(), p.stars.len()), (f.components.len(), f.stars.len()));
    }
    let brightened =
        |s: &[Scene]| s.iter().filter(|s| s.truth.label == 1 && s.truth.feature_sb.is_some_and(|m| m < 24.5)).count();
    assert!(brightened(&faint) <= brightened(&plain), "{} vs {}", brightened(&faint), brightened(&plain));
    // Out of range, and not a number: an error naming the setting.
    for cfg in [
        SimConfig { crowding: -1.0, ..base.clone() },
        SimConfig { crowding: f64::NAN, ..base.clone() },
        SimConfig { host_size: 0.0, ..base.clone() },
        SimConfig { host_size: 11.0, ..base.clone() },
        SimConfig { feature_contrast: 3.5, ..base.clone() },
        SimConfig { feature_contrast: f64::NAN, ..base.clone() },
    ] {
        let err = Simulator::new(cfg, 1).unwrap_err().to_string();
        assert!(err.contains("crowding") || err.contains("host size") || err.contains("feature contrast"), "{err}");
    }
}

#[test]
fn sky_residual_scales_the_smooth_sky_and_nothing_else() {
    let base = SimConfig { seed: 23, size: 64, ..SimConfig::default() };
    let n = 6;
    let run = |cfg: SimConfig| {
        let sim = Simulator::new(cfg, n).unwrap();
        let mut r = sim.renderer();
        (0..n).map(|i| (sim.scene(i), sim.simulate(i, &mut r).image)).collect::<Vec<_>>()
    };
    let plain = run(base.clone());
    let none = run(SimConfig { sky_residual: 0.0, ..base.clone() });
    let strong = run(SimConfig { sky_residual: 10.0, ..base.clone() });
    for (((p, pi), (z, zi)), (s, si)) in plain.iter().zip(&none).zip(&strong) {
        // The same scene: objects, noise level and truth; only the
        // residual's amplitude differs.
        assert_eq!((p.components.len(), p.stars.len()), (s.components.len(), s.stars.len()));
        assert_eq!(p.truth, s.truth);
        assert_eq!((z.sky_residual, s.sky_residual / p.sky_residual), (0.0, 10.0));
        assert!((0.05..=0.15).contains(&p.sky_residual), "{}", p.sky_residual);
        // The images differ by the residual alone, scaled: what the
        // default adds, ten times over (float32 rounding aside).
        for ((a, b), c) in pi.data().iter().zip(zi.data()).zip(si.data()) {
            let (one, ten) = ((a - b) as f64, (c - b) as f64);
            assert!((ten - 10.0 * one).abs() <= 1e-4 * (1.0 + b.abs() as f64 + ten.abs()), "{one} {ten}");
        }
    }
    let err = Simulator::new(SimConfig { sky_residual: 11.0, ..base }, 1).unwrap_err().to_string();
    assert!(err.contains("sky residual"), "{err}");
}
