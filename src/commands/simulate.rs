//! `tidalscope simulate`: labelled mock cutouts to npy or FITS, a catalogue
//! and a preview mosaic.

use crate::cli::{SimFormat, SimulateArgs, SurveyArg};
use crate::manifest::Manifest;
use crate::progress;
use anyhow::{ensure, Context};
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;
use tidalscope_core::Band;
use tidalscope_eval::plot::{mosaic, Tile};
use tidalscope_eval::rgb::thumbnail;
use tidalscope_io::csv::CsvWriter;
use tidalscope_io::fits::{write_hsc_cutout, HscCutoutMeta};
use tidalscope_io::npy::NpyWriter;
use tidalscope_sim::scene::Truth;
use tidalscope_sim::{Mock, SimConfig, Simulator};

/// Objects rendered per parallel batch: enough to keep every core busy,
/// few enough that memory stays small whatever `--n` is.
const BATCH: usize = 64;

/// What `run.toml` records for a simulation.
#[derive(Debug, Serialize)]
struct Resolved {
    n: usize,
    format: &'static str,
    sim: SimConfig,
}

/// Runs `simulate`.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    ensure!(args.n > 0, "--n must be at least 1");
    let config = SimConfig {
        survey: args.survey.into(),
        size: args.size,
        tidal_fraction: args.tidal_fraction,
        near_miss_fraction: args.near_miss_fraction,
        companion_probability: args.companion_probability,
        crowding: args.crowding,
        host_size: args.host_size,
        feature_contrast: args.feature_contrast,
        sky_residual: args.sky_residual,
        seed: args.seed,
    };
    let sim = Simulator::new(config.clone(), args.n)?;
    let pool = super::thread_pool(args.jobs)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating output folder {}", args.out.display()))?;
    let started = std::time::SystemTime::now();
    let t0 = std::time::Instant::now();

    let out = &args.out;
    let size = args.size;
    let fits_dir = out.join("fits");
    if args.format == SimFormat::Fits {
        std::fs::create_dir_all(&fits_dir).with_context(|| format!("creating {}", fits_dir.display()))?;
    }
    let mut header: Vec<String> = vec!["id".into(), "label".into()];
    if args.format == SimFormat::Fits {
        header.extend(Band::ALL.iter().map(|b| format!("file_{b}")));
    }
    header.extend(Truth::CSV_COLUMNS.iter().skip(2).map(|s| s.to_string()));
    let mut catalog = CsvWriter::create(&out.join("catalog.csv"), &header)?;
    let mut images = match args.format {
        SimFormat::Npy => Some(NpyWriter::create(&out.join("images.npy"), &[args.n, size, size, 5])?),
        SimFormat::Fits => None,
    };
    let mut preview: Vec<Mock> = Vec::new();
    let bar = progress::bar(args.n as u64, "simulate", "cutouts");
    let mut hwc = vec![0f32; size * size * 5];
    for start in (0..args.n).step_by(BATCH) {
        let end = (start + BATCH).min(args.n);
        let batch: Vec<anyhow::Result<Mock>> = pool.install(|| {
            (start..end)
                .into_par_iter()
                .map_init(
                    || sim.renderer(),
                    |renderer, id| {
                        let mock = sim.simulate(id, renderer);
                        if args.format == SimFormat::Fits {
                            write_fits(&fits_dir, &sim, &mock)?;
                        }
                        Ok(mock)
                    },
                )
                .collect()
        });
        for mock in batch {
            let mock = mock?;
            let mut fields = mock.truth.csv_fields();
            if args.format == SimFormat::Fits {
                let files = Band::ALL.iter().map(|&b| format!("fits/{}", fits_name(&sim, mock.truth.id, b)));
                fields.splice(2..2, files);
            }
            catalog.row(&fields)?;
            if let Some(w) = images.as_mut() {
                mock.image.write_hwc(&mut hwc);
                w.write(&hwc)?;
            }
            if preview.len() < args.preview {
                preview.push(mock);
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if let Some(w) = images {
        w.finish()?;
    }
    catalog.finish()?;
    if !preview.is_empty() {
        let title = format!(
            "tidalscope simulate · {}{} · seed {} · first {} of {} (asinh RGB from i, r, g)",
            sim.survey().name,
            departures(&config).iter().map(|d| format!(" · {d}")).collect::<String>(),
            args.seed,
            preview.len(),
            args.n
        );
        write_preview(&out.join("preview.png"), &preview, &title)?;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    Manifest::new("simulate", Resolved { n: args.n, format: format_name(args.format), sim: config }, started, elapsed)
        .write(out)?;
    let positives = (0..args.n).filter(|&i| sim.scene_label(i) == 1).count();
    println!(
        "simulated {} cutouts ({} with tidal features) in {:.1} s → {}",
        args.n,
        positives,
        elapsed,
        out.display()
    );
    Ok(())
}

fn format_name(f: SimFormat) -> &'static str {
    match f {
        SimFormat::Npy => "npy",
        SimFormat::Fits => "fits",
    }
}

/// File name of one band of one object, named like the cutout service's
/// filter names (`HSC-G` …).
fn fits_name(sim: &Simulator, id: u64, band: Band) -> String {
    let prefix = match sim.survey().name {
        tidalscope_sim::survey::SurveyName::HscUd => "HSC",
        tidalscope_sim::survey::SurveyName::LsstY10 => "LSST",
    };
    format!("{id:06}_{prefix}-{}.fits", band.name().to_uppercase())
}

/// Writes the five single-band FITS files of one object.
fn write_fits(dir: &Path, sim: &Simulator, mock: &Mock) -> anyhow::Result<()> {
    let survey = sim.survey();
    let size = mock.image.width();
    let mask = vec![0i32; size * size];
    let mut variance = vec![0f32; size * size];
    for band in Band::ALL {
        let b = band.index();
        variance.iter_mut().for_each(|v| *v = (mock.noise_sigma[b] * mock.noise_sigma[b]) as f32);
        let name = fits_name(sim, mock.truth.id, band);
        let meta = HscCutoutMeta {
            filter: name.split('_').nth(1).unwrap_or("").trim_end_matches(".fits").to_string(),
            fluxmag0: 10f64.powf(0.4 * survey.zero_point),
            ra: mock.truth.ra,
            dec: mock.truth.dec,
            crpix: ((size / 2 + 1) as f64, (size / 2 + 1) as f64),
            pixel_scale: survey.pixel_scale,
        };
        write_hsc_cutout(&dir.join(&name), size, size, mock.image.band(b), &mask, &variance, &meta)?;
    }
    Ok(())
}

/// The scene options of `config` that differ from the defaults, as their
/// flags, so that a preview of an unusual set says so.
fn departures(config: &SimConfig) -> Vec<String> {
    let d = SimConfig::default();
    [
        ("--tidal-fraction", config.tidal_fraction, d.tidal_fraction),
        ("--near-miss-fraction", config.near_miss_fraction, d.near_miss_fraction),
        ("--companion-probability", config.companion_probability, d.companion_probability),
        ("--crowding", config.crowding, d.crowding),
        ("--host-size", config.host_size, d.host_size),
        ("--feature-contrast", config.feature_contrast, d.feature_contrast),
        ("--sky-residual", config.sky_residual, d.sky_residual),
    ]
    .into_iter()
    .filter(|(_, v, default)| v != default)
    .map(|(flag, v, _)| format!("{flag} {v}"))
    .collect()
}

/// A labelled mosaic of the first cutouts, as Lupton et al. (2004) asinh
/// RGB from i, r, g, stretched relative to each cutout's sky noise so faint
/// features show as they would to a person inspecting the survey, and as
/// deep beside a large host as beside a small one.
fn write_preview(path: &Path, mocks: &[Mock], title: &str) -> anyhow::Result<()> {
    let tiles: Vec<Tile> = mocks
        .iter()
        .map(|m| {
            let (w, h) = (m.image.width(), m.image.height());
            let rgb = thumbnail(&m.image);
            let t = &m.truth;
            let first = format!("#{} · label {} · {}", t.id, t.label, t.kind.name().replace('_', "-"));
            let second = match t.feature_sb {
                Some(sb) => format!("{} · {:.1} mag/″²", t.feature_types.replace(';', "+"), sb),
                None if t.n_companions > 0 => "bright companion".to_string(),
                None => "no feature".to_string(),
            };
            let frame = if t.label == 1 { [240, 140, 40] } else { [90, 110, 140] };
            Tile { rgb, w, h, caption: vec![first, second], frame }
        })
        .collect();
    mosaic(path, &tiles, 6, title)?;
    Ok(())
}

/// Simulates the built-in mock set `demo` and the experiments use:
/// 128×128 npy cutouts, a quarter of the negatives near misses, companions
/// at 15%, a 24-cutout preview, features placed at `feature_contrast`
/// ([`tidalscope_sim::FEATURE_CONTRAST`] unless an experiment asks).
pub fn mock_set(
    dir: &std::path::Path,
    n: usize,
    seed: u64,
    survey: SurveyArg,
    (tidal_fraction, feature_contrast): (f64, f64),
) -> anyhow::Result<()> {
    run(SimulateArgs {
        n,
        seed,
        out: dir.to_path_buf(),
        survey,
        size: 128,
        tidal_fraction,
        near_miss_fraction: 0.25,
        companion_probability: 0.15,
        crowding: 1.0,
        host_size: 1.0,
        feature_contrast,
        sky_residual: 1.0,
        format: SimFormat::Npy,
        preview: 24,
        jobs: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_names_the_scene_options_that_differ_from_the_defaults() {
        assert!(departures(&SimConfig::default()).is_empty());
        let unusual =
            SimConfig { crowding: 3.0, feature_contrast: -0.5, sky_residual: 4.0, seed: 9, ..SimConfig::default() };
        assert_eq!(departures(&unusual), ["--crowding 3", "--feature-contrast -0.5", "--sky-residual 4"]);
    }
}
