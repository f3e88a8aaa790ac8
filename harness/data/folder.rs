//! The user's own data for training: a folder of PNGs, or a folder of class subfolders of PNGs
//! (the ImageFolder layout: each subfolder, by sorted name, is a class); or an array of samples
//! (images or latents) in a `.npy`, `.npz` or `.safetensors` file, with optional class labels.
//!
//! Such data has no closed-form distribution, so what the harness scores against the exact
//! denoiser (the excess error and its noise bands, exact alignment) is unavailable on it, and
//! the checks that read those say so. In their place: the held-out denoising loss, and FD of a
//! model's samples against held-out images, both on the last `holdout` images of each class (by
//! file name), which training never sees.

use super::user::{png_files, png_size, read_array, read_png};
use crate::seed::{substream, Rng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Most images read, and most values held (each an f64): about 2 GiB.
pub const MAX_IMAGES: usize = 200_000;
pub const MAX_VALUES: usize = 1 << 28;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FolderSpec {
    /// The folder, relative to the suite file (or absolute).
    pub path: String,
    /// Images held out per class (the last ones by file name): the reference for FD and for
    /// the held-out loss.
    pub holdout: usize,
    /// Hash of the images' names and bytes, computed when the suite loads (over anything a suite
    /// writes here): part of every case's content hash, so edited images are trained on again.
    #[serde(default)]
    #[schemars(skip)]
    pub fingerprint: String,
    /// `path` resolved against the suite's folder when it loads.
    #[serde(skip)]
    #[schemars(skip)]
    pub resolved: PathBuf,
}

/// The images by class: a flat folder is one class.
fn classes(dir: &Path) -> Result<Vec<Vec<PathBuf>>, String> {
    let flat = png_files(dir)?;
    if !flat.is_empty() {
        return Ok(vec![flat]);
    }
    let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subs.sort();
    let per: Vec<Vec<PathBuf>> = subs.iter().map(|d| png_files(d)).collect::<Result<_, _>>()?;
    let per: Vec<Vec<PathBuf>> = per.into_iter().filter(|f| !f.is_empty()).collect();
    if per.is_empty() {
        return Err(format!("{}: no .png files, and no subfolders of them", dir.display()));
    }
    Ok(per)
}

/// What a folder or a file of the user's data can get wrong before it is read.
fn source_problems(path: &str, holdout: usize, what: &str, item: &str) -> Vec<(String, String)> {
    let mut p = vec![];
    if path.trim().is_empty() {
        p.push(("path".into(), format!("the {what}'s path is empty")));
    }
    if holdout == 0 {
        p.push(("holdout".into(), format!("hold out at least one {item} per class (the reference for FD)")));
    }
    p
}

impl FolderSpec {
    pub fn validate(&self) -> Vec<(String, String)> {
        source_problems(&self.path, self.holdout, "folder", "image")
    }

    /// Resolve `path` against `base` (the suite's folder), check the images' count, size and
    /// memory before reading any, and hash them.
    pub fn resolve(&mut self, base: &Path) -> Result<(), String> {
        let dir = base.join(&self.path);
        if !dir.is_dir() {
            return Err(format!("{} is not a folder (`path` is relative to the suite file)", dir.display()));
        }
        let per = classes(&dir)?;
        let count: usize = per.iter().map(Vec::len).sum();
        let (w, h) = png_size(&per[0][0])?;
        let values = count.saturating_mul(w as usize * h as usize * 3);
        if count > MAX_IMAGES || values > MAX_VALUES {
            return Err(format!(
                "{}: {count} images of {w}×{h} would hold {values} values; the limit is {MAX_IMAGES} images and {MAX_VALUES} values",
                dir.display()
            ));
        }
        if let Some(c) = per.iter().position(|f| f.len() <= self.holdout) {
            return Err(format!(
                "{}: class {c} has {} images, not more than the {} held out",
                dir.display(),
                per[c].len(),
                self.holdout
            ));
        }
        let mut h = blake3::Hasher::new();
        for f in per.iter().flatten() {
            let rel = f.strip_prefix(&dir).unwrap_or(f);
            h.update(rel.to_string_lossy().as_bytes());
            h.update(&std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?);
        }
        self.fingerprint = h.finalize().to_hex()[..32].to_string();
        self.resolved = dir;
        Ok(())
    }

    /// Read the images (after [`FolderSpec::resolve`]).
    pub fn load(&self) -> Result<Images, String> {
        if self.resolved.as_os_str().is_empty() {
            return Err("the image folder was not resolved when the suite loaded".into());
        }
        let per = classes(&self.resolved)?;
        let size = png_size(&per[0][0])?;
        let dim = (size.0 * size.1 * 3) as usize;
        let mut im = Images { dim, classes: per.len(), train: vec![], by_class: vec![], heldout: vec![] };
        for files in &per {
            let split = files.len() - self.holdout.min(files.len());
            let mut train = vec![];
            let mut held = vec![];
            for (i, f) in files.iter().enumerate() {
                let px = read_png(f, size)?;
                if i < split {
                    train.push(im.train.len() / dim);
                    im.train.extend(px);
                } else {
                    held.extend(px);
                }
            }
            im.by_class.push(train);
            im.heldout.push(held);
        }
        Ok(im)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArraySpec {
    /// The file, relative to the suite file (or absolute): its first axis indexes samples, the
    /// rest is one sample, flattened in C order (image models read it as height × width ×
    /// channels). Values are used as stored: convert uint8 pixels to the model's range first.
    pub path: String,
    /// The array's name in an `.npz` (optional when it holds one) or a `.safetensors` file.
    #[serde(default)]
    pub tensor: Option<String>,
    /// An array of one integer class label per sample, in the same file; none: one class.
    #[serde(default)]
    pub labels: Option<String>,
    /// Samples held out per class (the last ones): the reference for FD and the held-out loss.
    pub holdout: usize,
    /// Hash of the file's bytes, computed when the suite loads (see [`FolderSpec`]).
    #[serde(default)]
    #[schemars(skip)]
    pub fingerprint: String,
    #[serde(skip)]
    #[schemars(skip)]
    pub resolved: PathBuf,
}

impl ArraySpec {
    pub fn validate(&self) -> Vec<(String, String)> {
        source_problems(&self.path, self.holdout, "file", "sample")
    }

    /// Resolve `path` against `base`, refuse a file too large to hold, and hash it.
    pub fn resolve(&mut self, base: &Path) -> Result<(), String> {
        (self.fingerprint, self.resolved) = hash_file(base, &self.path)?;
        Ok(())
    }

    /// Read the samples and labels (after [`ArraySpec::resolve`]).
    pub fn load(&self) -> Result<Images, String> {
        if self.resolved.as_os_str().is_empty() {
            return Err("the data file was not resolved when the suite loaded".into());
        }
        let x = read_array(&self.resolved, self.tensor.as_deref())?;
        let labels = match &self.labels {
            None => vec![0; x.rows],
            Some(name) => {
                let l = read_array(&self.resolved, Some(name))?;
                if l.data.len() != x.rows {
                    return Err(format!("`{name}` has {} labels for {} samples", l.data.len(), x.rows));
                }
                let bad = l.data.iter().find(|v| v.fract() != 0.0 || **v < 0.0 || **v > 1e6);
                if let Some(v) = bad {
                    return Err(format!("`{name}`: labels are class indices (0, 1, …), not {v}"));
                }
                l.data.iter().map(|v| *v as usize).collect()
            }
        };
        Images::from_rows(x.cols, &x.data, &labels, self.holdout)
    }
}

/// `path` resolved against `base`, refused when too large to hold, and its hash.
fn hash_file(base: &Path, path: &str) -> Result<(String, PathBuf), String> {
    let file = base.join(path);
    let meta = std::fs::metadata(&file)
        .map_err(|e| format!("{}: {e} (`path` is relative to the suite file)", file.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", file.display()));
    }
    // At least one byte a value (uint8), held as 8.
    if meta.len() > MAX_VALUES as u64 {
        return Err(format!("{}: {} bytes could hold more than {MAX_VALUES} values", file.display(), meta.len()));
    }
    let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok((blake3::hash(&bytes).to_hex()[..32].to_string(), file))
}

/// Most features an FD may be measured in: its covariance is features × features.
pub const MAX_FD_FEATURES: usize = 4096;

/// A linear feature map the user gives for FD on their data: a d × k array (d the values of one
/// sample, k features, at most [`MAX_FD_FEATURES`]), e.g. a PCA basis of their images or the
/// first layer of a frozen encoder. FD is then measured between x·W of samples and references.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectionSpec {
    /// The `.npy`, `.npz` or `.safetensors` file, relative to the suite file (or absolute).
    pub path: String,
    /// The array's name in an `.npz` (optional when it holds one) or a `.safetensors` file.
    #[serde(default)]
    pub tensor: Option<String>,
    /// Hash of the file's bytes, computed when the suite loads (see [`FolderSpec`]).
    #[serde(default)]
    #[schemars(skip)]
    pub fingerprint: String,
    #[serde(skip)]
    #[schemars(skip)]
    pub resolved: PathBuf,
}

impl ProjectionSpec {
    pub fn resolve(&mut self, base: &Path) -> Result<(), String> {
        (self.fingerprint, self.resolved) = hash_file(base, &self.path)?;
        Ok(())
    }

    /// The map's d × k values (row-major) and k, for samples of `d` values.
    pub fn load(&self, d: usize) -> Result<(Vec<f64>, usize), String> {
        let a = read_array(&self.resolved, self.tensor.as_deref())?;
        let name = self.resolved.display();
        if a.rows != d {
            return Err(format!("{name}: the projection has {} rows; the samples have {d} values", a.rows));
        }
        if a.cols > MAX_FD_FEATURES {
            return Err(format!("{name}: {} features; FD takes at most {MAX_FD_FEATURES}", a.cols));
        }
        Ok((a.data, a.cols))
    }
}

/// Images in memory: the training split (row-major, `dim` values each) with its rows per class,
/// and the held-out images per class.
#[derive(Clone, Debug)]
pub struct Images {
    pub dim: usize,
    pub classes: usize,
    train: Vec<f64>,
    by_class: Vec<Vec<usize>>,
    heldout: Vec<Vec<f64>>,
}

impl Images {
    /// Samples (`dim` values each) with their classes; the last `holdout` of each class held out.
    pub fn from_rows(dim: usize, data: &[f64], labels: &[usize], holdout: usize) -> Result<Images, String> {
        let classes = labels.iter().max().map_or(1, |m| m + 1);
        let mut im =
            Images { dim, classes, train: vec![], by_class: vec![vec![]; classes], heldout: vec![vec![]; classes] };
        for c in 0..classes {
            let rows: Vec<usize> = (0..labels.len()).filter(|i| labels[*i] == c).collect();
            if holdout > 0 && rows.len() <= holdout {
                return Err(format!("class {c} has {} samples, not more than the {holdout} held out", rows.len()));
            }
            let split = rows.len() - holdout;
            for (k, r) in rows.iter().enumerate() {
                let x = &data[r * dim..][..dim];
                if k < split {
                    im.by_class[c].push(im.train.len() / dim);
                    im.train.extend_from_slice(x);
                } else {
                    im.heldout[c].extend_from_slice(x);
                }
            }
        }
        Ok(im)
    }

    /// Draw training images `first .. first + n` of the stream `seed`, uniformly (of class
    /// `class[i]` when given), each from its own substream as the mixtures draw theirs.
    pub fn sample(&self, seed: u64, first: usize, n: usize, class: Option<&[usize]>) -> (Vec<f64>, Vec<usize>) {
        let mut xs = Vec::with_capacity(n * self.dim);
        let mut cs = Vec::with_capacity(n);
        let total: usize = self.by_class.iter().map(Vec::len).sum();
        for i in 0..n {
            let mut rng = Rng::new(substream(seed, (first + i) as u64));
            let (c, row) = match class {
                Some(c) => {
                    let rows = &self.by_class[c[i] % self.classes];
                    (c[i] % self.classes, rows[rng.below(rows.len())])
                }
                None => {
                    let (mut k, mut c) = (rng.below(total), 0);
                    while k >= self.by_class[c].len() {
                        k -= self.by_class[c].len();
                        c += 1;
                    }
                    (c, self.by_class[c][k])
                }
            };
            xs.extend_from_slice(&self.train[row * self.dim..][..self.dim]);
            cs.push(c);
        }
        (xs, cs)
    }

    /// `n` held-out images in order, cycling: image i of class `class[i]` when given, else
    /// through every held-out image class by class.
    pub fn heldout(&self, n: usize, class: Option<&[usize]>) -> (Vec<f64>, Vec<usize>) {
        let all: Vec<(usize, usize)> =
            (0..self.classes).flat_map(|c| (0..self.heldout[c].len() / self.dim).map(move |k| (c, k))).collect();
        let mut next = vec![0usize; self.classes];
        let mut xs = Vec::with_capacity(n * self.dim);
        let mut cs = Vec::with_capacity(n);
        for i in 0..n {
            let (c, k) = match class {
                Some(cl) => {
                    let c = cl[i] % self.classes;
                    next[c] += 1;
                    (c, (next[c] - 1) % (self.heldout[c].len() / self.dim))
                }
                None => all[i % all.len()],
            };
            xs.extend_from_slice(&self.heldout[c][k * self.dim..][..self.dim]);
            cs.push(c);
        }
        (xs, cs)
    }

    /// Held-out images in all, over the classes.
    pub fn heldout_count(&self) -> usize {
        self.heldout.iter().map(|h| h.len() / self.dim).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_by_class_with_the_last_held_out() {
        // Six samples of two classes (labels 0 1 0 1 0 1), one value each: 0 … 5.
        let data: Vec<f64> = (0..6).map(f64::from).collect();
        let im = Images::from_rows(1, &data, &[0, 1, 0, 1, 0, 1], 1).unwrap();
        assert_eq!(im.classes, 2);
        assert_eq!(im.heldout(2, Some(&[0, 1])).0, vec![4.0, 5.0]);
        // Conditional draws keep to their class's training rows.
        let (x, c) = im.sample(3, 0, 50, Some(&[1; 50]));
        assert!(x.iter().all(|v| *v == 1.0 || *v == 3.0) && c.iter().all(|c| *c == 1));
        assert!(Images::from_rows(1, &data, &[0, 1, 0, 1, 0, 1], 3).is_err(), "nothing left to train on");
    }
}
