//! `tidalscope collect` for `embed --shard K/N` runs: each shard's embed
//! folder (`embeddings.npy`, `ids.csv`, `errors.csv`, `embedding.json`)
//! gathered into one embed folder, after the same checks as for `predict`
//! shards: every shard present, one encoder (by checksum), one tool build,
//! one dataset read one way, each part complete and inside its share of
//! the data, no id twice. Streamed part by part: memory stays flat.

use super::collect::{missing_shards, one_count, same_settings, HashSpill};
use crate::cli::{CollectArgs, Shard};
use crate::manifest::Manifest;
use anyhow::{bail, ensure, Context};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use tidalscope_io::checksum::sha256_file;
use tidalscope_io::csv::CsvWriter;
use tidalscope_io::embeddings::{EmbeddingInfo, IDS, INFO, VECTORS};

/// One shard's embed folder.
struct Part {
    shard: Shard,
    dir: PathBuf,
    info: EmbeddingInfo,
    /// Tool version and build, from its `run.toml`.
    version: String,
    git_commit: String,
}

/// The parts of an embed folder's `run.toml` that are checked.
#[derive(Deserialize)]
struct RunRecord {
    version: String,
    git_commit: String,
    command: String,
}

/// What `collect` records of each part.
#[derive(Serialize)]
struct PartRecord {
    shard: String,
    folder: String,
    embeddings_sha256: String,
    ids_sha256: String,
    objects: usize,
}

/// What `collect` records in its `run.toml`.
#[derive(Serialize)]
struct Resolved {
    from: String,
    out: String,
    shards: usize,
    objects: usize,
    failed: usize,
    encoder: String,
    encoder_sha256: String,
    data: String,
    parts: Vec<PartRecord>,
}

/// Embed folders of shards directly under `dir`, sorted by K (empty: none).
pub fn find_parts(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.join(INFO).is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

fn read_part(dir: &Path) -> anyhow::Result<Part> {
    let info_path = dir.join(INFO);
    let text = std::fs::read_to_string(&info_path).with_context(|| format!("reading {}", info_path.display()))?;
    let info: EmbeddingInfo = serde_json::from_str(&text).with_context(|| format!("{}", info_path.display()))?;
    let shard: Shard = info
        .shard
        .as_deref()
        .with_context(|| format!("{}: not a shard (embedded without --shard K/N)", info_path.display()))?
        .parse()
        .map_err(|e: String| anyhow::anyhow!("{}: {e}", info_path.display()))?;
    let run_path = dir.join("run.toml");
    let run: RunRecord = toml::from_str(
        &std::fs::read_to_string(&run_path)
            .with_context(|| format!("reading {} (the part is incomplete?)", run_path.display()))?,
    )
    .with_context(|| format!("{}", run_path.display()))?;
    ensure!(run.command == "embed", "{}: records `{}`, not `embed`", run_path.display(), run.command);
    Ok(Part { shard, dir: dir.to_path_buf(), info, version: run.version, git_commit: run.git_commit })
}

/// Runs `collect` on embed shards found under `args.from`.
pub fn run(args: &CollectArgs, folders: &[PathBuf]) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let t0 = std::time::Instant::now();
    let mut parts = folders.iter().map(|d| read_part(d)).collect::<anyhow::Result<Vec<_>>>()?;
    parts.sort_by_key(|p| p.shard.k);
    let n = one_count(&parts.iter().map(|p| (p.shard, p.dir.as_path())).collect::<Vec<_>>())?;
    let ks: Vec<usize> = parts.iter().map(|p| p.shard.k).collect();
    if missing_shards(args, &args.from, n, &ks)? {
        return Ok(());
    }
    check_consistent(&parts)?;
    let out = args.out.as_deref().context("--out is needed (unless --missing)")?;
    let first = &parts[0].info;
    let dim = first.dim;
    let total: usize = parts.iter().map(|p| p.info.count).sum();

    // Everything is written into a hidden folder beside OUT and renamed
    // into place only when every check has passed.
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".collect-embed")
        .tempdir_in(parent)
        .with_context(|| format!("creating a folder in {}", parent.display()))?;
    let mut npy = tidalscope_io::npy::NpyWriter::create(&tmp.path().join(VECTORS), &[total, dim])?;
    let mut ids: Option<CsvWriter> = None;
    let mut header: Option<csv::ByteRecord> = None;
    let mut hashes = HashSpill::new(parent)?;
    let mut records = Vec::new();
    let mut failed = 0usize;
    let mut values = Vec::new();
    for p in &parts {
        let ids_path = p.dir.join(IDS);
        let mut reader = csv::Reader::from_path(&ids_path)
            .with_context(|| format!("shard {}: reading {}", p.shard, ids_path.display()))?;
        let h = reader.byte_headers().with_context(|| format!("{}: no header", ids_path.display()))?.clone();
        match &header {
            None => {
                ensure!(
                    h.get(0) == Some(b"index".as_slice()) && h.get(1) == Some(b"id".as_slice()),
                    "{}: the first columns are not index, id",
                    ids_path.display()
                );
                let names: Vec<String> = h.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
                ids = Some(CsvWriter::create(&tmp.path().join(IDS), &names)?);
                header = Some(h);
            }
            Some(first) if *first != h => {
                bail!("{}: its columns differ from shard {}'s", ids_path.display(), parts[0].shard)
            }
            Some(_) => {}
        }
        let range = tidalscope_data::stream::shard_range(p.info.source_len, p.shard.k, p.shard.n);
        let writer = ids.as_mut().expect("created with the header");
        let mut rows = 0usize;
        let mut record = csv::ByteRecord::new();
        while reader
            .read_byte_record(&mut record)
            .with_context(|| format!("{}: row {} is not CSV", ids_path.display(), rows + 1))?
        {
            let index: usize = std::str::from_utf8(record.get(0).unwrap_or_default())
                .ok()
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("{}: row {}: bad index", ids_path.display(), rows + 1))?;
            ensure!(
                range.contains(&index),
                "{}: object {index} is outside shard {}'s part ({}..{} of {}): the folder is not this job's",
                ids_path.display(),
                p.shard,
                range.start,
                range.end,
                p.info.source_len
            );
            hashes.push(super::collect::id_hash(record.get(1).unwrap_or_default()))?;
            writer.row(record.iter())?;
            rows += 1;
        }
        ensure!(
            rows == p.info.count,
            "{}: {rows} rows, but {} says {} objects were embedded: the part is incomplete; rerun shard {}",
            ids_path.display(),
            p.dir.join(INFO).display(),
            p.info.count,
            p.shard
        );
        copy_vectors(&p.dir.join(VECTORS), p.info.count, dim, &mut npy, &mut values)?;
        let errors = p.dir.join("errors.csv");
        failed += if errors.is_file() { csv::Reader::from_path(&errors)?.byte_records().count() } else { 0 };
        records.push(PartRecord {
            shard: p.shard.to_string(),
            folder: p.dir.display().to_string(),
            embeddings_sha256: sha256_file(&p.dir.join(VECTORS))?,
            ids_sha256: sha256_file(&ids_path)?,
            objects: p.info.count,
        });
    }
    let twice = hashes.seen_twice()?;
    if !twice.is_empty() {
        let found = super::collect::repeated_ids(
            parts.iter().map(|p| (p.shard, p.dir.join(IDS))).collect::<Vec<_>>().as_slice(),
            1,
            &twice,
        )?;
        if !found.is_empty() {
            bail!(super::collect::duplicates_message(&found));
        }
    }
    npy.finish()?;
    ids.expect("at least one part").finish()?;
    let mut errors = CsvWriter::create(&tmp.path().join("errors.csv"), &tidalscope_data::stream::ERRORS_HEADER)?;
    for p in &parts {
        let path = p.dir.join("errors.csv");
        if path.is_file() {
            let mut reader = csv::Reader::from_path(&path).with_context(|| format!("reading {}", path.display()))?;
            for r in reader.byte_records() {
                errors.row(r.with_context(|| format!("{}: not CSV", path.display()))?.iter())?;
            }
        }
    }
    errors.finish()?;
    let info = EmbeddingInfo { shard: None, count: total, ..first.clone() };
    tidalscope_io::atomic::write(&tmp.path().join(INFO), serde_json::to_string_pretty(&info)?.as_bytes())?;
    let resolved = Resolved {
        from: args.from.display().to_string(),
        out: out.display().to_string(),
        shards: n,
        objects: total,
        failed,
        encoder: first.encoder.display().to_string(),
        encoder_sha256: first.encoder_sha256.clone(),
        data: first.data.display().to_string(),
        parts: records,
    };
    let secs = t0.elapsed().as_secs_f64();
    Manifest::new("collect", resolved, started, secs).write(tmp.path())?;
    let tmp = tmp.keep();
    tidalscope_io::atomic::replace_dir(&tmp, out)?;
    println!("collected {n} embed shards: {total} objects embedded, {failed} failed → {}", out.display());
    Ok(())
}

/// Appends a part's `[count, dim]` float32 vectors to `npy`, a block at a time.
fn copy_vectors(
    path: &Path,
    count: usize,
    dim: usize,
    npy: &mut tidalscope_io::npy::NpyWriter,
    values: &mut Vec<f32>,
) -> anyhow::Result<()> {
    let mut f =
        std::io::BufReader::new(std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?);
    let head = tidalscope_io::npy::read_header(&mut f, path)?;
    ensure!(head.shape == [count, dim], "{}: shape {:?}, expected [{count}, {dim}]", path.display(), head.shape);
    f.seek(std::io::SeekFrom::Start(head.data_offset))?;
    let size = head.dtype.size();
    let mut bytes = vec![0u8; 4096 * dim.max(1) * size];
    let mut left = count * dim;
    while left > 0 {
        let m = left.min(bytes.len() / size);
        f.read_exact(&mut bytes[..m * size])
            .with_context(|| format!("{}: fewer vectors than recorded", path.display()))?;
        values.resize(m, 0.0);
        tidalscope_io::npy::decode_into(&bytes[..m * size], head.dtype, head.big_endian, values);
        npy.write(values)?;
        left -= m;
    }
    Ok(())
}

/// Every way two embed shards can disagree that would make their union wrong.
fn check_consistent(parts: &[Part]) -> anyhow::Result<()> {
    let first = &parts[0];
    ensure!(
        first.info.source_len > 0 && !first.info.encoder_sha256.is_empty(),
        "{}: made by an older release that did not record the data's length and the encoder's checksum; \
         rerun the shards",
        first.dir.join(INFO).display()
    );
    for p in &parts[1..] {
        let (a, b) = (&first.info, &p.info);
        let fields = [
            ("tidalscope version", first.version.clone(), p.version.clone()),
            ("tidalscope build (git commit)", first.git_commit.clone(), p.git_commit.clone()),
            ("encoder (SHA-256 of its files)", a.encoder_sha256.clone(), b.encoder_sha256.clone()),
            ("data", a.data.display().to_string(), b.data.display().to_string()),
            ("--format", format!("{:?}", a.format), format!("{:?}", b.format)),
            ("--layout", a.layout.clone(), b.layout.clone()),
            ("--image-key", a.image_key.clone(), b.image_key.clone()),
            ("--cycle-length", format!("{:?}", a.cycle_length), format!("{:?}", b.cycle_length)),
            (
                "--coadd and its cutout settings",
                format!("{:?} {:?}", a.coadd, a.coadd_cut),
                format!("{:?} {:?}", b.coadd, b.coadd_cut),
            ),
            (
                "number of objects in the data (it changed between the runs?)",
                a.source_len.to_string(),
                b.source_len.to_string(),
            ),
            ("embedding size", a.dim.to_string(), b.dim.to_string()),
        ];
        same_settings(&fields, (first.shard, &first.dir), (p.shard, &p.dir))?;
    }
    Ok(())
}
