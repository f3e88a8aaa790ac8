//! Plumbing shared by the CPU custom ops (`conv`, `norm`, `attention`, `broadcast`): contiguous
//! slices out of candle's storages, and the dispatch over f32 and f64 that each op needs.

use super::Result;
use candle_core::{CpuStorage, Layout};

/// The elements of a contiguous layout; an error naming `op` otherwise.
pub fn contiguous<'a, T>(v: &'a [T], l: &Layout, op: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{op}: inputs must be contiguous"),
    }
}

/// Runs `f32s` or `f64s` on the contiguous slices of three f32 or three f64 storages.
pub fn with3<F32, F64>(
    op: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    (s3, l3): (&CpuStorage, &Layout),
    f32s: F32,
    f64s: F64,
) -> Result<CpuStorage>
where
    F32: Fn(&[f32], &[f32], &[f32]) -> Vec<f32>,
    F64: Fn(&[f64], &[f64], &[f64]) -> Vec<f64>,
{
    Ok(match (s1, s2, s3) {
        (CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)) => {
            CpuStorage::F32(f32s(contiguous(a, l1, op)?, contiguous(b, l2, op)?, contiguous(c, l3, op)?))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)) => {
            CpuStorage::F64(f64s(contiguous(a, l1, op)?, contiguous(b, l2, op)?, contiguous(c, l3, op)?))
        }
        _ => candle_core::bail!("{op}: f32 or f64 only, all inputs alike"),
    })
}

#[cfg(test)]
pub mod testing {
    use crate::run::seed::Rng;
    use candle_core::{Device, Tensor, Var};

    /// A tensor of standard normal f64 draws.
    pub fn randn(shape: &[usize], r: &mut Rng) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec((0..n).map(|_| r.normal()).collect::<Vec<f64>>(), shape, &Device::Cpu).unwrap()
    }

    /// max |a − b| over all elements (f64 tensors).
    pub fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
    }

    /// d loss / d inputs[k][i] by central differences (h = 1e-6) at the entries `pick(len)` of
    /// every input, against backward: |fd − backward| < 1e-6·(1 + |fd|). f64 inputs.
    pub fn check_gradients(inputs: &[Tensor], loss: impl Fn(&[Tensor]) -> Tensor, pick: impl Fn(usize) -> Vec<usize>) {
        let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
        let grads = loss(&vars.iter().map(|v| v.as_tensor().clone()).collect::<Vec<_>>()).backward().unwrap();
        for (k, t) in inputs.iter().enumerate() {
            let an = grads.get(&vars[k]).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let base = t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for i in pick(base.len()) {
                let at = |d: f64| {
                    let mut p = base.clone();
                    p[i] += d;
                    let mut ts = inputs.to_vec();
                    ts[k] = Tensor::from_vec(p, t.shape(), &Device::Cpu).unwrap();
                    loss(&ts).to_scalar::<f64>().unwrap()
                };
                let fd = (at(1e-6) - at(-1e-6)) / 2e-6;
                assert!((fd - an[i]).abs() < 1e-6 * (1.0 + fd.abs()), "input {k}[{i}]: {fd} vs {}", an[i]);
            }
        }
    }
}
