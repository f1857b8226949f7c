//! `tidalscope inspect`: what a dataset holds, fast on huge inputs.

use crate::cli::InspectArgs;
use tidalscope_core::stats::mad_sigma;

/// Runs `inspect`.
pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let source = super::open_source(&args.path, &args.source, None)?;
    let info = source.info();
    println!("path        {}", info.path.display());
    println!("format      {}", info.format);
    println!("objects     {}", info.len);
    match info.shape {
        Some([b, h, w]) => println!("image       {b} bands × {h} × {w} (bands, height, width)"),
        None => println!("image       shape varies or unknown"),
    }
    println!("dtype       {}", info.dtype);
    println!("bands       {}", info.bands.join(", "));
    println!(
        "extra keys  {}",
        if info.meta_columns.is_empty() { "(none)".to_string() } else { info.meta_columns.join(", ") }
    );
    if info.labelled {
        let labels = source.labels()?;
        let pos = labels.iter().filter(|l| **l == Some(1)).count();
        let neg = labels.iter().filter(|l| **l == Some(0)).count();
        println!("labels      {pos} positive, {neg} negative, {} unlabelled", labels.len() - pos - neg);
    } else {
        println!("labels      (none)");
    }
    if args.limit == 0 || info.len == 0 {
        return Ok(());
    }
    let mut per_band: Vec<Vec<f32>> = Vec::new();
    let (mut mins, mut maxs, mut bad) = (Vec::new(), Vec::new(), Vec::new());
    // Images whose band holds one value (finite pixels all equal): no
    // data there, as a band filled with 0 where it had no coverage.
    let mut constant = Vec::new();
    let mut read = 0;
    let mut failed = 0;
    for rec in source.records(0)?.take(args.limit) {
        let rec = rec?;
        let img = match rec.pixels.load() {
            Ok(i) => i,
            Err(e) => {
                eprintln!("warning: {e}");
                failed += 1;
                continue;
            }
        };
        if per_band.is_empty() {
            per_band = vec![Vec::new(); img.bands()];
            mins = vec![f32::INFINITY; img.bands()];
            maxs = vec![f32::NEG_INFINITY; img.bands()];
            bad = vec![0usize; img.bands()];
            constant = vec![0usize; img.bands()];
        }
        if img.bands() != per_band.len() {
            anyhow::bail!(
                "{}: object {} has {} bands, earlier ones {}",
                info.path.display(),
                rec.id,
                img.bands(),
                per_band.len()
            );
        }
        for b in 0..img.bands() {
            let mut finite = img.band(b).iter().filter(|v| v.is_finite());
            if let Some(first) = finite.next() {
                constant[b] += usize::from(finite.all(|v| v == first));
            }
            for &v in img.band(b) {
                if v.is_finite() {
                    per_band[b].push(v);
                    mins[b] = mins[b].min(v);
                    maxs[b] = maxs[b].max(v);
                } else {
                    bad[b] += 1;
                }
            }
        }
        read += 1;
    }
    println!(
        "statistics  over the first {read} images{}",
        if failed > 0 { format!(" ({failed} unreadable)") } else { String::new() }
    );
    println!(
        "  {:<6} {:>14} {:>14} {:>14} {:>14} {:>12} {:>10}",
        "band", "median", "MAD σ", "min", "max", "non-finite", "one value"
    );
    for (b, vals) in per_band.iter_mut().enumerate() {
        let name = info.bands.get(b).cloned().unwrap_or_else(|| format!("b{b}"));
        let median = tidalscope_core::stats::median(vals).unwrap_or(f32::NAN);
        let sigma = mad_sigma(vals).unwrap_or(f32::NAN);
        println!(
            "  {:<6} {:>14.6e} {:>14.6e} {:>14.6e} {:>14.6e} {:>12} {:>10}",
            name, median, sigma, mins[b], maxs[b], bad[b], constant[b]
        );
    }
    if constant.iter().any(|&n| n > 0) {
        println!("  (one value: images whose band's finite pixels all hold one value, no data; see constant_bands)");
    }
    Ok(())
}
