//! `tidalscope convert`: between npy, FITS and tf.data, streaming; with
//! `--crowd`, a crowded copy (sources of other cutouts pasted in).

use crate::cli::{CompressionArg, ConvertArgs, ConvertTo};
use crate::manifest::Manifest;
use crate::progress;
use anyhow::{bail, Context};
use serde::Serialize;
use std::path::PathBuf;
use tidalscope_data::crowd::{self, Crowd};
use tidalscope_data::split::ObjectRef;
use tidalscope_io::csv::CsvWriter;
use tidalscope_io::fits::StackWriter;
use tidalscope_io::npy::NpyWriter;
use tidalscope_io::source::Source;
use tidalscope_io::tfdata::{ComponentSpec, Compression, DType, ElementSpec, Tensor, TensorData, TfDataWriter};

enum Sink {
    Npy(NpyWriter, Option<Box<CsvWriter>>),
    /// The stack, and its objects' table (id, label, metadata) written
    /// beside it into a temporary folder until the stack is finished.
    Fits(StackWriter, Box<CsvWriter>, tempfile::TempDir),
    TfData(TfDataWriter, bool),
}

/// What `convert --crowd` records in `run.toml`.
#[derive(Serialize)]
struct CrowdRecord {
    input: PathBuf,
    output: PathBuf,
    crowd: f64,
    seed: u64,
    pool: usize,
    sources_in_pool: usize,
    detect_sigma: (f32, f32),
    pasted: usize,
}

/// The sources of the first [`crowd::POOL`] cutouts, for `--crowd`.
fn crowd_pool(source: &dyn Source, factor: f64, seed: u64) -> anyhow::Result<Crowd> {
    let refs: Vec<ObjectRef> = ObjectRef::every([source.info().len]).into_iter().take(crowd::POOL).collect();
    let bar = progress::bar(refs.len() as u64, "finding sources", "cutouts");
    let crowd = Crowd::read(&[source], &refs, factor, seed ^ tidalscope_core::streams::CROWD, &mut || bar.inc(1))?;
    bar.finish_and_clear();
    Ok(crowd)
}

/// The shape of `source`'s first object, for sources that cannot tell one
/// shape up front (a catalogue whose first object does not load, a folder
/// of files): the others must match it, and where it does not load, the
/// reason (a missing band file, say) is the error, not a guess about shapes.
fn first_shape(source: &dyn tidalscope_io::source::Source) -> anyhow::Result<[usize; 3]> {
    let path = source.info().path.display();
    let Some(first) = source.records(0)?.next() else {
        bail!("{path}: no objects to convert");
    };
    // A reader's error names the file and the object.
    Ok(first?.pixels.load()?.shape())
}

/// Runs `convert`.
pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let clock = std::time::Instant::now();
    super::train::crowd_factor(args.crowd)?;
    let source = super::open_source(&args.input, &args.source, None)?;
    let info = source.info().clone();
    let crowd = if args.crowd > 0.0 { Some(crowd_pool(source.as_ref(), args.crowd, args.seed)?) } else { None };
    let ext = args.output.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    let to = match (ext.as_deref(), args.to) {
        (Some("npy"), None | Some(ConvertTo::Npy)) => ConvertTo::Npy,
        (Some("fits" | "fit"), None | Some(ConvertTo::Fits)) => ConvertTo::Fits,
        (_, Some(t)) => t,
        (_, None) => bail!(
            "{}: cannot tell the output format from its name; give --to npy, fits or tfdata",
            args.output.display()
        ),
    };
    let [c, h, w] = match info.shape {
        Some(shape) => shape,
        None => first_shape(source.as_ref())?,
    };
    let n = info.len;
    let mut sink = match to {
        ConvertTo::Npy if ext.as_deref() == Some("npy") => {
            Sink::Npy(NpyWriter::create(&args.output, &[n, h, w, c])?, None)
        }
        ConvertTo::Npy => {
            // A folder: images.npy + catalog.csv, readable back with labels and metadata.
            std::fs::create_dir_all(&args.output).with_context(|| format!("creating {}", args.output.display()))?;
            let mut header = vec!["id".to_string(), "label".to_string()];
            let meta = tidalscope_data::stream::meta_names(&header, &info.meta_columns);
            header.extend(meta);
            Sink::Npy(
                NpyWriter::create(&args.output.join("images.npy"), &[n, h, w, c])?,
                Some(Box::new(CsvWriter::create(&args.output.join("catalog.csv"), &header)?)),
            )
        }
        ConvertTo::Fits => {
            let mut header = vec!["id".to_string()];
            if info.labelled {
                header.push("label".into());
            }
            header.extend(tidalscope_data::stream::meta_names(&header, &info.meta_columns));
            let tmp = tempfile::tempdir()?;
            let objects = CsvWriter::create(&tmp.path().join("objects.csv"), &header)?;
            Sink::Fits(StackWriter::create(&args.output, n, [c, h, w], &info.bands)?, Box::new(objects), tmp)
        }
        ConvertTo::Tfdata => {
            let mut comps = vec![
                ComponentSpec { key: "id".into(), dtype: DType::Str, shape: Some(vec![]) },
                ComponentSpec { key: "image".into(), dtype: DType::F32, shape: Some(vec![Some(h), Some(w), Some(c)]) },
            ];
            if info.labelled {
                comps.push(ComponentSpec { key: "label".into(), dtype: DType::I64, shape: Some(vec![]) });
            }
            let compression = match args.compression {
                CompressionArg::None => Compression::None,
                CompressionArg::Gzip => Compression::Gzip,
            };
            Sink::TfData(
                TfDataWriter::create(&args.output, ElementSpec { components: comps }, compression)?,
                info.labelled,
            )
        }
    };
    let bar = progress::bar(n as u64, "convert", "objects");
    let mut hwc = vec![0f32; c * h * w];
    let (mut count, mut pasted) = (0, 0);
    for rec in source.records(0)? {
        let rec = rec?;
        let (id, label, meta, index) = (rec.id, rec.label, rec.meta, rec.index);
        let mut img = rec.pixels.load()?;
        if img.shape() != [c, h, w] {
            bail!(
                "{}: object {index} (id {id}) is {:?}, the first was {:?}",
                info.path.display(),
                img.shape(),
                [c, h, w]
            );
        }
        if let Some(crowd) = &crowd {
            pasted += crowd
                .apply(&mut img, Some(index), index as u64)
                .with_context(|| format!("{}: object {index} (id {id})", info.path.display()))?;
        }
        match &mut sink {
            Sink::Npy(npy, csv) => {
                img.write_hwc(&mut hwc);
                npy.write(&hwc)?;
                if let Some(csv) = csv {
                    let mut row = vec![id, label.map(|l| l.to_string()).unwrap_or_default()];
                    row.extend(meta);
                    csv.row(&row)?;
                }
            }
            Sink::Fits(f, objects, _) => {
                f.write(img.data())?;
                let mut row = vec![id];
                if info.labelled {
                    row.push(label.map(|l| l.to_string()).unwrap_or_default());
                }
                row.extend(meta);
                objects.row(&row)?;
            }
            Sink::TfData(t, labelled) => {
                img.write_hwc(&mut hwc);
                let mut el = vec![
                    Tensor { dtype: DType::Str, shape: vec![], data: TensorData::Str(vec![id.into_bytes()]) },
                    Tensor::f32(vec![h, w, c], &hwc),
                ];
                if *labelled {
                    let l = label.map(i64::from).unwrap_or(-1);
                    el.push(Tensor {
                        dtype: DType::I64,
                        shape: vec![],
                        data: TensorData::Raw(l.to_le_bytes().to_vec()),
                    });
                }
                t.write(&el)?;
            }
        }
        count += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    anyhow::ensure!(count == n, "{}: read {count} objects, {n} were announced", info.path.display());
    match sink {
        Sink::Npy(npy, csv) => {
            npy.finish()?;
            if let Some(csv) = csv {
                csv.finish()?;
            }
        }
        Sink::Fits(f, objects, tmp) => {
            objects.finish()?;
            if let Some(why) = f.finish_with_objects(&tmp.path().join("objects.csv"))? {
                eprintln!(
                    "warning: {}: the ids, labels and metadata are left out (no OBJECTS table): {why}",
                    args.output.display()
                );
            }
        }
        Sink::TfData(t, _) => t.finish()?,
    }
    println!("converted {n} objects ({c} bands, {h}×{w}) from {} to {}", info.format, args.output.display());
    if let Some(crowd) = &crowd {
        let sources_in_pool = crowd.sources();
        println!(
            "crowded: {pasted} sources pasted ({:.1} per cutout) from {sources_in_pool} found in the first {} cutouts",
            pasted as f64 / n.max(1) as f64,
            crowd.pool.len()
        );
        let record = CrowdRecord {
            input: args.input.clone(),
            output: args.output.clone(),
            crowd: args.crowd,
            seed: args.seed,
            pool: crowd.pool.len(),
            sources_in_pool,
            detect_sigma: crowd::DETECT,
            pasted,
        };
        // Beside a file output, inside a folder one.
        let at =
            if args.output.is_dir() { args.output.join("run.toml") } else { super::beside(&args.output, "run.toml") };
        Manifest::new("convert", record, started, clock.elapsed().as_secs_f64()).write_as(&at)?;
    }
    Ok(())
}
