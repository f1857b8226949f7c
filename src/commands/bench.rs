//! `tidalscope bench …`: measured speeds, printed with what was measured.

use crate::cli::{BenchReadArgs, BenchSimulateArgs};
use rayon::prelude::*;
use tidalscope_sim::{SimConfig, Simulator};

/// Times the simulator: cutouts per second, all bands, in memory.
pub fn simulate(args: BenchSimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.n > 0, "--n must be at least 1");
    let config = SimConfig { survey: args.survey.into(), size: args.size, ..SimConfig::default() };
    let sim = Simulator::new(config, args.n)?;
    let pool = super::thread_pool(args.jobs)?;
    let threads = pool.current_num_threads();
    // Warm-up: plan the FFTs and touch the code once per thread.
    pool.install(|| {
        (0..threads).into_par_iter().for_each_init(|| sim.renderer(), |r, i| drop(sim.simulate(i % args.n, r)))
    });
    let t0 = std::time::Instant::now();
    let checksum: f64 = pool.install(|| {
        (0..args.n)
            .into_par_iter()
            .map_init(|| sim.renderer(), |r, i| sim.simulate(i, r).image.data().iter().map(|&v| v as f64).sum::<f64>())
            .sum()
    });
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "timed {} cutouts of 5×{}×{} ({}) on {} threads in {:.2} s (pixel sum {:.6e})",
        args.n,
        args.size,
        args.size,
        sim.survey().name,
        threads,
        secs,
        checksum
    );
    println!("simulate: {:.1} cutouts/s", args.n as f64 / secs);
    Ok(())
}

/// Peak resident memory of this process in MB (Linux: VmHWM), if known.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the peak-memory mark (Linux), so a phase can be measured alone.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Streams a generated tf.data dataset through the loader.
pub fn read(args: BenchReadArgs) -> anyhow::Result<()> {
    use tidalscope_io::tfdata::{ComponentSpec, Compression, DType, ElementSpec, Tensor, TfDataWriter};
    let (h, w, c) = (128, 128, 5);
    let bytes_per = h * w * c * 4;
    let n = (args.mb * 1_000_000).div_ceil(bytes_per).max(1);
    let dir = match &args.tmp {
        Some(t) => tempfile::tempdir_in(t)?,
        None => tempfile::tempdir()?,
    };
    let path = dir.path().join("bench.tfdata");
    let spec = ElementSpec {
        components: vec![ComponentSpec {
            key: "image".into(),
            dtype: DType::F32,
            shape: Some(vec![Some(h), Some(w), Some(c)]),
        }],
    };
    let mut writer = TfDataWriter::create(&path, spec, Compression::None)?;
    let mut rng = tidalscope_core::Rng::new(1);
    let mut img = vec![0f32; h * w * c];
    for _ in 0..n {
        img.iter_mut().for_each(|v| *v = rng.normal() as f32);
        writer.write(&[Tensor::f32(vec![h, w, c], &img)])?;
    }
    writer.finish()?;
    let size_mb = (n * bytes_per) as f64 / 1e6;
    let source = tidalscope_io::source::open(&path, &Default::default())?;
    let norm = tidalscope_data::Normaliser::new(tidalscope_io::source::default_bands(c), vec![1.0; c], "bench");
    let transform = |img: &tidalscope_core::Cutout| {
        let mut img = img.clone();
        let bad = norm.apply(&mut img);
        Ok((img, bad))
    };
    let cfg = tidalscope_data::loader::LoaderConfig {
        batch: args.batch,
        shuffle_buffer: args.shuffle_buffer,
        prefetch: 4,
        seed: 1,
        drop_last: false,
    };
    reset_peak_rss();
    let before = peak_rss_mb();
    let t0 = std::time::Instant::now();
    let mut seen = 0usize;
    tidalscope_data::loader::for_each_batch(&[source.as_ref()], None, &transform, cfg, |b| {
        seen += b.len();
        Ok(())
    })?;
    let secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(seen == n, "read {seen} of {n} images");
    let peak = peak_rss_mb();
    println!(
        "streamed {n} images ({size_mb:.0} MB tf.data) in {secs:.2} s: {:.0} MB/s, {:.0} images/s (batch {}, shuffle buffer {})",
        size_mb / secs,
        n as f64 / secs,
        args.batch,
        args.shuffle_buffer
    );
    match (before, peak) {
        (Some(b), Some(p)) => {
            println!("read: peak RSS {p:.0} MB while streaming (process at start {b:.0} MB; dataset {size_mb:.0} MB)")
        }
        _ => println!("read: peak RSS unavailable on this system"),
    }
    Ok(())
}

/// Times the encoder: training (forward + backward + Adam, each view one
/// image) and inference, and a reference GEMM to put them in perspective.
pub fn encoder(args: crate::cli::BenchEncoderArgs) -> anyhow::Result<()> {
    use burn::module::Module;
    use burn::optim::{AdamConfig, GradientsParams};
    use tidalscope_model::{batch, params, EncoderConfig};
    anyhow::ensure!(args.steps > 0 && args.batch > 0, "--steps and --batch must be at least 1");
    let device = super::train::device(&args.device)?;
    let train_device = device.clone().autodiff();
    let cfg = EncoderConfig::new().with_bands(args.bands).with_width(args.width);
    train_device.seed(1);
    let mut model = cfg.init(&train_device);
    params::materialize(&model);
    let counts = params::count(&model);
    let mut rng = tidalscope_core::Rng::new(1);
    let n = args.batch * args.bands * args.size * args.size;
    let input: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let mut optim = AdamConfig::new().init();
    let mut train_step = |model: tidalscope_model::Encoder| {
        let x = batch::images(input.clone(), args.batch, args.bands, args.size, &train_device);
        let loss = model.forward(x).powf_scalar(2.0).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optim.step(1e-3, model, grads)
    };
    model = train_step(model); // warm-up
    let t0 = std::time::Instant::now();
    for _ in 0..args.steps {
        model = train_step(model);
    }
    let train_secs = t0.elapsed().as_secs_f64();
    let eval = model.valid();
    let x = batch::images(input.clone(), args.batch, args.bands, args.size, &device);
    let _ = batch::to_vec(eval.forward(x.clone())); // warm-up
    let t0 = std::time::Instant::now();
    for _ in 0..args.steps {
        let _ = batch::to_vec(eval.forward(x.clone()));
    }
    let infer_secs = t0.elapsed().as_secs_f64();
    let images = (args.steps * args.batch) as f64;
    println!(
        "encoder: width {}, {} bands, {}×{} input, batch {}, {} trainable parameters, {} timed steps, device {}, {} threads",
        args.width,
        args.bands,
        args.size,
        args.size,
        args.batch,
        counts.trainable,
        args.steps,
        args.device,
        rayon::current_num_threads()
    );
    println!("train: {:.2} images/s (forward + backward + Adam step per image)", images / train_secs);
    println!("infer: {:.2} images/s (forward only, inference mode)", images / infer_secs);
    Ok(())
}
