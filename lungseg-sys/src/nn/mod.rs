//! CPU kernels (skeleton; see issue 3)
