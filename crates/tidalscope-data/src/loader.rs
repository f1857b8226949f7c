//! A streaming loader: reads selected records of one or more sources in
//! order, decodes them in parallel, normalises them, shuffles them through a
//! bounded buffer and hands out batches — prefetching on a producer thread
//! while the consumer trains. Memory is bounded by the shuffle buffer and
//! the prefetch depth, whatever the dataset size; the order depends only on
//! the seed. Data that fit in memory once prepared can be collected
//! ([`collect_all`]) and replayed ([`replay`]) epoch after epoch in the very
//! same batches, without reading and preparing them again.

use crate::preprocess::PreprocessError;
use crate::split::ObjectRef;
use rayon::prelude::*;
use std::collections::HashMap;
use std::ops::ControlFlow;
use tidalscope_core::streams;
use tidalscope_core::{Cutout, Rng};
use tidalscope_io::source::{Record, Source};

/// One decoded, normalised object.
#[derive(Debug, Clone)]
pub struct Example {
    /// Which source and record, with its label (0 when unknown).
    pub object: ObjectRef,
    /// Record id.
    pub id: String,
    /// Record metadata (the source's metadata columns).
    pub meta: Vec<String>,
    /// Normalised pixels.
    pub image: Cutout,
    /// Pixels that were not finite before normalisation.
    pub non_finite: usize,
}

/// Loader settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Examples per batch.
    pub batch: usize,
    /// Shuffle buffer size (1 = no shuffling).
    pub shuffle_buffer: usize,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    /// Seed of the shuffle.
    pub seed: u64,
    /// Drop a last, incomplete batch.
    pub drop_last: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self { batch: 32, shuffle_buffer: 1024, prefetch: 4, seed: 0, drop_last: false }
    }
}

/// Errors of loading.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// A record could not be read or decoded.
    #[error(transparent)]
    Io(#[from] tidalscope_io::Error),
    /// A decoded image could not be prepared for the model.
    #[error("{path}: object {index} (id {id}): {why}")]
    Prepare {
        /// The source's path.
        path: String,
        /// Record index within the source.
        index: usize,
        /// Record id.
        id: String,
        /// Why. Not the error's `source`: the message already says it,
        /// and a chain of causes printed it twice.
        why: PreprocessError,
    },
}

/// Records decoded per parallel step.
const DECODE_CHUNK: usize = 64;

/// Prepares a decoded image of an object (binning, normalisation): returns
/// the image and its count of non-finite pixels, or why it cannot be used.
pub type Transform<'a> = &'a (dyn Fn(&Cutout, ObjectRef) -> Result<(Cutout, usize), PreprocessError> + Sync);

/// Runs `consume` on every batch of the selected objects. `selection`
/// lists the objects to read (None: every record of every source, label 0
/// when unknown); it is read in source order, then shuffled. Each image
/// goes through `transform`. `consume` returns `ControlFlow::Break(b)` to
/// stop the loader early; the result is then `Ok(Break(b))`, and
/// `Ok(Continue(()))` when every batch was consumed.
pub fn for_each_batch<F, B>(
    sources: &[&dyn Source],
    selection: Option<&[ObjectRef]>,
    transform: Transform,
    cfg: LoaderConfig,
    mut consume: F,
) -> Result<ControlFlow<B>, LoaderError>
where
    F: FnMut(Vec<Example>) -> ControlFlow<B>,
{
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Example>, LoaderError>>(cfg.prefetch.max(1));
    std::thread::scope(|scope| {
        scope.spawn(move || {
            if let Err(e) = produce(sources, selection, transform, cfg, &tx) {
                let _ = tx.send(Err(e));
            }
        });
        let mut result = Ok(ControlFlow::Continue(()));
        for batch in rx.iter() {
            match batch {
                Ok(b) => {
                    if let ControlFlow::Break(b) = consume(b) {
                        result = Ok(ControlFlow::Break(b));
                        break;
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Dropping the receiver makes the producer's next send fail, so it stops.
        drop(rx);
        result
    })
}

fn produce(
    sources: &[&dyn Source],
    selection: Option<&[ObjectRef]>,
    transform: Transform,
    cfg: LoaderConfig,
    tx: &std::sync::mpsc::SyncSender<Result<Vec<Example>, LoaderError>>,
) -> Result<(), LoaderError> {
    let mut batcher = Batcher::new(cfg);
    for (s, source) in sources.iter().enumerate() {
        // Which records of this source, with labels.
        let wanted: Option<HashMap<usize, u8>> =
            selection.map(|sel| sel.iter().filter(|o| o.source == s).map(|o| (o.index, o.label)).collect());
        if wanted.as_ref().is_some_and(|w| w.is_empty()) {
            continue;
        }
        let last = wanted.as_ref().map(|w| w.keys().copied().max().unwrap_or(0));
        let mut pending: Vec<(Record, u8)> = Vec::with_capacity(DECODE_CHUNK);
        let mut records = source.records(0)?;
        let mut exhausted = false;
        while !exhausted {
            match records.next() {
                None => exhausted = true,
                Some(rec) => {
                    let rec = rec?;
                    let index = rec.index;
                    match &wanted {
                        Some(w) => {
                            if let Some(&label) = w.get(&index) {
                                pending.push((rec, label));
                            }
                            // Past the last selected record: stop reading.
                            exhausted = last.is_some_and(|l| index >= l);
                        }
                        None => {
                            let label = rec.label.unwrap_or(0);
                            pending.push((rec, label));
                        }
                    }
                }
            }
            if pending.len() >= DECODE_CHUNK || (exhausted && !pending.is_empty()) {
                let decoded: Vec<Result<Example, LoaderError>> = std::mem::take(&mut pending)
                    .into_par_iter()
                    .map(|(rec, label)| {
                        let object = ObjectRef { source: s, index: rec.index, label };
                        let raw = rec.pixels.load()?;
                        let (image, non_finite) = transform(&raw, object).map_err(|why| LoaderError::Prepare {
                            path: sources[s].info().path.display().to_string(),
                            index: rec.index,
                            id: rec.id.clone(),
                            why,
                        })?;
                        Ok(Example { object, id: rec.id, meta: rec.meta, image, non_finite })
                    })
                    .collect();
                for ex in decoded {
                    if let Some(b) = batcher.push(ex?) {
                        if tx.send(Ok(b)).is_err() {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
    for b in batcher.finish() {
        if tx.send(Ok(b)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The shuffle buffer and batching, fed examples in input order: shared by
/// the streaming loader and [`replay`], so both give the same batches.
struct Batcher {
    rng: Rng,
    buffer: Vec<Example>,
    batch: Vec<Example>,
    cfg: LoaderConfig,
}

impl Batcher {
    fn new(cfg: LoaderConfig) -> Self {
        Self {
            rng: Rng::for_stream(cfg.seed, streams::LOADER_SHUFFLE),
            buffer: Vec::with_capacity(cfg.shuffle_buffer.max(1)),
            batch: Vec::with_capacity(cfg.batch),
            cfg,
        }
    }

    /// Adds the next example; returns a batch when one is full.
    fn push(&mut self, ex: Example) -> Option<Vec<Example>> {
        let out = if self.cfg.shuffle_buffer <= 1 {
            ex
        } else if self.buffer.len() < self.cfg.shuffle_buffer {
            self.buffer.push(ex);
            return None;
        } else {
            let k = self.rng.below(self.buffer.len() as u64) as usize;
            std::mem::replace(&mut self.buffer[k], ex)
        };
        self.batch.push(out);
        (self.batch.len() == self.cfg.batch).then(|| std::mem::take(&mut self.batch))
    }

    /// After the last example: the buffer's remaining batches, in random
    /// order, the last one short unless `drop_last`.
    fn finish(mut self) -> Vec<Vec<Example>> {
        let mut out = Vec::new();
        while !self.buffer.is_empty() {
            let k = self.rng.below(self.buffer.len() as u64) as usize;
            self.batch.push(self.buffer.swap_remove(k));
            if self.batch.len() == self.cfg.batch {
                out.push(std::mem::take(&mut self.batch));
            }
        }
        if !self.batch.is_empty() && !self.cfg.drop_last {
            out.push(self.batch);
        }
        out
    }
}

/// Every selected object, prepared by `transform`, in the order the loader
/// reads them (source order), for [`replay`]: what to keep in memory when
/// the prepared data fit, so that later epochs skip reading, binning and
/// normalising.
///
/// # Errors
/// As [`for_each_batch`].
pub fn collect_all(
    sources: &[&dyn Source],
    selection: Option<&[ObjectRef]>,
    transform: Transform,
) -> Result<Vec<Example>, LoaderError> {
    let cfg = LoaderConfig { batch: DECODE_CHUNK, shuffle_buffer: 1, prefetch: 2, seed: 0, drop_last: false };
    let mut all = Vec::new();
    // The consumer never breaks, so the flow is always Continue.
    let _: ControlFlow<()> = for_each_batch(sources, selection, transform, cfg, |b| {
        all.extend(b);
        ControlFlow::Continue(())
    })?;
    Ok(all)
}

/// Runs `consume` on the batches that [`for_each_batch`] would give for the
/// same objects and `cfg`, from examples already prepared ([`collect_all`]):
/// the same shuffle, batch for batch.
pub fn replay<F, B>(examples: &[Example], cfg: LoaderConfig, mut consume: F) -> ControlFlow<B>
where
    F: FnMut(Vec<Example>) -> ControlFlow<B>,
{
    let mut batcher = Batcher::new(cfg);
    for ex in examples {
        if let Some(b) = batcher.push(ex.clone()) {
            consume(b)?;
        }
    }
    for b in batcher.finish() {
        consume(b)?;
    }
    ControlFlow::Continue(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidalscope_io::npy::NpyWriter;
    use tidalscope_io::source::{open, OpenOptions};

    fn stack(dir: &std::path::Path, n: usize) -> Box<dyn Source> {
        let p = dir.join("s.npy");
        let mut w = NpyWriter::create(&p, &[n, 2, 2, 1]).unwrap();
        for i in 0..n {
            w.write(&[i as f32; 4]).unwrap();
        }
        w.finish().unwrap();
        open(&p, &OpenOptions::default()).unwrap()
    }

    fn order(src: &dyn Source, sel: Option<&[ObjectRef]>, cfg: LoaderConfig) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        let id = |c: &Cutout, _: ObjectRef| Ok((c.clone(), 0));
        let flow = for_each_batch(&[src], sel, &id, cfg, |b| {
            out.push(b.iter().map(|e| e.image.data()[0] as usize).collect());
            ControlFlow::<()>::Continue(())
        })
        .unwrap();
        assert!(flow.is_continue());
        out
    }

    #[test]
    fn a_break_stops_the_loader_and_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let src = stack(dir.path(), 100);
        let cfg = LoaderConfig { batch: 10, shuffle_buffer: 1, ..LoaderConfig::default() };
        let mut seen = 0;
        let id = |c: &Cutout, _: ObjectRef| Ok((c.clone(), 0));
        let flow = for_each_batch(&[src.as_ref()], None, &id, cfg, |b| {
            seen += b.len();
            if seen == 30 {
                ControlFlow::Break("enough")
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!((flow, seen), (ControlFlow::Break("enough"), 30));
    }

    #[test]
    fn an_image_that_cannot_be_prepared_names_its_source_object_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let src = stack(dir.path(), 20);
        let refuse = |c: &Cutout, _: ObjectRef| {
            if c.data()[0] == 13.0 {
                Err(PreprocessError::Mismatch("image has 1 band; the model expects 5".into()))
            } else {
                Ok((c.clone(), 0))
            }
        };
        let err =
            for_each_batch(
                &[src.as_ref()],
                None,
                &refuse,
                LoaderConfig::default(),
                |_| ControlFlow::<()>::Continue(()),
            )
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LoaderError::Prepare { index: 13, .. }), "{err:?}");
        assert!(msg.contains("s.npy") && msg.contains("object 13") && msg.contains("expects 5"), "{msg}");
        // The reason is in the message, not again as a cause after it.
        assert!(std::error::Error::source(&err).is_none());
    }

    #[test]
    fn every_object_once_in_a_seeded_order() {
        let dir = tempfile::tempdir().unwrap();
        let src = stack(dir.path(), 200);
        let cfg = LoaderConfig { batch: 16, shuffle_buffer: 50, seed: 7, ..LoaderConfig::default() };
        let a = order(src.as_ref(), None, cfg);
        assert_eq!(a.len(), 13);
        assert!(a[..12].iter().all(|b| b.len() == 16) && a[12].len() == 8);
        let mut flat: Vec<usize> = a.concat();
        assert_ne!(flat, (0..200).collect::<Vec<_>>(), "shuffled");
        assert_eq!(a, order(src.as_ref(), None, cfg), "same seed, same order");
        assert_ne!(a, order(src.as_ref(), None, LoaderConfig { seed: 8, ..cfg }));
        flat.sort();
        assert_eq!(flat, (0..200).collect::<Vec<_>>());
        // A bounded buffer only moves items a limited distance forward.
        let first = &a[0];
        assert!(first.iter().all(|&v| v < 50 + 16), "{first:?}");
    }

    #[test]
    fn replaying_collected_examples_gives_the_streamed_batches() {
        let dir = tempfile::tempdir().unwrap();
        let src = stack(dir.path(), 150);
        let sel: Vec<ObjectRef> = (0..150).step_by(2).map(|i| ObjectRef { source: 0, index: i, label: 1 }).collect();
        let id = |c: &Cutout, _: ObjectRef| Ok((c.clone(), 0));
        for sel in [None, Some(&sel[..])] {
            let all = collect_all(&[src.as_ref()], sel, &id).unwrap();
            assert_eq!(all.len(), if sel.is_some() { 75 } else { 150 });
            for (buffer, drop_last) in [(1, false), (40, false), (40, true), (1000, true)] {
                let cfg = LoaderConfig { batch: 16, shuffle_buffer: buffer, seed: 3, drop_last, prefetch: 2 };
                let mut replayed = Vec::new();
                let flow = replay(&all, cfg, |b| {
                    replayed.push(b.iter().map(|e| (e.image.data()[0] as usize, e.object.label)).collect::<Vec<_>>());
                    ControlFlow::<()>::Continue(())
                });
                assert!(flow.is_continue());
                let streamed: Vec<Vec<usize>> = order(src.as_ref(), sel, cfg);
                let labels = if sel.is_some() { 1 } else { 0 };
                let expect: Vec<Vec<(usize, u8)>> =
                    streamed.iter().map(|b| b.iter().map(|&i| (i, labels)).collect()).collect();
                assert_eq!(replayed, expect, "buffer {buffer}, drop_last {drop_last}");
            }
        }
        // A break stops the replay.
        let all = collect_all(&[src.as_ref()], None, &id).unwrap();
        let mut n = 0;
        let cfg = LoaderConfig { batch: 10, ..LoaderConfig::default() };
        let flow = replay(&all, cfg, |_| {
            n += 1;
            if n == 3 {
                ControlFlow::Break(n)
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(flow, ControlFlow::Break(3));
    }

    #[test]
    fn selection_reads_only_the_chosen_objects_with_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        let src = stack(dir.path(), 100);
        let sel: Vec<ObjectRef> = [3, 10, 57].iter().map(|&i| ObjectRef { source: 0, index: i, label: 1 }).collect();
        let cfg = LoaderConfig { batch: 2, shuffle_buffer: 1, ..LoaderConfig::default() };
        assert_eq!(order(src.as_ref(), Some(&sel), cfg), vec![vec![3, 10], vec![57]]);
        let drop = LoaderConfig { drop_last: true, ..cfg };
        assert_eq!(order(src.as_ref(), Some(&sel), drop), vec![vec![3, 10]]);
    }
}
