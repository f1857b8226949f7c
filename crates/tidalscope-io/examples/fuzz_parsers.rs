//! A mutation fuzzer for the tf.data, FITS and npy parsers that runs on
//! stable Rust (no sanitizers, no coverage guidance): it mutates seed files
//! (the test fixtures) at random and checks that the parsers never panic.
//! Coverage-guided fuzzing with cargo-fuzz lives in `fuzz/`; both are run by
//! `scripts/fuzz.sh`.
//!
//! ```sh
//! cargo run --release -p tidalscope-io --example fuzz_parsers -- tfdata 60 SEED_FILES...
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use tidalscope_core::Rng;

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        if d.is_empty() {
            d.push(rng.next_u64() as u8);
            continue;
        }
        let i = rng.below(d.len() as u64) as usize;
        match rng.below(6) {
            0 => d[i] ^= 1 << rng.below(8),
            1 => d[i] = rng.next_u64() as u8,
            2 => d.truncate(i),
            3 => {
                let n = rng.below(16) as usize;
                let fill: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                d.splice(i..i, fill);
            }
            4 => {
                // interesting values at a random place
                let v: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
                let end = (i + 8).min(d.len());
                d[i..end].copy_from_slice(&v[..end - i]);
            }
            _ => {
                let j = rng.below(d.len() as u64) as usize;
                d.swap(i, j);
            }
        }
    }
    d
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: fuzz_parsers tfdata|fits|npy|keras|parquet SECONDS SEED_FILE...");
        std::process::exit(2);
    }
    let target: fn(&[u8]) = match args[1].as_str() {
        "tfdata" => tidalscope_io::fuzzing::tfdata,
        "fits" => tidalscope_io::fuzzing::fits,
        "npy" => tidalscope_io::fuzzing::npy,
        "keras" => tidalscope_io::fuzzing::keras,
        "parquet" => tidalscope_io::fuzzing::parquet,
        t => {
            eprintln!("unknown target {t}");
            std::process::exit(2);
        }
    };
    let seconds: f64 = args[2].parse().expect("seconds");
    let seeds: Vec<Vec<u8>> =
        args[3..].iter().map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{p}: {e}"))).collect();
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng::new(0x5EED);
    let t0 = std::time::Instant::now();
    let mut runs = 0u64;
    while t0.elapsed().as_secs_f64() < seconds {
        let seed = &seeds[rng.below(seeds.len() as u64) as usize];
        let input = mutate(seed, &mut rng);
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            let out = format!("crash-{}-{runs}.bin", args[1]);
            std::fs::write(&out, &input).expect("write crash input");
            println!("{}: PANIC after {runs} runs; input saved to {out}", args[1]);
            std::process::exit(1);
        }
        runs += 1;
    }
    println!("{}: {runs} mutated inputs in {seconds:.0} s, no panic", args[1]);
}
