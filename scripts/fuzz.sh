#!/usr/bin/env bash
# Fuzzes the tf.data, FITS, npy, Keras and Parquet parsers for a bounded time each.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
# Uses cargo-fuzz (coverage-guided, AddressSanitizer) when it is installed
# (`cargo install cargo-fuzz`; on a stable toolchain it runs with
# RUSTC_BOOTSTRAP=1), and always runs the stable mutation fuzzer, seeded
# with the test fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
fx=tests/fixtures/tensorflow/datasets
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Seeds: real fixtures, plus small files we write (FITS from simulate).
cargo run --release -q -- simulate --n 2 --size 16 --out "$tmp/sim" --format fits --preview 0 >/dev/null
cargo run --release -q -- simulate --n 2 --size 16 --out "$tmp/simnpy" --preview 0 >/dev/null
tf_seeds=$(ls $fx/*/*/*/*.snapshot $fx/*/snapshot.metadata $fx/*/dataset_spec.pb | grep -v det_image | tr '\n' ' ')
fits_seeds="$(ls "$tmp"/sim/fits/*.fits | head -3 | tr '\n' ' ') tests/fixtures/fits-compressed/rice_dither2_tiles.fits tests/fixtures/fits-compressed/gzip2_int16.fits tests/fixtures/fits-compressed/rice_constant_rows.fits"
npy_seeds="$fx/tiny_image.npy $tmp/simnpy/images.npy"
km=tests/fixtures/tensorflow/models/tiny_finetuned_savedmodel
keras_seeds="$km/variables/variables.index $km/keras_metadata.pb"
parquet_seeds="tests/fixtures/parquet/catalogue-snappy.parquet tests/fixtures/parquet/catalogue-zstd.parquet tests/fixtures/parquet/pandas.parquet"

for target in tfdata fits npy keras parquet; do
  case $target in
    tfdata) seeds=$tf_seeds ;;
    fits) seeds=$fits_seeds ;;
    npy) seeds=$npy_seeds ;;
    keras) seeds=$keras_seeds ;;
    parquet) seeds=$parquet_seeds ;;
  esac
  cargo run --release -q -p tidalscope-io --example fuzz_parsers -- "$target" "$secs" $seeds
  if command -v cargo-fuzz >/dev/null 2>&1; then
    mkdir -p "fuzz/corpus/$target"
    cp $seeds "fuzz/corpus/$target/" 2>/dev/null || true
    (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$secs" -max_len=400000 2>&1 | tail -3)
  fi
done
