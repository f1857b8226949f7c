//! The labels people give on the labelling page, kept so that none is lost.
//!
//! Every label (and every undo) is one JSON line appended to the log
//! (`labels.csv.log` beside `labels.csv`) and synced to disk before the page
//! is told it is saved: the log is the truth. `labels.csv`, the latest label
//! of each object, is rewritten from it atomically after each change, so a
//! crash leaves either the old or the new file, never half of one.
//! Restarting replays the log.

use anyhow::{bail, ensure, Context};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A person's verdict on one galaxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// It shows a tidal feature.
    Tidal,
    /// It shows none.
    NotTidal,
    /// Cannot tell: kept, but not used for training.
    Unsure,
}

impl Verdict {
    /// The 0/1 training label (`None` for unsure).
    pub fn label(self) -> Option<u8> {
        match self {
            Verdict::Tidal => Some(1),
            Verdict::NotTidal => Some(0),
            Verdict::Unsure => None,
        }
    }

    /// The name written to `labels.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Tidal => "tidal",
            Verdict::NotTidal => "not_tidal",
            Verdict::Unsure => "unsure",
        }
    }
}

/// Feature types a person can tick.
pub const FEATURES: [&str; 5] = ["stream", "shell", "tail", "plume", "double_nucleus"];

/// Contaminants a person can tick.
pub const CONTAMINANTS: [&str; 4] = ["ghost", "star_halo", "cirrus", "satellite_trail"];

/// One label, as the page sends it (the server adds time and annotator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Given {
    /// The object's id.
    pub id: String,
    /// The verdict.
    pub verdict: Verdict,
    /// How sure, from 0 to 1.
    pub confidence: f64,
    /// Feature types seen (names from [`FEATURES`]).
    #[serde(default)]
    pub features: Vec<String>,
    /// Contaminants seen (names from [`CONTAMINANTS`]).
    #[serde(default)]
    pub contaminants: Vec<String>,
    /// The queue the object was shown in (for resuming).
    #[serde(default)]
    pub queue: String,
    /// For the "more like this" queue: the id it is like.
    #[serde(default)]
    pub like: Option<String>,
}

impl Given {
    /// Checks the values a page (or anyone) sent.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(!self.id.is_empty(), "no id");
        ensure!(
            self.confidence.is_finite() && (0.0..=1.0).contains(&self.confidence),
            "confidence {} is not between 0 and 1",
            self.confidence
        );
        for f in &self.features {
            ensure!(FEATURES.contains(&f.as_str()), "unknown feature type {f:?} (known: {})", FEATURES.join(", "));
        }
        for c in &self.contaminants {
            ensure!(
                CONTAMINANTS.contains(&c.as_str()),
                "unknown contaminant {c:?} (known: {})",
                CONTAMINANTS.join(", ")
            );
        }
        Ok(())
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A label.
    Label {
        /// What was given.
        #[serde(flatten)]
        given: Given,
        /// Who gave it.
        annotator: String,
        /// When (UTC, ISO 8601).
        time: String,
    },
    /// Takes back the latest label of one object still standing.
    Undo {
        /// The object whose label is taken back.
        id: String,
        /// Who undid it.
        annotator: String,
        /// When (UTC, ISO 8601).
        time: String,
    },
}

/// A label standing after replaying the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// What was given.
    pub given: Given,
    /// Who gave it.
    pub annotator: String,
    /// When.
    pub time: String,
}

/// The log file and the labels standing.
pub struct LabelLog {
    csv: PathBuf,
    log_path: PathBuf,
    log: std::fs::File,
    /// Labels in the order given, undone ones removed (an object labelled
    /// twice appears twice; the later one counts).
    stack: Vec<Label>,
}

/// The log's path for a labels file: `labels.csv` → `labels.csv.log`.
pub fn log_path(csv: &Path) -> PathBuf {
    let mut name = csv.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".log");
    csv.with_file_name(name)
}

impl LabelLog {
    /// Opens (or starts) the log of `csv` and replays it. A `labels.csv`
    /// without a log (labels made elsewhere) is imported into a new log
    /// first, so it is never overwritten with less.
    pub fn open(csv: &Path) -> anyhow::Result<Self> {
        let log_path = log_path(csv);
        if !log_path.exists() && csv.exists() {
            // All or nothing: the new log appears whole, by rename.
            let imported = import_csv(csv)?;
            let mut text = String::new();
            for e in &imported {
                text.push_str(&serde_json::to_string(e)?);
                text.push('\n');
            }
            tidalscope_io::atomic::write(&log_path, text.as_bytes())
                .with_context(|| format!("writing {}", log_path.display()))?;
            eprintln!("imported {} labels from {} into {}", imported.len(), csv.display(), log_path.display());
        }
        let bytes = match std::fs::read(&log_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", log_path.display())),
        };
        // Whole lines end in '\n': a crash mid-append can leave a torn tail
        // (cut anywhere, even inside a character), a label never reported
        // saved, which is cut off, loudly.
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let tail = &bytes[complete..];
        let torn = !tail.iter().all(u8::is_ascii_whitespace) && serde_json::from_slice::<Event>(tail).is_err();
        let text = std::str::from_utf8(&bytes[..if torn { complete } else { bytes.len() }])
            .with_context(|| format!("{}: not UTF-8 text", log_path.display()))?;
        let mut stack: Vec<Label> = Vec::new();
        for (k, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let event: Event =
                serde_json::from_str(line).with_context(|| format!("{}: line {}", log_path.display(), k + 1))?;
            apply(&mut stack, event);
        }
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        if torn {
            eprintln!(
                "warning: {}: cutting off a torn last line: {:?}",
                log_path.display(),
                String::from_utf8_lossy(tail)
            );
            log.set_len(complete as u64).with_context(|| format!("truncating {}", log_path.display()))?;
        } else if !tail.is_empty() {
            log.write_all(b"\n").with_context(|| format!("writing {}", log_path.display()))?;
        }
        let this = Self { csv: csv.to_path_buf(), log_path, log, stack };
        this.write_csv()?;
        Ok(this)
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.log_path
    }

    /// Records a label: appended, synced, replayed, and `labels.csv` rewritten.
    pub fn label(&mut self, given: Given, annotator: &str) -> anyhow::Result<()> {
        given.validate()?;
        let time = crate::manifest::utc_iso8601(std::time::SystemTime::now());
        self.append(Event::Label { given, annotator: annotator.to_string(), time })
    }

    /// Takes back the latest standing label of `id` (one person's undo, so
    /// not someone else's later label of another object); returns it
    /// (`None`: `id` has no label to take back).
    pub fn undo(&mut self, id: &str, annotator: &str) -> anyhow::Result<Option<Label>> {
        let Some(last) = self.stack.iter().rev().find(|l| l.given.id == id).cloned() else { return Ok(None) };
        let time = crate::manifest::utc_iso8601(std::time::SystemTime::now());
        self.append(Event::Undo { id: id.to_string(), annotator: annotator.to_string(), time })?;
        Ok(Some(last))
    }

    /// Appends one event: written and synced, or (on failure) cut off again
    /// so the log never holds half a line before a later one.
    fn append(&mut self, event: Event) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(&event)?;
        line.push('\n');
        let before =
            self.log.metadata().map(|m| m.len()).with_context(|| format!("reading {}", self.log_path.display()))?;
        if let Err(e) = self.log.write_all(line.as_bytes()).and_then(|()| self.log.sync_data()) {
            let _ = self.log.set_len(before);
            return Err(e).with_context(|| format!("writing {}", self.log_path.display()));
        }
        apply(&mut self.stack, event);
        // The log holds the label now; a stale labels.csv is mended by the next write.
        if let Err(e) = self.write_csv() {
            eprintln!("warning: {e:#} (the label is saved in {})", self.log_path.display());
        }
        Ok(())
    }

    /// The latest standing label of each object, in the order given.
    pub fn current(&self) -> Vec<&Label> {
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (k, l) in self.stack.iter().enumerate() {
            last.insert(l.given.id.as_str(), k);
        }
        let mut keep: Vec<usize> = last.into_values().collect();
        keep.sort_unstable();
        keep.into_iter().map(|k| &self.stack[k]).collect()
    }

    /// The latest label still standing (where the person was).
    pub fn last(&self) -> Option<&Label> {
        self.stack.last()
    }

    fn write_csv(&self) -> anyhow::Result<()> {
        let mut w = ::csv::Writer::from_writer(Vec::new());
        w.write_record(CSV_COLUMNS)?;
        for l in self.current() {
            let g = &l.given;
            w.write_record([
                g.id.as_str(),
                g.verdict.label().map_or("", |v| if v == 1 { "1" } else { "0" }),
                g.verdict.name(),
                &format!("{:.2}", g.confidence),
                &g.features.join(";"),
                &g.contaminants.join(";"),
                &l.annotator,
                &l.time,
            ])?;
        }
        let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        tidalscope_io::atomic::write(&self.csv, &bytes).with_context(|| format!("writing {}", self.csv.display()))
    }
}

/// Columns of `labels.csv`: `label` is 1 (tidal), 0 (not tidal) or empty
/// (unsure); lists are `;`-separated.
pub const CSV_COLUMNS: [&str; 8] =
    ["id", "label", "verdict", "confidence", "features", "contaminants", "annotator", "time"];

fn apply(stack: &mut Vec<Label>, event: Event) {
    match event {
        Event::Label { given, annotator, time } => stack.push(Label { given, annotator, time }),
        Event::Undo { id, .. } => {
            if let Some(k) = stack.iter().rposition(|l| l.given.id == id) {
                stack.remove(k);
            }
        }
    }
}

/// Labels of a `labels.csv` written elsewhere (or whose log was lost), as
/// log events.
fn import_csv(csv: &Path) -> anyhow::Result<Vec<Event>> {
    let mut events = Vec::new();
    let mut r = ::csv::Reader::from_path(csv).with_context(|| format!("reading {}", csv.display()))?;
    let head = r.headers()?.clone();
    let col = |name: &str| head.iter().position(|h| h == name);
    let id = col("id").with_context(|| format!("{}: no 'id' column", csv.display()))?;
    let (verdict, label) = (col("verdict"), col("label"));
    ensure!(verdict.is_some() || label.is_some(), "{}: neither a 'verdict' nor a 'label' column", csv.display());
    let now = crate::manifest::utc_iso8601(std::time::SystemTime::now());
    for (k, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: line {}", csv.display(), k + 2))?;
        let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("").trim().to_string();
        let v = parse_verdict(&get(verdict), &get(label))
            .with_context(|| format!("{}: line {} (id {})", csv.display(), k + 2, get(Some(id))))?;
        let list = |name: &str| -> Vec<String> {
            get(col(name)).split(';').filter(|s| !s.is_empty()).map(str::to_string).collect()
        };
        let given = Given {
            id: get(Some(id)),
            verdict: v,
            confidence: get(col("confidence")).parse().unwrap_or(1.0),
            features: list("features"),
            contaminants: list("contaminants"),
            queue: "imported".into(),
            like: None,
        };
        given.validate().with_context(|| format!("{}: line {}", csv.display(), k + 2))?;
        let annotator = Some(get(col("annotator"))).filter(|a| !a.is_empty()).unwrap_or_else(|| "imported".into());
        let time = Some(get(col("time"))).filter(|t| !t.is_empty()).unwrap_or_else(|| now.clone());
        events.push(Event::Label { given, annotator, time });
    }
    Ok(events)
}

fn parse_verdict(verdict: &str, label: &str) -> anyhow::Result<Verdict> {
    Ok(match (verdict, label) {
        ("tidal", _) | ("", "1") => Verdict::Tidal,
        ("not_tidal", _) | ("", "0") => Verdict::NotTidal,
        ("unsure", _) | ("", "") => Verdict::Unsure,
        _ => bail!(
            "verdict {verdict:?} / label {label:?}: expected tidal, not_tidal or unsure, or a label 1, 0 or empty"
        ),
    })
}

/// Reads a labels file (`labels.csv` of `tidalscope label`, or any CSV with
/// `id` and `label` (1/0/empty) or `verdict` columns) as id → 0/1 label
/// (`None`: unsure).
pub fn read_label_file(csv: &Path) -> anyhow::Result<HashMap<String, Option<u8>>> {
    let mut out = HashMap::new();
    for e in import_csv(csv)? {
        if let Event::Label { given, .. } = e {
            out.insert(given.id, given.verdict.label());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(id: &str, verdict: Verdict) -> Given {
        Given {
            id: id.into(),
            verdict,
            confidence: 1.0,
            features: vec![],
            contaminants: vec![],
            queue: "random".into(),
            like: None,
        }
    }

    #[test]
    fn labels_survive_a_restart_and_undo_restores_the_earlier_label() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("labels.csv");
        let mut log = LabelLog::open(&csv).unwrap();
        log.label(given("a", Verdict::Tidal), "me").unwrap();
        log.label(Given { features: vec!["shell".into()], ..given("b", Verdict::NotTidal) }, "me").unwrap();
        log.label(given("a", Verdict::Unsure), "me").unwrap();
        log.label(given("c", Verdict::Tidal), "you").unwrap();
        // My undo of "a" leaves your later label of "c" alone.
        assert_eq!(log.undo("a", "me").unwrap().unwrap().given.verdict, Verdict::Unsure);
        assert!(log.undo("zz", "me").unwrap().is_none());
        assert_eq!(log.undo("c", "you").unwrap().unwrap().annotator, "you");
        drop(log);
        let log = LabelLog::open(&csv).unwrap();
        let now: Vec<(&str, Verdict)> = log.current().iter().map(|l| (l.given.id.as_str(), l.given.verdict)).collect();
        assert_eq!(now, [("a", Verdict::Tidal), ("b", Verdict::NotTidal)]);
        let text = std::fs::read_to_string(&csv).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_COLUMNS.join(","));
        assert!(lines[1].starts_with("a,1,tidal,1.00,,,me,"), "{}", lines[1]);
        assert!(lines[2].starts_with("b,0,not_tidal,1.00,shell,,me,"), "{}", lines[2]);
        let read = read_label_file(&csv).unwrap();
        assert_eq!(read.get("a"), Some(&Some(1)));
        assert_eq!(read.get("b"), Some(&Some(0)));
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_bad_values_refused() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("labels.csv");
        let mut log = LabelLog::open(&csv).unwrap();
        log.label(given("a", Verdict::Tidal), "me").unwrap();
        assert!(log.label(Given { confidence: 1.5, ..given("b", Verdict::Tidal) }, "me").is_err());
        let err = log.label(Given { features: vec!["spiral".into()], ..given("b", Verdict::Tidal) }, "me");
        assert!(format!("{:#}", err.unwrap_err()).contains("unknown feature type \"spiral\""));
        drop(log);
        let mut f = std::fs::OpenOptions::new().append(true).open(log_path(&csv)).unwrap();
        // Torn inside a two-byte character.
        f.write_all(&"{\"event\":\"label\",\"id\":\"Jos\u{e9}".as_bytes()[..27]).unwrap();
        drop(f);
        let mut log = LabelLog::open(&csv).unwrap();
        assert_eq!(log.current().len(), 1);
        log.label(given("d", Verdict::NotTidal), "me").unwrap();
        drop(log);
        assert_eq!(LabelLog::open(&csv).unwrap().current().len(), 2);
    }

    #[test]
    fn a_labels_file_made_elsewhere_is_imported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("mine.csv");
        std::fs::write(&csv, "id,label\nx,1\ny,0\nz,\n").unwrap();
        let mut log = LabelLog::open(&csv).unwrap();
        assert_eq!(log.current().len(), 3);
        log.label(given("w", Verdict::Tidal), "me").unwrap();
        let read = read_label_file(&csv).unwrap();
        assert_eq!(read.len(), 4);
        assert_eq!(read["z"], None);
        std::fs::write(dir.path().join("bad.csv"), "id,label\nx,2\n").unwrap();
        let err = read_label_file(&dir.path().join("bad.csv")).unwrap_err();
        assert!(format!("{err:#}").contains("line 2 (id x)"), "{err:#}");
    }
}
