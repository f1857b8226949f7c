//! The objects the labelling page shows: ids, metadata and cached
//! embeddings, their current scores, and the queues that order them.

use anyhow::{ensure, Context};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tidalscope_io::embeddings::Embeddings;

/// The embedded objects.
pub struct Catalogue {
    /// Id of each row.
    pub ids: Vec<String>,
    /// Position of each row's object in the data source.
    pub index: Vec<usize>,
    /// Names of the metadata columns (ids.csv's, less index and id).
    pub meta_columns: Vec<String>,
    /// Metadata of each row.
    pub meta: Vec<Vec<String>>,
    /// D.
    pub dim: usize,
    /// `[N × D]` representations, as the encoder gave them (for the probe).
    pub vectors: Vec<f32>,
    /// The same rows scaled to unit length (for cosine similarity).
    pub unit: Vec<f32>,
    /// Row of each id.
    pub by_id: HashMap<String, usize>,
}

impl Catalogue {
    /// Builds the catalogue from an embed folder's contents.
    pub fn new(emb: Embeddings) -> anyhow::Result<Self> {
        let Embeddings { dim, vectors, ids, .. } = emb;
        let id_col = ids.require("id")?;
        let index_col = ids.require("index")?;
        let keep: Vec<usize> = (0..ids.columns.len()).filter(|&c| c != id_col && c != index_col).collect();
        let mut out = Self {
            ids: Vec::with_capacity(ids.rows.len()),
            index: Vec::with_capacity(ids.rows.len()),
            meta_columns: keep.iter().map(|&c| ids.columns[c].clone()).collect(),
            meta: Vec::with_capacity(ids.rows.len()),
            dim,
            unit: vectors.clone(),
            vectors,
            by_id: HashMap::with_capacity(ids.rows.len()),
        };
        for (row, r) in ids.rows.iter().enumerate() {
            let id = r.fields[id_col].clone();
            ensure!(
                out.by_id.insert(id.clone(), row).is_none(),
                "{}: id {id:?} appears twice; labels need unique ids",
                ids.path.display()
            );
            let index = r.fields[index_col]
                .parse()
                .with_context(|| format!("{}: line {}: bad index", ids.path.display(), r.line))?;
            out.ids.push(id);
            out.index.push(index);
            out.meta.push(keep.iter().map(|&c| r.fields[c].clone()).collect());
        }
        tidalscope_eval::search::normalise_rows(&mut out.unit, dim);
        Ok(out)
    }

    /// Keeps the metadata columns `names` off the page (e.g. a mock's true
    /// label, when testing oneself); an unknown name is an error.
    pub fn hide(&mut self, names: &[String]) -> anyhow::Result<()> {
        for name in names {
            let c = self.meta_columns.iter().position(|m| m == name).with_context(|| {
                format!("--hide {name}: no such column (there are: {})", self.meta_columns.join(", "))
            })?;
            self.meta_columns.remove(c);
            for m in &mut self.meta {
                m.remove(c);
            }
        }
        Ok(())
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Cosine similarity of every row to row `like`.
    pub fn similarity(&self, like: usize) -> Vec<f32> {
        let d = self.dim;
        let q = &self.unit[like * d..(like + 1) * d];
        self.unit.par_chunks_exact(d).map(|r| r.iter().zip(q).map(|(a, b)| a * b).sum()).collect()
    }
}

/// Scores of every object and where they came from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Scores {
    /// P(tidal) per row (empty: no scores yet).
    pub values: Vec<f32>,
    /// "classifier runs/clf", "linear probe on 40 labels", …
    pub source: String,
}

/// The queues a person can work through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Queue {
    /// Highest score first.
    Score,
    /// Score closest to 0.5 first (what the classifier is least sure of).
    Uncertain,
    /// Most similar to a chosen object first.
    Similar,
    /// A fixed random order (labels from it give unbiased estimates).
    Random,
}

impl std::str::FromStr for Queue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "score" => Queue::Score,
            "uncertain" => Queue::Uncertain,
            "similar" => Queue::Similar,
            "random" => Queue::Random,
            _ => return Err(format!("unknown queue {s:?}: score, uncertain, similar or random")),
        })
    }
}

/// Orders rows for `queue`: `skip` rows are left out, the first `limit`
/// of the rest returned. Score queues without scores fall back to
/// `random` (the caller says so).
pub fn order(
    cat: &Catalogue,
    scores: &Scores,
    random: &[u32],
    queue: Queue,
    like: Option<usize>,
    skip: &dyn Fn(usize) -> bool,
    limit: usize,
) -> Vec<usize> {
    let keyed = |key: Vec<f32>| -> Vec<usize> {
        let mut rows: Vec<usize> = (0..cat.len()).filter(|&r| !skip(r)).collect();
        // Ties broken by row so the order is stable between calls.
        let by = |a: &usize, b: &usize| key[*a].total_cmp(&key[*b]).then(a.cmp(b));
        if rows.len() > limit {
            rows.select_nth_unstable_by(limit, by);
            rows.truncate(limit);
        }
        rows.sort_unstable_by(by);
        rows
    };
    let scored = scores.values.len() == cat.len();
    match (queue, like) {
        (Queue::Score, _) if scored => keyed(scores.values.iter().map(|s| -s).collect()),
        (Queue::Uncertain, _) if scored => keyed(scores.values.iter().map(|s| (s - 0.5).abs()).collect()),
        (Queue::Similar, Some(like)) => {
            let mut key: Vec<f32> = cat.similarity(like).iter().map(|s| -s).collect();
            key[like] = f32::INFINITY;
            let mut rows = keyed(key);
            rows.retain(|&r| r != like);
            rows
        }
        _ => random.iter().map(|&r| r as usize).filter(|&r| !skip(r)).take(limit).collect(),
    }
}

/// A random permutation of `n` rows, fixed by `seed`.
pub fn random_order(n: usize, seed: u64) -> Vec<u32> {
    let mut rows: Vec<u32> = (0..n as u32).collect();
    tidalscope_core::Rng::new(seed).shuffle(&mut rows);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue(vectors: Vec<f32>, dim: usize) -> Catalogue {
        let n = vectors.len() / dim;
        let mut unit = vectors.clone();
        tidalscope_eval::search::normalise_rows(&mut unit, dim);
        Catalogue {
            ids: (0..n).map(|i| format!("o{i}")).collect(),
            index: (0..n).collect(),
            meta_columns: vec![],
            meta: vec![vec![]; n],
            dim,
            vectors,
            unit,
            by_id: (0..n).map(|i| (format!("o{i}"), i)).collect(),
        }
    }

    #[test]
    fn queues_order_by_score_doubt_similarity_and_skip_labelled_rows() {
        let cat = catalogue(vec![1.0, 0.0, 0.9, 0.1, 0.0, 1.0, -1.0, 0.0, 0.7, 0.7], 2);
        let scores = Scores { values: vec![0.2, 0.9, 0.55, 0.4, 0.99], source: "test".into() };
        let random = random_order(5, 3);
        let none = |_: usize| false;
        assert_eq!(order(&cat, &scores, &random, Queue::Score, None, &none, 10), [4, 1, 2, 3, 0]);
        assert_eq!(order(&cat, &scores, &random, Queue::Score, None, &none, 2), [4, 1]);
        assert_eq!(order(&cat, &scores, &random, Queue::Uncertain, None, &|r| r == 2, 2), [3, 0]);
        assert_eq!(order(&cat, &scores, &random, Queue::Similar, Some(0), &none, 10), [1, 4, 2, 3]);
        let r = order(&cat, &Scores::default(), &random, Queue::Score, None, &|r| r == 1, 10);
        let expect: Vec<usize> = random.iter().map(|&r| r as usize).filter(|&r| r != 1).collect();
        assert_eq!(r, expect);
        assert_eq!(random_order(5, 3), random, "fixed by the seed");
    }
}
