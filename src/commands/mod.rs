//! One module per subcommand; each turns raw arguments into validated
//! settings before doing any work.

mod bench;
mod collect;
mod collect_embed;
mod convert;
mod demo;
mod experiment;
pub mod import;
pub mod infer;
mod inspect;
mod label;
pub mod simulate;
pub mod train;

use crate::cli::{BenchCommand, Cli, Command, ExperimentCommand};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Simulate(args) => simulate::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Pretrain(args) => train::pretrain(args),
        Command::Finetune(args) => train::finetune(args),
        Command::Evaluate(args) => train::evaluate(args),
        Command::Predict(args) => infer::predict(args),
        Command::Collect(args) => collect::run(args),
        Command::Embed(args) => infer::embed(args),
        Command::Search(args) => infer::search(args),
        Command::Label(args) => label::run(args),
        Command::ImportKeras(args) => import::run(args),
        Command::ExportKeras(args) => import::export(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Experiment(ExperimentCommand::Labels(args)) => experiment::labels(args),
        Command::Experiment(ExperimentCommand::Recovery(args)) => experiment::recovery(args),
        Command::Bench(BenchCommand::Simulate(args)) => bench::simulate(args),
        Command::Bench(BenchCommand::Read(args)) => bench::read(args),
        Command::Bench(BenchCommand::Encoder(args)) => bench::encoder(args),
        Command::Bench(BenchCommand::Search(args)) => bench::search(args),
        Command::Bench(BenchCommand::Predict(args)) => bench::predict(args),
    }
}

/// A run that finished but could not process some objects (listed in its
/// errors file): the binary exits with status 3.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} objects could not be processed; see {errors}")]
pub struct PartialFailure {
    /// Objects that failed.
    pub failed: usize,
    /// Objects attempted.
    pub total: usize,
    /// The errors file.
    pub errors: String,
}

/// The end of a run over many objects: an error (exit status 3) when some
/// could not be processed.
pub fn partial_failure(failed: usize, total: usize, errors: &std::path::Path) -> anyhow::Result<()> {
    if failed > 0 {
        return Err(PartialFailure { failed, total, errors: errors.display().to_string() }.into());
    }
    Ok(())
}

/// The summary's note on flagged objects, if any: `flagged` had
/// non-finite pixels, `constant` a band of one value.
pub fn flagged_note(flagged: usize, constant: usize) -> String {
    use tidalscope_data::stream::{CONSTANT_COLUMN, NON_FINITE_COLUMN};
    let objects = |n: usize| if n == 1 { "1 object".to_string() } else { format!("{n} objects") };
    let mut note = String::new();
    if flagged > 0 {
        let had = objects(flagged);
        note += &format!("; {had} had non-finite pixels (set to 0; see {NON_FINITE_COLUMN})");
    }
    if constant > 0 {
        let had = objects(constant);
        note += &format!("; {had} had a band of one value, no data (scored from the others; see {CONSTANT_COLUMN})");
    }
    note
}

/// Opens a dataset as the command line describes it.
pub fn open_source(
    path: &std::path::Path,
    args: &crate::cli::SourceArgs,
    label: Option<u8>,
) -> anyhow::Result<Box<dyn tidalscope_io::source::Source>> {
    use anyhow::Context;
    let opts = tidalscope_io::source::OpenOptions {
        format: args.format,
        layout: args.layout,
        image_key: args.image_key.clone(),
        cycle_length: args.cycle_length,
        label,
        coadd: args.coadd_options()?,
    };
    anyhow::ensure!(path.exists(), "{}: no such file or folder", path.display());
    tidalscope_io::source::open(path, &opts).with_context(|| format!("opening {}", path.display()))
}

pub use bench::peak_rss_mb;

/// A rayon pool of `jobs` threads (all cores when `None`), flushing
/// denormals as the global pool does (see `tidalscope_core::denormal`).
pub fn thread_pool(jobs: Option<usize>) -> anyhow::Result<rayon::ThreadPool> {
    let mut b = rayon::ThreadPoolBuilder::new().start_handler(|_| {
        tidalscope_core::denormal::flush_denormals();
    });
    if let Some(j) = jobs {
        anyhow::ensure!(j > 0, "--jobs must be at least 1");
        b = b.num_threads(j);
    }
    Ok(b.build()?)
}

/// True when `out` names a FITS (`.fits`, `.fit`, `.fts`) or Parquet
/// (`.parquet`, `.pq`) catalogue rather than CSV.
pub fn is_table_name(out: &std::path::Path) -> bool {
    tidalscope_io::fits_table::is_fits_name(out) || tidalscope_io::parquet_table::is_parquet_name(out)
}

/// A side file of the catalogue `out`, named after it as `convert` names
/// its record: `scores.csv` → `scores.errors.csv`, `scores.run.toml`.
/// Outputs of different stems in one folder keep their own errors and
/// records (`scores.csv` and `scores.parquet` share theirs).
pub fn beside(out: &std::path::Path, what: &str) -> std::path::PathBuf {
    out.with_extension(what)
}

/// A side file of shard `shard` in the folder `dir` the shards share:
/// `errors.K-of-N.csv` (`what` = "errors", `ext` = "csv") or
/// `run.K-of-N.toml`, where `collect` finds them.
pub fn shard_side(dir: &std::path::Path, shard: crate::cli::Shard, what: &str, ext: &str) -> std::path::PathBuf {
    dir.join(format!("{what}.{}-of-{}.{ext}", shard.k, shard.n))
}

/// Where a catalogue's rows are written first: `out` itself for CSV, a
/// hidden CSV beside it when `out` names a FITS or Parquet file, which
/// [`finish_catalog`] then turns into a table.
pub fn catalog_csv_path(out: &std::path::Path) -> std::path::PathBuf {
    if is_table_name(out) {
        let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        out.with_file_name(format!(".{name}.csv.tmp{}", std::process::id()))
    } else {
        out.to_path_buf()
    }
}

/// Turns the CSV written at [`catalog_csv_path`] into the FITS table or
/// Parquet file `out` (columns typed; the tool's version, `keywords` and
/// `units` (`[column, unit]`) in the header or metadata), or does nothing
/// for CSV output.
/// `vector = (name, D)`: the columns `name_0` … `name_{D−1}` are float32
/// and, in FITS, one array column `name`.
pub fn finish_catalog(
    csv: &std::path::Path,
    out: &std::path::Path,
    extname: &str,
    keywords: &[(&str, &str)],
    units: &[[String; 2]],
    vector: Option<(&str, usize)>,
) -> anyhow::Result<()> {
    use tidalscope_io::fits::Value;
    if csv == out {
        return Ok(());
    }
    let mut cards = vec![
        ("ORIGIN".to_string(), Value::Str("tidalscope".into()), "software".to_string()),
        ("TSVERS".to_string(), Value::Str(tidalscope_core::VERSION.into()), "tidalscope version".to_string()),
    ];
    cards.extend(keywords.iter().map(|(k, v)| (k.to_string(), Value::Str(v.to_string()), String::new())));
    let meta = tidalscope_io::fits_table::TableMeta {
        extname: extname.into(),
        units: units.iter().map(|[c, u]| (c.clone(), u.clone())).collect(),
        keywords: cards,
        floats: vec!["score".into(), tidalscope_data::stream::NON_FINITE_COLUMN.into()],
        texts: vec![tidalscope_data::stream::CONSTANT_COLUMN.into()],
        singles: vector.map_or_else(Vec::new, |(name, d)| (0..d).map(|k| format!("{name}_{k}")).collect()),
        vector: vector.map(|(name, _)| name.to_string()),
    };
    let written = if tidalscope_io::parquet_table::is_parquet_name(out) {
        tidalscope_io::parquet_table::csv_to_parquet(csv, out, &meta)
    } else {
        tidalscope_io::fits_table::csv_to_fits(csv, out, &meta)
    };
    let _ = std::fs::remove_file(csv);
    written?;
    Ok(())
}
