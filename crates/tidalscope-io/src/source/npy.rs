//! NumPy `.npy` stacks and `.npz` archives, streamed image by image.

use super::{default_bands, Decode, Layout, Loaded, OpenOptions, Pixels, Record, Source, SourceInfo};
use crate::npy::{decode_into, read_header, NpyHeader};
use crate::{Error, Result};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use tidalscope_core::binning::bin_pixel_major;
use tidalscope_core::Cutout;

/// A `.npy` file (or one array of an `.npz`) of images.
pub struct NpySource {
    info: SourceInfo,
    path: PathBuf,
    header: NpyHeader,
    dims: [usize; 3],
    layout: Layout,
    /// Name of the image array inside an `.npz`.
    npz_entry: Option<String>,
    labels: Option<Vec<u8>>,
}

fn image_dims(path: &Path, shape: &[usize], layout: Layout) -> Result<(usize, [usize; 3], Layout)> {
    let (n, dims) = match shape.len() {
        4 => (shape[0], [shape[1], shape[2], shape[3]]),
        3 => (1, [shape[0], shape[1], shape[2]]),
        2 => (1, [shape[0], shape[1], 1]),
        _ => {
            return Err(Error::format(
                path,
                format!("array of shape {shape:?}: expected images [N,H,W,C] or [N,C,H,W], or one image [H,W,C]"),
            ))
        }
    };
    let layout = if shape.len() == 2 { Layout::Hwc } else { layout.resolve(dims) };
    Ok((n, dims, layout))
}

impl NpySource {
    /// Opens a `.npy` file.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Self> {
        let mut f = BufReader::new(std::fs::File::open(path).map_err(|e| Error::io(path, e))?);
        let header = read_header(&mut f, path)?;
        let (n, dims, layout) = image_dims(path, &header.shape, opts.layout)?;
        let file_len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        let need = header.data_offset + (header.element_count(path)? * header.dtype.size()) as u64;
        if file_len < need {
            return Err(Error::format(
                path,
                format!(
                    "truncated .npy: shape {:?} of {} needs {need} bytes, the file has {file_len}",
                    header.shape,
                    header.dtype.name()
                ),
            ));
        }
        Ok(Self::build(path, header, n, dims, layout, None, None))
    }

    fn build(
        path: &Path,
        header: NpyHeader,
        n: usize,
        dims: [usize; 3],
        layout: Layout,
        npz_entry: Option<String>,
        labels: Option<Vec<u8>>,
    ) -> Self {
        let (b, h, w) = layout.bhw(dims);
        let info = SourceInfo {
            path: path.to_path_buf(),
            format: if npz_entry.is_some() { super::Format::Npz } else { super::Format::Npy },
            len: n,
            bands: default_bands(b),
            shape: Some([b, h, w]),
            dtype: header.dtype.name().to_string(),
            meta_columns: Vec::new(),
            labelled: labels.is_some(),
        };
        Self { info, path: path.to_path_buf(), header, dims, layout, npz_entry, labels }
    }

    /// Opens the image array of an `.npz` archive: the entry named like the
    /// image key (`image`, `images`), or the only 3- or 4-D array. A 1-D
    /// `label`/`labels` array of the same length (or a column `[n, 1]`)
    /// gives labels; one of another length is refused.
    pub fn open_npz(path: &Path, opts: &OpenOptions) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut zip = zip::ZipArchive::new(file)
            .map_err(|e| Error::format(path, format!("not a valid .npz (zip) archive: {e}")))?;
        let names: Vec<String> = zip
            .file_names()
            .map(|n| n.map(|n| n.into_owned()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::format(path, format!("corrupt .npz: {e}")))?;
        let mut arrays = Vec::new();
        for name in &names {
            let mut entry = zip.by_name(name).map_err(|e| Error::format(path, format!("{name}: {e}")))?;
            let h = read_header(&mut entry, &path.join(name))?;
            arrays.push((name.clone(), h));
        }
        let key = &opts.image_key;
        let wanted = [format!("{key}.npy"), format!("{key}s.npy")];
        let image = arrays
            .iter()
            .find(|(n, _)| wanted.contains(n))
            .or_else(|| {
                let imgs: Vec<_> = arrays.iter().filter(|(_, h)| h.shape.len() >= 3).collect();
                if imgs.len() == 1 {
                    Some(imgs[0])
                } else {
                    None
                }
            })
            .ok_or_else(|| {
                Error::format(
                    path,
                    format!("no image array: expected {key}.npy or a single 3-/4-D array among {names:?}"),
                )
            })?
            .clone();
        let (n, dims, layout) = image_dims(path, &image.1.shape, opts.layout)?;
        let mut labels = None;
        for cand in ["label.npy", "labels.npy"] {
            let Some((_, h)) = arrays.iter().find(|(name, _)| name == cand) else { continue };
            // One label per image: `[n]` or a column `[n, 1]`. Another
            // length cannot be matched to the images (it was dropped
            // quietly, leaving a labelled set unlabelled); other shapes
            // (one-hot, say) are not read as labels.
            match h.shape.as_slice() {
                [m] | [m, 1] if *m == n => {}
                [m] | [m, 1] => {
                    return Err(Error::format(
                        path,
                        format!("{cand} holds {m} labels for {n} images; one label per image is needed"),
                    ))
                }
                _ => continue,
            }
            let mut entry = zip.by_name(cand).map_err(|e| Error::format(path, format!("{cand}: {e}")))?;
            let h = read_header(&mut entry, &path.join(cand))?;
            let mut bytes = vec![0u8; n * h.dtype.size()];
            entry.read_exact(&mut bytes).map_err(|_| Error::format(path, format!("{cand}: truncated")))?;
            let mut vals = vec![0f32; n];
            decode_into(&bytes, h.dtype, h.big_endian, &mut vals);
            labels = Some(
                vals.iter()
                    .enumerate()
                    .map(|(i, &v)| match v {
                        0.0 => Ok(0),
                        1.0 => Ok(1),
                        _ => Err(Error::format(path, format!("{cand}[{i}] = {v} is not 0 or 1"))),
                    })
                    .collect::<Result<Vec<u8>>>()?,
            );
        }
        Ok(Self::build(path, image.1, n, dims, layout, Some(image.0), labels))
    }
}

impl Source for NpySource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn labels(&self) -> Result<Vec<Option<u8>>> {
        Ok(match &self.labels {
            Some(l) => l.iter().map(|&v| Some(v)).collect(),
            None => vec![None; self.info.len],
        })
    }

    fn records(&self, start: usize) -> Result<Box<dyn Iterator<Item = Result<Record>> + Send + '_>> {
        let per = self.dims.iter().product::<usize>();
        let bytes_per = per * self.header.dtype.size();
        let path = self.path.clone();
        let file = path.display().to_string();
        let decoder = Decoder {
            dtype: self.header.dtype,
            big_endian: self.header.big_endian,
            layout: self.layout,
            dims: self.dims,
        };
        let record = move |i: usize, pixels: Pixels| Record {
            index: i,
            id: i.to_string(),
            label: self.labels.as_ref().map(|l| l[i]),
            meta: Vec::new(),
            file: file.clone(),
            pixels,
        };
        let Some(name) = &self.npz_entry else {
            // A plain .npy: each record reads its own bytes when it is
            // loaded, so loaders read as well as decode in parallel, and no
            // thread reads ahead of them.
            let f = std::sync::Arc::new(std::fs::File::open(&self.path).map_err(|e| Error::io(&self.path, e))?);
            let data_offset = self.header.data_offset;
            return Ok(Box::new((start..self.info.len).map(move |i| {
                let read = NpyRead {
                    file: f.clone(),
                    path: path.clone(),
                    offset: data_offset + (i * bytes_per) as u64,
                    len: bytes_per,
                    index: i,
                    decoder,
                };
                Ok(record(i, Pixels::Decoder(Box::new(read))))
            })));
        };
        let mut reader = NpzStream::spawn(&self.path, name, self.header.data_offset + (start * bytes_per) as u64)?;
        Ok(Box::new((start..self.info.len).map(move |i| {
            let mut bytes = vec![0u8; bytes_per];
            reader
                .read_exact(&mut bytes)
                .map_err(|_| Error::format(&path, format!("image {i}: data ends early (truncated file)")))?;
            // Unzipping is sequential; decoding and reordering the pixels are
            // left to whoever loads the record, so loaders do them in parallel.
            let path = path.clone();
            Ok(record(i, Pixels::Deferred(Box::new(move || decoder.cutout(&bytes, &path, i)))))
        })))
    }
}

thread_local! {
    /// Each loader thread's buffer for one record's bytes, reused from
    /// record to record: a fresh buffer per image costs more in page
    /// faults than the copy itself.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The same for a pixel-major record's decoded values.
    static VALUES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One record of a plain `.npy`, read from its own offset when it is
/// loaded, so loaders read as well as decode in parallel.
struct NpyRead {
    file: std::sync::Arc<std::fs::File>,
    path: PathBuf,
    offset: u64,
    len: usize,
    index: usize,
    decoder: Decoder,
}

impl NpyRead {
    /// Fills `buf` with the record's bytes.
    fn read_into(&self, buf: &mut [u8]) -> Result<()> {
        read_exact_at(&self.file, buf, self.offset).map_err(|e| match e.kind() {
            // The length was checked on opening: the file has shrunk since.
            std::io::ErrorKind::UnexpectedEof => {
                Error::format(&self.path, format!("image {}: data ends early (truncated file)", self.index))
            }
            _ => Error::io(&self.path, e),
        })
    }
}

impl Decode for NpyRead {
    fn cutout(self: Box<Self>) -> Result<Cutout> {
        SCRATCH.with_borrow_mut(|bytes| {
            bytes.resize(self.len, 0);
            self.read_into(bytes)?;
            self.decoder.cutout(bytes, &self.path, self.index)
        })
    }

    fn binned(self: Box<Self>, k: usize) -> Result<Loaded> {
        let Decoder { dtype, big_endian, layout, dims: [h, w, bands] } = self.decoder;
        // Little-endian float32, pixel-major, on a little-endian machine:
        // the bytes are the values, read straight into a float buffer and
        // binned without reordering the image first.
        let direct = dtype == crate::npy::Dtype::F32
            && !big_endian
            && cfg!(target_endian = "little")
            && layout != Layout::Chw
            && self.len == 4 * h * w * bands;
        if !direct {
            return self.cutout().map(Loaded::Whole);
        }
        VALUES.with_borrow_mut(|vals| {
            vals.resize(h * w * bands, 0.0);
            self.read_into(bytemuck::cast_slice_mut(vals))?;
            match bin_pixel_major(vals, h, w, bands, k) {
                Some(b) => Ok(Loaded::Binned(b, [bands, h, w])),
                None => Cutout::from_hwc(h, w, bands, vals)
                    .map(Loaded::Whole)
                    .map_err(|e| Error::format(&self.path, format!("image {}: {e}", self.index))),
            }
        })
    }
}

/// Fills `buf` from `offset` of `f` without moving a shared cursor, so
/// several threads can read one file at once.
fn read_exact_at(f: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(f, buf, offset)
    }
    #[cfg(not(unix))]
    {
        let (mut done, mut at) = (0, offset);
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_read(f, &mut buf[done..], at)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
            at += n as u64;
        }
        Ok(())
    }
}

/// How one record's bytes become an image.
#[derive(Debug, Clone, Copy)]
struct Decoder {
    dtype: crate::npy::Dtype,
    big_endian: bool,
    layout: Layout,
    dims: [usize; 3],
}

impl Decoder {
    fn cutout(&self, bytes: &[u8], path: &Path, i: usize) -> Result<Cutout> {
        let per = self.dims.iter().product::<usize>();
        let shape_error = |e: tidalscope_core::ShapeError| Error::format(path, format!("image {i}: {e}"));
        if self.layout == Layout::Chw {
            let mut vals = vec![0f32; per];
            decode_into(bytes, self.dtype, self.big_endian, &mut vals);
            return Cutout::from_chw(self.dims[0], self.dims[1], self.dims[2], vals).map_err(shape_error);
        }
        let [h, w, bands] = self.dims;
        if self.dtype == crate::npy::Dtype::F32 && !self.big_endian && bytes.len() == 4 * per && per > 0 {
            // The common case (little-endian float32, pixel-major) is
            // decoded straight into the band planes.
            let mut out = Cutout::zeros(bands, h, w);
            for (b, plane) in out.data_mut().chunks_exact_mut(h * w).enumerate() {
                for (o, px) in plane.iter_mut().zip(bytes.chunks_exact(4 * bands)) {
                    *o = f32::from_le_bytes(px[4 * b..4 * b + 4].try_into().expect("4 bytes"));
                }
            }
            return Ok(out);
        }
        // Other pixel-major values are decoded into a reused buffer, then
        // reordered: that saves a second image-sized allocation per record.
        VALUES.with_borrow_mut(|vals| {
            vals.resize(per, 0.0);
            decode_into(bytes, self.dtype, self.big_endian, vals);
            Cutout::from_hwc(self.dims[0], self.dims[1], self.dims[2], vals).map_err(shape_error)
        })
    }
}

/// The bytes of one zip entry, read on a helper thread: zip entries borrow
/// their archive, which an iterator handed to the caller cannot hold. A
/// bounded channel keeps memory constant.
struct NpzStream {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl NpzStream {
    fn spawn(path: &Path, name: &str, skip: u64) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| Error::format(path, e.to_string()))?;
        zip.by_name(name).map_err(|e| Error::format(path, format!("{name}: {e}")))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let name = name.to_string();
        std::thread::spawn(move || {
            let mut entry = match zip.by_name(&name) {
                Ok(e) => e,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e)));
                    return;
                }
            };
            if let Err(e) = std::io::copy(&mut (&mut entry).take(skip), &mut std::io::sink()) {
                let _ = tx.send(Err(e));
                return;
            }
            loop {
                let mut buf = vec![0u8; 1 << 20];
                match entry.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.send(Ok(buf)).is_err() {
                            return; // the reader is gone
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        Ok(Self { rx, chunk: Vec::new(), pos: 0 })
    }
}

impl Read for NpzStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
