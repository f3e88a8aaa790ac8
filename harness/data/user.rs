//! Reading the user's own data, so that the same suites can run on real images or latents:
//! a folder of PNGs, a `.npy` array, a tensor in a `.safetensors` file, or a pytorch-fid /
//! ADM `.npz` of Fréchet statistics (`mu`, `sigma`). Nothing is ever downloaded.
//!
//! Arrays come back as rows: the first axis indexes samples, the rest is flattened (C order).

use std::io::Read;
use std::path::Path;

/// A 2-D array of f64: `rows` × `cols`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

fn err(p: &Path, msg: impl std::fmt::Display) -> String {
    format!("{}: {msg}", p.display())
}

fn as_rows(shape: &[usize], data: Vec<f64>) -> Array {
    let rows = shape.first().copied().unwrap_or(1);
    let cols = shape.iter().skip(1).product::<usize>().max(1);
    Array { rows: if shape.is_empty() { 1 } else { rows }, cols, data }
}

fn decode(bytes: &[u8], dtype: &str, count: usize) -> Result<Vec<f64>, String> {
    let need = |w: usize| {
        if bytes.len() < count * w {
            Err(format!("needs {} bytes of data, has {}", count * w, bytes.len()))
        } else {
            Ok(())
        }
    };
    match dtype {
        "f4" | "F32" => {
            need(4)?;
            Ok(bytes.chunks_exact(4).take(count).map(|c| f32::from_le_bytes(c.try_into().expect("4")) as f64).collect())
        }
        "f8" | "F64" => {
            need(8)?;
            Ok(bytes.chunks_exact(8).take(count).map(|c| f64::from_le_bytes(c.try_into().expect("8"))).collect())
        }
        // Half precision, as models save latents and features.
        "f2" | "F16" => {
            need(2)?;
            Ok(bytes.chunks_exact(2).take(count).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64()).collect())
        }
        "BF16" => {
            need(2)?;
            Ok(bytes.chunks_exact(2).take(count).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64()).collect())
        }
        // Pixels as saved images hold them (0–255, not rescaled).
        "u1" | "U8" => {
            need(1)?;
            Ok(bytes.iter().take(count).map(|b| f64::from(*b)).collect())
        }
        other => Err(format!(
            "unsupported dtype `{other}` (use float16, bfloat16 (safetensors), float32, float64 or uint8, little-endian)"
        )),
    }
}

/// Parse a `.npy` file's bytes (format 1.0–3.0, little-endian float16/32/64 or uint8, C order).
pub fn parse_npy(bytes: &[u8]) -> Result<Array, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().expect("4")) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = std::str::from_utf8(bytes.get(start..start + hlen).ok_or("truncated header")?)
        .map_err(|_| "header is not text")?;
    let field = |name: &str| -> Option<&str> {
        let i = header.find(&format!("'{name}'"))? + name.len() + 2;
        Some(header[i..].trim_start_matches([':', ' ']))
    };
    let descr =
        field("descr").and_then(|s| s.strip_prefix('\'')).and_then(|s| s.split('\'').next()).ok_or("no descr")?;
    if field("fortran_order").is_some_and(|s| s.starts_with("True")) {
        return Err("Fortran-ordered arrays are not supported (save with C order)".into());
    }
    let dtype = descr.trim_start_matches(['<', '|']);
    if descr.starts_with('>') {
        return Err("big-endian arrays are not supported".into());
    }
    let shape_txt =
        field("shape").and_then(|s| s.strip_prefix('(')).and_then(|s| s.split(')').next()).ok_or("no shape")?;
    let shape: Vec<usize> = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad shape `{shape_txt}`")))
        .collect::<Result<_, _>>()?;
    let count = shape.iter().product::<usize>();
    let data = decode(&bytes[start + hlen..], dtype, count)?;
    Ok(as_rows(&shape, data))
}

pub fn read_npy(p: &Path) -> Result<Array, String> {
    let bytes = std::fs::read(p).map_err(|e| err(p, e))?;
    parse_npy(&bytes).map_err(|e| err(p, e))
}

/// One named tensor of a `.safetensors` file (8-byte header length, JSON header, data).
pub fn read_safetensors(p: &Path, tensor: &str) -> Result<Array, String> {
    let bytes = std::fs::read(p).map_err(|e| err(p, e))?;
    let n =
        u64::from_le_bytes(bytes.get(..8).ok_or_else(|| err(p, "too short for safetensors"))?.try_into().expect("8"))
            as usize;
    let header: serde_json::Value =
        serde_json::from_slice(bytes.get(8..8 + n).ok_or_else(|| err(p, "truncated header"))?)
            .map_err(|e| err(p, e))?;
    let t = header.get(tensor).ok_or_else(|| {
        let names: Vec<&str> = header
            .as_object()
            .map(|o| o.keys().map(|k| k.as_str()).filter(|k| *k != "__metadata__").collect())
            .unwrap_or_default();
        err(p, format!("no tensor `{tensor}` (tensors: {})", names.join(", ")))
    })?;
    let dtype = t["dtype"].as_str().unwrap_or("");
    let shape: Vec<usize> = t["shape"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_u64().map(|x| x as usize)).collect())
        .unwrap_or_default();
    let off = t["data_offsets"].as_array().ok_or_else(|| err(p, "no data_offsets"))?;
    let (a, b) = (off[0].as_u64().unwrap_or(0) as usize, off[1].as_u64().unwrap_or(0) as usize);
    let data = bytes.get(8 + n + a..8 + n + b).ok_or_else(|| err(p, "data offsets out of range"))?;
    let count = shape.iter().product::<usize>();
    Ok(as_rows(&shape, decode(data, dtype, count).map_err(|e| err(p, e))?))
}

/// The `*.png` files directly in `dir`, sorted by name.
pub fn png_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    Ok(files)
}

/// A PNG's width and height, from its header alone.
pub fn png_size(f: &Path) -> Result<(u32, u32), String> {
    let file = std::fs::File::open(f).map_err(|e| err(f, e))?;
    let reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().map_err(|e| err(f, e))?;
    let info = reader.info();
    Ok((info.width, info.height))
}

/// One PNG as RGB values in [−1, 1], pixel by pixel (grey is repeated, alpha dropped), which is
/// the layout of the harness's template images; it must be `want` (width, height).
pub fn read_png(f: &Path, want: (u32, u32)) -> Result<Vec<f64>, String> {
    let file = std::fs::File::open(f).map_err(|e| err(f, e))?;
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().map_err(|e| err(f, e))?;
    let (w, h) = (reader.info().width, reader.info().height);
    if (w, h) != want {
        return Err(err(f, format!("is {w}×{h}, unlike the first image ({}×{})", want.0, want.1)));
    }
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(|e| err(f, e))?;
    let ch = info.color_type.samples();
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for px in buf[..info.buffer_size()].chunks(ch) {
        let rgb = match ch {
            1 | 2 => [px[0]; 3],
            _ => [px[0], px[1], px[2]],
        };
        out.extend(rgb.iter().map(|v| *v as f64 / 127.5 - 1.0));
    }
    Ok(out)
}

/// Every `*.png` in a folder (sorted by name) as rows of RGB values in [−1, 1]. All images
/// must have the same size.
pub fn read_png_folder(dir: &Path) -> Result<Array, String> {
    let files = png_files(dir)?;
    let first = files.first().ok_or_else(|| err(dir, "no .png files"))?;
    let size = png_size(first)?;
    let mut data = vec![];
    for f in &files {
        data.extend(read_png(f, size)?);
    }
    Ok(Array { rows: files.len(), cols: (size.0 * size.1 * 3) as usize, data })
}

/// One array from a `.npy`, an `.npz` (the array `name`, or its only one) or a `.safetensors`
/// file (the tensor `name`), by the file's extension.
pub fn read_array(p: &Path, name: Option<&str>) -> Result<Array, String> {
    let ext = p.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    match (ext.as_str(), name) {
        ("npy", _) => read_npy(p),
        ("safetensors", Some(n)) => read_safetensors(p, n),
        ("safetensors", None) => Err(err(p, "name the tensor to read (`tensor:`)")),
        ("npz", _) => {
            let file = std::fs::File::open(p).map_err(|e| err(p, e))?;
            let mut zip = zip::ZipArchive::new(file).map_err(|e| err(p, format!("not an .npz archive ({e})")))?;
            let names: Vec<String> =
                zip.file_names().filter_map(|f| f.ok()?.strip_suffix(".npy").map(String::from)).collect();
            let name = match name {
                Some(n) => n.to_string(),
                None if names.len() == 1 => names[0].clone(),
                None => return Err(err(p, format!("holds {} arrays ({}): name one", names.len(), names.join(", ")))),
            };
            let mut f = zip.by_name(&format!("{name}.npy")).map_err(|_| err(p, format!("has no `{name}` array")))?;
            let mut bytes = vec![];
            f.read_to_end(&mut bytes).map_err(|e| err(p, e))?;
            parse_npy(&bytes).map_err(|e| err(p, format!("{name}: {e}")))
        }
        _ => Err(err(p, "not a .npy, .npz or .safetensors file")),
    }
}

/// Fréchet statistics from a pytorch-fid / ADM `.npz` (arrays `mu` and `sigma`).
pub fn read_fid_stats(p: &Path) -> Result<(Vec<f64>, Array), String> {
    let file = std::fs::File::open(p).map_err(|e| err(p, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| err(p, format!("not an .npz archive ({e})")))?;
    let mut get = |name: &str| -> Result<Array, String> {
        let mut f = zip.by_name(&format!("{name}.npy")).map_err(|_| err(p, format!("has no `{name}` array")))?;
        let mut bytes = vec![];
        f.read_to_end(&mut bytes).map_err(|e| err(p, e))?;
        parse_npy(&bytes).map_err(|e| err(p, format!("{name}: {e}")))
    };
    let (mu, sigma) = (get("mu")?, get("sigma")?);
    let d = mu.data.len();
    if sigma.data.len() != d * d {
        return Err(err(p, format!("`sigma` has {} values, expected {d}×{d}", sigma.data.len())));
    }
    Ok((mu.data, Array { rows: d, cols: d, data: sigma.data }))
}

/// A `.npy` file (format 1.0, little-endian float64, C order) holding `data` with `shape`.
pub fn npy_bytes(shape: &[usize], data: &[f64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
    let shape_txt = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape_txt}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    data.iter().for_each(|v| out.extend(v.to_le_bytes()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip() {
        let a = parse_npy(&npy_bytes(&[2, 3], &[1., 2., 3., 4., 5., 6.])).unwrap();
        assert_eq!((a.rows, a.cols), (2, 3));
        assert_eq!(a.data[5], 6.0);
        assert!(parse_npy(b"garbage").is_err());
    }

    #[test]
    fn safetensors_tensor() {
        let header = br#"{"x":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend(header);
        for v in [1.0f32, 2.0, 3.0, 4.0] {
            b.extend(v.to_le_bytes());
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        std::fs::write(&p, b).unwrap();
        let a = read_safetensors(&p, "x").unwrap();
        assert_eq!((a.rows, a.cols, a.data[3]), (2, 2, 4.0));
        assert!(read_safetensors(&p, "y").unwrap_err().contains("tensors: x"));
    }

    #[test]
    fn half_precision_and_uint8_arrays_decode() {
        // 1.5 and −2 in f16 (0x3E00, 0xC000) and bf16 (0x3FC0, 0xC000); pixels stay 0–255.
        assert_eq!(decode(&[0x00, 0x3E, 0x00, 0xC0], "F16", 2).unwrap(), [1.5, -2.0]);
        assert_eq!(decode(&[0xC0, 0x3F, 0x00, 0xC0], "BF16", 2).unwrap(), [1.5, -2.0]);
        assert_eq!(decode(&[0, 128, 255], "u1", 3).unwrap(), [0.0, 128.0, 255.0]);
        assert!(decode(&[0, 1], "f2", 2).unwrap_err().contains("needs 4 bytes"));
        assert!(decode(&[0; 8], "i8", 1).unwrap_err().contains("uint8"));
    }

    #[test]
    fn npz_fid_stats() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.npz");
        let mut w = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        w.start_file("mu.npy", opts).unwrap();
        std::io::Write::write_all(&mut w, &npy_bytes(&[2], &[0.5, -0.5])).unwrap();
        w.start_file("sigma.npy", opts).unwrap();
        std::io::Write::write_all(&mut w, &npy_bytes(&[2, 2], &[1., 0., 0., 2.])).unwrap();
        w.finish().unwrap();
        let (mu, sigma) = read_fid_stats(&p).unwrap();
        assert_eq!(mu, vec![0.5, -0.5]);
        assert_eq!(sigma.data[3], 2.0);
    }
}
