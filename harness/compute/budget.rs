//! Training and sampling cost conventions shared by the papers.

/// Training compute: forward cost × 3 (the backward pass taken as twice the forward) × batch
/// × steps. DiT §5 ("model Gflops · batch size · training steps · 3") and Li et al. Fig. 3
/// ("3× FLOPs of single DDPM step × batch size × steps") use this convention.
pub fn training_compute(forward_per_sample: f64, batch: f64, steps: f64) -> f64 {
    3.0 * forward_per_sample * batch * steps
}

/// Sampling cost: per-evaluation cost × number of function evaluations, where classifier-free
/// guidance evaluates the model twice per step (Mei et al. §3.3.2: "normalized cost ×
/// sampling steps"; DiT issue #99 on the doubled CFG batch).
pub fn sampling_cost(per_nfe: f64, steps: f64, guided: bool) -> f64 {
    per_nfe * steps * if guided { 2.0 } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dit_xl2_400k_worked_example() {
        // docs/papers.md §3.5: 118.64 × 256 × 4e5 × 3 ≈ 3.6e10 "Gflops".
        let c = training_compute(118.64, 256.0, 4e5);
        assert!((c / 3.6e10 - 1.0).abs() < 0.02);
    }

    #[test]
    fn guidance_doubles_cost() {
        assert_eq!(sampling_cost(0.13, 50.0, true), 2.0 * sampling_cost(0.13, 50.0, false));
    }
}
