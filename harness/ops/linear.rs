//! The affine layer y = x·W + b as one CPU op with its own backward:
//!
//!   dx = dy·Wᵀ,  dW = xᵀ·dy,  db = Σ_rows dy.
//!
//! Why: composed, a linear layer is four autograd nodes (reshape to rows, matmul, bias add,
//! reshape back), and candle's backward accumulates each node's input gradient into a fresh
//! zero tensor: three full-size passes a node (those additions and zero fills were 12% of the
//! UNet's training step). The GEMMs are the ones candle's matmul and its backward run (same
//! shapes, strides and threads), and the bias is added to the finished product, as before: the
//! values are the composition's, bit for bit (tested).

use super::cpu_op::{cpu_fwd3, zeros_with_room};
use super::gemm::{gemm_threads, View};
use super::Result;
use candle_core::{CustomOp3, Shape, Tensor, WithDType};

/// x [.., in] · w [in, out] + b [out] → [.., out], on the CPU.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (n_in, n_out) = w.dims2()?;
    if x.dims().last() != Some(&n_in) || b.dims() != [n_out] {
        candle_core::bail!("linear: x {:?}, w {:?} and b {:?} do not chain", x.dims(), w.dims(), b.dims())
    }
    let op = Linear { rows: x.elem_count() / n_in.max(1), n_in, n_out };
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, op)
}

#[derive(Clone, Copy)]
struct Linear {
    rows: usize,
    n_in: usize,
    n_out: usize,
}

/// (x, w, dy) → [dx | dW | db], flat.
struct LinearGrad(Linear);

/// Threads for one GEMM: those of the rayon pool the op runs in, as candle's matmul.
fn threads() -> usize {
    rayon::current_num_threads()
}

impl Linear {
    fn forward<T: WithDType>(&self, x: &[T], w: &[T], b: &[T]) -> Vec<T> {
        let (r, n, o) = (self.rows, self.n_in, self.n_out);
        let mut y = Vec::with_capacity(r * o);
        (0..r).for_each(|_| y.extend_from_slice(b));
        let (xv, wv) = (View::row_major(r, n), View::row_major(n, o));
        gemm_threads(&mut y, View::row_major(r, o), x, xv, w, wv, true, threads());
        y
    }

    fn backward<T: WithDType>(&self, x: &[T], w: &[T], dy: &[T]) -> Vec<T> {
        let (r, n, o) = (self.rows, self.n_in, self.n_out);
        let (xv, wv, dyv) = (View::row_major(r, n), View::row_major(n, o), View::row_major(r, o));
        let mut out = zeros_with_room(r * n + n * o, o);
        let (dx, dw) = out.split_at_mut(r * n);
        gemm_threads(dx, xv, dy, dyv, w, wv.t(), false, threads());
        gemm_threads(dw, wv, x, xv.t(), dy, dyv, false, threads());
        let mut db = vec![T::zero(); o];
        for row in dy.chunks(o) {
            db.iter_mut().zip(row).for_each(|(a, v)| *a += *v);
        }
        out.extend(db);
        out
    }
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    cpu_fwd3!("linear", self, [l1, _l2, _l3], |x, w, b| self.forward(x, w, b), {
        let mut dims = l1.dims().to_vec();
        *dims.last_mut().expect("checked in linear()") = self.n_out;
        Shape::from(dims)
    });

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let packed = x.apply_op3_no_bwd(w, &grad.contiguous()?, &LinearGrad(*self))?;
        let (nx, nw) = (x.elem_count(), w.elem_count());
        let dx = packed.narrow(0, 0, nx)?.reshape(x.shape())?;
        let dw = packed.narrow(0, nx, nw)?.reshape(w.shape())?;
        let db = packed.narrow(0, nx + nw, b.elem_count())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

impl CustomOp3 for LinearGrad {
    fn name(&self) -> &'static str {
        "linear-grad"
    }

    cpu_fwd3!(
        "linear backward",
        self,
        [l1, l2, _l3],
        |x, w, dy| self.0.backward(x, w, dy),
        Shape::from(l1.shape().elem_count() + l2.shape().elem_count() + self.0.n_out)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::cpu_op::testing::{check_gradients, randn};
    use crate::seed::Rng;
    use candle_core::{DType, Var};

    /// The values and gradients of x·W + b composed from candle's matmul and broadcast add,
    /// in f32, to the bit; 3-D x (rows from two leading dimensions).
    #[test]
    fn equals_the_composition_bit_for_bit() {
        let mut r = Rng::new(41);
        let f32s = |s: &[usize], r: &mut Rng| Var::from_tensor(&randn(s, r).to_dtype(DType::F32).unwrap()).unwrap();
        let (x, w, b) = (f32s(&[3, 5, 7], &mut r), f32s(&[7, 4], &mut r), f32s(&[4], &mut r));
        let up = randn(&[3, 5, 4], &mut r).to_dtype(DType::F32).unwrap();
        let ours = linear(&x, &w, &b).unwrap();
        let theirs =
            x.reshape((15, 7)).unwrap().matmul(&w).unwrap().broadcast_add(&b).unwrap().reshape((3, 5, 4)).unwrap();
        let bits = |t: &Tensor| {
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(bits(&ours), bits(&theirs));
        let g1 = (&ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&theirs * &up).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w, &b] {
            assert_eq!(bits(g1.get(v).unwrap()), bits(g2.get(v).unwrap()));
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut r = Rng::new(42);
        let ts = [randn(&[2, 3, 5], &mut r), randn(&[5, 4], &mut r), randn(&[4], &mut r)];
        let up = randn(&[2, 3, 4], &mut r);
        let loss = |t: &[Tensor]| (linear(&t[0], &t[1], &t[2]).unwrap() * &up).unwrap().sum_all().unwrap();
        check_gradients(&ts, loss, |n| vec![0, n / 2, n - 1]);
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let mut r = Rng::new(43);
        let err = linear(&randn(&[2, 5], &mut r), &randn(&[4, 3], &mut r), &randn(&[3], &mut r)).unwrap_err();
        assert!(err.to_string().contains("do not chain"), "{err}");
    }
}
