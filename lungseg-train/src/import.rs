//! PyTorch-named tensors into a Burn U-Net, and gradients out of one.
//!
//! The inverse of [`export::named_tensors`](crate::export::named_tensors): it lets `train --init`
//! start from an exported (or PyTorch-made) model file, and lets tests feed Burn the exact weights
//! a PyTorch oracle used and compare gradients name by name.

use anyhow::{anyhow, bail, ensure, Context, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Gradients, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::export::{pytorch_name, NamedTensor, FORMAT};
use crate::model::{UNet, UNetConfig};

/// Replaces every tensor of `model` (weights and BatchNorm running statistics) with
/// `lookup(name, shape)`, keeping parameter ids and whether each one requires a gradient.
/// Fails on the first name `lookup` rejects or whose data has the wrong length.
pub fn with_tensors(
    model: UNet,
    lookup: impl FnMut(&str, &[usize]) -> Result<Vec<f32>>,
) -> Result<UNet> {
    struct Replace<F> {
        path: Vec<String>,
        lookup: F,
        error: Option<anyhow::Error>,
    }
    impl<F: FnMut(&str, &[usize]) -> Result<Vec<f32>>> ModuleMapper for Replace<F> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if self.error.is_some() {
                return param;
            }
            let name = pytorch_name(&self.path);
            let shape = param.shape().dims::<D>().to_vec();
            let data = (self.lookup)(&name, &shape).and_then(|v| {
                let n: usize = shape.iter().product();
                ensure!(
                    v.len() == n,
                    "{name}: {} values for shape {shape:?} ({n} expected)",
                    v.len()
                );
                Ok(v)
            });
            match data {
                Ok(v) => param.map(|t| {
                    let grad = t.is_require_grad();
                    Tensor::from_data(TensorData::new(v, shape), &t.device()).set_require_grad(grad)
                }),
                Err(e) => {
                    self.error = Some(e);
                    param
                }
            }
        }
    }
    let mut m = Replace {
        path: Vec::new(),
        lookup,
        error: None,
    };
    let model = model.map(&mut m);
    match m.error {
        Some(e) => Err(e),
        None => Ok(model),
    }
}

/// A model file in the lungseg-unet3d format (F32 or F16) → its config and a Burn U-Net on
/// `device` with those weights.
pub fn from_safetensors(bytes: &[u8], device: &Device) -> Result<(UNet, UNetConfig)> {
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("not a safetensors file: {e}"))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let format = meta.get("format").map(String::as_str).unwrap_or("");
    ensure!(
        format == FORMAT,
        "metadata format is '{format}', expected '{FORMAT}'"
    );
    let config: UNetConfig = serde_json::from_str(
        meta.get("config")
            .ok_or_else(|| anyhow!("metadata has no 'config'"))?,
    )
    .context("metadata 'config'")?;
    config.validate()?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow!("bad safetensors file: {e}"))?;
    let model = with_tensors(config.init(device), |name, shape| {
        let t = st
            .tensor(name)
            .map_err(|_| anyhow!("the file has no tensor '{name}'"))?;
        ensure!(
            t.shape() == shape,
            "{name}: shape {:?} in the file, {shape:?} in the config",
            t.shape()
        );
        match t.dtype() {
            Dtype::F32 => Ok(t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()),
            Dtype::F16 => Ok(t
                .data()
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect()),
            d => bail!("{name}: dtype {d:?} (F32 or F16 expected)"),
        }
    })?;
    Ok((model, config))
}

/// Where [`named_grads`] reads gradients from.
#[derive(Clone, Copy)]
pub enum GradsRef<'a> {
    /// What `backward()` returns.
    Raw(&'a Gradients),
    /// What the optimiser takes (e.g. summed over data-parallel shards).
    Params(&'a GradientsParams),
}

impl<'a> From<&'a Gradients> for GradsRef<'a> {
    fn from(g: &'a Gradients) -> Self {
        GradsRef::Raw(g)
    }
}

impl<'a> From<&'a GradientsParams> for GradsRef<'a> {
    fn from(g: &'a GradientsParams) -> Self {
        GradsRef::Params(g)
    }
}

/// The gradient of every parameter of `model` that has one in `grads`, under its PyTorch name.
pub fn named_grads<'a>(model: &UNet, grads: impl Into<GradsRef<'a>>) -> Vec<NamedTensor> {
    struct Collect<'a> {
        path: Vec<String>,
        grads: GradsRef<'a>,
        out: Vec<NamedTensor>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let g = match self.grads {
                GradsRef::Raw(g) => param.val().grad(g),
                GradsRef::Params(g) => g.get::<D>(param.id),
            };
            if let Some(g) = g {
                self.out.push(NamedTensor {
                    name: pytorch_name(&self.path),
                    shape: g.dims().to_vec(),
                    data: g
                        .into_data()
                        .try_into_vec_as::<f32>()
                        .expect("f32 gradient"),
                });
            }
        }
    }
    let mut c = Collect {
        path: Vec::new(),
        grads: grads.into(),
        out: Vec::new(),
    };
    model.visit(&mut c);
    c.out
}
