//! `collect`: the outputs of `predict --shard K/N` gathered into the
//! unsharded catalogue, and parts that do not belong together refused.

use crate::util::{read_csv, Dir};

fn shard(d: &Dir, model: &str, data: &str, dir: &str, k: usize, n: usize) {
    d.ok(&[
        "predict",
        "--model",
        model,
        "--data",
        data,
        "--out",
        &format!("{dir}/scores.{k}-of-{n}.csv"),
        "--shard",
        &format!("{k}/{n}"),
    ]);
}

#[test]
fn collect_gathers_shards_into_the_whole_and_refuses_parts_that_do_not_belong() {
    let d = Dir::new();
    crate::infer::trained(&d);
    d.ok(&["predict", "--model", "clf", "--data", "sim/catalog.csv", "--out", "all/scores.csv"]);
    for k in 0..3 {
        shard(&d, "clf", "sim/catalog.csv", "parts", k, 3);
    }
    let out = d.ok(&["collect", "--from", "parts", "--out", "merged/scores.csv"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("collected 3 shards: 40 objects scored"));
    assert_eq!(read_csv(&d.join("merged/scores.csv")), read_csv(&d.join("all/scores.csv")));
    assert_eq!(read_csv(&d.join("merged/scores.errors.csv")).0, ["id", "file", "reason"]);
    let run = std::fs::read_to_string(d.join("merged/scores.run.toml")).unwrap();
    assert_eq!(run.matches("scores_sha256 = ").count(), 3, "{run}");
    assert!(run.contains("model_sha256") && run.contains("objects = 40"), "{run}");

    // A missing shard: listed for sbatch --array, and an error naming it.
    std::fs::rename(d.join("parts/run.1-of-3.toml"), d.join("run.1-of-3.toml")).unwrap();
    assert_eq!(String::from_utf8_lossy(&d.ok(&["collect", "--from", "parts", "--missing"]).stdout), "1\n");
    let err = d.fails(&["collect", "--from", "parts", "--out", "m1/scores.csv"]);
    assert!(err.contains("1 of 3 shards are missing") && err.contains(": 1;"), "{err}");
    assert!(!d.join("m1/scores.csv").exists());
    std::fs::rename(d.join("run.1-of-3.toml"), d.join("parts/run.1-of-3.toml")).unwrap();
    assert_eq!(String::from_utf8_lossy(&d.ok(&["collect", "--from", "parts", "--missing"]).stdout), "\n");

    // A part cut short (a crashed copy, say).
    let part = d.join("parts/scores.2-of-3.csv");
    let text = std::fs::read_to_string(&part).unwrap();
    std::fs::write(&part, text.lines().take(4).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let err = d.fails(&["collect", "--from", "parts", "--out", "m2/scores.csv"]);
    assert!(err.contains("3 rows, but") && err.contains("rerun shard 2/3"), "{err}");
    assert!(!d.join("m2/scores.csv").exists(), "nothing written from a bad job");
    std::fs::write(&part, text).unwrap();

    // A shard scored with another model (same architecture, other bytes).
    std::fs::create_dir_all(d.join("clf2")).unwrap();
    for f in ["classifier.json", "classifier.bpk", "preprocess.json"] {
        std::fs::copy(d.join("clf").join(f), d.join("clf2").join(f)).unwrap();
    }
    let pre = std::fs::read_to_string(d.join("clf2/preprocess.json")).unwrap();
    std::fs::write(d.join("clf2/preprocess.json"), pre + "\n").unwrap();
    shard(&d, "clf2", "sim/catalog.csv", "parts", 1, 3);
    let err = d.fails(&["collect", "--from", "parts", "--out", "m3/scores.csv"]);
    assert!(err.contains("shards 0/3 and 1/3 used a different model"), "{err}");

    // The same id twice: a catalogue whose object 20 repeats id 3 is
    // refused before scoring; parts that repeat one (edited, or from
    // another tool) are refused by collect.
    let cat = std::fs::read_to_string(d.join("sim/catalog.csv")).unwrap();
    let repeat = |text: &str| -> String {
        let lines: Vec<String> = text
            .lines()
            .map(|l| if l.starts_with("20,") { l.replacen("20,", "3,", 1) } else { l.to_string() })
            .collect();
        lines.join("\n") + "\n"
    };
    std::fs::write(d.join("sim/dup.csv"), repeat(&cat)).unwrap();
    let err = d.fails(&["predict", "--model", "clf", "--data", "sim/dup.csv", "--out", "dup.csv"]);
    assert!(err.contains("sim/dup.csv") && err.contains("id \"3\" is already on line 5"), "{err}");
    for k in 0..2 {
        shard(&d, "clf", "sim/catalog.csv", "dups", k, 2);
    }
    let part = d.join("dups/scores.1-of-2.csv");
    std::fs::write(&part, repeat(&std::fs::read_to_string(&part).unwrap())).unwrap();
    let err = d.fails(&["collect", "--from", "dups", "--out", "m4/scores.csv"]);
    assert!(err.contains("id 3 in shards 0/2 (scores.0-of-2.csv) and 1/2 (scores.1-of-2.csv)"), "{err}");
    assert!(!d.join("m4/scores.csv").exists());
    // The data changed between two tasks: the parts would not tile it.
    std::fs::write(d.join("sim/grow.csv"), &cat).unwrap();
    shard(&d, "clf", "sim/grow.csv", "grow", 0, 2);
    let short: Vec<&str> = cat.lines().take(31).collect();
    std::fs::write(d.join("sim/grow.csv"), short.join("\n") + "\n").unwrap();
    shard(&d, "clf", "sim/grow.csv", "grow", 1, 2);
    let err = d.fails(&["collect", "--from", "grow", "--out", "m6/scores.csv"]);
    assert!(err.contains("number of objects in the data") && err.contains("40 (") && err.contains("30 ("), "{err}");
    let err = d.fails(&["collect", "--from", "sim", "--out", "m5/scores.csv"]);
    assert!(err.contains("no run.K-of-N.toml files"), "{err}");
}

#[test]
fn collect_gathers_embed_shards_into_the_unsharded_embed_folder() {
    let d = Dir::new();
    crate::infer::trained(&d);
    d.ok(&["embed", "--encoder", "enc", "--data", "sim", "--out", "all", "--color-by", "none"]);
    for k in 0..3 {
        let (s, o) = (format!("{k}/3"), format!("parts/e{k}"));
        d.ok(&["embed", "--encoder", "enc", "--data", "sim", "--out", &o, "--shard", &s, "--color-by", "none"]);
    }
    let out = d.ok(&["collect", "--from", "parts", "--out", "merged"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("collected 3 embed shards: 40 objects embedded"));
    assert_eq!(read_csv(&d.join("merged/ids.csv")), read_csv(&d.join("all/ids.csv")));
    let vectors = |dir: &str| std::fs::read(d.join(dir).join("embeddings.npy")).unwrap();
    assert_eq!(vectors("merged"), vectors("all"), "the same bytes as embedding unsharded");
    let info = std::fs::read_to_string(d.join("merged/embedding.json")).unwrap();
    assert!(info.contains("\"shard\": null") && info.contains("\"count\": 40"), "{info}");
    let run = std::fs::read_to_string(d.join("merged/run.toml")).unwrap();
    assert_eq!(run.matches("embeddings_sha256 = ").count(), 3, "{run}");
    // The gathered folder is an embed folder like any other.
    d.ok(&["search", "--embeddings", "merged", "--query", "3", "--k", "2", "--out", "found"]);

    std::fs::rename(d.join("parts/e1"), d.join("e1")).unwrap();
    assert_eq!(String::from_utf8_lossy(&d.ok(&["collect", "--from", "parts", "--missing"]).stdout), "1\n");
    let err = d.fails(&["collect", "--from", "parts", "--out", "m1"]);
    assert!(err.contains("1 of 3 shards are missing"), "{err}");
    assert!(!d.join("m1").exists());

    // Shard 1 embedded with an encoder whose files differ.
    std::fs::create_dir_all(d.join("enc2")).unwrap();
    for f in ["encoder.json", "encoder.bpk", "preprocess.json"] {
        std::fs::copy(d.join("enc").join(f), d.join("enc2").join(f)).unwrap();
    }
    let pre = std::fs::read_to_string(d.join("enc2/preprocess.json")).unwrap();
    std::fs::write(d.join("enc2/preprocess.json"), pre + "\n").unwrap();
    d.ok(&["embed", "--encoder", "enc2", "--data", "sim", "--out", "parts/e1", "--shard", "1/3", "--color-by", "none"]);
    let err = d.fails(&["collect", "--from", "parts", "--out", "m2"]);
    assert!(err.contains("used a different encoder (SHA-256 of its files)"), "{err}");

    // A part cut short.
    d.ok(&["embed", "--encoder", "enc", "--data", "sim", "--out", "parts/e1", "--shard", "1/3", "--color-by", "none"]);
    let ids = d.join("parts/e2/ids.csv");
    let text = std::fs::read_to_string(&ids).unwrap();
    std::fs::write(&ids, text.lines().take(5).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let err = d.fails(&["collect", "--from", "parts", "--out", "m3"]);
    assert!(err.contains("4 rows, but") && err.contains("rerun shard 2/3"), "{err}");
    assert!(!d.join("m3").exists());
}
