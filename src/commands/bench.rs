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
    let transform = |img: &tidalscope_core::Cutout, _: tidalscope_data::split::ObjectRef| {
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
    let std::ops::ControlFlow::Continue(()) =
        tidalscope_data::loader::for_each_batch(&[source.as_ref()], None, &transform, cfg, |b| {
            seen += b.len();
            std::ops::ControlFlow::<std::convert::Infallible>::Continue(())
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
/// image) and inference, on the fast CPU kernels and on burn, each also as a
/// fraction of the machine's GEMM peak measured in the same run.
pub fn encoder(args: crate::cli::BenchEncoderArgs) -> anyhow::Result<()> {
    use tidalscope_kernels::winograd::TRAINING_MIN_SIDE;
    use tidalscope_model::{fast, params, EncoderConfig};
    let preset = args.preset.map(|p| p.config());
    let shape = Shape {
        size: args.size.or(preset.as_ref().map(|p| p.crop)).unwrap_or(96),
        batch: args.batch.or(preset.as_ref().map(|p| p.batch)).unwrap_or(32),
        bands: args.bands.or(preset.as_ref().map(|p| 5 * p.channels.factor())).unwrap_or(5),
        steps: args.steps,
    };
    let width = args.width.or(preset.as_ref().map(|p| p.width)).unwrap_or(1.0);
    anyhow::ensure!(
        shape.steps != Some(0) && shape.batch > 0 && shape.size > 0 && shape.bands > 0 && width > 0.0,
        "--steps, --batch, --size, --bands and --width must be positive"
    );
    let device = args.device.device()?;
    let on_cpu = device == burn::prelude::Device::flex();
    let cfg = EncoderConfig::new().with_bands(shape.bands).with_width(width);
    device.seed(1);
    let model = cfg.init(&device);
    params::materialize(&model);
    let counts = params::count(&model);
    let net = fast::to_resnet(&model);
    let flops = net.flops(shape.size, shape.size);
    let mut rng = tidalscope_core::Rng::new(1);
    let n = shape.batch * shape.bands * shape.size * shape.size;
    let input: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    println!(
        "encoder{}: width {width}, {} bands, {}×{} input, batch {}, {} trainable parameters, {:.4} GFLOP per image forward, timed steps {}, device {}, {} threads",
        preset.as_ref().map(|p| format!(" (preset {})", p.preset)).unwrap_or_default(),
        shape.bands,
        shape.size,
        shape.size,
        shape.batch,
        counts.trainable,
        flops / 1e9,
        shape.steps.map_or_else(|| format!("≈ {AUTO_SECONDS} s of each kind"), |n| n.to_string()),
        args.device.kind,
        rayon::current_num_threads()
    );
    let peak = on_cpu.then(|| {
        let p = tidalscope_kernels::gemm::peak_gflops();
        println!("GEMM peak: {p:.1} GFLOP/s (1024³ single-precision product, all threads)");
        p
    });
    let images = shape.batch as f64;
    // Training does about three forward passes' work (forward, input and
    // weight gradients). Times are seconds per step.
    let report = |name: &str, train: Timing, infer: Timing| {
        let frac = |rate: f64, mult: f64| match peak {
            Some(p) => format!(", {:.0}% of the GEMM peak", 100.0 * rate * mult * flops / 1e9 / p),
            None => String::new(),
        };
        let rate = images / train.secs;
        println!(
            "{name} train: {rate:.2} images/s (forward + backward + Adam step per image{}; {})",
            frac(rate, 3.0),
            train.describe()
        );
        let rate = images / infer.secs;
        println!(
            "{name} infer: {rate:.2} images/s (forward only, inference mode{}; {})",
            frac(rate, 1.0),
            infer.describe()
        );
    };
    if on_cpu && args.kernels != "burn" {
        let [[wino_train, wino_infer], [direct_train, direct_infer]] = time_fast(&net, &input, &shape);
        // What the commands run: the Winograd convolutions in inference,
        // and in training on large maps (none at the quick preset's size).
        report("fast", wino_train, wino_infer);
        let gain = |with: Timing, without: Timing| format!("{:+.0}%", 100.0 * (without.secs / with.secs - 1.0));
        println!(
            "fast Winograd A/B: train {:.2} with (on maps of {TRAINING_MIN_SIDE}+ px), {:.2} without ({}); infer {:.2} with, {:.2} without ({}) images/s (run in turn, median steps)",
            images / wino_train.secs,
            images / direct_train.secs,
            gain(wino_train, direct_train),
            images / wino_infer.secs,
            images / direct_infer.secs,
            gain(wino_infer, direct_infer)
        );
    }
    if on_cpu && args.kernels != "burn" {
        // Pretraining's step: two views of the batch and the preset's local
        // views, their passes side by side.
        let (locals, local_size) = preset.as_ref().map_or((0, 0), |p| (p.local_views, p.local_crop));
        // Their own random images (a preset's local crop may be larger than `--size`).
        let local_input: Vec<f32> =
            (0..shape.batch * shape.bands * local_size * local_size).map(|_| rng.normal() as f32).collect();
        let [together, apart] = time_views(&net, &input, &local_input, locals, local_size, &shape);
        let views = ((2 + locals) * shape.batch) as f64;
        let step_flops = 3.0 * images * (2.0 * flops + locals as f64 * net.flops(local_size, local_size));
        let rate = |t: Timing| views / t.secs;
        println!(
            "fast train, a pretraining step (2 views of {} px{}): {:.2} views/s side by side, as pretraining runs them{}; {:.2} one view at a time ({:+.0}%; two blocks of steps each, in turn, the faster block's mean)",
            shape.size,
            if locals > 0 { format!(", {locals} of {local_size} px") } else { String::new() },
            rate(together),
            peak.map(|p| format!(" ({:.0}% of the GEMM peak)", 100.0 * step_flops / together.secs / 1e9 / p))
                .unwrap_or_default(),
            rate(apart),
            100.0 * (apart.secs / together.secs - 1.0)
        );
    }
    if !on_cpu || args.kernels != "fast" {
        let (train, infer) = time_burn(&cfg, &input, &shape, &device);
        report("burn", train, infer);
    }
    Ok(())
}

/// What `bench encoder` times: square images of `size` pixels and `bands`
/// bands, `batch` at a time, for `steps` steps of each kind (`None`: as
/// many as fill about [`AUTO_SECONDS`]).
struct Shape {
    size: usize,
    batch: usize,
    bands: usize,
    steps: Option<usize>,
}

/// Seconds per step, over how many timed steps, and whether it is their
/// median (steps run in turn with another variant) or their mean.
#[derive(Debug, Clone, Copy)]
struct Timing {
    secs: f64,
    steps: usize,
    median: bool,
}

impl Timing {
    /// How the time was measured, for the report lines.
    fn describe(&self) -> String {
        let plural = if self.steps == 1 { "" } else { "s" };
        format!("{} of {} timed step{plural}", if self.median { "median" } else { "mean" }, self.steps)
    }
}

/// Seconds of timed steps of each kind when `--steps` is not given.
const AUTO_SECONDS: f64 = 3.0;

/// How many steps to time: `requested`, or as many as fill about
/// [`AUTO_SECONDS`] at the seconds `one_step` measures (a step of every
/// variant run in turn, called only then), between 5 and 2,000.
fn step_count(requested: Option<usize>, one_step: impl FnOnce() -> f64) -> usize {
    requested.unwrap_or_else(|| ((AUTO_SECONDS / one_step().max(1e-6)).ceil() as usize).clamp(5, 2000))
}

/// Seconds per step on the fast kernels for training steps (loss: mean of
/// the squared output, as in [`time_burn`]) and inference steps, each with
/// the Winograd convolutions the commands use and without any: `[[train,
/// infer] with, [train, infer] without]`, from the median step of the two
/// run in turn.
fn time_fast(net: &tidalscope_kernels::resnet::ResNet, input: &[f32], shape: &Shape) -> [[Timing; 2]; 2] {
    use tidalscope_model::fast::{Inference, Trainer, TrainingWinograd};
    let (b, s) = (shape.batch, shape.size);
    let step = |trainer: &mut Trainer| {
        let out = trainer.forward(0, input, b, s, s);
        let scale = 2.0 / out.len() as f32;
        let dout: Vec<f32> = out.iter().map(|v| v * scale).collect();
        trainer.backward(&[&dout]);
        trainer.step(1e-3);
    };
    let mut fast = Trainer::new(net.clone(), Default::default());
    let mut direct = Trainer::new(net.clone(), Default::default());
    direct.set_winograd(TrainingWinograd::Off);
    let train = interleaved(shape.steps, &mut [&mut || step(&mut fast), &mut || step(&mut direct)]);
    let (fast, direct) = (Inference::new(&fast.net), Inference::without_winograd(&direct.net));
    let infer = interleaved(
        shape.steps,
        &mut [&mut || drop(fast.forward(input, b, s, s)), &mut || drop(direct.forward(input, b, s, s))],
    );
    [[train[0], infer[0]], [train[1], infer[1]]]
}

/// Seconds per training step of pretraining's views on the fast kernels
/// (the loss of [`time_fast`] on each): two views of the batch and
/// `locals` local views of `local_size` px that keep the running
/// statistics; `[side by side, one view at a time]`, the faster of two
/// blocks of steps of each, run in turn.
fn time_views(
    net: &tidalscope_kernels::resnet::ResNet,
    input: &[f32],
    local_input: &[f32],
    locals: usize,
    local_size: usize,
    shape: &Shape,
) -> [Timing; 2] {
    use tidalscope_kernels::resnet::View;
    use tidalscope_model::fast::Trainer;
    let (b, s) = (shape.batch, shape.size);
    let global = View { x: input, n: b, h: s, w: s, running_stats: true };
    let local = View { x: local_input, n: b, h: local_size, w: local_size, running_stats: false };
    let views: Vec<View<'_>> = [global, global].into_iter().chain(std::iter::repeat_n(local, locals)).collect();
    // One trainer for both ways (one tape of activations per view, as
    // pretraining holds: at the paper preset's batch a second trainer
    // would not fit in memory), so its weights move on with every step.
    let trainer = std::cell::RefCell::new(Trainer::new(net.clone(), Default::default()));
    let step = |side_by_side: bool| {
        let mut trainer = trainer.borrow_mut();
        trainer.set_side_by_side(side_by_side);
        let outs = trainer.forward_views(&views);
        let douts: Vec<Vec<f32>> =
            outs.iter().map(|out| out.iter().map(|v| v * 2.0 / out.len() as f32).collect()).collect();
        trainer.backward(&douts.iter().map(Vec::as_slice).collect::<Vec<_>>());
        trainer.step(1e-3);
    };
    // In blocks, not step by step: alternating hands the cores from one
    // pool to the other every step, and the pool just left still spins for
    // a while (measured: −1% to −2% side by side step by step, against
    // +6% to +9% in a pretraining run's median step).
    let run = |on: bool| timed(shape.steps, || step(on));
    let (a, b, c, d) = (run(true), run(false), run(true), run(false));
    let best = |x: Timing, y: Timing| if x.secs <= y.secs { x } else { y };
    [best(a, c), best(b, d)]
}

/// Seconds per call of each of `fs`, the median of `steps` timed calls of
/// each (see [`step_count`]), made in turn after one untimed warm-up call
/// each: this machine's speed drifts by tens of percent within seconds, and
/// alternating calls with a median compares the two under the same drift
/// and ignores the odd slow spell.
fn interleaved(steps: Option<usize>, fs: &mut [&mut dyn FnMut()]) -> Vec<Timing> {
    fs.iter_mut().for_each(|f| f());
    let steps = step_count(steps, || {
        let t0 = std::time::Instant::now();
        fs.iter_mut().for_each(|f| f());
        t0.elapsed().as_secs_f64()
    });
    let mut times = vec![Vec::with_capacity(steps); fs.len()];
    for _ in 0..steps {
        for (f, t) in fs.iter_mut().zip(&mut times) {
            let t0 = std::time::Instant::now();
            f();
            t.push(t0.elapsed().as_secs_f64());
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            let secs = if steps % 2 == 1 { t[steps / 2] } else { 0.5 * (t[steps / 2 - 1] + t[steps / 2]) };
            Timing { secs, steps, median: true }
        })
        .collect()
}

/// Mean seconds per call of `step` over `steps` calls (see [`step_count`]),
/// after one untimed warm-up call.
fn timed(steps: Option<usize>, mut step: impl FnMut()) -> Timing {
    step();
    let steps = step_count(steps, || {
        let t0 = std::time::Instant::now();
        step();
        t0.elapsed().as_secs_f64()
    });
    let t0 = std::time::Instant::now();
    for _ in 0..steps {
        step();
    }
    Timing { secs: t0.elapsed().as_secs_f64() / steps as f64, steps, median: false }
}

/// Seconds per training and inference step on burn.
fn time_burn(
    cfg: &tidalscope_model::EncoderConfig,
    input: &[f32],
    shape: &Shape,
    device: &burn::prelude::Device,
) -> (Timing, Timing) {
    use burn::module::Module;
    use burn::optim::{AdamConfig, GradientsParams};
    use tidalscope_model::{batch, params};
    let train_device = device.clone().autodiff();
    train_device.seed(1);
    let mut model = cfg.init(&train_device);
    params::materialize(&model);
    let mut optim = AdamConfig::new().init();
    let train = timed(shape.steps, || {
        let x = batch::images(input.to_vec(), shape.batch, shape.bands, shape.size, &train_device);
        let loss = model.forward(x).powf_scalar(2.0).mean();
        // Reading the loss back waits for this step's forward pass, and so
        // for the previous step's update: a GPU's queue cannot run ahead of
        // the clock by more than one step.
        let _: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model.clone(), grads);
    });
    let eval = model.valid();
    let x = batch::images(input.to_vec(), shape.batch, shape.bands, shape.size, device);
    (train, timed(shape.steps, || drop(batch::to_vec(eval.forward(x.clone())))))
}

/// Times exact top-k search over random unit vectors.
pub fn search(args: crate::cli::BenchSearchArgs) -> anyhow::Result<()> {
    use tidalscope_eval::search::{recall_at_k, top_k, AnnIndex, AnnParams};
    anyhow::ensure!(args.n > 0 && args.dim > 0 && args.queries > 0, "--n, --dim and --queries must be at least 1");
    let mut rng = tidalscope_core::Rng::new(1);
    let d = args.dim;
    let centres: Vec<f32> = (0..args.clusters * d).map(|_| rng.normal() as f32).collect();
    let mut rows: Vec<f32> = Vec::with_capacity(args.n * d);
    for i in 0..args.n {
        let c = if args.clusters > 0 { (i * 7919) % args.clusters } else { 0 };
        for j in 0..d {
            let centre = if args.clusters > 0 { centres[c * d + j] } else { 0.0 };
            rows.push(centre + 0.5 * rng.normal() as f32);
        }
    }
    tidalscope_eval::search::normalise_rows(&mut rows, d);
    let queries: Vec<usize> = (0..args.queries).map(|q| (q * 7919 + 13) % args.n).collect();
    let t0 = std::time::Instant::now();
    let exact: Vec<Vec<(usize, f32)>> =
        queries.iter().map(|&i| top_k(&rows, d, &rows[i * d..(i + 1) * d], args.k, &[i])).collect();
    let per = t0.elapsed().as_secs_f64() / args.queries as f64;
    let kind = if args.clusters > 0 { format!("around {} clusters", args.clusters) } else { "isotropic".into() };
    println!(
        "searched {} queries × top {} among {} embeddings of {d} dimensions ({kind}), {} threads",
        args.queries,
        args.k,
        args.n,
        rayon::current_num_threads()
    );
    println!("search: {:.1} ms per query (exact cosine)", per * 1000.0);
    if args.approximate {
        let p = AnnParams::default();
        let t = std::time::Instant::now();
        let index = AnnIndex::build(&rows, d, p);
        let build = t.elapsed().as_secs_f64();
        println!(
            "approximate: HNSW (hnsw_rs, M {}, ef_construction {}) built in {build:.1} s",
            p.links, p.ef_construction
        );
        for ef in [32, 64, 128, 256] {
            let t = std::time::Instant::now();
            let approx: Vec<Vec<(usize, f32)>> =
                queries.iter().map(|&i| index.top_k(&rows, &rows[i * d..(i + 1) * d], args.k, ef, &[i])).collect();
            let per = t.elapsed().as_secs_f64() / args.queries as f64;
            println!(
                "approximate: ef {ef}: {:.2} ms per query, recall@{} {:.3}",
                per * 1000.0,
                args.k,
                recall_at_k(&exact, &approx)
            );
        }
    }
    Ok(())
}

/// Times `predict` on generated npy and FITS inputs, in a child process per
/// format so each peak-memory figure is its own.
pub fn predict(args: crate::cli::BenchPredictArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = match &args.tmp {
        Some(t) => tempfile::tempdir_in(t)?,
        None => tempfile::tempdir()?,
    };
    let exe = std::env::current_exe()?;
    let run = |a: &[&str]| -> anyhow::Result<std::process::Output> {
        let out =
            std::process::Command::new(&exe).args(a).current_dir(dir.path()).output().context("running tidalscope")?;
        anyhow::ensure!(out.status.success(), "tidalscope {}: {}", a.join(" "), String::from_utf8_lossy(&out.stderr));
        Ok(out)
    };
    let n = args.n.to_string();
    run(&["simulate", "--n", &n, "--out", "npy", "--preview", "0"])?;
    run(&["simulate", "--n", &n, "--out", "fits", "--preview", "0", "--format", "fits"])?;
    let model = match &args.model {
        Some(m) => std::fs::canonicalize(m)?,
        None => {
            // An untrained classifier of the preset: same cost as a trained one.
            let device = burn::prelude::Device::flex();
            device.seed(1);
            let preset = args.preset.config();
            let pre = tidalscope_data::preprocess::Preprocess {
                bin: preset.bin,
                crop: preset.crop,
                normalisation: tidalscope_data::Normaliser::new(
                    preset.channels.names(&tidalscope_io::source::default_bands(5)),
                    vec![0.01; 5 * preset.channels.factor()],
                    "bench",
                ),
                channels: preset.channels,
                centring: preset.centring,
            };
            let config = tidalscope_model::ClassifierConfig::new(
                tidalscope_model::EncoderConfig::paper(5 * preset.channels.factor()).with_width(preset.width),
            );
            let classifier = config.init(&device);
            tidalscope_model::params::materialize(&classifier);
            let path = dir.path().join("model");
            tidalscope_model::bundle::ClassifierBundle { config, classifier, preprocess: pre }.save(&path)?;
            path
        }
    };
    let model = model.to_string_lossy().into_owned();
    // A coadd patch as HSC delivers it (4200 × 4100 pixels per band), with
    // every object of the catalogue on it; a tenth of the objects too, to
    // show that memory does not grow with their number.
    let coadd = write_coadd(dir.path(), args.n)?;
    let small = (args.n / 10).max(1);
    let cases: [(String, &str, usize, Vec<String>); 4] = [
        ("npy".into(), "npy", args.n, vec![]),
        ("FITS cutouts".into(), "fits/catalog.csv", args.n, vec![]),
        ("a coadd patch".into(), "coadd/objects.csv", args.n, vec!["--coadd".into(), coadd.clone()]),
        (format!("a coadd patch, {small} objects"), "coadd/objects-small.csv", small, vec!["--coadd".into(), coadd]),
    ];
    // The same model's pure inference, as `predict` runs it: the share of
    // it each input reaches is #14's measure. Timed before and after the
    // runs (a busy machine moves it).
    let device = burn::prelude::Device::flex();
    let bundle = tidalscope_model::bundle::ClassifierBundle::load(std::path::Path::new(&model), &device)?;
    let before = pure_inference(&bundle, &device)?;
    let mut shares = Vec::new();
    for (name, data, n, extra) in cases {
        // The child reports its own peak memory on stderr.
        let t0 = std::time::Instant::now();
        let out_dir = format!("out-{}/scores.csv", name.replace([' ', ','], "-"));
        let out = std::process::Command::new(&exe)
            .args(["predict", "--model", &model, "--data", data, "--out", &out_dir])
            .args(&extra)
            .env("TIDALSCOPE_REPORT_PEAK_RSS", "1")
            .current_dir(dir.path())
            .output()?;
        anyhow::ensure!(out.status.success(), "predict on {name}: {}", String::from_utf8_lossy(&out.stderr));
        let secs = t0.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let peak = stderr.lines().find_map(|l| l.strip_prefix("peak RSS MB: ")).unwrap_or("?").to_string();
        println!(
            "predict: {:.1} objects/s from {name} ({n} objects of 128×128×5, {:.1} s), peak RSS {peak} MB",
            n as f64 / secs,
            secs
        );
        shares.push((name, n as f64 / secs));
    }
    let after = pure_inference(&bundle, &device)?;
    let pure = (before + after) / 2.0;
    println!(
        "pure inference of the same model: {before:.1} images/s before the runs, {after:.1} after \
         (preprocessed views, batches of {}, ≥ 3 s each)",
        tidalscope_model::infer::BATCH
    );
    for (name, rate) in shares {
        println!("predict from {name}: {:.0}% of the pure inference rate (their mean)", 100.0 * rate / pure);
    }
    // Reading and preparing take the cores the network would use:
    // `predict` prepares a chunk, then scores it, so at a preparing rate p
    // and an inference rate r (each on all cores) it reaches at most
    // 1 / (1/p + 1/r), a share p / (p + r) of pure inference.
    for (name, data) in [("npy", "npy"), ("FITS cutouts", "fits/catalog.csv")] {
        let (rate, failed) = preparing_alone(&dir.path().join(data), &bundle.preprocess)?;
        let failed = match failed {
            0 => String::new(),
            n => format!(", {n} objects failed as in predict's errors file"),
        };
        println!(
            "reading and preparing alone from {name}: {rate:.1} objects/s (no network{failed}), so at most {:.0}% \
             of the pure inference rate with the network after it",
            ceiling_share(rate, pure)
        );
    }
    Ok(())
}

/// The share (%) of the pure inference rate `inference` that a loop
/// preparing at `preparing` objects/s, then scoring, on the same cores,
/// reaches at most: p / (p + r).
fn ceiling_share(preparing: f64, inference: f64) -> f64 {
    100.0 * preparing / (preparing + inference)
}

/// Objects per second read from `data` and prepared for the model (its
/// channels, binning, view and stretch) as `predict` does, on all cores,
/// with no network after it, and how many objects failed (counted in the
/// rate, as `predict` reads them too): one whole pass, after one untimed
/// pass that puts the files in the page cache.
fn preparing_alone(
    data: &std::path::Path,
    preprocess: &tidalscope_data::preprocess::Preprocess,
) -> anyhow::Result<(f64, usize)> {
    let source = tidalscope_io::source::open(data, &tidalscope_io::source::OpenOptions::default())?;
    let n = source.info().len;
    let pass = || -> anyhow::Result<(usize, usize, f64)> {
        let (t0, mut prepared, mut failed) = (std::time::Instant::now(), 0usize, 0usize);
        tidalscope_data::stream::stream_prepared(source.as_ref(), 0..n, preprocess, 256, |ok, bad| {
            prepared += std::hint::black_box(ok).len();
            failed += bad.len();
            anyhow::Ok(())
        })?;
        Ok((prepared, failed, t0.elapsed().as_secs_f64()))
    };
    pass()?;
    let (prepared, failed, secs) = pass()?;
    Ok(((prepared + failed) as f64 / secs, failed))
}

/// Images per second of the classifier `bundle` on random inputs of its
/// view's shape, through the inference engine `predict` uses, chunks of
/// 256 as `predict`'s default, for at least 3 seconds after one untimed
/// chunk.
fn pure_inference(
    bundle: &tidalscope_model::bundle::ClassifierBundle,
    device: &burn::prelude::Device,
) -> anyhow::Result<f64> {
    let (crop, channels) = (bundle.preprocess.crop, bundle.preprocess.normalisation.bands.len());
    let predictor = tidalscope_model::infer::Predictor::classifier(&bundle.classifier, crop, device);
    let mut rng = tidalscope_core::Rng::new(1);
    let images: Vec<tidalscope_core::Cutout> = (0..256)
        .map(|_| {
            let values = (0..channels * crop * crop).map(|_| rng.normal() as f32).collect();
            tidalscope_core::Cutout::from_chw(channels, crop, crop, values).expect("the view's shape")
        })
        .collect();
    let refs: Vec<&tidalscope_core::Cutout> = images.iter().collect();
    predictor.scores(&refs)?;
    let (t0, mut n) = (std::time::Instant::now(), 0usize);
    while t0.elapsed().as_secs_f64() < 3.0 {
        predictor.scores(&refs)?;
        n += refs.len();
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

/// Writes five 4200 × 4100 band images with a TAN WCS (0.168″ pixels) under
/// `dir/coadd`, and catalogues of `n` and `n / 10` objects at random
/// positions on them; returns the `--coadd` value.
fn write_coadd(dir: &std::path::Path, n: usize) -> anyhow::Result<String> {
    use tidalscope_io::fits::{self, Data, Value};
    let (nx, ny) = (4200usize, 4100usize);
    let root = dir.join("coadd");
    std::fs::create_dir_all(&root)?;
    let mut header = fits::Header::new();
    header
        .push("CTYPE1", Value::Str("RA---TAN".into()), "")
        .push("CTYPE2", Value::Str("DEC--TAN".into()), "")
        .push("CRPIX1", Value::Float(nx as f64 / 2.0), "")
        .push("CRPIX2", Value::Float(ny as f64 / 2.0), "")
        .push("CRVAL1", Value::Float(150.0), "")
        .push("CRVAL2", Value::Float(2.0), "")
        .push("CD1_1", Value::Float(-0.168 / 3600.0), "")
        .push("CD2_2", Value::Float(0.168 / 3600.0), "");
    let mut rng = tidalscope_core::Rng::new(7);
    let mut plane = vec![0f32; nx * ny];
    let mut spec = Vec::new();
    for b in ["g", "r", "i", "z", "y"] {
        plane.iter_mut().for_each(|v| *v = rng.normal() as f32 * 0.02);
        let axes = [nx, ny];
        let d = Data::F32 { axes: &axes, data: &plane };
        let mut h = fits::structural_header(&d, true);
        for (k, v) in header.cards() {
            h.push(k, v.clone(), "");
        }
        fits::write(&root.join(format!("{b}.fits")), &[(h, d)])?;
        spec.push(format!("{b}=coadd/{b}.fits"));
    }
    let wcs = tidalscope_io::wcs::Wcs::from_header(&header, &root.join("g.fits"))?;
    for (name, count) in [("objects.csv", n), ("objects-small.csv", (n / 10).max(1))] {
        let mut w = tidalscope_io::csv::CsvWriter::create(&root.join(name), &["id", "ra", "dec"])?;
        for k in 0..count {
            let (x, y) = (rng.uniform() * (nx - 1) as f64, rng.uniform() * (ny - 1) as f64);
            let (ra, dec) = wcs.pixel_to_world(x, y);
            w.row(&[k.to_string(), format!("{ra:.8}"), format!("{dec:.8}")])?;
        }
        w.finish()?;
    }
    Ok(spec.join(","))
}

#[cfg(test)]
mod tests {
    use super::step_count;

    #[test]
    fn step_count_fills_about_three_seconds_within_bounds() {
        assert_eq!(step_count(None, || 1.0), 5, "at least 5 steps however slow");
        assert_eq!(step_count(None, || 0.01), 300);
        assert_eq!(step_count(None, || 0.0), 2000, "at most 2,000 however fast");
        assert_eq!(step_count(Some(3), || unreachable!("no estimate when --steps is given")), 3);
    }
}
