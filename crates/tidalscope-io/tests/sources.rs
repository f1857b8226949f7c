//! Every reader behind the `Source` abstraction, on small hand-made files,
//! including the bad inputs a user will feed it.

use std::path::Path;
use tidalscope_core::Cutout;
use tidalscope_io::fits::{write_hsc_cutout, HscCutoutMeta, StackWriter};
use tidalscope_io::npy::NpyWriter;
use tidalscope_io::source::{detect, open, Format, Layout, OpenOptions, Source};

fn images(src: &dyn Source) -> Vec<(String, Option<u8>, Cutout)> {
    src.records(0).unwrap().map(|r| r.unwrap()).map(|r| (r.id, r.label, r.pixels.load().unwrap())).collect()
}

fn err_of(src: &dyn Source) -> String {
    src.records(0)
        .unwrap()
        .find_map(|r| match r {
            Err(e) => Some(e.to_string()),
            Ok(r) => r.pixels.load().err().map(|e| e.to_string()),
        })
        .expect("an error")
}

fn meta(v: f32) -> HscCutoutMeta {
    HscCutoutMeta {
        filter: "HSC-G".into(),
        fluxmag0: 1e10,
        ra: 1.0,
        dec: 2.0,
        crpix: (2.0, 2.0),
        pixel_scale: 0.168 + v as f64 * 0.0,
    }
}

#[test]
fn npy_stacks_in_either_layout_and_dtype() {
    let dir = tempfile::tempdir().unwrap();
    // HWC float32 [2, 3, 4, 5]
    let p = dir.path().join("hwc.npy");
    let mut w = NpyWriter::create(&p, &[2, 3, 4, 5]).unwrap();
    let vals: Vec<f32> = (0..120).map(|v| v as f32).collect();
    w.write(&vals).unwrap();
    w.finish().unwrap();
    let src = open(&p, &OpenOptions::default()).unwrap();
    assert_eq!(src.info().format, Format::Npy);
    assert_eq!(src.info().shape, Some([5, 3, 4]));
    let imgs = images(src.as_ref());
    assert_eq!(imgs.len(), 2);
    // image 1, y=2, x=3, band 4 is HWC offset 60 + (2*4+3)*5+4
    assert_eq!(imgs[1].2.band(4)[2 * 4 + 3], (60 + 11 * 5 + 4) as f32);
    // reading from an offset streams only the rest
    let from1: Vec<_> = src.records(1).unwrap().map(|r| r.unwrap().index).collect();
    assert_eq!(from1, vec![1]);
    // CHW uint8, forced layout
    let p8 = dir.path().join("chw.npy");
    let mut bytes = tidalscope_io::npy::header("|u1", &[1, 3, 2, 2]);
    bytes.extend(0u8..12);
    std::fs::write(&p8, bytes).unwrap();
    let src = open(&p8, &OpenOptions { layout: Layout::Chw, ..OpenOptions::default() }).unwrap();
    let img = &images(src.as_ref())[0].2;
    assert_eq!(img.shape(), [3, 2, 2]);
    assert_eq!(img.band(2), &[8.0, 9.0, 10.0, 11.0]);
}

#[test]
fn every_npy_dtype_and_byte_order_gives_the_same_pixels_loaded_in_any_order() {
    // The same [3, 4, 5, 2] HWC stack as little- and big-endian float32
    // and as float64: all three must give every pixel of every image,
    // whichever order the records are loaded in (loaders read their own
    // bytes, possibly on several threads).
    let dir = tempfile::tempdir().unwrap();
    let shape = [3usize, 4, 5, 2];
    let vals: Vec<f32> = (0..120).map(|v| v as f32 * 0.25 - 7.0).collect();
    let mut stacks = Vec::new();
    for (name, descr) in [("le.npy", "<f4"), ("be.npy", ">f4"), ("f8.npy", "<f8")] {
        let p = dir.path().join(name);
        let mut b = tidalscope_io::npy::header(descr, &shape);
        for v in &vals {
            match descr {
                "<f4" => b.extend(v.to_le_bytes()),
                ">f4" => b.extend(v.to_be_bytes()),
                _ => b.extend((*v as f64).to_le_bytes()),
            }
        }
        std::fs::write(&p, b).unwrap();
        let src = open(&p, &OpenOptions::default()).unwrap();
        let mut records: Vec<_> = src.records(0).unwrap().map(|r| r.unwrap()).collect();
        records.reverse();
        let mut loaded: Vec<(usize, Cutout)> =
            records.into_iter().map(|r| (r.index, r.pixels.load().unwrap())).collect();
        loaded.sort_by_key(|(i, _)| *i);
        stacks.push(loaded.into_iter().map(|(_, c)| c).collect::<Vec<_>>());
    }
    let per = 4 * 5 * 2;
    for (i, img) in stacks[0].iter().enumerate() {
        assert_eq!(img.shape(), [2, 4, 5]);
        for y in 0..4 {
            for x in 0..5 {
                for b in 0..2 {
                    assert_eq!(img.band(b)[y * 5 + x], vals[i * per + (y * 5 + x) * 2 + b], "image {i}");
                }
            }
        }
    }
    assert_eq!(stacks[0], stacks[1], "big-endian float32");
    assert_eq!(stacks[0], stacks[2], "float64");
}

#[test]
fn bad_npy_files_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let complex = dir.path().join("c.npy");
    let mut b = tidalscope_io::npy::header("<c8", &[2, 4, 4, 1]);
    b.extend([0u8; 256]);
    std::fs::write(&complex, b).unwrap();
    let e = open(&complex, &OpenOptions::default()).err().unwrap().to_string();
    assert!(e.contains("c.npy") && e.contains("unsupported .npy dtype"), "{e}");
    let flat = dir.path().join("flat.npy");
    let mut b = tidalscope_io::npy::header("<f4", &[7]);
    b.extend([0u8; 28]);
    std::fs::write(&flat, b).unwrap();
    let e = open(&flat, &OpenOptions::default()).err().unwrap().to_string();
    assert!(e.contains("flat.npy") && e.contains("shape [7]"), "{e}");
    let short = dir.path().join("short.npy");
    let mut b = tidalscope_io::npy::header("<f4", &[10, 8, 8, 5]);
    b.extend([0u8; 100]);
    std::fs::write(&short, b).unwrap();
    let e = open(&short, &OpenOptions::default()).err().unwrap().to_string();
    assert!(e.contains("short.npy") && e.contains("truncated"), "{e}");
    // A file that shrinks after it was opened: the lost image is a named
    // error of that object, the others still load.
    let shrinks = dir.path().join("shrinks.npy");
    let mut b = tidalscope_io::npy::header("<f4", &[3, 4, 4, 1]);
    let data_start = b.len();
    b.extend([0u8; 3 * 64]);
    std::fs::write(&shrinks, &b).unwrap();
    let src = open(&shrinks, &OpenOptions::default()).unwrap();
    std::fs::OpenOptions::new().write(true).open(&shrinks).unwrap().set_len((data_start + 2 * 64) as u64).unwrap();
    let loaded: Vec<_> = src.records(0).unwrap().map(|r| r.unwrap().pixels.load()).collect();
    assert!(loaded[0].is_ok() && loaded[1].is_ok());
    let e = loaded[2].as_ref().unwrap_err().to_string();
    assert!(e.contains("shrinks.npy") && e.contains("image 2") && e.contains("truncated"), "{e}");
}

#[test]
fn fits_cubes_stacks_and_hsc_catalogues() {
    let dir = tempfile::tempdir().unwrap();
    // A stack of 3 cubes of 2 bands, 4×3, via the stack writer.
    let p = dir.path().join("stack.fits");
    let bands = vec!["g".to_string(), "r".to_string()];
    let mut w = StackWriter::create(&p, 3, [2, 3, 4], &bands).unwrap();
    for i in 0..3 {
        w.write(&(0..24).map(|k| (i * 100 + k) as f32).collect::<Vec<_>>()).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(detect(&p).unwrap(), Format::Fits);
    let src = open(&p, &OpenOptions::default()).unwrap();
    assert_eq!((src.info().len, src.info().shape, src.info().bands.clone()), (3, Some([2, 3, 4]), bands));
    let imgs = images(src.as_ref());
    assert_eq!(imgs[2].2.data()[5], 205.0);

    // HSC layout: one file per band, listed by a catalogue.
    for (k, b) in ["g", "r"].iter().enumerate() {
        for obj in 0..2 {
            let img: Vec<f32> = (0..9).map(|v| (obj * 1000 + k * 100 + v) as f32).collect();
            write_hsc_cutout(&dir.path().join(format!("o{obj}_{b}.fits")), 3, 3, &img, &[0; 9], &[1.0; 9], &meta(0.0))
                .unwrap();
        }
    }
    let csv = dir.path().join("cat.csv");
    std::fs::write(&csv, "id,label,file_g,file_r,ra\n7,1,o0_g.fits,o0_r.fits,10.5\n8,0,o1_g.fits,o1_r.fits,11.5\n")
        .unwrap();
    let src = open(&csv, &OpenOptions::default()).unwrap();
    assert_eq!(src.info().format, Format::Catalog);
    assert_eq!(src.info().bands, vec!["g", "r"]);
    assert_eq!(src.info().meta_columns, vec!["ra"]);
    assert_eq!(src.labels().unwrap(), vec![Some(1), Some(0)]);
    let imgs = images(src.as_ref());
    assert_eq!((imgs[1].0.as_str(), imgs[1].1), ("8", Some(0)));
    assert_eq!(imgs[1].2.band(1)[4], 1104.0);
    // HSC's own name for the ids' column, `object_id`, serves as `id`.
    let hsc = dir.path().join("hsc.csv");
    std::fs::write(&hsc, "object_id,file_g,file_r\n42,o0_g.fits,o0_r.fits\n").unwrap();
    let src = open(&hsc, &OpenOptions::default()).unwrap();
    assert_eq!(images(src.as_ref())[0].0, "42");
    assert!(src.info().meta_columns.is_empty());

    // Band columns in any order read in wavelength order (g first), as the
    // models' channels are; two columns of one band are refused.
    std::fs::write(&csv, "id,file_r,file_g\n7,o0_r.fits,o0_g.fits\n8,o1_r.fits,o1_g.fits\n").unwrap();
    let src = open(&csv, &OpenOptions::default()).unwrap();
    assert_eq!(src.info().bands, vec!["g", "r"]);
    let imgs = images(src.as_ref());
    assert_eq!((imgs[1].2.band(0)[4], imgs[1].2.band(1)[4]), (1004.0, 1104.0));
    std::fs::write(&csv, "id,file_HSC-R2,file_g,file_r\n7,o0_r.fits,o0_g.fits,o0_r.fits\n").unwrap();
    let e = open(&csv, &OpenOptions::default()).err().unwrap().to_string();
    assert!(e.contains("cat.csv") && e.contains("file_HSC-R2 and file_r are both band r"), "{e}");

    // A missing band file: that object's error names the row, id, column and file.
    std::fs::write(&csv, "id,file_g,file_r\n7,o0_g.fits,o0_r.fits\n9,o9_g.fits,o0_r.fits\n").unwrap();
    let src = open(&csv, &OpenOptions::default()).unwrap();
    let recs: Vec<_> = src.records(0).unwrap().map(|r| r.unwrap().pixels.load()).collect();
    assert!(recs[0].is_ok());
    let e = recs[1].as_ref().unwrap_err().to_string();
    assert!(e.contains("cat.csv") && e.contains("id 9") && e.contains("file_g") && e.contains("o9_g.fits"), "{e}");

    // Missing columns.
    std::fs::write(&csv, "name,file\nx,o0_g.fits\n").unwrap();
    let e = open(&csv, &OpenOptions::default()).err().unwrap().to_string();
    assert!(e.contains("cat.csv") && e.contains("missing column \"id\""), "{e}");
    std::fs::write(&csv, "id,path\nx,o0_g.fits\n").unwrap();
    let e = open(&csv, &OpenOptions::default()).err().unwrap().to_string();
    assert!(e.contains("missing column \"file\" or \"file_<band>\""), "{e}");
    std::fs::write(&csv, "id,label,file\nx,maybe,o0_g.fits\n").unwrap();
    let e = open(&csv, &OpenOptions::default()).err().unwrap().to_string();
    assert!(e.contains("line 2") && e.contains("\"maybe\" is not 0 or 1"), "{e}");
    // Outputs and label tables join on ids: a repeated or empty one is refused.
    std::fs::write(&csv, "id,file_g,file_r\n7,o0_g.fits,o0_r.fits\n8,o1_g.fits,o1_r.fits\n7,o1_g.fits,o1_r.fits\n")
        .unwrap();
    let e = open(&csv, &OpenOptions::default()).err().unwrap().to_string();
    assert!(e.contains("cat.csv") && e.contains("line 4: id \"7\" is already on line 2"), "{e}");
    std::fs::write(&csv, "id,file_g,file_r\n7,o0_g.fits,o0_r.fits\n,o1_g.fits,o1_r.fits\n").unwrap();
    let e = open(&csv, &OpenOptions::default()).err().unwrap().to_string();
    assert!(e.contains("cat.csv") && e.contains("line 3: empty \"id\""), "{e}");
}

#[test]
fn corrupt_fits_headers_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.fits");
    write_hsc_cutout(&good, 3, 3, &[1.0; 9], &[0; 9], &[1.0; 9], &meta(0.0)).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let check = |name: &str, b: Vec<u8>, want: &[&str]| {
        let p = dir.path().join(name);
        std::fs::write(&p, b).unwrap();
        let e = match open(&p, &OpenOptions { format: Some(Format::Fits), ..OpenOptions::default() }) {
            Err(e) => e.to_string(),
            Ok(s) => err_of(s.as_ref()),
        };
        for w in want {
            assert!(e.contains(w), "{name}: {e}");
        }
    };
    let mut binary = bytes.clone();
    binary[2880 + 85] = 0xC3; // a non-ASCII byte in the IMAGE header
    check("binary.fits", binary, &["binary.fits", "HDU 1", "non-ASCII"]);
    let mut bitpix = bytes.clone();
    let pos = bytes.windows(8).skip(2880).position(|w| w == b"BITPIX  ").unwrap() + 2880;
    bitpix[pos + 10..pos + 30].copy_from_slice(format!("{:>20}", 7).as_bytes());
    check("bitpix.fits", bitpix, &["bitpix.fits", "HDU 1", "invalid BITPIX 7"]);
    check("cut.fits", bytes[..2880 * 2 + 20].to_vec(), &["cut.fits", "HDU 1", "truncated"]);
    check("noend.fits", bytes[..2000].to_vec(), &["noend.fits", "HDU 0", "END"]);
    let mut notfits = bytes.clone();
    notfits[..6].copy_from_slice(b"SIMPLX");
    check("notfits.fits", notfits, &["notfits.fits", "not a FITS file"]);
}

#[test]
fn pictures_and_folders() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("a.png");
    // 2×1 RGB: left red, right blue
    tidalscope_io::png::write_rgb(&png, 2, 1, &[255, 0, 0, 0, 0, 255]).unwrap();
    let src = open(&png, &OpenOptions::default()).unwrap();
    assert_eq!(src.info().format, Format::Picture);
    assert_eq!(src.info().bands, vec!["R", "G", "B"]);
    let img = &images(src.as_ref())[0].2;
    assert_eq!(img.band(0), &[255.0, 0.0]);
    assert_eq!(img.band(2), &[0.0, 255.0]);
    std::fs::write(dir.path().join("b.png"), std::fs::read(&png).unwrap()).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let src = open(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(src.info().format, Format::Folder);
    let ids: Vec<String> = images(src.as_ref()).into_iter().map(|i| i.0).collect();
    assert_eq!(ids, vec!["a", "b"]);
    // Two files of one stem keep their whole names, so ids stay unique.
    let mut w = tidalscope_io::npy::NpyWriter::create(&dir.path().join("a.npy"), &[1, 2]).unwrap();
    w.write(&[0.0, 0.0]).unwrap();
    w.finish().unwrap();
    let mut w = tidalscope_io::npy::NpyWriter::create(&dir.path().join("a.png.npy"), &[1, 2]).unwrap();
    w.write(&[0.0, 0.0]).unwrap();
    w.finish().unwrap();
    let src = open(dir.path(), &OpenOptions::default()).unwrap();
    let ids: Vec<String> = src.records(0).unwrap().map(|r| r.unwrap().id).collect();
    assert_eq!(ids, vec!["a.npy", "a.png", "a.png.npy", "b"], "a.png.npy's stem is a.png's whole name");
    std::fs::remove_file(dir.path().join("a.npy")).unwrap();
    std::fs::remove_file(dir.path().join("a.png.npy")).unwrap();
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n garbage").unwrap();
    let e = open(&bad, &OpenOptions::default()).err().unwrap().to_string();
    assert!(e.contains("bad.png") && e.contains("cannot decode"), "{e}");
}

#[test]
fn npz_archives_with_labels_and_a_constant_label_override() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.npz");
    let file = std::fs::File::create(&p).unwrap();
    let mut z = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut img = tidalscope_io::npy::header("<f4", &[3, 2, 2, 1]);
    img.extend((0..12).flat_map(|v| (v as f32).to_le_bytes()));
    let mut lab = tidalscope_io::npy::header("<i8", &[3]);
    lab.extend([1i64, 0, 1].iter().flat_map(|v| v.to_le_bytes()));
    use std::io::Write;
    z.start_file("images.npy", opts).unwrap();
    z.write_all(&img).unwrap();
    z.start_file("labels.npy", opts).unwrap();
    z.write_all(&lab).unwrap();
    z.finish().unwrap();
    let src = open(&p, &OpenOptions::default()).unwrap();
    assert_eq!(src.info().format, Format::Npz);
    let imgs = images(src.as_ref());
    assert_eq!(imgs.iter().map(|i| i.1).collect::<Vec<_>>(), vec![Some(1), Some(0), Some(1)]);
    assert_eq!(imgs[2].2.data(), &[8.0, 9.0, 10.0, 11.0]);
    let tidal = open(&p, &OpenOptions { label: Some(1), ..OpenOptions::default() }).unwrap();
    assert_eq!(tidal.labels().unwrap(), vec![Some(1); 3]);
    assert!(images(tidal.as_ref()).iter().all(|i| i.1 == Some(1)));

    // Labels that do not match the images one to one are refused, not dropped.
    let short = dir.path().join("short.npz");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&short).unwrap());
    z.start_file("images.npy", opts).unwrap();
    z.write_all(&img).unwrap();
    let mut lab = tidalscope_io::npy::header("<i8", &[2]);
    lab.extend([1i64, 0].iter().flat_map(|v| v.to_le_bytes()));
    z.start_file("labels.npy", opts).unwrap();
    z.write_all(&lab).unwrap();
    z.finish().unwrap();
    let e = open(&short, &OpenOptions::default()).err().unwrap().to_string();
    assert!(e.contains("short.npz") && e.contains("labels.npy holds 2 labels for 3 images"), "{e}");
    // A column of labels, [n, 1], is one label per image too.
    let column = dir.path().join("column.npz");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&column).unwrap());
    z.start_file("images.npy", opts).unwrap();
    z.write_all(&img).unwrap();
    let mut lab = tidalscope_io::npy::header("<i8", &[3, 1]);
    lab.extend([0i64, 1, 1].iter().flat_map(|v| v.to_le_bytes()));
    z.start_file("labels.npy", opts).unwrap();
    z.write_all(&lab).unwrap();
    z.finish().unwrap();
    assert_eq!(open(&column, &OpenOptions::default()).unwrap().labels().unwrap(), vec![Some(0), Some(1), Some(1)]);
    let _ = Path::new("");
}

/// A FITS file whose bands are image extensions of one shape (one band per
/// HDU, as some pipelines and simulators write them) reads as one object
/// of all of them, named by EXTNAME (or FILTER); masks, weights and the
/// like beside one science image, the HSC `IMAGE` layout and images of
/// different shapes read as before: one band.
#[test]
fn bands_as_image_extensions_read_as_one_cube() {
    use tidalscope_io::fits::{self, structural_header, Data, Value};
    let d = tempfile::tempdir().unwrap();
    let axes = [4usize, 3];
    let plane = |b: usize| (0..12).map(|k| (b * 100 + k) as f32).collect::<Vec<f32>>();
    let planes: Vec<Vec<f32>> = (0..5).map(plane).collect();
    let write = |name: &str, hdus: &[(Option<&str>, &[usize], &[f32])]| {
        let mut all = vec![(structural_header(&Data::None, true), Data::None)];
        for (ext, axes, data) in hdus {
            let data = Data::F32 { axes, data };
            let mut h = structural_header(&data, false);
            if let Some(n) = ext {
                h.push("EXTNAME", Value::Str(n.to_string()), "");
            }
            all.push((h, data));
        }
        let p = d.path().join(name);
        fits::write(&p, &all).unwrap();
        p
    };
    let per_band: Vec<(Option<&str>, &[usize], &[f32])> =
        ["g", "r", "i", "z", "y"].iter().zip(&planes).map(|(b, p)| (Some(*b), &axes[..], &p[..])).collect();
    let src = open(&write("mef.fits", &per_band), &OpenOptions::default()).unwrap();
    assert_eq!(src.info().bands, ["g", "r", "i", "z", "y"]);
    assert!(src.info().dtype.contains("one band per HDU (5)"), "{}", src.info().dtype);
    let (id, _, cutout) = images(src.as_ref()).remove(0);
    assert_eq!(id, "mef");
    assert_eq!(cutout.data(), planes.concat().as_slice());
    // Unnamed planes (or a name twice): the default names, b0, b1, … for three.
    let unnamed: Vec<_> = per_band[..3].iter().map(|(_, a, p)| (None, *a, *p)).collect();
    let src = open(&write("plain.fits", &unnamed), &OpenOptions::default()).unwrap();
    assert_eq!(src.info().bands, ["b0", "b1", "b2"]);
    let twice: Vec<_> = per_band[..3].iter().map(|(_, a, p)| (Some("SCI"), *a, *p)).collect();
    let src = open(&write("twice.fits", &twice), &OpenOptions::default()).unwrap();
    assert_eq!(src.info().bands, ["b0", "b1", "b2"]);
    assert_eq!(images(src.as_ref())[0].2.data(), planes[..3].concat().as_slice());
    // One science image with its weight and mask: one band.
    let sci = [
        (Some("SCI"), &axes[..], &planes[0][..]),
        (Some("WHT"), &axes[..], &planes[1][..]),
        (Some("MSK"), &axes[..], &planes[2][..]),
    ];
    let src = open(&write("sci.fits", &sci), &OpenOptions::default()).unwrap();
    assert_eq!(src.info().bands.len(), 1);
    assert_eq!(images(src.as_ref())[0].2.data(), planes[0].as_slice());
    // Bands with their weights named per band: the weights left out.
    let weighted = [
        (Some("g"), &axes[..], &planes[0][..]),
        (Some("INVVAR_G"), &axes[..], &planes[1][..]),
        (Some("r"), &axes[..], &planes[2][..]),
        (Some("WHT-R"), &axes[..], &planes[3][..]),
    ];
    let src = open(&write("weighted.fits", &weighted), &OpenOptions::default()).unwrap();
    assert_eq!(src.info().bands, ["g", "r"]);
    assert_eq!(images(src.as_ref())[0].2.data(), [&planes[0][..], &planes[2][..]].concat().as_slice());
    // One image whose filter is in the primary header only (INHERIT).
    let mut primary = structural_header(&Data::None, true);
    primary.push("FILTER", Value::Str("HSC-G".into()), "");
    let data = Data::F32 { axes: &axes, data: &planes[0] };
    let mut image = structural_header(&data, false);
    image.push("EXTNAME", Value::Str("IMAGE".into()), "");
    let p = d.path().join("inherit.fits");
    fits::write(&p, &[(primary, Data::None), (image, data)]).unwrap();
    assert_eq!(open(&p, &OpenOptions::default()).unwrap().info().bands, ["HSC-G"]);
    // Images of different shapes: the first.
    let other = [2usize, 6];
    let mixed = [(Some("g"), &axes[..], &planes[0][..]), (Some("r"), &other[..], &planes[1][..])];
    let src = open(&write("mixed.fits", &mixed), &OpenOptions::default()).unwrap();
    assert_eq!(src.info().shape, Some([1, 3, 4]));
}

/// A cube's band names: tidalscope's `BAND1…`, the Legacy Surveys'
/// cutouts' 0-based `BAND0…` or their `BANDS = 'grz'`, else defaults.
#[test]
fn cube_band_names_follow_the_surveys_cards() {
    use tidalscope_io::fits::{self, structural_header, Data, Value};
    let d = tempfile::tempdir().unwrap();
    let pixels = vec![0f32; 3 * 4 * 4];
    let bands_of = |cards: &[(&str, &str)]| {
        let data = Data::F32 { axes: &[4, 4, 3], data: &pixels };
        let mut h = structural_header(&data, true);
        for (k, v) in cards {
            h.push(k, Value::Str(v.to_string()), "");
        }
        let p = d.path().join("cube.fits");
        fits::write(&p, &[(h, data)]).unwrap();
        open(&p, &OpenOptions::default()).unwrap().info().bands.clone()
    };
    assert_eq!(bands_of(&[("BAND1", "g"), ("BAND2", "r"), ("BAND3", "i")]), ["g", "r", "i"]);
    assert_eq!(bands_of(&[("BANDS", "grz"), ("BAND0", "g"), ("BAND1", "r"), ("BAND2", "z")]), ["g", "r", "z"]);
    assert_eq!(bands_of(&[("BANDS", "grz")]), ["g", "r", "z"]);
    assert_eq!(bands_of(&[("BANDS", "griz")]), ["b0", "b1", "b2"]);
    assert_eq!(bands_of(&[]), ["b0", "b1", "b2"]);
}

/// A FITS file compressed whole with gzip (`.fits.gz`) reads as the file
/// itself, alone or in a folder (id without both suffixes); a bzip2 one
/// is listed and refused by name, never skipped.
#[test]
fn gzipped_fits_files_read_and_bzip2_ones_are_refused_by_name() {
    use std::io::Write;
    use tidalscope_io::fits::{self, structural_header, Data};
    let d = tempfile::tempdir().unwrap();
    let pixels: Vec<f32> = (0..2 * 4 * 3).map(|v| v as f32 * 0.5).collect();
    let data = Data::F32 { axes: &[3, 4, 2], data: &pixels };
    let plain = d.path().join("plain.fits");
    fits::write(&plain, &[(structural_header(&data, true), data)]).unwrap();
    let dir = d.path().join("cutouts");
    std::fs::create_dir(&dir).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    std::fs::write(dir.join("a.fits.gz"), gz.finish().unwrap()).unwrap();
    let src = open(&dir.join("a.fits.gz"), &OpenOptions::default()).unwrap();
    assert_eq!(src.info().format, Format::Fits);
    let (id, _, cutout) = images(src.as_ref()).remove(0);
    assert_eq!((id.as_str(), cutout.data()), ("a", pixels.as_slice()));
    std::fs::write(dir.join("b.fits.bz2"), b"BZh91AY&SY").unwrap();
    let src = open(&dir, &OpenOptions::default()).unwrap();
    assert_eq!(src.info().len, 2);
    let e = err_of(src.as_ref());
    assert!(e.contains("b.fits.bz2") && e.contains("bzip2"), "{e}");
}

/// `BandOrder` puts every record's planes, and the band names, in the
/// order asked for.
#[test]
fn band_order_permutes_planes_and_names() {
    use tidalscope_io::fits::{self, structural_header, Data};
    use tidalscope_io::source::BandOrder;
    let d = tempfile::tempdir().unwrap();
    let pixels: Vec<f32> = (0..3 * 2 * 2).map(|v| v as f32).collect();
    let data = Data::F32 { axes: &[2, 2, 3], data: &pixels };
    let mut h = structural_header(&data, true);
    for (i, b) in ["z", "g", "r"].iter().enumerate() {
        h.push(&format!("BAND{}", i + 1), tidalscope_io::fits::Value::Str(b.to_string()), "");
    }
    let p = d.path().join("zgr.fits");
    fits::write(&p, &[(h, data)]).unwrap();
    let src = open(&p, &OpenOptions::default()).unwrap();
    let ordered = BandOrder::new(src.as_ref(), vec![1, 2, 0]);
    assert_eq!(ordered.info().bands, ["g", "r", "z"]);
    let (_, _, cutout) = images(&ordered).remove(0);
    assert_eq!(cutout.band(0), &pixels[4..8]);
    assert_eq!(cutout.band(1), &pixels[8..12]);
    assert_eq!(cutout.band(2), &pixels[0..4]);
}
