//! `tidalscope collect`: the outputs of `predict --shard K/N` runs (one
//! Slurm array task each, say) gathered into one catalogue, after checking
//! that they belong together: every shard present, one model (by
//! checksum), one tool build, one dataset read one way, each part complete,
//! no id twice. Parts are streamed row by row and memory stays flat: the
//! ids' 8-byte hashes are spilled to 256 bucket files on disk and checked
//! one bucket at a time (1/256 of them in memory), then the ids behind any
//! hash seen twice are read again, to tell a real duplicate from a hash
//! collision.

use super::infer::PredictRecord;
use crate::cli::{CollectArgs, Shard};
use crate::manifest::Manifest;
use anyhow::{bail, ensure, Context};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use tidalscope_io::checksum::sha256_file;
use tidalscope_io::csv::CsvWriter;

/// The parts of `run.K-of-N.toml` that `collect` checks.
#[derive(Debug, Deserialize)]
struct ShardManifest {
    version: String,
    git_commit: String,
    command: String,
    config: PredictRecord,
}

/// One shard's outputs.
struct Part {
    shard: Shard,
    /// Its `run.K-of-N.toml`.
    run: PathBuf,
    manifest: ShardManifest,
}

impl Part {
    fn scores(&self, dir: &Path) -> PathBuf {
        dir.join(&self.manifest.config.out)
    }

    fn errors(&self, dir: &Path) -> PathBuf {
        super::shard_side(dir, self.shard, "errors", "csv")
    }
}

/// What `collect` records of each part in its `run.toml`.
#[derive(Debug, Serialize)]
struct PartRecord {
    shard: String,
    scores: String,
    scores_sha256: String,
    errors: String,
    errors_sha256: String,
    objects: usize,
    failed: usize,
    flagged: usize,
    constant_band: usize,
}

/// What `collect` records in its `run.toml`.
#[derive(Debug, Serialize)]
struct Resolved {
    from: String,
    out: String,
    shards: usize,
    objects: usize,
    failed: usize,
    flagged: usize,
    constant_band: usize,
    model: String,
    model_sha256: String,
    data: String,
    parts: Vec<PartRecord>,
}

/// `run.K-of-N.toml` → K/N.
fn shard_of(name: &str) -> Option<Shard> {
    let kn = name.strip_prefix("run.")?.strip_suffix(".toml")?;
    let (k, n) = kn.split_once("-of-")?;
    format!("{k}/{n}").parse().ok()
}

/// Every shard record in `dir`, sorted by K.
fn find_parts(dir: &Path) -> anyhow::Result<Vec<Part>> {
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let Some(shard) = path.file_name().and_then(|n| n.to_str()).and_then(shard_of) else { continue };
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let manifest: ShardManifest =
            toml::from_str(&text).with_context(|| format!("{}: not a record of `predict --shard`", path.display()))?;
        ensure!(
            manifest.command == "predict" && manifest.config.shard.as_deref() == Some(&shard.to_string()),
            "{}: records `{}` of shard {:?}, not `predict --shard {shard}`",
            path.display(),
            manifest.command,
            manifest.config.shard
        );
        parts.push(Part { shard, run: path, manifest });
    }
    ensure!(
        !parts.is_empty(),
        "{}: no run.K-of-N.toml files; give the folder where `predict --shard K/N` wrote its outputs",
        dir.display()
    );
    parts.sort_by_key(|p| p.shard.k);
    Ok(parts)
}

/// Every way two shards can disagree that would make their union wrong.
fn check_consistent(parts: &[Part]) -> anyhow::Result<()> {
    let first = &parts[0];
    for p in parts {
        let c = &p.manifest.config;
        if super::is_table_name(Path::new(&c.out)) {
            bail!(
                "{}: shard {} wrote {} as a FITS or Parquet table; collect reads CSV parts: rerun the shards \
                 with --out *.csv",
                p.run.display(),
                p.shard,
                c.out
            );
        }
        let want = tidalscope_data::stream::shard_range(c.source_len, p.shard.k, p.shard.n);
        if c.range != [want.start, want.end] {
            bail!(
                "{}: shard {} scored objects {}..{}, but {}..{} of {} is its part: the record is not this job's",
                p.run.display(),
                p.shard,
                c.range[0],
                c.range[1],
                want.start,
                want.end,
                c.source_len
            );
        }
    }
    for p in &parts[1..] {
        let fields = [
            ("number of shards", first.shard.n.to_string(), p.shard.n.to_string()),
            ("tidalscope version", first.manifest.version.clone(), p.manifest.version.clone()),
            ("tidalscope build (git commit)", first.manifest.git_commit.clone(), p.manifest.git_commit.clone()),
            (
                "model (SHA-256 of its files)",
                first.manifest.config.model_sha256.clone(),
                p.manifest.config.model_sha256.clone(),
            ),
            ("data", first.manifest.config.data.clone(), p.manifest.config.data.clone()),
            ("--format", format!("{:?}", first.manifest.config.format), format!("{:?}", p.manifest.config.format)),
            ("--layout", first.manifest.config.layout.clone(), p.manifest.config.layout.clone()),
            ("--image-key", first.manifest.config.image_key.clone(), p.manifest.config.image_key.clone()),
            (
                "--cycle-length",
                format!("{:?}", first.manifest.config.cycle_length),
                format!("{:?}", p.manifest.config.cycle_length),
            ),
            (
                "--coadd and its cutout settings",
                format!("{:?}", first.manifest.config.coadd),
                format!("{:?}", p.manifest.config.coadd),
            ),
            (
                "number of objects in the data (it changed between the runs?)",
                first.manifest.config.source_len.to_string(),
                p.manifest.config.source_len.to_string(),
            ),
        ];
        same_settings(&fields, (first.shard, &first.run), (p.shard, &p.run))?;
    }
    Ok(())
}

/// The one N of shards `K/N` sorted by K (each with the file or folder
/// that says so), or an error naming a shard of another N or one given
/// twice.
pub(super) fn one_count(shards: &[(Shard, &Path)]) -> anyhow::Result<usize> {
    let (first, first_path) = shards[0];
    if let Some((s, path)) = shards.iter().find(|(s, _)| s.n != first.n) {
        bail!(
            "{} is a shard of {}, {} one of {}: one job per folder",
            path.display(),
            s.n,
            first_path.display(),
            first.n
        );
    }
    for w in shards.windows(2) {
        ensure!(w[0].0.k != w[1].0.k, "{} and {} are both shard {}", w[0].1.display(), w[1].1.display(), w[0].0);
    }
    Ok(first.n)
}

/// An error naming the first of `fields` (what, shard a's value, shard b's)
/// on which the two shards disagree.
pub(super) fn same_settings(
    fields: &[(&str, String, String)],
    (sa, pa): (Shard, &Path),
    (sb, pb): (Shard, &Path),
) -> anyhow::Result<()> {
    match fields.iter().find(|(_, a, b)| a != b) {
        Some((what, a, b)) => bail!(
            "shards {sa} and {sb} used a different {what}: {a} ({}) vs {b} ({}); rerun the odd one out",
            pa.display(),
            pb.display()
        ),
        None => Ok(()),
    }
}

/// True when `dir` holds `predict --shard` records (`run.K-of-N.toml`).
fn has_predict_records(dir: &Path) -> anyhow::Result<bool> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        if entry?.file_name().to_str().and_then(shard_of).is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// With `--missing`, prints the missing shards of `n` (given the `present`
/// ones) and returns true; otherwise fails when any is missing.
pub(super) fn missing_shards(args: &CollectArgs, dir: &Path, n: usize, present: &[usize]) -> anyhow::Result<bool> {
    let missing: Vec<usize> = (0..n).filter(|k| !present.contains(k)).collect();
    if args.missing {
        // One line, comma-separated: what `sbatch --array=` takes.
        println!("{}", missing.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(","));
        return Ok(true);
    }
    if !missing.is_empty() {
        let list = missing.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ");
        bail!(
            "{} of {n} shards are missing from {}: {list}; rerun them with `--shard K/{n}` \
             (`tidalscope collect --from {} --missing` lists them for `sbatch --array=`)",
            missing.len(),
            dir.display(),
            dir.display()
        );
    }
    Ok(false)
}

pub(super) fn id_hash(id: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// Runs `collect`.
pub fn run(args: CollectArgs) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let t0 = std::time::Instant::now();
    let dir = &args.from;
    let embed = super::collect_embed::find_parts(dir)?;
    if !embed.is_empty() && !has_predict_records(dir)? {
        return super::collect_embed::run(&args, &embed);
    }
    let parts = find_parts(dir)?;
    let n = one_count(&parts.iter().map(|p| (p.shard, p.run.as_path())).collect::<Vec<_>>())?;
    let present: Vec<usize> = parts.iter().map(|p| p.shard.k).collect();
    if missing_shards(&args, dir, n, &present)? {
        return Ok(());
    }
    check_consistent(&parts)?;
    let out_path = args.out.as_deref().context("--out is needed (unless --missing)")?;
    let out_dir = out_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let csv_path = super::catalog_csv_path(out_path);

    // Rows, streamed part by part into one file that appears only when all is well.
    let mut header: Option<csv::ByteRecord> = None;
    let mut out: Option<CsvWriter> = None;
    let mut hashes = HashSpill::new(out_dir)?;
    let mut records = Vec::new();
    let (mut objects, mut failed, mut flagged, mut constant, mut rows_total) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for p in &parts {
        let scores = p.scores(dir);
        let mut reader = csv::Reader::from_path(&scores)
            .with_context(|| format!("shard {}: reading {}", p.shard, scores.display()))?;
        let h = reader.byte_headers().with_context(|| format!("{}: no header", scores.display()))?.clone();
        match &header {
            None => {
                ensure!(h.get(0) == Some(b"id".as_slice()), "{}: the first column is not id", scores.display());
                let names: Vec<String> = h.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
                out = Some(CsvWriter::create(&csv_path, &names)?);
                header = Some(h);
            }
            Some(first) if *first != h => {
                bail!("{}: its columns differ from shard 0's ({})", scores.display(), parts[0].scores(dir).display())
            }
            Some(_) => {}
        }
        let writer = out.as_mut().expect("created with the header");
        let mut rows = 0usize;
        let mut record = csv::ByteRecord::new();
        while reader
            .read_byte_record(&mut record)
            .with_context(|| format!("{}: row {} is not CSV", scores.display(), rows + 1))?
        {
            let id = record.get(0).unwrap_or_default();
            hashes.push(id_hash(id))?;
            writer.row(record.iter())?;
            rows += 1;
        }
        let c = &p.manifest.config;
        let expected = c.objects.checked_sub(c.failed).with_context(|| {
            format!("{}: {} of {} objects failed: the record is corrupt", p.run.display(), c.failed, c.objects)
        })?;
        ensure!(
            rows == expected,
            "{}: {rows} rows, but {} says {expected} objects were scored ({} of {} failed): the part is incomplete or \
             was overwritten; rerun shard {}",
            scores.display(),
            p.run.display(),
            c.failed,
            c.objects,
            p.shard
        );
        let errors = p.errors(dir);
        records.push(PartRecord {
            shard: p.shard.to_string(),
            scores: c.out.clone(),
            scores_sha256: sha256_file(&scores)?,
            errors: errors.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            errors_sha256: if errors.is_file() { sha256_file(&errors)? } else { String::new() },
            objects: c.objects,
            failed: c.failed,
            flagged: c.flagged,
            constant_band: c.constant_band,
        });
        objects += c.objects;
        failed += c.failed;
        flagged += c.flagged;
        constant += c.constant_band;
        rows_total += rows;
    }
    let twice = hashes.seen_twice()?;
    if !twice.is_empty() {
        let files: Vec<(Shard, PathBuf)> = parts.iter().map(|p| (p.shard, p.scores(dir))).collect();
        let found = repeated_ids(&files, 0, &twice)?;
        if !found.is_empty() {
            bail!(duplicates_message(&found));
        }
    }
    out.expect("at least one part").finish()?;
    let first = &parts[0].manifest.config;
    super::finish_catalog(&csv_path, out_path, "SCORES", &[("MODELSHA", &first.model_sha256)], &first.units, None)?;

    // The errors of every part, in shard order.
    let errors_path = super::beside(out_path, "errors.csv");
    let mut errors = CsvWriter::create(&errors_path, &tidalscope_data::stream::ERRORS_HEADER)?;
    for p in &parts {
        let path = p.errors(dir);
        if !path.is_file() {
            ensure!(p.manifest.config.failed == 0, "{}: missing, but shard {} had failures", path.display(), p.shard);
            continue;
        }
        let mut reader = csv::Reader::from_path(&path).with_context(|| format!("reading {}", path.display()))?;
        for r in reader.byte_records() {
            let r = r.with_context(|| format!("{}: not CSV", path.display()))?;
            errors.row(r.iter())?;
        }
    }
    errors.finish()?;

    let resolved = Resolved {
        from: dir.display().to_string(),
        out: out_path.display().to_string(),
        shards: n,
        objects,
        failed,
        flagged,
        constant_band: constant,
        model: first.model.clone(),
        model_sha256: first.model_sha256.clone(),
        data: first.data.clone(),
        parts: records,
    };
    let secs = t0.elapsed().as_secs_f64();
    Manifest::new("collect", resolved, started, secs).write_as(&super::beside(out_path, "run.toml"))?;
    println!(
        "collected {n} shards: {rows_total} objects scored, {failed} failed (→ {}), {flagged} with non-finite pixels, \
         {constant} with a band of one value → {}",
        errors_path.display(),
        out_path.display()
    );
    Ok(())
}

/// Id hashes spilled to disk in buckets by their top byte, so that finding
/// the repeated ones holds one bucket in memory, not every hash.
pub(super) struct HashSpill {
    dir: tempfile::TempDir,
    buckets: Vec<std::io::BufWriter<std::fs::File>>,
}

impl HashSpill {
    const BUCKETS: usize = 256;

    /// Scratch files in a hidden folder under `near` (removed when dropped).
    pub(super) fn new(near: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(".collect-ids")
            .tempdir_in(near)
            .with_context(|| format!("creating scratch files in {}", near.display()))?;
        let buckets = (0..Self::BUCKETS)
            .map(|b| {
                let path = dir.path().join(format!("{b:02x}"));
                std::fs::File::create(&path)
                    .map(|f| std::io::BufWriter::with_capacity(1 << 13, f))
                    .with_context(|| format!("creating {}", path.display()))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { dir, buckets })
    }

    pub(super) fn push(&mut self, h: u64) -> anyhow::Result<()> {
        use std::io::Write;
        let b = (h >> 56) as usize;
        self.buckets[b].write_all(&h.to_le_bytes()).context("writing the id scratch files")
    }

    /// The hashes pushed more than once.
    pub(super) fn seen_twice(self) -> anyhow::Result<HashSet<u64>> {
        let mut twice = HashSet::new();
        for (b, w) in self.buckets.into_iter().enumerate() {
            w.into_inner().map_err(|e| e.into_error()).context("writing the id scratch files")?;
            let path = self.dir.path().join(format!("{b:02x}"));
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut v: Vec<u64> =
                bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
            drop(bytes);
            v.sort_unstable();
            twice.extend(v.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]));
        }
        Ok(twice)
    }
}

/// The second pass when some id hash was seen twice: the ids (column
/// `col` of each part's CSV) behind those hashes, described where they
/// repeat (hash collisions are not repeats).
pub(super) fn repeated_ids(
    files: &[(Shard, PathBuf)],
    col: usize,
    suspects: &HashSet<u64>,
) -> anyhow::Result<Vec<String>> {
    let mut first_seen: HashMap<Vec<u8>, (Shard, String)> = HashMap::new();
    let mut found: Vec<String> = Vec::new();
    for (shard, path) in files {
        let mut reader = csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
        for r in reader.byte_records() {
            let r = r.with_context(|| format!("{}: not CSV", path.display()))?;
            let id = r.get(col).unwrap_or_default();
            if !suspects.contains(&id_hash(id)) {
                continue;
            }
            let name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            if let Some((other, file)) = first_seen.get(id) {
                let id = String::from_utf8_lossy(id);
                found.push(if other == shard {
                    format!("id {id} twice in shard {other} ({file})")
                } else {
                    format!("id {id} in shards {other} ({file}) and {shard} ({name})")
                });
            } else {
                first_seen.insert(id.to_vec(), (*shard, name));
            }
        }
    }
    Ok(found)
}

/// The error for ids found more than once.
pub(super) fn duplicates_message(found: &[String]) -> String {
    let shown = found.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
    format!(
        "{} ids appear more than once ({shown}{}): the data has duplicate ids, or parts of two jobs share a folder; \
         nothing was written",
        found.len(),
        if found.len() > 5 { "; …" } else { "" }
    )
}
