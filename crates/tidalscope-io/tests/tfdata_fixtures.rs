//! Every tf.data fixture written by real TensorFlow 2.11
//! (tests/fixtures/tensorflow/datasets, made by make/gen_datasets.py)
//! decodes exactly, and the writer reproduces TensorFlow's bytes.

use std::path::{Path, PathBuf};
use tidalscope_io::npy;
use tidalscope_io::source::{open, OpenOptions};
use tidalscope_io::tfdata::{Compression, DType, ElementSpec, Metadata, Tensor, TensorData, TfDataWriter, TfDataset};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tensorflow/datasets")
}

/// image[y,x,c] = c*1000 + y*128 + x + 100000*i (gen_datasets.py: det_images)
fn det_value(i: usize, y: usize, x: usize, c: usize, w: usize) -> f32 {
    (c * 1000 + y * 128 + x) as f32 + 100_000.0 * i as f32 + 0.0 * w as f32
}

fn all(ds: &TfDataset, cycle: usize) -> Vec<Vec<Tensor>> {
    ds.elements(cycle).collect::<Result<Vec<_>, _>>().unwrap()
}

#[test]
fn deterministic_images_decode_exactly_uncompressed_and_gzip() {
    for (name, comp) in [("det_image_none", Compression::None), ("det_image_gzip", Compression::Gzip)] {
        let ds = TfDataset::open(&fixtures().join(name)).unwrap();
        assert_eq!(ds.compression, comp, "{name}");
        assert_eq!(ds.element_count(), Some(4));
        assert_eq!(ds.spec.components.len(), 1);
        assert_eq!(ds.spec.components[0].key, "image");
        let els = all(&ds, 2);
        assert_eq!(els.len(), 4);
        for (i, e) in els.iter().enumerate() {
            assert_eq!(e[0].shape, vec![128, 128, 5]);
            let v = e[0].to_f32().unwrap();
            for (k, &got) in v.iter().enumerate() {
                let (y, x, c) = (k / (128 * 5), (k / 5) % 128, k % 5);
                assert_eq!(got, det_value(i, y, x, c, 128), "{name} element {i} [{y},{x},{c}]");
            }
        }
    }
}

#[test]
fn mixed_keys_decode_exactly_in_sorted_order() {
    let ds = TfDataset::open(&fixtures().join("rand_mixed_none")).unwrap();
    let keys: Vec<&str> = ds.spec.components.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["dec", "flags", "image", "label", "mask", "name", "object_id", "ra", "tags"]);
    let els = all(&ds, 4);
    assert_eq!(els.len(), 3);
    let (shape, images) = npy::read_f32(&fixtures().join("rand_mixed_image.npy")).unwrap();
    assert_eq!(shape, vec![3, 128, 128, 5]);
    let extra: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("rand_mixed_extra.json")).unwrap()).unwrap();
    let at = |key: &str| ds.spec.position(key).unwrap();
    let hex =
        |s: &str| (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect::<Vec<u8>>();
    for (i, e) in els.iter().enumerate() {
        assert_eq!(e[at("image")].to_f32().unwrap(), &images[i * 128 * 128 * 5..(i + 1) * 128 * 128 * 5]);
        let raw = |k: &str| match &e[at(k)].data {
            TensorData::Raw(b) => b.clone(),
            TensorData::Str(_) => panic!("{k} is numeric"),
        };
        assert_eq!(i64::from_le_bytes(raw("object_id").try_into().unwrap()), extra["object_id"][i].as_i64().unwrap());
        assert_eq!(f64::from_le_bytes(raw("ra").try_into().unwrap()), extra["ra"][i].as_f64().unwrap());
        assert_eq!(f32::from_le_bytes(raw("dec").try_into().unwrap()) as f64, extra["dec"][i].as_f64().unwrap());
        assert_eq!(i32::from_le_bytes(raw("label").try_into().unwrap()) as i64, extra["label"][i].as_i64().unwrap());
        let flags: Vec<bool> = raw("flags").iter().map(|&b| b != 0).collect();
        let want: Vec<bool> = extra["flags"][i].as_array().unwrap().iter().map(|v| v.as_bool().unwrap()).collect();
        assert_eq!(flags, want);
        assert_eq!(e[at("mask")].shape, vec![4, 4]);
        let want_mask: Vec<u8> = extra["mask"][i]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8))
            .collect();
        assert_eq!(raw("mask"), want_mask);
        let TensorData::Str(name) = &e[at("name")].data else { panic!("name is a string") };
        assert_eq!(name[0], hex(extra["name"][i].as_str().unwrap()));
        let TensorData::Str(tags) = &e[at("tags")].data else { panic!("tags are strings") };
        let want_tags: Vec<Vec<u8>> =
            extra["tags"][i].as_array().unwrap().iter().map(|v| hex(v.as_str().unwrap())).collect();
        assert_eq!(tags, &want_tags);
    }
    assert_eq!(els[0][at("name")].to_text(), "gal-0");
    assert_eq!(els[1][at("object_id")].to_text(), "-5");
    assert_eq!(els[0][at("flags")].to_text(), "[true false true]");
}

#[test]
fn tiny_images_and_three_shards_follow_tensorflows_interleave_order() {
    let (_, tiny) = npy::read_f32(&fixtures().join("tiny_image.npy")).unwrap();
    let per = 4 * 3 * 5;
    let one = TfDataset::open(&fixtures().join("tiny_image_none")).unwrap();
    let els = all(&one, 2);
    assert_eq!(els.len(), 7);
    for (i, e) in els.iter().enumerate() {
        assert_eq!(e[0].to_f32().unwrap(), &tiny[i * per..(i + 1) * per]);
    }
    let sharded = TfDataset::open(&fixtures().join("tiny_image_3shards")).unwrap();
    assert_eq!(sharded.shards.len(), 3);
    let img = sharded.spec.position("image").unwrap();
    let idx = sharded.spec.position("index").unwrap();
    // tf_load_report.json: 2 CPUs → [0,1,3,4,6,2,5]; 1 CPU → [0,3,6,1,4,2,5]
    for (cycle, want) in [(2, [0, 1, 3, 4, 6, 2, 5]), (1, [0, 3, 6, 1, 4, 2, 5])] {
        let els = all(&sharded, cycle);
        let order: Vec<usize> = els.iter().map(|e| e[idx].to_text().parse().unwrap()).collect();
        assert_eq!(order, want, "cycle length {cycle}");
        for (e, &i) in els.iter().zip(&want) {
            assert_eq!(e[img].to_f32().unwrap(), &tiny[i * per..(i + 1) * per]);
        }
    }
    // A cycle as long as the shard count reads round-robin.
    let order: Vec<usize> = all(&sharded, 3).iter().map(|e| e[idx].to_text().parse().unwrap()).collect();
    assert_eq!(order, [0, 1, 2, 3, 4, 5, 6]);
}

#[test]
fn writer_reproduces_tensorflows_snapshot_bytes() {
    let fixture = fixtures().join("det_image_none");
    let spec = ElementSpec::parse(&std::fs::read(fixture.join("dataset_spec.pb")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("det");
    let mut w = TfDataWriter::create(&out, spec.clone(), Compression::None).unwrap();
    for i in 0..4 {
        let v: Vec<f32> = (0..128 * 128 * 5).map(|k| det_value(i, k / 640, (k / 5) % 128, k % 5, 128)).collect();
        w.write(&[Tensor::f32(vec![128, 128, 5], &v)]).unwrap();
    }
    w.finish().unwrap();
    let ours = TfDataset::open(&out).unwrap();
    let theirs = TfDataset::open(&fixture).unwrap();
    assert_eq!(
        std::fs::read(&ours.shards[0][0]).unwrap(),
        std::fs::read(&theirs.shards[0][0]).unwrap(),
        "snapshot bytes differ"
    );
    assert_eq!(
        std::fs::read(out.join("dataset_spec.pb")).unwrap(),
        std::fs::read(fixture.join("dataset_spec.pb")).unwrap()
    );
    assert_eq!(
        (ours.metadata.version, &ours.metadata.dtypes, ours.metadata.num_elements, ours.metadata.finalized),
        (2, &vec![1], 4, true)
    );
    // and gzip output reads back to the same elements
    let gz = dir.path().join("det_gz");
    let mut w = TfDataWriter::create(&gz, spec, Compression::Gzip).unwrap();
    for e in all(&theirs, 1) {
        w.write(&e).unwrap();
    }
    w.finish().unwrap();
    let back = TfDataset::open(&gz).unwrap();
    assert_eq!(back.compression, Compression::Gzip);
    assert_eq!(all(&back, 1), all(&theirs, 1));
    assert_eq!(back.spec.components[0].dtype, DType::F32);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

fn first_error(ds: &TfDataset) -> String {
    ds.elements(1).find_map(|e| e.err()).expect("an error").to_string()
}

#[test]
fn corrupt_files_give_errors_naming_file_and_record() {
    let dir = tempfile::tempdir().unwrap();
    // CRC mismatch: flip one pixel byte of element 2.
    let bad = dir.path().join("crc");
    copy_dir(&fixtures().join("det_image_none"), &bad);
    let ds = TfDataset::open(&bad).unwrap();
    let snap = ds.shards[0][0].clone();
    let mut bytes = std::fs::read(&snap).unwrap();
    bytes[2 * 327_718 + 5000] ^= 0x40;
    std::fs::write(&snap, &bytes).unwrap();
    let err = first_error(&ds);
    assert!(err.contains("00000000.snapshot") && err.contains("record 2") && err.contains("CRC"), "{err}");
    // Truncated: cut the file in the middle of element 3.
    std::fs::write(
        &snap,
        &std::fs::read(TfDataset::open(&fixtures().join("det_image_none")).unwrap().shards[0][0].clone()).unwrap()
            [..3 * 327_718 + 100],
    )
    .unwrap();
    let err = first_error(&ds);
    assert!(err.contains("record 3") && err.contains("truncated"), "{err}");
    // Corrupt gzip stream.
    let gz = dir.path().join("gz");
    copy_dir(&fixtures().join("det_image_gzip"), &gz);
    let ds = TfDataset::open(&gz).unwrap();
    let snap = ds.shards[0][0].clone();
    let mut bytes = std::fs::read(&snap).unwrap();
    for b in &mut bytes[5000..5100] {
        *b ^= 0xA5;
    }
    std::fs::write(&snap, &bytes).unwrap();
    let err = first_error(&ds);
    assert!(err.contains("00000000.snapshot") && err.contains("record"), "{err}");
    // Metadata that disagrees with the spec.
    let meta = dir.path().join("meta");
    copy_dir(&fixtures().join("det_image_none"), &meta);
    let mut m = std::fs::read(meta.join("snapshot.metadata")).unwrap();
    let pos = m.windows(3).position(|w| w == [0x2a, 0x01, 0x01]).unwrap();
    m[pos + 2] = 0x02; // float64
    std::fs::write(meta.join("snapshot.metadata"), m).unwrap();
    let err = TfDataset::open(&meta).unwrap_err().to_string();
    assert!(err.contains("snapshot.metadata") && err.contains("float64"), "{err}");
}

/// Rewrites a copied folder's `snapshot.metadata` with `num_elements` and
/// `finalized` as given.
fn set_count(dir: &Path, num_elements: i64, finalized: bool) {
    let path = dir.join("snapshot.metadata");
    let mut m = Metadata::parse(&std::fs::read(&path).unwrap()).unwrap();
    (m.num_elements, m.finalized) = (num_elements, finalized);
    std::fs::write(&path, m.to_bytes()).unwrap();
}

/// A folder whose metadata gives no count (unknown, an unfinished save,
/// a writer that left 0) is read to its end, not taken as empty; one
/// whose files hold fewer elements than its metadata promises says so.
#[test]
fn folders_of_unknown_length_are_counted_and_lost_files_named() {
    let dir = tempfile::tempdir().unwrap();
    for (name, want) in [("tiny_image_3shards", 7), ("det_image_gzip", 4)] {
        for (count, finalized) in [(-1, true), (0, false), (0, true), (want as i64, false)] {
            let d = dir.path().join(format!("{name}{count}{finalized}"));
            copy_dir(&fixtures().join(name), &d);
            set_count(&d, count, finalized);
            let ds = TfDataset::open(&d).unwrap();
            assert_eq!(ds.element_count(), None, "{name} count {count} finalized {finalized}");
            assert_eq!(ds.num_elements().unwrap(), want, "{name} count {count} finalized {finalized}");
            assert_eq!(all(&ds, 2).len(), want);
            let src = open(&d, &OpenOptions::default()).unwrap();
            assert_eq!(src.info().len, want);
            assert_eq!(
                src.records(0).unwrap().map(|r| r.unwrap().index).collect::<Vec<_>>(),
                (0..want).collect::<Vec<_>>()
            );
        }
    }
    // A shard file lost from a finished save: the folder's reading ends
    // with an error, not a shorter data set.
    let lost = dir.path().join("lost");
    copy_dir(&fixtures().join("tiny_image_3shards"), &lost);
    let ds = TfDataset::open(&lost).unwrap();
    std::fs::remove_file(&ds.shards[1][0]).unwrap();
    let ds = TfDataset::open(&lost).unwrap();
    // Found at opening (uncompressed files are counted against the promise)…
    let err = ds.num_elements().unwrap_err().to_string();
    assert!(err.contains("promises 7 elements") && err.contains("hold 5"), "{err}");
    let err = open(&lost, &OpenOptions::default()).err().unwrap().to_string();
    assert!(err.contains("promises 7 elements"), "{err}");
    // …and at the end of reading.
    let read: Vec<_> = ds.elements(2).collect();
    let err = read.last().unwrap().as_ref().unwrap_err().to_string();
    assert!(err.contains("lost") && err.contains("promises 7 elements") && err.contains("hold 5"), "{err}");
    assert!(read[..read.len() - 1].iter().all(Result::is_ok));
    // Counting names a file that stops inside an element (records of some
    // but not all of its components).
    let cut = dir.path().join("cut");
    copy_dir(&fixtures().join("rand_mixed_none"), &cut);
    set_count(&cut, -1, true);
    let ds = TfDataset::open(&cut).unwrap();
    assert!(ds.spec.components.len() > 1);
    let snap = ds.shards[0][0].clone();
    let bytes = std::fs::read(&snap).unwrap();
    let first = 12 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize + 4;
    std::fs::write(&snap, &bytes[..first]).unwrap();
    let err = ds.num_elements().unwrap_err().to_string();
    assert!(err.contains("00000000.snapshot") && err.contains("0 whole elements, then 1 of the next"), "{err}");
    // A plain file cut inside a record's data: counted by seeking, named.
    let cut = dir.path().join("cut-data");
    copy_dir(&fixtures().join("det_image_none"), &cut);
    set_count(&cut, -1, true);
    let ds = TfDataset::open(&cut).unwrap();
    let snap = ds.shards[0][0].clone();
    let bytes = std::fs::read(&snap).unwrap();
    std::fs::write(&snap, &bytes[..3 * 327_718 + 100]).unwrap();
    let err = ds.num_elements().unwrap_err().to_string();
    assert!(err.contains("00000000.snapshot") && err.contains("record 3: truncated data"), "{err}");
}
