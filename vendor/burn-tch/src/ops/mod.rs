mod activation;
mod base;
#[cfg(lungseg_native_ops)]
mod batch_norm;
mod bool_tensor;
#[cfg(lungseg_native_ops)]
mod conv_backward;
mod int_tensor;
mod module;
mod qtensor;
mod tensor;
mod transaction;

pub(crate) use base::*;
