//! Training tests (Burn): one binary, so the Burn stack is linked once. Burn's random source
//! is process-global, so every test here that draws from it holds `common::rng_lock()`.

#[path = "../common/mod.rs"]
mod common;

mod average;
mod demo_pipeline;
mod train_backend;
mod train_export;
mod train_grad;
mod train_loop;
mod train_loss;
mod train_model;
mod train_parallel;
mod train_parity;
mod widen;
