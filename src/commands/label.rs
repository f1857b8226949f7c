//! `label`: prepares what the labelling page needs (the embeddings, cached
//! beside the labels; the classifier's scores, if one is given; the label
//! log) and serves it until interrupted.

use crate::cli::{EmbedArgs, LabelArgs, PredictArgs};
use crate::label::catalogue::{random_order, Catalogue, Scores};
use crate::label::log::LabelLog;
use crate::label::server::{load_scores, loopback_hosts, router, App, RetrainState};
use crate::manifest::Manifest;
use anyhow::{ensure, Context};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use tidalscope_io::embeddings::{Embeddings, INFO};

/// The cache folder of a labels file: `labels.csv` → `labels.embeddings/`.
pub fn cache_dir(labels: &Path) -> PathBuf {
    let stem = labels.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "labels".into());
    labels.with_file_name(format!("{stem}.embeddings"))
}

/// Runs `label`.
pub fn run(args: LabelArgs) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let t0 = std::time::Instant::now();
    ensure!(
        args.pixel_scale.is_finite() && args.pixel_scale > 0.0,
        "--pixel-scale must be a positive number of arcseconds"
    );
    if let Some(t) = &args.token {
        ensure!(
            t.len() >= 8 && t.chars().all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)),
            "--token: at least 8 characters of A-Z, a-z, 0-9, '-', '_', '.', '~'"
        );
    }
    ensure!(
        args.host.is_loopback() || args.token.is_some(),
        "--host {}: serving beyond this machine needs --token (anyone who reaches the page could read and change the labels)",
        args.host
    );
    // Opened first: a bad labels file fails before minutes of embedding.
    let log = LabelLog::open(&args.labels).with_context(|| format!("opening the labels {}", args.labels.display()))?;
    let cache = cache_dir(&args.labels);
    let source = super::open_source(&args.data, &args.source, None)?;
    let emb = cached_embeddings(&args, &cache, source.info().len)?;
    let mut cat = Catalogue::new(emb)?;
    cat.hide(&args.hide)?;
    ensure!(
        cat.len() > 0,
        "{}: no object could be embedded (see {})",
        args.data.display(),
        cache.join("errors.csv").display()
    );
    let format = source.info().format;
    if matches!(format, tidalscope_io::source::Format::TfData | tidalscope_io::source::Format::Coadd) {
        // Streams (tf.data) and coadds (a whole patch per cutout) are read in
        // order, not one object at a time: fine for embedding, slow for a page.
        eprintln!(
            "warning: {} input is slow to read one object at a time; for a quick page, cut it once with \
             `tidalscope convert {} cutouts --to npy` and label `cutouts`",
            format.name(),
            args.data.display()
        );
    }
    let scores = match load_scores(&cache, cat.len()) {
        Some(s) => {
            if args.model.is_some() {
                eprintln!(
                    "note: ordering by the scores of the last retrain ({}), not --model's: delete {} to start from --model's",
                    s.source,
                    cache.join("scores.npy").display()
                );
            }
            s
        }
        None => model_scores(&args, &cache, &cat)?.unwrap_or_default(),
    };
    let unknown = log.current().iter().filter(|l| !cat.by_id.contains_key(&l.given.id)).count();
    if unknown > 0 {
        eprintln!(
            "warning: {unknown} labelled ids of {} are not among the {} objects of {}",
            args.labels.display(),
            cat.len(),
            args.data.display()
        );
    }
    #[derive(Serialize)]
    struct Resolved {
        data: String,
        encoder: String,
        model: Option<String>,
        labels: String,
        log: String,
        cache: String,
        host: String,
        port: u16,
        token: bool,
        annotator: String,
        pixel_scale: f64,
        seed: u64,
        objects: usize,
    }
    let annotator = args
        .annotator
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let resolved = Resolved {
        data: args.data.display().to_string(),
        encoder: args.encoder.display().to_string(),
        model: args.model.as_ref().map(|m| m.display().to_string()),
        labels: args.labels.display().to_string(),
        log: log.path().display().to_string(),
        cache: cache.display().to_string(),
        host: args.host.to_string(),
        port: args.port,
        token: args.token.is_some(),
        annotator: annotator.clone(),
        pixel_scale: args.pixel_scale,
        seed: args.seed,
        objects: cat.len(),
    };
    Manifest::new("label", resolved, started, t0.elapsed().as_secs_f64()).write_as(&cache.join("label.run.toml"))?;
    if args.prepare_only {
        println!(
            "prepared {} objects for labelling in {:.1} s → {}",
            cat.len(),
            t0.elapsed().as_secs_f64(),
            cache.display()
        );
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the web server")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host, args.port)).await.with_context(|| {
            format!("listening on {}:{} (another program may hold the port: try --port 0)", args.host, args.port)
        })?;
        let addr = listener.local_addr()?;
        let port = addr.port();
        let app = Arc::new(App {
            random: random_order(cat.len(), args.seed),
            bands: source.info().bands.clone(),
            cat,
            source,
            pixel_scale: args.pixel_scale,
            annotator,
            allowed_hosts: if args.host.is_loopback() {
                let mut hosts = loopback_hosts(port);
                hosts.push(addr.to_string());
                hosts
            } else {
                Vec::new()
            },
            token: args.token.clone(),
            log: Mutex::new(log),
            scores: RwLock::new(scores),
            cache: Some(cache),
            seed: args.seed,
            retrain: Mutex::new(RetrainState::default()),
        });
        let token = args.token.as_ref().map(|t| format!("?token={t}")).unwrap_or_default();
        // The bound address as a browser wants it: [v6]:port, v4:port.
        println!("labelling page: http://{addr}/{token}");
        println!("labels: {} (log {}); stop with Ctrl-C: every label is on disk already", args.labels.display(), {
            crate::label::log::log_path(&args.labels).display()
        });
        use std::io::Write;
        std::io::stdout().flush()?;
        axum::serve(listener, router(app)).await.context("serving the labelling page")
    })
}

/// The embeddings of `--data` (`objects` of them) by `--encoder`: read
/// from the cache when it holds them, else computed (as `embed` does) into it.
fn cached_embeddings(args: &LabelArgs, cache: &Path, objects: usize) -> anyhow::Result<Embeddings> {
    if let Ok(e) = Embeddings::read(cache) {
        match stale(args, cache, &e, objects)? {
            None => {
                eprintln!("using the {} embeddings cached in {}", e.info.count, cache.display());
                return Ok(e);
            }
            Some(why) => {
                eprintln!("{}: {why}: recomputing the embeddings", cache.display());
                // Our folder (it held our embedding.json): the scores kept in it are stale too.
                std::fs::remove_dir_all(cache).with_context(|| format!("clearing {}", cache.display()))?;
            }
        }
    }
    // Gone first, so a crash mid-way never leaves a description of other vectors.
    let _ = std::fs::remove_file(cache.join(INFO));
    let embedded = super::infer::embed(EmbedArgs {
        encoder: args.encoder.clone(),
        data: args.data.clone(),
        out: cache.to_path_buf(),
        table: None,
        shard: None,
        color_by: "none".into(),
        chunk: 256,
        device: args.device,
        source: args.source.clone(),
    });
    allow_partial(embedded, "cannot be labelled")?;
    Ok(Embeddings::read(cache)?)
}

/// Why cached embeddings `e` do not fit this run (`None`: they do).
fn stale(args: &LabelArgs, cache: &Path, e: &Embeddings, objects: usize) -> anyhow::Result<Option<String>> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let coadd = args.source.coadd_options()?.map(|c| c.specs()).unwrap_or_default();
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Ok(if e.info.encoder != canon(&args.encoder) || e.info.coadd != coadd {
        Some("another encoder or other coadds".into())
    } else if e.info.encoder_sha256 != super::infer::encoder_sha256(&args.encoder)? {
        Some(format!("{} changed since (its checksum differs)", args.encoder.display()))
    } else if e.info.data != canon(&args.data) {
        Some(format!("other data ({})", e.info.data.display()))
    } else if e.info.source_len != objects {
        Some(format!("{} objects then, {objects} now", e.info.source_len))
    } else if modified(&args.data) > modified(&cache.join(INFO)) {
        Some(format!("{} changed since", args.data.display()))
    } else {
        None
    })
}

/// A run that failed on some objects only is a warning here.
fn allow_partial(result: anyhow::Result<()>, consequence: &str) -> anyhow::Result<()> {
    match result {
        Err(e) if e.downcast_ref::<super::PartialFailure>().is_some() => {
            eprintln!("warning: {e}: those objects {consequence}");
            Ok(())
        }
        other => other,
    }
}

/// The scores of `--model` for every catalogue row, computed once per
/// model (cached under its checksum).
fn model_scores(args: &LabelArgs, cache: &Path, cat: &Catalogue) -> anyhow::Result<Option<Scores>> {
    let Some(model) = &args.model else { return Ok(None) };
    let sha = tidalscope_io::checksum::sha256_files(model, &tidalscope_model::bundle::ClassifierBundle::FILES)
        .with_context(|| format!("{}: not a classifier folder", model.display()))?;
    let dir = cache.join(format!("model-{}", &sha[..12]));
    let out = dir.join("scores.csv");
    if !out.is_file() {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let predicted = super::infer::predict(PredictArgs {
            model: model.clone(),
            data: args.data.clone(),
            out: out.clone(),
            shard: None,
            chunk: 256,
            device: args.device,
            source: args.source.clone(),
        });
        allow_partial(predicted, "have no score")?;
    }
    let table = tidalscope_io::source::Catalog::read(&out)?;
    let (id, score) = (table.require("id")?, table.require("score")?);
    let by_id: HashMap<&str, f32> =
        table.rows.iter().filter_map(|r| Some((r.fields[id].as_str(), r.fields[score].parse().ok()?))).collect();
    let values: Vec<f32> = cat.ids.iter().map(|i| by_id.get(i.as_str()).copied().unwrap_or(0.0)).collect();
    Ok(Some(Scores { values, source: format!("classifier {}", model.display()) }))
}
