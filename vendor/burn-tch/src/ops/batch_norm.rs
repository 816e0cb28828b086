//! lungseg patch (see LUNGSEG-PATCH.md): batch norm in training mode as libtorch's fused
//! kernels, `native_batch_norm` forward (bound by tch) and `native_batch_norm_backward` through
//! a small C++ shim (`batch_norm.cpp`), instead of Burn's generic formulas built from
//! reductions and broadcasts.

use crate::TchTensor;
use std::ffi::{c_char, c_int, c_void, CStr};

unsafe extern "C" {
    fn lungseg_tch_batch_norm_backward(
        grad_output: *mut c_void,
        input: *mut c_void,
        weight: *mut c_void,
        save_mean: *mut c_void,
        save_invstd: *mut c_void,
        eps: f64,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// Normalises `x` (`[batch, channels, ...]`) with its own per-channel statistics; returns the
/// output, the mean and the biased variance (what Burn's running statistics take).
pub(crate) fn forward(
    x: &TchTensor,
    gamma: &TchTensor,
    beta: &TchTensor,
    eps: f64,
) -> (TchTensor, TchTensor, TchTensor) {
    let (out, mean, invstd) = x.tensor.native_batch_norm(
        Some(&gamma.tensor),
        Some(&beta.tensor),
        None::<&tch::Tensor>,
        None::<&tch::Tensor>,
        true,
        0.0,
        eps,
    );
    // invstd = 1/sqrt(var + eps), the form libtorch saves for its backward.
    let variance = invstd.pow_tensor_scalar(-2.0) - eps;
    (
        TchTensor::new(out),
        TchTensor::new(mean),
        TchTensor::new(variance),
    )
}

/// Gradients of [`forward`] with respect to `x`, `gamma` and `beta`. Panics with libtorch's
/// message on a libtorch error, as tch's own calls do.
pub(crate) fn backward(
    x: &TchTensor,
    gamma: &TchTensor,
    mean: &TchTensor,
    variance: &TchTensor,
    eps: f64,
    output_grad: &TchTensor,
) -> (TchTensor, TchTensor, TchTensor) {
    let invstd = (&variance.tensor + eps).rsqrt();
    let mut out = [std::ptr::null_mut::<c_void>(); 3];
    let mut err = [0 as c_char; 512];
    // SAFETY: every tensor is a live `at::Tensor*` owned by its tch wrapper for the call; `out`
    // has room for the three new heap tensors the shim writes on success.
    let ok = unsafe {
        lungseg_tch_batch_norm_backward(
            output_grad.tensor.as_ptr() as *mut c_void,
            x.tensor.as_ptr() as *mut c_void,
            gamma.tensor.as_ptr() as *mut c_void,
            mean.tensor.as_ptr() as *mut c_void,
            invstd.as_ptr() as *mut c_void,
            eps,
            out.as_mut_ptr(),
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if ok == 0 {
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy();
        panic!("libtorch native_batch_norm_backward failed: {msg}");
    }
    // SAFETY: three new `at::Tensor*` from the shim; tch takes ownership and frees each.
    let [gx, gw, gb] = out.map(|p| TchTensor::new(unsafe { tch::Tensor::from_ptr(p.cast()) }));
    (gx, gw, gb)
}
