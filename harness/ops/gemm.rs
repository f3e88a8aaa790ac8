//! A safe wrapper around the `gemm` crate's single-threaded matrix product, for the fused CPU
//! ops (convolution, attention) that parallelise over samples themselves.

use candle_core::WithDType;
use gemm::Parallelism;

/// A matrix view into a slice: `rows` × `cols`, element (i, j) at i·rs + j·cs.
#[derive(Clone, Copy)]
pub struct View {
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl View {
    pub fn row_major(rows: usize, cols: usize) -> Self {
        View { rows, cols, rs: cols, cs: 1 }
    }
    pub fn t(self) -> Self {
        View { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }
    /// One past the largest offset the view reaches.
    fn extent(&self) -> usize {
        (self.rows - 1) * self.rs + (self.cols - 1) * self.cs + 1
    }
}

/// dst (+)= a · b on one thread: gemm with every extent checked against its slice, so the
/// unsafe call reads and writes only inside the three slices.
pub fn gemm_into<T: WithDType>(dst: &mut [T], d: View, a: &[T], av: View, b: &[T], bv: View, accumulate: bool) {
    gemm_threads(dst, d, a, av, b, bv, accumulate, 1)
}

/// `gemm_into` on up to `threads` threads of the current rayon pool (gemm splits the output
/// into blocks, never the inner sum, so the values do not depend on `threads`).
#[allow(clippy::too_many_arguments)]
pub fn gemm_threads<T: WithDType>(
    dst: &mut [T],
    d: View,
    a: &[T],
    av: View,
    b: &[T],
    bv: View,
    accumulate: bool,
    threads: usize,
) {
    assert!(d.rows == av.rows && d.cols == bv.cols && av.cols == bv.rows, "gemm: shapes do not chain");
    if d.rows == 0 || d.cols == 0 {
        return;
    }
    if av.cols == 0 {
        // An empty sum: dst keeps its values, or is zero.
        if !accumulate {
            (0..d.rows).for_each(|i| (0..d.cols).for_each(|j| dst[i * d.rs + j * d.cs] = T::zero()));
        }
        return;
    }
    assert!(d.extent() <= dst.len() && av.extent() <= a.len() && bv.extent() <= b.len(), "gemm: out of bounds");
    // SAFETY: the asserts above keep every access inside `dst`, `a` and `b`; `dst` is borrowed
    // mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            d.rows,
            d.cols,
            av.cols,
            dst.as_mut_ptr(),
            d.cs as isize,
            d.rs as isize,
            accumulate,
            a.as_ptr(),
            av.cs as isize,
            av.rs as isize,
            b.as_ptr(),
            bv.cs as isize,
            bv.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None },
        )
    }
}
