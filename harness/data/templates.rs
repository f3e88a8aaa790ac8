//! Template-mixture images (docs/methods.md §1.1, T2): every combination of shape × colour ×
//! position × size rendered on a black background, plus isotropic pixel noise. The image
//! distribution is therefore exactly a Gaussian mixture in pixel space, so the denoiser and
//! the class posterior of a "prompt" (shape, colour) are exact.

use super::Gmm;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Square,
    Disk,
    Triangle,
    Cross,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// Image side in pixels (8 to 32).
    pub size: usize,
    pub shapes: Vec<Shape>,
    /// RGB colours in [−1, 1] (the background is −1).
    pub colours: Vec<[f64; 3]>,
    /// Positions on a `grid` × `grid` lattice of cells.
    pub grid: usize,
    /// Shape radii as fractions of a cell (e.g. [0.25, 0.45]).
    pub scales: Vec<f64>,
    /// Pixel noise standard deviation (the mixture's component width).
    pub noise: f64,
}

impl TemplateSpec {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = vec![];
        let mut req = |ok: bool, f: &str, m: &str| crate::compute::require(&mut e, ok, f, m);
        req((8..=32).contains(&self.size), "size", "must be between 8 and 32 pixels");
        req(!self.shapes.is_empty(), "shapes", "needs at least one shape");
        req(!self.colours.is_empty(), "colours", "needs at least one colour");
        req(self.colours.iter().flatten().all(|c| (-1.0..=1.0).contains(c)), "colours", "channels must be in [-1, 1]");
        req(self.grid >= 1 && self.grid <= self.size, "grid", "must be between 1 and the image size");
        req(
            !self.scales.is_empty() && self.scales.iter().all(|s| *s > 0.0 && *s <= 0.5),
            "scales",
            "must be in (0, 0.5]",
        );
        req(self.noise > 0.0 && self.noise < 1.0, "noise", "must be in (0, 1)");
        if e.is_empty() {
            // Two templates that rasterise to the same pixels would make one component of two
            // labels, and the class posterior ambiguous.
            let g = self.gmm();
            let mut seen = std::collections::HashMap::new();
            for (k, m) in g.means.chunks(g.dim).enumerate() {
                let key: Vec<i8> = m.iter().map(|v| (v * 100.0).round() as i8).collect();
                if let Some(j) = seen.insert(key, k) {
                    e.push((
                        "scales".into(),
                        format!(
                            "templates {j} and {k} render identically at {} px: use larger scales or images",
                            self.size
                        ),
                    ));
                    break;
                }
            }
        }
        e
    }

    /// Is pixel centre (u, v), relative to the shape centre in units of its radius, inside?
    fn inside(shape: Shape, u: f64, v: f64) -> bool {
        match shape {
            Shape::Square => u.abs() <= 1.0 && v.abs() <= 1.0,
            Shape::Disk => u * u + v * v <= 1.0,
            // Apex up: |u| ≤ (v + 1)/2 for v in [−1, 1] (v grows downwards).
            Shape::Triangle => (-1.0..=1.0).contains(&v) && u.abs() <= (v + 1.0) / 2.0,
            Shape::Cross => (u.abs() <= 0.3 && v.abs() <= 1.0) || (v.abs() <= 0.3 && u.abs() <= 1.0),
        }
    }

    /// One image, channel-last (size × size × 3), values in [−1, 1].
    pub fn render(&self, shape: Shape, colour: [f64; 3], cell: (usize, usize), scale: f64) -> Vec<f64> {
        let cw = self.size as f64 / self.grid as f64;
        let (cx, cy) = ((cell.0 as f64 + 0.5) * cw, (cell.1 as f64 + 0.5) * cw);
        let r = scale * cw;
        let mut img = vec![-1.0; self.size * self.size * 3];
        for py in 0..self.size {
            for px in 0..self.size {
                let (u, v) = ((px as f64 + 0.5 - cx) / r, (py as f64 + 0.5 - cy) / r);
                if Self::inside(shape, u, v) {
                    img[(py * self.size + px) * 3..][..3].copy_from_slice(&colour);
                }
            }
        }
        img
    }

    /// The mixture: one component per (shape, colour, position, scale), class = (shape, colour).
    pub fn gmm(&self) -> Gmm {
        let mut means = vec![];
        let mut class_of = vec![];
        for (si, shape) in self.shapes.iter().enumerate() {
            for (ci, colour) in self.colours.iter().enumerate() {
                for gy in 0..self.grid {
                    for gx in 0..self.grid {
                        for scale in &self.scales {
                            means.extend(self.render(*shape, *colour, (gx, gy), *scale));
                            class_of.push(si * self.colours.len() + ci);
                        }
                    }
                }
            }
        }
        let k = class_of.len();
        let dim = self.size * self.size * 3;
        Gmm {
            dim,
            means,
            stds: vec![self.noise; k * dim],
            weights: vec![1.0 / k as f64; k],
            class_of,
            classes: self.shapes.len() * self.colours.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TemplateSpec {
        TemplateSpec {
            size: 16,
            shapes: vec![Shape::Square, Shape::Disk, Shape::Triangle, Shape::Cross],
            colours: vec![[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]],
            grid: 2,
            scales: vec![0.35, 0.45],
            noise: 0.05,
        }
    }

    #[test]
    fn coinciding_templates_are_rejected() {
        // At radius 0.25 of an 8-pixel cell a disk and a cross light the same 12 pixels.
        let bad = TemplateSpec { scales: vec![0.25, 0.45], ..spec() };
        assert!(bad.validate().iter().any(|(f, m)| f == "scales" && m.contains("render identically")));
        assert!(spec().validate().is_empty(), "{:?}", spec().validate());
    }

    #[test]
    fn every_template_is_distinct_and_exactly_classified() {
        let s = spec();
        let g = s.gmm();
        assert_eq!(g.components(), 4 * 3 * 4 * 2);
        assert_eq!(g.dim, 16 * 16 * 3);
        let means: Vec<&[f64]> = g.means.chunks(g.dim).collect();
        for i in 0..means.len() {
            for j in i + 1..means.len() {
                assert_ne!(means[i], means[j], "templates {i} and {j} coincide");
            }
        }
        // Noisy draws are classified by the exact posterior.
        let (x, c) = g.sample(1, 0, 200, None);
        let post = g.class_posterior(&x, 1.0, 0.0);
        let right = post.chunks(g.classes).zip(&c).filter(|(p, c)| (0..p.len()).all(|k| p[k] <= p[**c])).count();
        assert_eq!(right, 200);
    }

    #[test]
    fn shapes_cover_sensible_areas() {
        let s = spec();
        let lit = |sh| s.render(sh, [1.0, 1.0, 1.0], (0, 0), 0.45).iter().filter(|v| **v > 0.0).count() / 3;
        // Radius 0.45 × 8 px = 3.6 px: square ≈ 7.2² ≈ 52, disk ≈ π·3.6² ≈ 41 pixels.
        assert!((44..=64).contains(&lit(Shape::Square)), "{}", lit(Shape::Square));
        assert!((32..=50).contains(&lit(Shape::Disk)), "{}", lit(Shape::Disk));
        assert!(lit(Shape::Triangle) < lit(Shape::Square) && lit(Shape::Cross) < lit(Shape::Square));
    }
}
