//! `predict`, `embed` and `search`: a trained model on new data.
//!
//! `predict` and `embed` stream their input in chunks decoded in parallel,
//! so memory stays constant whatever its size; an object that cannot be read
//! (missing or corrupt file, wrong shape) goes to an errors file (`embed`'s
//! `errors.csv`, `predict`'s named after its output: [`super::beside`]) with
//! its id, file and reason, the run continues, and the exit status is 3. `--shard
//! K/N` processes the K-th of N equal, contiguous parts, whose outputs
//! concatenate to the unsharded output.

use crate::cli::{EmbedArgs, PredictArgs, SearchArgs, Shard, SourceArgs};
use crate::manifest::Manifest;
use crate::progress;
use anyhow::{bail, ensure, Context};
use serde::Serialize;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use tidalscope_core::Cutout;
use tidalscope_data::preprocess::Preprocess;
use tidalscope_data::stream::{
    meta_names, scores_header, stream_prepared, CONSTANT_COLUMN, ERRORS_HEADER, NON_FINITE_COLUMN,
};
use tidalscope_eval::plot::{mosaic, scatter, Group, Tile, PALETTE};
use tidalscope_eval::search::{normalise_rows, pca2, top_k};
use tidalscope_io::csv::CsvWriter;
use tidalscope_io::embeddings::{EmbeddingInfo, Embeddings, EmbeddingsWriter, IdRow, ID_COLUMNS};
use tidalscope_model::bundle::{ClassifierBundle, EncoderBundle};
use tidalscope_model::infer;

/// Objects of part K of N: contiguous, sizes differing by at most one.
pub fn shard_range(len: usize, shard: Option<Shard>) -> Range<usize> {
    match shard {
        None => 0..len,
        Some(Shard { k, n }) => tidalscope_data::stream::shard_range(len, k, n),
    }
}

fn errors_writer(path: &Path) -> anyhow::Result<CsvWriter> {
    Ok(CsvWriter::create(path, &ERRORS_HEADER)?)
}

#[derive(Serialize)]
struct RunInfo {
    model: String,
    data: String,
    shard: Option<String>,
    objects: usize,
    failed: usize,
    /// Objects processed with some non-finite pixels (set to 0).
    flagged: usize,
    /// Objects processed with a band of one value in the model's view.
    constant_band: usize,
}

/// What `predict` records in its `run.toml`; `collect` reads it back to
/// check that the shards of a job belong together.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PredictRecord {
    /// The classifier folder, as given.
    pub model: String,
    /// SHA-256 over the classifier folder's files (name and bytes).
    pub model_sha256: String,
    /// The data, as an absolute path.
    pub data: String,
    /// `--format`, when given.
    pub format: Option<String>,
    /// `--layout`.
    pub layout: String,
    /// `--image-key`.
    pub image_key: String,
    /// `--cycle-length` (tf.data interleave), when given.
    pub cycle_length: Option<usize>,
    /// The coadd tiles, cutout size and RA/Dec columns, when cutting from
    /// coadds (`--coadd`).
    #[serde(default)]
    pub coadd: Option<String>,
    /// Units of catalogue columns (`[column, unit]`), for table outputs.
    #[serde(default)]
    pub units: Vec<[String; 2]>,
    /// Objects in the whole source when it was read.
    pub source_len: usize,
    /// `--shard K/N`, when given.
    pub shard: Option<String>,
    /// The source indices this part scored, `[start, end)`.
    pub range: [usize; 2],
    /// The scores file's name (it lies beside this record).
    pub out: String,
    /// Objects in this run's part.
    pub objects: usize,
    /// Objects that could not be processed (in the errors file).
    pub failed: usize,
    /// Objects processed with some non-finite pixels (set to 0).
    pub flagged: usize,
    /// Objects processed with a band of one value in the model's view (named in
    /// the scores' `constant_bands`); 0 in records of earlier releases.
    #[serde(default)]
    pub constant_band: usize,
}

/// Runs `predict`.
pub fn predict(args: PredictArgs) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let t0 = std::time::Instant::now();
    let shard = args.shard;
    let device = args.device.device()?;
    let bundle = ClassifierBundle::load(&args.model, &device)?;
    let source = super::open_source(&args.data, &args.source, None)?;
    let info = source.info().clone();
    let range = shard_range(info.len, shard);
    let dir = args
        .out
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let header = scores_header(info.labelled, &info.meta_columns);
    // A FITS table is written from the finished CSV (its column widths are
    // known only at the end).
    let csv_path = super::catalog_csv_path(&args.out);
    let mut out = CsvWriter::create(&csv_path, &header)?;
    // Shards of one job share a folder, where `collect` finds their side
    // files by shard; other outputs name theirs after themselves.
    let (errors_path, run_path) = match shard {
        Some(s) => (super::shard_side(&dir, s, "errors", "csv"), super::shard_side(&dir, s, "run", "toml")),
        None => (super::beside(&args.out, "errors.csv"), super::beside(&args.out, "run.toml")),
    };
    let mut errors = errors_writer(&errors_path)?;
    let bar = progress::bar(range.len() as u64, "predict", "objects");
    let (mut scored, mut failed, mut flagged, mut constant) = (0usize, 0usize, 0usize, 0usize);
    let predictor = infer::Predictor::classifier(&bundle.classifier, bundle.preprocess.crop, &device);
    stream_prepared(source.as_ref(), range.clone(), &bundle.preprocess, args.chunk, |ok, bad| {
        bar.inc((ok.len() + bad.len()) as u64);
        for b in &bad {
            errors.row([&b.id, &b.file, &b.reason])?;
        }
        failed += bad.len();
        let images: Vec<&Cutout> = ok.iter().map(|p| &p.image).collect();
        let scores = predictor
            .scores(&images)
            .map_err(|e| anyhow::anyhow!("{}: {e} (model {})", args.data.display(), args.model.display()))?;
        for (p, s) in ok.iter().zip(scores) {
            let row = p.scores_row(info.labelled, s);
            out.row(&row)?;
            flagged += usize::from(p.non_finite > 0.0);
            constant += usize::from(!p.constant_bands.is_empty());
        }
        scored += ok.len();
        anyhow::Ok(())
    })?;
    bar.finish_and_clear();
    out.finish()?;
    errors.finish()?;
    let model_sha256 = tidalscope_io::checksum::sha256_files(&args.model, &ClassifierBundle::FILES)?;
    // Positions that cut from coadds are degrees by definition.
    let units: Vec<[String; 2]> = match args.source.coadd.is_empty() {
        true => Vec::new(),
        false => vec![[args.source.ra_column.clone(), "deg".into()], [args.source.dec_column.clone(), "deg".into()]],
    };
    super::finish_catalog(&csv_path, &args.out, "SCORES", &[("MODELSHA", &model_sha256)], &units, None)?;
    let secs = t0.elapsed().as_secs_f64();
    let run = PredictRecord {
        model: args.model.display().to_string(),
        model_sha256,
        data: std::fs::canonicalize(&args.data).unwrap_or(args.data.clone()).display().to_string(),
        format: args.source.format.map(|f| f.to_string()),
        layout: args.source.layout.to_string(),
        image_key: args.source.image_key.clone(),
        cycle_length: args.source.cycle_length,
        coadd: args.source.coadd_options()?.map(|c| c.describe()),
        units,
        source_len: info.len,
        shard: args.shard.map(|s| s.to_string()),
        range: [range.start, range.end],
        out: args.out.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
        objects: range.len(),
        failed,
        flagged,
        constant_band: constant,
    };
    Manifest::new("predict", run, started, secs).write_as(&run_path)?;
    println!(
        "scored {scored} objects in {secs:.1} s ({:.1} objects/s) → {}{}",
        range.len() as f64 / secs.max(1e-9),
        args.out.display(),
        super::flagged_note(flagged, constant)
    );
    super::partial_failure(failed, range.len(), &errors_path)
}

/// Runs `embed`.
pub fn embed(args: EmbedArgs) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let t0 = std::time::Instant::now();
    let shard = args.shard;
    let device = args.device.device()?;
    let (encoder, preprocess) = EncoderBundle::load_encoder_of(&args.encoder, &device)?;
    let source = super::open_source(&args.data, &args.source, None)?;
    let info = source.info().clone();
    let range = shard_range(info.len, shard);
    let mut columns = vec![NON_FINITE_COLUMN.to_string(), CONSTANT_COLUMN.to_string()];
    let own: Vec<String> = ID_COLUMNS.iter().map(|c| c.to_string()).chain(columns.clone()).collect();
    columns.extend(meta_names(&own, &info.meta_columns));
    let mut writer = EmbeddingsWriter::create(&args.out, &columns)?;
    let errors_path = args.out.join("errors.csv");
    let mut errors = errors_writer(&errors_path)?;
    let bar = progress::bar(range.len() as u64, "embed", "objects");
    let (mut rows, mut failed, mut flagged, mut constant) = (0usize, 0usize, 0usize, 0usize);
    let predictor = infer::Predictor::encoder(&encoder, preprocess.crop, &device);
    stream_prepared(source.as_ref(), range.clone(), &preprocess, args.chunk, |ok, bad| {
        bar.inc((ok.len() + bad.len()) as u64);
        for b in &bad {
            errors.row([&b.id, &b.file, &b.reason])?;
        }
        failed += bad.len();
        let images: Vec<&Cutout> = ok.iter().map(|p| &p.image).collect();
        if images.is_empty() {
            return Ok(());
        }
        let reps = predictor
            .embed(&images)
            .map_err(|e| anyhow::anyhow!("{}: {e} (encoder {})", args.data.display(), args.encoder.display()))?;
        let meta: Vec<Vec<String>> = ok
            .iter()
            .map(|p| [p.non_finite_text(), p.constant_text()].into_iter().chain(p.meta.iter().cloned()).collect())
            .collect();
        let objects: Vec<IdRow> =
            ok.iter().zip(&meta).map(|(p, meta)| IdRow { index: p.index, id: &p.id, label: p.label, meta }).collect();
        writer.push(&reps, &objects)?;
        flagged += ok.iter().filter(|p| p.non_finite > 0.0).count();
        constant += ok.iter().filter(|p| !p.constant_bands.is_empty()).count();
        rows += ok.len();
        anyhow::Ok(())
    })?;
    bar.finish_and_clear();
    let emb = EmbeddingInfo {
        encoder: std::fs::canonicalize(&args.encoder).unwrap_or(args.encoder.clone()),
        data: std::fs::canonicalize(&args.data).unwrap_or(args.data.clone()),
        format: args.source.format.map(|f| f.to_string()),
        layout: args.source.layout.to_string(),
        image_key: args.source.image_key.clone(),
        cycle_length: args.source.cycle_length,
        coadd: args.source.coadd_options()?.map(|c| c.specs()).unwrap_or_default(),
        coadd_cut: (!args.source.coadd.is_empty()).then(|| tidalscope_io::embeddings::CoaddCut {
            size: args.source.cutout_size,
            ra_column: args.source.ra_column.clone(),
            dec_column: args.source.dec_column.clone(),
        }),
        shard: args.shard.map(|s| s.to_string()),
        encoder_sha256: encoder_sha256(&args.encoder)?,
        source_len: info.len,
        count: 0,
        dim: 0,
    };
    // With nothing embedded the array is [0, D]: D of the representation.
    let emb_sha = writer.finish(emb, encoder.dense2.weight.dims()[1])?.encoder_sha256;
    errors.finish()?;
    if let Some(table) = &args.table {
        embedding_table(&args.out, table, &emb_sha)?;
    }
    if args.color_by != "none" && rows > 1 {
        projection_plot(&args.out, &args.color_by)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let run = RunInfo {
        model: args.encoder.display().to_string(),
        data: args.data.display().to_string(),
        shard: args.shard.map(|s| s.to_string()),
        objects: range.len(),
        failed,
        flagged,
        constant_band: constant,
    };
    Manifest::new("embed", run, started, secs).write(&args.out)?;
    println!(
        "embedded {rows} objects in {secs:.1} s ({:.1} objects/s) → {}{}",
        range.len() as f64 / secs.max(1e-9),
        args.out.display(),
        super::flagged_note(flagged, constant)
    );
    super::partial_failure(failed, range.len(), &errors_path)
}

/// SHA-256 of an encoder folder's files, or of a classifier folder's (whose
/// encoder is used).
pub fn encoder_sha256(dir: &Path) -> anyhow::Result<String> {
    tidalscope_io::checksum::sha256_files(dir, &EncoderBundle::FILES)
        .or_else(|_| tidalscope_io::checksum::sha256_files(dir, &ClassifierBundle::FILES))
        .with_context(|| format!("{}: neither an encoder nor a classifier folder", dir.display()))
}

/// `projection.png`: the first two principal components of the
/// representations, coloured by a column of ids.csv.
fn projection_plot(dir: &Path, column: &str) -> anyhow::Result<()> {
    let Embeddings { dim: d, vectors: rows, ids, .. } = Embeddings::read(dir)?;
    let col = ids.require(column)?;
    let (mean, pc1, pc2) = pca2(&rows, d);
    let mut groups: Vec<Group> = Vec::new();
    for (r, row) in rows.chunks_exact(d).zip(&ids.rows) {
        let value = &row.fields[col];
        let value = if value.is_empty() { "(none)" } else { value.as_str() };
        let c: Vec<f64> = r.iter().zip(&mean).map(|(&x, m)| x as f64 - m).collect();
        let p = (c.iter().zip(&pc1).map(|(a, b)| a * b).sum(), c.iter().zip(&pc2).map(|(a, b)| a * b).sum());
        match groups.iter_mut().find(|g| g.label == value) {
            Some(g) => g.points.push(p),
            None => groups.push(Group { label: value.to_string(), points: vec![p], color: [0, 0, 0] }),
        }
    }
    if groups.len() > PALETTE.len() {
        eprintln!("warning: {column} has {} values, too many to colour; projection.png not written", groups.len());
        return Ok(());
    }
    groups.sort_by(|a, b| a.label.cmp(&b.label));
    for (g, c) in groups.iter_mut().zip(PALETTE) {
        g.color = c;
    }
    scatter(
        &dir.join("projection.png"),
        &format!("representations: first two principal components, by {column}"),
        "PC 1",
        "PC 2",
        &groups,
    )?;
    Ok(())
}

/// Queries whose neighbours `search`'s mosaic shows: a query file of
/// thousands of images would otherwise keep them all in memory for a
/// picture no one can read.
const MOSAIC_QUERIES: usize = 16;

/// Query images prepared and embedded together.
const QUERY_CHUNK: usize = 256;

/// One query galaxy.
struct Query {
    /// As given on the command line (`FILE:id` for each image of a file
    /// that holds several).
    name: String,
    /// Its unit-length representation.
    vector: Vec<f32>,
    /// Its row, when it is in the embedded set.
    row: Option<usize>,
    /// Its pixels, when it came from a file.
    image: Option<Cutout>,
}

/// Writes an embed folder's objects (`ids.csv`) with their vectors
/// (`embeddings.npy`) as one catalogue table, streaming row by row.
fn embedding_table(dir: &Path, table: &Path, encoder_sha256: &str) -> anyhow::Result<()> {
    use std::io::{Read, Seek};
    let npy_path = dir.join(tidalscope_io::embeddings::VECTORS);
    let mut npy = std::io::BufReader::new(
        std::fs::File::open(&npy_path).with_context(|| format!("opening {}", npy_path.display()))?,
    );
    let head = tidalscope_io::npy::read_header(&mut npy, &npy_path)?;
    let [n, d] = head.shape[..] else { bail!("{}: expected [N, D], got {:?}", npy_path.display(), head.shape) };
    npy.seek(std::io::SeekFrom::Start(head.data_offset))?;
    let ids_path = dir.join(tidalscope_io::embeddings::IDS);
    let mut ids = ::csv::Reader::from_path(&ids_path).with_context(|| format!("reading {}", ids_path.display()))?;
    let mut names: Vec<String> = ids.headers()?.iter().map(str::to_string).collect();
    names.extend((0..d).map(|k| format!("embedding_{k}")));
    let csv_path = super::catalog_csv_path(table);
    let mut out = CsvWriter::create(&csv_path, &names)?;
    let (mut bytes, mut v) = (vec![0u8; d * head.dtype.size()], vec![0f32; d]);
    let mut rows = 0usize;
    for rec in ids.records() {
        let rec = rec.with_context(|| format!("reading {}", ids_path.display()))?;
        npy.read_exact(&mut bytes)
            .with_context(|| format!("{}: fewer vectors than rows of ids.csv", npy_path.display()))?;
        tidalscope_io::npy::decode_into(&bytes, head.dtype, head.big_endian, &mut v);
        out.row(rec.iter().map(str::to_string).chain(v.iter().map(|x| x.to_string())))?;
        rows += 1;
    }
    ensure!(rows == n, "{}: {rows} rows for {n} vectors", ids_path.display());
    out.finish()?;
    super::finish_catalog(&csv_path, table, "EMBEDDINGS", &[("ENCSHA", encoder_sha256)], &[], Some(("embedding", d)))
}

/// Runs `search`.
pub fn search(args: SearchArgs) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let t0 = std::time::Instant::now();
    ensure!(args.k > 0, "--k must be at least 1");
    let dir = &args.embeddings;
    let Embeddings { info, dim: d, vectors: mut rows, ids } = Embeddings::read(dir)?;
    let n_rows = ids.rows.len();
    normalise_rows(&mut rows, d);
    let id_col = ids.require("id")?;
    let index_col = ids.require("index")?;
    let by_id: HashMap<&str, usize> =
        ids.rows.iter().enumerate().map(|(i, r)| (r.fields[id_col].as_str(), i)).collect();
    let source_args = SourceArgs {
        format: info
            .format
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| anyhow::anyhow!("{}: {e}", dir.join(tidalscope_io::embeddings::INFO).display()))?,
        layout: info
            .layout
            .parse()
            .map_err(|e: String| anyhow::anyhow!("{}: {e}", dir.join(tidalscope_io::embeddings::INFO).display()))?,
        image_key: info.image_key.clone(),
        cycle_length: info.cycle_length,
        coadd: info.coadd.clone(),
        ..SourceArgs::auto()
    };
    let source_args = match &info.coadd_cut {
        Some(c) => SourceArgs {
            cutout_size: c.size,
            ra_column: c.ra_column.clone(),
            dec_column: c.dec_column.clone(),
            ..source_args
        },
        None => source_args,
    };
    // A query file holds its own pixels, whatever the embedded data was.
    let query_args = SourceArgs { coadd: Vec::new(), ..source_args.clone() };
    let device = args.device.device()?;
    let mut encoder: Option<(tidalscope_model::Encoder, Preprocess)> = None;
    let mut queries: Vec<Query> = Vec::new();
    for q in &args.query {
        if let Some(&row) = by_id.get(q.as_str()) {
            queries.push(Query {
                name: q.clone(),
                vector: rows[row * d..(row + 1) * d].to_vec(),
                row: Some(row),
                image: None,
            });
        } else if Path::new(q).exists() {
            if encoder.is_none() {
                encoder = Some(
                    EncoderBundle::load_encoder_of(&info.encoder, &device)
                        .with_context(|| format!("loading the encoder embed used ({})", info.encoder.display()))?,
                );
            }
            let (enc, pre) = encoder.as_ref().expect("loaded above");
            let src = super::open_source(Path::new(q), &query_args, None)?;
            // Reordered as the stream does, if named in another order.
            pre.band_order(src.info()).map_err(|e| anyhow::anyhow!("query {e}"))?;
            // Every image of a file is a query (it was the first alone),
            // named by its id where the file holds several. The images are
            // prepared in parallel and embedded a chunk at a time, as
            // `embed` does; one that cannot be prepared stops the search.
            let several = src.info().len > 1;
            let name = |id: &str| if several { format!("{q}:{id}") } else { q.clone() };
            let before = queries.len();
            let predictor = infer::Predictor::encoder(enc, pre.crop, &device);
            stream_prepared(src.as_ref(), 0..src.info().len, pre, QUERY_CHUNK, |ok, bad| -> anyhow::Result<()> {
                if let Some(b) = bad.first() {
                    // A catalogue's images are files of their own: named too.
                    let file = if b.file == *q { String::new() } else { format!(" ({})", b.file) };
                    bail!("query {}{file}: {}", name(&b.id), b.reason);
                }
                let images: Vec<&Cutout> = ok.iter().map(|p| &p.image).collect();
                let mut v = predictor.embed(&images).with_context(|| format!("query {q}"))?;
                let got = v.len() / ok.len().max(1);
                ensure!(v.len() == ok.len() * d, "query {q}: the encoder gives {got} numbers, the embeddings have {d}");
                normalise_rows(&mut v, d);
                for (p, v) in ok.iter().zip(v.chunks_exact(d)) {
                    queries.push(Query { name: name(&p.id), vector: v.to_vec(), row: None, image: None });
                }
                Ok(())
            })?;
            // Pixels are kept only for the queries the mosaic shows: read
            // again for those.
            let shown = MOSAIC_QUERIES.saturating_sub(before).min(queries.len() - before);
            for (query, rec) in queries[before..before + shown].iter_mut().zip(src.records(0)?) {
                let rec = rec?;
                ensure!(query.name == name(&rec.id), "{q}: its records changed while searching");
                query.image = Some(rec.pixels.load().with_context(|| format!("query {}", query.name))?);
            }
            ensure!(queries.len() > before, "{q}: no image");
        } else {
            bail!("query {q:?} is neither an id in {} nor a file", dir.join("ids.csv").display());
        }
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut header = vec!["query".to_string(), "rank".to_string(), "id".to_string(), "similarity".to_string()];
    let other: Vec<usize> = (0..ids.columns.len()).filter(|&c| c != id_col && c != index_col).collect();
    header.extend(other.iter().map(|&c| ids.columns[c].clone()));
    let mut out = CsvWriter::create(&args.out.join("neighbours.csv"), &header)?;
    let mut results: Vec<Vec<(usize, f32)>> = Vec::new();
    // The approximate index pays off only for many queries over huge sets:
    // it is built here, each run (a million rows: minutes on 2 cores).
    let index = args.approximate.then(|| {
        let t = std::time::Instant::now();
        let index = tidalscope_eval::search::AnnIndex::build(&rows, d, Default::default());
        eprintln!("built an HNSW index over {n_rows} embeddings in {:.1} s", t.elapsed().as_secs_f64());
        index
    });
    for q in &queries {
        let exclude: Vec<usize> = q.row.iter().copied().collect();
        let hits = match &index {
            Some(ix) => ix.top_k(&rows, &q.vector, args.k, args.ef.max(args.k), &exclude),
            None => top_k(&rows, d, &q.vector, args.k, &exclude),
        };
        let name = &q.name;
        for (rank, (i, s)) in hits.iter().enumerate() {
            let r = &ids.rows[*i];
            let mut fields = vec![name.clone(), (rank + 1).to_string(), r.fields[id_col].clone(), format!("{s:.6}")];
            fields.extend(other.iter().map(|&c| r.fields[c].clone()));
            out.row(&fields)?;
        }
        results.push(hits);
    }
    out.finish()?;
    let search_secs = t0.elapsed().as_secs_f64();
    // The mosaic needs the pixels of the queries and neighbours.
    let mut wanted: Vec<usize> = results
        .iter()
        .take(MOSAIC_QUERIES)
        .flatten()
        .map(|(i, _)| *i)
        .chain(queries.iter().take(MOSAIC_QUERIES).filter_map(|q| q.row))
        .map(|row| ids.rows[row].fields[index_col].parse::<usize>().unwrap_or(0))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut images: HashMap<usize, Cutout> = HashMap::new();
    match super::open_source(&info.data, &source_args, None) {
        Ok(src) if !wanted.is_empty() => {
            let last = *wanted.last().expect("not empty");
            for rec in src.records(wanted[0])?.take(last + 1 - wanted[0]) {
                let rec = rec?;
                if wanted.binary_search(&rec.index).is_ok() {
                    if let Ok(img) = rec.pixels.load() {
                        images.insert(rec.index, img);
                    }
                }
            }
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: no mosaic: the embedded data cannot be read ({e:#})"),
    }
    let tile = |img: Option<&Cutout>, caption: Vec<String>, frame: [u8; 3]| -> Option<Tile> {
        img.map(|i| Tile { rgb: tidalscope_eval::rgb::thumbnail(i), w: i.width(), h: i.height(), caption, frame })
    };
    let src_index = |row: usize| ids.rows[row].fields[index_col].parse::<usize>().unwrap_or(0);
    let mut tiles = Vec::new();
    if queries.len() > MOSAIC_QUERIES {
        eprintln!(
            "mosaic.png shows the first {MOSAIC_QUERIES} of {} queries; neighbours.csv has them all",
            queries.len()
        );
    }
    // On labelled data, each image's label, so a search can be judged at a
    // glance: tidal neighbours framed green.
    let label_col = ids.column("label");
    let label = |row: usize| label_col.map(|c| ids.rows[row].fields[c].as_str()).filter(|l| !l.is_empty());
    for (q, hits) in queries.iter().zip(&results).take(MOSAIC_QUERIES) {
        let qimg = q.image.as_ref().or_else(|| q.row.and_then(|r| images.get(&src_index(r))));
        let query_label = q.row.and_then(label).map(|l| format!("label {l}")).unwrap_or_default();
        tiles.extend(tile(qimg, vec![format!("query {}", q.name), query_label], [240, 140, 40]));
        for (rank, (i, s)) in hits.iter().enumerate() {
            let label = label(*i);
            let frame = if label == Some("1") { [70, 170, 100] } else { [90, 110, 140] };
            let similarity = match label {
                Some(l) => format!("similarity {s:.3} · label {l}"),
                None => format!("similarity {s:.3}"),
            };
            tiles.extend(tile(
                images.get(&src_index(*i)),
                vec![format!("#{} {}", rank + 1, ids.rows[*i].fields[id_col]), similarity],
                frame,
            ));
        }
    }
    if !tiles.is_empty() {
        let columns = (args.k + 1).min(8);
        mosaic(
            &args.out.join("mosaic.png"),
            &tiles,
            columns,
            &format!("nearest neighbours in representation space ({n_rows} embeddings)"),
        )?;
    }
    #[derive(Serialize)]
    struct Resolved<'a> {
        embeddings: String,
        queries: &'a [String],
        k: usize,
        /// HNSW search breadth when approximate (the index is built in
        /// parallel, so approximate results may differ between runs).
        approximate_ef: Option<usize>,
    }
    Manifest::new(
        "search",
        Resolved {
            embeddings: dir.display().to_string(),
            queries: &args.query,
            k: args.k,
            approximate_ef: args.approximate.then_some(args.ef.max(args.k)),
        },
        started,
        t0.elapsed().as_secs_f64(),
    )
    .write(&args.out)?;
    // Fewer than k where the embedded set is smaller (the query's own row left out).
    let found = results.iter().map(Vec::len).max().unwrap_or(0);
    println!(
        "{} quer{} × {} neighbours among {} embeddings in {:.2} s → {}",
        queries.len(),
        if queries.len() == 1 { "y" } else { "ies" },
        found,
        n_rows,
        search_secs,
        args.out.display()
    );
    Ok(())
}
