//! lungseg patch (see LUNGSEG-PATCH.md): convolution gradients from libtorch's own
//! `convolution_backward` (oneDNN's backward-data / backward-weights on the CPU, cuDNN on
//! GPUs), through a small C++ shim (`conv_backward.cpp`) because tch 0.22 does not bind it.

use crate::TchTensor;
use std::ffi::{c_char, c_int, c_void, CStr};

unsafe extern "C" {
    fn lungseg_tch_conv_backward(
        grad_output: *mut c_void,
        input: *mut c_void,
        weight: *mut c_void,
        stride: *const i64,
        padding: *const i64,
        dilation: *const i64,
        output_padding: *const i64,
        dims: i64,
        transposed: c_int,
        groups: i64,
        which: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut c_void;
}

/// Which gradient to compute.
#[derive(Clone, Copy)]
pub(crate) enum Grad {
    Input = 0,
    Weight = 1,
}

/// A convolution's geometry, as libtorch takes it (symmetric padding, as burn-tch's forward).
pub(crate) struct Conv<const N: usize> {
    pub stride: [usize; N],
    pub padding: [usize; N],
    pub dilation: [usize; N],
    pub output_padding: [usize; N],
    pub transposed: bool,
    pub groups: usize,
}

/// The `grad` gradient of the convolution `conv` of `input` with `weight`, given the output
/// gradient. Panics with libtorch's message on a libtorch error, as tch's own calls do.
pub(crate) fn conv_backward<const N: usize>(
    output_grad: &TchTensor,
    input: &TchTensor,
    weight: &TchTensor,
    conv: &Conv<N>,
    grad: Grad,
) -> TchTensor {
    let ints = |a: [usize; N]| a.map(|v| v as i64);
    let (stride, padding) = (ints(conv.stride), ints(conv.padding));
    let (dilation, output_padding) = (ints(conv.dilation), ints(conv.output_padding));
    let mut err = [0 as c_char; 512];
    // SAFETY: the three tensors are live `at::Tensor*` owned by their tch wrappers for the
    // call; the arrays hold N values each; the shim returns a new heap tensor or NULL.
    let raw = unsafe {
        lungseg_tch_conv_backward(
            output_grad.tensor.as_ptr() as *mut c_void,
            input.tensor.as_ptr() as *mut c_void,
            weight.tensor.as_ptr() as *mut c_void,
            stride.as_ptr(),
            padding.as_ptr(),
            dilation.as_ptr(),
            output_padding.as_ptr(),
            N as i64,
            c_int::from(conv.transposed),
            conv.groups as i64,
            grad as c_int,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if raw.is_null() {
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy();
        panic!("libtorch convolution_backward failed: {msg}");
    }
    // SAFETY: a new `at::Tensor*` from the shim; tch takes ownership and frees it.
    TchTensor::new(unsafe { tch::Tensor::from_ptr(raw.cast()) })
}
