//! One training step of the Burn U-Net against PyTorch: loss, logits and every parameter
//! gradient (BatchNorm in training mode, no dropout) on the fixture made by
//! `scripts/make_grad_fixture.py`.

use crate::common;

use burn::tensor::{Device, Tensor, TensorData};
use lungseg_train::import::{named_grads, with_tensors};
use lungseg_train::model::{DropoutKind, DropoutSpec, UNetConfig};
use lungseg_train::train::loss::dice_bce;
use safetensors::SafeTensors;

const FIXTURE: &[u8] = include_bytes!("../fixtures/grad_step.safetensors");

fn f32s(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st
        .tensor(name)
        .unwrap_or_else(|_| panic!("fixture lacks {name}"));
    let v = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), v)
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0f64, |m, &x| m.max(f64::from(x).abs()))
}

/// Largest |a − b| relative to the largest |b| of the tensor, or to `floor` if that is larger:
/// the biases of convolutions followed by BatchNorm have a true gradient of exactly 0 (BN
/// subtracts the batch mean), which both sides compute as rounding noise.
fn rel_err(a: &[f32], b: &[f32], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = max_abs(b).max(floor).max(1e-30);
    let diff = a.iter().zip(b).fold(0f64, |m, (&x, &y)| {
        m.max((f64::from(x) - f64::from(y)).abs())
    });
    diff / scale
}

#[test]
fn burn_training_step_matches_pytorch() {
    let _rng = common::rng_lock();
    step_matches_pytorch(Device::flex().autodiff());
}

/// The same step on LibTorch's CPU kernels (`--backend tch`).
#[cfg(feature = "tch")]
#[test]
fn libtorch_training_step_matches_pytorch() {
    let _rng = common::rng_lock();
    use lungseg_train::train::{Backend, DeviceSpec};
    let device = Backend::Tch.device(Some(DeviceSpec::Cpu)).unwrap();
    step_matches_pytorch(device.autodiff());
}

fn step_matches_pytorch(ad: Device) {
    let st = SafeTensors::deserialize(FIXTURE).unwrap();
    let config = UNetConfig {
        channels: vec![3, 4, 6],
        patch_size: [8, 8, 8],
        dropout: DropoutSpec {
            p: 0.0,
            kind: DropoutKind::Channel,
        },
        ..UNetConfig::default()
    };
    let model = with_tensors(config.init(&ad), |name, _| {
        Ok(f32s(&st, &format!("param.{name}")).1)
    })
    .unwrap();

    let (shape, x) = f32s(&st, "input");
    let shape: [usize; 5] = shape.try_into().unwrap();
    let (_, y) = f32s(&st, "mask");
    let x = Tensor::<5>::from_data(TensorData::new(x, shape), &ad);
    let y = Tensor::<5>::from_data(TensorData::new(y, shape), &ad);
    let logits = model.forward(x);
    let loss = dice_bce(logits.clone(), y);

    let (_, want_logits) = f32s(&st, "logits");
    let got_logits = logits
        .clone()
        .detach()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let e = rel_err(&got_logits, &want_logits, 0.0);
    assert!(
        e < 1e-4,
        "logits differ from PyTorch: relative error {e:.2e}"
    );

    let (_, want_loss) = f32s(&st, "loss");
    let got_loss = [
        loss.total.clone().into_scalar::<f32>(),
        loss.bce.clone().into_scalar::<f32>(),
        loss.dice.clone().into_scalar::<f32>(),
    ];
    for (g, w) in got_loss.iter().zip(&want_loss) {
        assert!(
            (g - w).abs() < 1e-5,
            "loss terms {got_loss:?}, PyTorch {want_loss:?}"
        );
    }

    let grads = named_grads(&model, &loss.total.backward());
    let expected: Vec<&str> = st
        .names()
        .into_iter()
        .filter_map(|n| n.strip_prefix("grad."))
        .collect();
    assert_eq!(
        grads.len(),
        expected.len(),
        "one gradient per PyTorch parameter"
    );
    let floor = 1e-3
        * expected
            .iter()
            .map(|n| max_abs(&f32s(&st, &format!("grad.{n}")).1))
            .fold(0f64, f64::max);
    let mut report = Vec::new();
    for g in &grads {
        let (shape, want) = f32s(&st, &format!("grad.{}", g.name));
        assert_eq!(g.shape, shape, "{}: gradient shape", g.name);
        let e = rel_err(&g.data, &want, floor);
        if e > 1e-3 {
            report.push(format!("{}: relative error {e:.2e}", g.name));
        }
    }
    assert!(
        report.is_empty(),
        "gradients differ from PyTorch:\n{}",
        report.join("\n")
    );
}
