//! Plumbing shared by the CPU custom ops (`conv`, `norm`, `attention`, `broadcast`): contiguous
//! slices out of candle's storages, and the dispatch over f32 and f64 that each op needs.

use super::Result;
use candle_core::{Layout, WithDType};

/// The elements of a contiguous layout; an error naming `op` otherwise.
pub fn contiguous<'a, T>(v: &'a [T], l: &Layout, op: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{op}: inputs must be contiguous"),
    }
}

/// `$f` on the contiguous f32 or f64 slices of the listed (storage, layout) pairs, all of one
/// dtype, each slice bound to its name: the CPU kernel of a custom op, written once for both
/// precisions. An error naming `$op` for other dtypes or a strided input.
macro_rules! dispatch {
    ($op:literal, |$($x:ident),+| $f:expr, $(($s:expr, $l:expr)),+) => {
        match ($($s,)+) {
            #[allow(unused_parens)]
            ($(candle_core::CpuStorage::F32($x),)+) => {
                $(let $x = $crate::ops::cpu_op::contiguous($x, $l, $op)?;)+
                candle_core::CpuStorage::F32($f)
            }
            #[allow(unused_parens)]
            ($(candle_core::CpuStorage::F64($x),)+) => {
                $(let $x = $crate::ops::cpu_op::contiguous($x, $l, $op)?;)+
                candle_core::CpuStorage::F64($f)
            }
            _ => candle_core::bail!("{}: f32 or f64 only, all inputs alike", $op),
        }
    };
}
pub(crate) use dispatch;

/// `CustomOp3::cpu_fwd` for an op whose kernel is written once for f32 and f64: `$kernel`, an
/// expression over the three contiguous input slices (`|a, b, c|`), and `$shape`, the output
/// shape; both may use the op (`$this`, i.e. `self`) and the input layouts (`[l1, l2, l3]`).
macro_rules! cpu_fwd3 {
    ($name:literal, $this:ident, [$l1:ident, $l2:ident, $l3:ident], |$a:ident, $b:ident, $c:ident| $kernel:expr, $shape:expr) => {
        fn cpu_fwd(
            &$this,
            s1: &candle_core::CpuStorage,
            $l1: &candle_core::Layout,
            s2: &candle_core::CpuStorage,
            $l2: &candle_core::Layout,
            s3: &candle_core::CpuStorage,
            $l3: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            let out = $crate::ops::cpu_op::dispatch!($name, |$a, $b, $c| $kernel, (s1, $l1), (s2, $l2), (s3, $l3));
            Ok((out, $shape))
        }
    };
}
pub(crate) use cpu_fwd3;

/// Runs `f` inside a function compiled for AVX-512 (else AVX2) when this CPU has it, so that the
/// loops inlined into `f` are vectorised 16 (8) floats wide rather than baseline x86-64's 4. The
/// values do not change: each lane does the same IEEE operations in the same order (Rust never
/// contracts a·b + c into a fused multiply-add, and a loop whose sum order would change is not
/// vectorised, or keeps explicit lanes). Only code inlined into the wide function benefits, so
/// call it through `wide!`, which marks the closure `#[inline(always)]`, and keep the closure's
/// helpers `#[inline(always)]`. Without the attribute LLVM compiled every closure larger than a
/// one-line loop as a function of its own, at baseline x86-64 (4-wide SSE): GroupNorm, layer
/// norm, softmax and im2col ran unvectorised behind a `wide` that did nothing (found by
/// disassembly; the UNet's training step then ran 14% faster, bit for bit the same).
#[inline(always)]
pub fn wide_fn<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { avx512(f) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// `wide!(|| body)`: `wide_fn` on the closure, marked `#[inline(always)]` so that it is compiled
/// into the wide function.
macro_rules! wide {
    (|| $body:expr) => {
        $crate::ops::cpu_op::wide_fn(
            #[inline(always)]
            || $body,
        )
    };
}
pub(crate) use wide;

/// `len` zeros with room for `extra` more: an op's gradient buffer, to which the small parameter
/// gradients are appended without moving (and copying) the large part.
pub fn zeros_with_room<T: WithDType>(len: usize, extra: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(len + extra);
    v.resize(len, T::zero());
    v
}

/// [f(x) for x in xs], its loop vectorised by `wide`.
#[inline(always)]
pub fn map1<T: Copy, U>(xs: &[T], f: impl Fn(T) -> U) -> Vec<U> {
    let mut out = Vec::with_capacity(xs.len());
    wide!(|| {
        for (o, x) in out.spare_capacity_mut().iter_mut().zip(xs) {
            o.write(f(*x));
        }
    });
    // SAFETY: the spare capacity holds at least xs.len() slots, and the loop wrote each of them.
    unsafe { out.set_len(xs.len()) };
    out
}

/// [f(x, y) for x, y in zip(xs, ys)], its loop vectorised by `wide`.
#[inline(always)]
pub fn map2<T: Copy, U>(xs: &[T], ys: &[T], f: impl Fn(T, T) -> U) -> Vec<U> {
    let n = xs.len().min(ys.len());
    let mut out = Vec::with_capacity(n);
    wide!(|| {
        for (o, (x, y)) in out.spare_capacity_mut().iter_mut().zip(xs.iter().zip(ys)) {
            o.write(f(*x, *y));
        }
    });
    // SAFETY: the spare capacity holds at least n slots, and the loop wrote each of them.
    unsafe { out.set_len(n) };
    out
}

/// Σ f(v) in eight interleaved lanes, so that the compiler vectorises it; the order is fixed.
#[inline(always)]
pub fn sum_by<T: WithDType>(v: &[T], f: impl Fn(T) -> T) -> T {
    let mut lanes = [T::zero(); 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        lanes.iter_mut().zip(c).for_each(|(l, x)| *l += f(*x));
    }
    let tail = chunks.remainder().iter().fold(T::zero(), |a, x| a + f(*x));
    lanes.iter().fold(T::zero(), |a, x| a + *x) + tail
}

/// Σ a·f(b) in eight interleaved lanes (see `sum_by`).
#[inline(always)]
pub fn dot_by<T: WithDType>(a: &[T], b: &[T], f: impl Fn(T) -> T) -> T {
    let mut lanes = [T::zero(); 8];
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        lanes.iter_mut().zip(x.iter().zip(y)).for_each(|(l, (x, y))| *l += *x * f(*y));
    }
    let tail = ca.remainder().iter().zip(cb.remainder()).fold(T::zero(), |acc, (x, y)| acc + *x * f(*y));
    lanes.iter().fold(T::zero(), |acc, x| acc + *x) + tail
}

#[cfg(test)]
pub mod testing {
    use crate::seed::Rng;
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

    /// For each var, max |∂(Σ up·ours)/∂var − ∂(Σ up·theirs)/∂var|: how far an op's gradients
    /// are from those of the composition it replaces.
    pub fn grad_diffs(ours: &Tensor, theirs: &Tensor, up: &Tensor, vars: &[&Var]) -> Vec<f64> {
        let g1 = (ours * up).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * up).unwrap().sum_all().unwrap().backward().unwrap();
        vars.iter().map(|v| max_diff(g1.get(v).unwrap(), g2.get(v).unwrap())).collect()
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
