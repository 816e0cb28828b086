//! C ABI (skeleton)
