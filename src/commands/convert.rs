//! `tidalscope convert`: between npy, FITS and tf.data, streaming.

use crate::cli::{CompressionArg, ConvertArgs, ConvertTo};
use crate::progress;
use anyhow::{bail, Context};
use tidalscope_io::csv::CsvWriter;
use tidalscope_io::fits::StackWriter;
use tidalscope_io::npy::NpyWriter;
use tidalscope_io::tfdata::{ComponentSpec, Compression, DType, ElementSpec, Tensor, TensorData, TfDataWriter};

enum Sink {
    Npy(NpyWriter, Option<Box<CsvWriter>>),
    Fits(StackWriter),
    TfData(TfDataWriter, bool),
}

/// Runs `convert`.
pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    let source = super::open_source(&args.input, &args.source, None)?;
    let info = source.info().clone();
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
    let Some([c, h, w]) = info.shape else {
        bail!("{}: images of different shapes cannot be stacked; convert needs one shape", info.path.display());
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
            header.extend(info.meta_columns.iter().cloned());
            Sink::Npy(
                NpyWriter::create(&args.output.join("images.npy"), &[n, h, w, c])?,
                Some(Box::new(CsvWriter::create(&args.output.join("catalog.csv"), &header)?)),
            )
        }
        ConvertTo::Fits => Sink::Fits(StackWriter::create(&args.output, n, [c, h, w], &info.bands)?),
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
    let mut count = 0;
    for rec in source.records(0)? {
        let rec = rec?;
        let (id, label, meta, index) = (rec.id, rec.label, rec.meta, rec.index);
        let img = rec.pixels.load()?;
        if img.shape() != [c, h, w] {
            bail!(
                "{}: object {index} (id {id}) is {:?}, the first was {:?}",
                info.path.display(),
                img.shape(),
                [c, h, w]
            );
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
            Sink::Fits(f) => f.write(img.data())?,
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
        Sink::Fits(f) => f.finish()?,
        Sink::TfData(t, _) => t.finish()?,
    }
    println!("converted {n} objects ({c} bands, {h}×{w}) from {} to {}", info.format, args.output.display());
    Ok(())
}
