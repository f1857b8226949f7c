//! `tidalscope import-keras`: a Keras model (the published NNCLR encoder or
//! fine-tuned classifier) into a tidalscope model folder, with the input
//! normalisation it expects recorded beside the weights; and
//! `export-keras`, the way back to a Keras 3 `.keras` file.

use crate::cli::{ExportKerasArgs, ImportKerasArgs};
use crate::manifest::Manifest;
use anyhow::{bail, Context};
use burn::prelude::Device;
use serde::Serialize;
use std::path::Path;
use tidalscope_data::normalise::Normaliser;
use tidalscope_data::preprocess::Preprocess;
use tidalscope_data::residual::Channels;
use tidalscope_model::bundle::{ClassifierBundle, EncoderBundle};
use tidalscope_model::keras::{import, to_network, Imported};

#[derive(Serialize)]
struct ImportRun {
    model: String,
    kind: &'static str,
    keras_name: String,
    keras_layers: usize,
    bands: Vec<String>,
    crop: usize,
    normalisation: String,
}

fn normaliser(args: &ImportKerasArgs, bands: Vec<String>) -> anyhow::Result<Normaliser> {
    let given = [args.normalisation.is_some(), !args.sigma.is_empty(), args.normalise_from.is_some()]
        .iter()
        .filter(|&&g| g)
        .count();
    if given != 1 {
        bail!(
            "say how inputs are normalised for this model with exactly one of: --normalisation none (inputs already \
             normalised), --sigma s1,s2,... (σ_b per band), --normalise-from DATA (measure σ_b on a dataset)"
        );
    }
    if let Some(n) = &args.normalisation {
        if n != "none" {
            bail!("--normalisation takes only `none`; give σ_b values with --sigma or a dataset with --normalise-from");
        }
        return Ok(Normaliser::none(bands));
    }
    if !args.sigma.is_empty() {
        if args.sigma.len() != bands.len() {
            bail!(
                "--sigma has {} values but the model takes {} bands ({})",
                args.sigma.len(),
                bands.len(),
                bands.join(",")
            );
        }
        if let Some(s) = args.sigma.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            bail!("--sigma values must be positive and finite, got {s}");
        }
        return Ok(Normaliser::new(bands, args.sigma.clone(), "given with --sigma"));
    }
    let path = args.normalise_from.as_ref().expect("checked above");
    let source = super::open_source(path, &args.source, None)?;
    // The reference's rule: imported models were trained with it.
    let mut n = Normaliser::fit(source.as_ref(), args.norm_images, tidalscope_data::normalise::SigmaRule::Image)
        .with_context(|| format!("measuring σ_b on {}", path.display()))?;
    if n.sigma.len() != bands.len() {
        bail!("{}: images have {} bands, but the model takes {}", path.display(), n.sigma.len(), bands.len());
    }
    n.bands = bands;
    Ok(n)
}

/// Runs `import-keras`.
pub fn run(args: ImportKerasArgs) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let t0 = std::time::Instant::now();
    let net = tidalscope_io::keras::read(&args.model)?;
    // Weights are mapped on the CPU; every command moves them where it runs.
    let imported = import(&net, &Device::flex())?;
    let (kind, config, input_size) = match &imported {
        Imported::Encoder { config, input_size, .. } => ("encoder", config.clone(), *input_size),
        Imported::Classifier { config, input_size, .. } => ("classifier", config.encoder.clone(), *input_size),
    };
    // A file written by `export-keras` carries its preprocessing beside it,
    // and with it how many input channels each band makes (residuals).
    let side = std::path::PathBuf::from(format!("{}.preprocess.json", args.model.display()));
    let side_file = if side.is_file() { Some(Preprocess::load(&side)?) } else { None };
    let factor = side_file.as_ref().map_or(1, |p| p.channels.factor());
    if config.bands % factor != 0 {
        bail!(
            "{}: {:?} input needs a multiple of {factor} channels, the model takes {}",
            display(&side),
            side_file.as_ref().map(|p| p.channels),
            config.bands
        );
    }
    let input_bands = config.bands / factor;
    let bands =
        if args.bands.is_empty() { tidalscope_io::source::default_bands(input_bands) } else { args.bands.clone() };
    if bands.len() != input_bands {
        bail!("--bands names {} bands but the model takes {}", bands.len(), input_bands);
    }
    let crop = match (args.crop, input_size) {
        (Some(c), _) | (None, Some(c)) => c,
        (None, None) => {
            bail!("{}: the model does not declare its input size; give it with --crop", args.model.display())
        }
    };
    let no_flags = args.normalisation.is_none() && args.sigma.is_empty() && args.normalise_from.is_none();
    let preprocess = match side_file {
        Some(mut p) if no_flags => {
            eprintln!("preprocessing (channels, binning, crop, σ_b) from {}", display(&side));
            if p.normalisation.bands.len() != config.bands {
                bail!("{}: {} bands, but the model takes {}", display(&side), p.normalisation.bands.len(), config.bands);
            }
            // Explicit flags win over the side file.
            if let Some(c) = args.crop {
                p.crop = c;
            }
            if !args.bands.is_empty() {
                p.normalisation.bands = p.channels.names(&bands);
            }
            p
        }
        Some(p) if p.channels != Channels::Image => bail!(
            "{}: the model's input is {}; --normalisation, --sigma and --normalise-from would import it without them: leave them out to use the file's preprocessing",
            display(&side),
            p.channels.describe()
        ),
        _ => Preprocess {
            bin: 1,
            crop,
            normalisation: normaliser(&args, bands.clone())?,
            channels: Channels::Image,
            centring: Default::default(),
        },
    };
    let (crop, bands) = (preprocess.crop, preprocess.normalisation.bands.clone());
    let tmp = std::path::PathBuf::from(format!("{}.importing", args.out.display()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing the leftover {}", tmp.display()))?;
    }
    match imported {
        Imported::Encoder { config, encoder, .. } => {
            EncoderBundle { config, encoder, preprocess: preprocess.clone() }.save(&tmp)?
        }
        Imported::Classifier { config, classifier, .. } => {
            ClassifierBundle { config, classifier, preprocess: preprocess.clone() }.save(&tmp)?
        }
    }
    let run = ImportRun {
        model: args.model.display().to_string(),
        kind,
        keras_name: net.name.clone(),
        keras_layers: net.layers.len(),
        bands,
        crop,
        normalisation: if preprocess.normalisation.is_identity() {
            "none (inputs already normalised)".into()
        } else {
            format!("{:?} ({})", preprocess.normalisation.sigma, preprocess.normalisation.provenance)
        },
    };
    Manifest::new("import-keras", run, started, t0.elapsed().as_secs_f64()).write(&tmp)?;
    tidalscope_io::atomic::replace_dir(&tmp, &args.out)?;
    eprintln!(
        "imported {} {:?} ({} Keras layers) into {} [{kind} folder, crop {crop}]",
        kind,
        net.name,
        net.layers.len(),
        display(&args.out)
    );
    Ok(())
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// Runs `export-keras`.
pub fn export(args: ExportKerasArgs) -> anyhow::Result<()> {
    let device = Device::flex();
    let (net, preprocess) = if EncoderBundle::is_bundle(&args.model) {
        let b = EncoderBundle::load(&args.model, &device)?;
        (to_network(&b.encoder, &b.config, b.preprocess.crop, None), b.preprocess)
    } else {
        let b = ClassifierBundle::load(&args.model, &device)
            .with_context(|| format!("{} is neither an encoder nor a classifier folder", display(&args.model)))?;
        (
            to_network(&b.classifier.encoder, &b.config.encoder, b.preprocess.crop, Some(&b.classifier.head)),
            b.preprocess,
        )
    };
    if preprocess.bin != 1 {
        eprintln!("note: this model bins inputs {0}×{0} before the network; Keras users must bin the same way (see the .preprocess.json)", preprocess.bin);
    }
    if preprocess.channels != Channels::Image {
        eprintln!("note: this model's input is {} (channels {}; {}); Keras users must make them as tidalscope does (README, `pretrain --channels`)", preprocess.channels.describe(), preprocess.normalisation.bands.join(","), preprocess.centring.describe());
    }
    tidalscope_io::keras::write_keras3(&args.out, &net, &format!("tidalscope {}", tidalscope_core::VERSION))?;
    let side = std::path::PathBuf::from(format!("{}.preprocess.json", args.out.display()));
    preprocess.save(&side)?;
    eprintln!("wrote {} ({} layers) and {}", display(&args.out), net.layers.len(), display(&side));
    Ok(())
}
