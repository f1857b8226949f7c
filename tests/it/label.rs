//! `label` prepares and guards its page through the binary; labels it
//! writes train a classifier (`finetune --label-file`). The page itself is
//! tested in-process (src/label) and in a real browser (tests/browser).

use crate::pipeline::TINY;
use crate::util::Dir;

fn tiny_set() -> Dir {
    let d = Dir::new();
    d.ok(&["simulate", "--n", "30", "--size", "32", "--out", "sim", "--preview", "0", "--seed", "5"]);
    let mut args = vec!["pretrain", "--data", "sim", "--out", "enc"];
    args.extend(TINY);
    d.ok(&args);
    d
}

#[test]
fn label_caches_the_embeddings_and_refuses_unsafe_or_bad_settings() {
    let d = tiny_set();
    let prepare = ["label", "--data", "sim", "--encoder", "enc", "--labels", "l/labels.csv", "--prepare-only"];
    std::fs::create_dir(d.join("l")).unwrap();
    let out = d.ok(&prepare);
    assert!(String::from_utf8_lossy(&out.stdout).contains("prepared 30 objects"));
    for f in ["embeddings.npy", "ids.csv", "embedding.json", "label.run.toml"] {
        assert!(d.join("l/labels.embeddings").join(f).is_file(), "{f} missing");
    }
    let out = d.ok(&prepare);
    assert!(String::from_utf8_lossy(&out.stderr).contains("using the 30 embeddings cached"));
    // Data changed after embedding: computed again.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    std::fs::File::open(d.join("sim")).unwrap().set_modified(later).unwrap();
    let out = d.ok(&prepare);
    assert!(String::from_utf8_lossy(&out.stderr).contains("changed since: recomputing"), "{out:?}");
    let err = d.fails(&["label", "--data", "sim", "--encoder", "enc", "--host", "0.0.0.0", "--prepare-only"]);
    assert!(err.contains("needs --token"), "{err}");
    let err = d.fails(&["label", "--data", "sim", "--encoder", "enc", "--token", "abc", "--prepare-only"]);
    assert!(err.contains("at least 8 characters"), "{err}");
    let mut hide = prepare.to_vec();
    hide.extend(["--hide", "label,colour"]);
    let err = d.fails(&hide);
    assert!(err.contains("--hide colour: no such column") && err.contains("feature_types"), "{err}");
    std::fs::write(d.join("l/bad.csv"), "id,label\n3,yes\n").unwrap();
    let err = d.fails(&["label", "--data", "sim", "--encoder", "enc", "--labels", "l/bad.csv", "--prepare-only"]);
    assert!(err.contains("bad.csv: line 2 (id 3)"), "{err}");
}

#[test]
fn finetune_takes_its_labels_from_a_labels_file() {
    let d = tiny_set();
    // Labels opposite to the simulation's truth, and one unsure: the file wins.
    let (_, rows) = crate::util::read_csv(&d.join("sim/catalog.csv"));
    let mut text = String::from("id,label,verdict\n");
    for r in rows.iter().take(12) {
        let flipped = if r[1] == "1" { "0" } else { "1" };
        text.push_str(&format!("{},{flipped},\n", r[0]));
    }
    text.push_str(&format!("{},,unsure\n", rows[12][0]));
    std::fs::write(d.join("labels.csv"), text).unwrap();
    let out = d.ok(&[
        "finetune",
        "--encoder",
        "enc",
        "--data",
        "sim",
        "--label-file",
        "labels.csv",
        "--out",
        "clf",
        "--val-fraction",
        "0.2",
        "--test-fraction",
        "0.2",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("labels from labels.csv: 12 tidal or not tidal"));
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("clf/split.json")).unwrap()).unwrap();
    let objects: Vec<&serde_json::Value> =
        ["train", "val", "test"].iter().flat_map(|k| split["splits"][k].as_array().unwrap()).collect();
    assert_eq!(objects.len(), 12, "only the labelled objects, unsure left out");
    for o in objects {
        let i = o["index"].as_u64().unwrap() as usize;
        let truth: u64 = rows[i][1].parse().unwrap();
        assert_eq!(o["label"].as_u64().unwrap(), 1 - truth, "object {i}: the file's label, not the data's");
    }
}
