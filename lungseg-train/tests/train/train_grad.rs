//! One training step of the Burn U-Net against PyTorch: loss, logits and every parameter
//! gradient (BatchNorm in training mode) on the fixtures made by `scripts/make_grad_fixture.py`:
//! without dropout, and with channel and element dropout whose PyTorch keep masks the Burn
//! model replays layer by layer (`model::DropoutMasks`), so the dropout scaling, placement and
//! numbering are checked against PyTorch too.

use crate::common;

use burn::tensor::{Device, Tensor, TensorData};
use lungseg_train::import::{named_grads, with_tensors};
use lungseg_train::model::{DropoutKind, DropoutMasks, DropoutSpec, UNetConfig};
use lungseg_train::train::loss::dice_bce;
use safetensors::SafeTensors;

const FIXTURE: &[u8] = include_bytes!("../fixtures/grad_step.safetensors");
const FIXTURE_CHANNEL: &[u8] = include_bytes!("../fixtures/grad_step_channel.safetensors");
const FIXTURE_ELEMENT: &[u8] = include_bytes!("../fixtures/grad_step_element.safetensors");

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

/// Replays the fixture's keep masks (`dropmask.<layer>`), checking each layer is asked for once
/// with the shape PyTorch drew.
struct FixtureMasks<'a> {
    st: &'a SafeTensors<'a>,
    used: Vec<usize>,
}

impl DropoutMasks for FixtureMasks<'_> {
    fn keep_mask(
        &mut self,
        layer: usize,
        shape: [usize; 5],
        keep: f64,
        channel: bool,
        device: &Device,
    ) -> Tensor<5> {
        assert!((keep - 0.8).abs() < 1e-12, "the fixture drops with p = 0.2");
        assert!(!self.used.contains(&layer), "dropout layer {layer} twice");
        self.used.push(layer);
        let (stored, mask) = f32s(self.st, &format!("dropmask.{layer}"));
        let [b, c, ..] = shape;
        let want = if channel { vec![b, c] } else { shape.to_vec() };
        assert_eq!(stored, want, "dropout layer {layer}: mask shape");
        let shape = if channel { [b, c, 1, 1, 1] } else { shape };
        Tensor::from_data(TensorData::new(mask, shape), device)
    }
}

#[test]
fn burn_training_step_matches_pytorch() {
    let _rng = common::rng_lock();
    step_matches_pytorch(Device::flex().autodiff(), FIXTURE, None);
}

#[test]
fn burn_training_step_with_channel_dropout_matches_pytorch() {
    let _rng = common::rng_lock();
    let kind = Some(DropoutKind::Channel);
    step_matches_pytorch(Device::flex().autodiff(), FIXTURE_CHANNEL, kind);
}

#[test]
fn burn_training_step_with_element_dropout_matches_pytorch() {
    let _rng = common::rng_lock();
    let kind = Some(DropoutKind::Element);
    step_matches_pytorch(Device::flex().autodiff(), FIXTURE_ELEMENT, kind);
}

/// The same steps on LibTorch's CPU kernels (`--backend tch`).
#[cfg(feature = "tch")]
#[test]
fn libtorch_training_step_matches_pytorch() {
    let _rng = common::rng_lock();
    use lungseg_train::train::{Backend, DeviceSpec};
    let device = Backend::Tch.device(Some(DeviceSpec::Cpu)).unwrap();
    step_matches_pytorch(device.clone().autodiff(), FIXTURE, None);
    let kind = Some(DropoutKind::Channel);
    step_matches_pytorch(device.autodiff(), FIXTURE_CHANNEL, kind);
}

/// One step on `fixture`; `dropout` = the kind of its p = 0.2 dropout, `None` for none.
fn step_matches_pytorch(ad: Device, fixture: &[u8], dropout: Option<DropoutKind>) {
    let st = SafeTensors::deserialize(fixture).unwrap();
    let config = UNetConfig {
        channels: vec![3, 4, 6],
        patch_size: [8, 8, 8],
        dropout: DropoutSpec {
            p: if dropout.is_some() { 0.2 } else { 0.0 },
            kind: dropout.unwrap_or(DropoutKind::Channel),
            levels: None,
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
    let mut masks = FixtureMasks {
        st: &st,
        used: Vec::new(),
    };
    let logits = model.forward_with(x, &mut masks);
    let loss = dice_bce(logits.clone(), y);
    let stored = st
        .names()
        .iter()
        .filter(|n| n.starts_with("dropmask."))
        .count();
    masks.used.sort_unstable();
    let layers = 4 * 3 - 2; // 4L − 2 dropout layers for L = 3 levels
    let want_used: Vec<usize> = if dropout.is_some() {
        (0..layers).collect()
    } else {
        Vec::new()
    };
    assert_eq!(masks.used, want_used, "dropout layers asked for");
    assert_eq!(stored, want_used.len(), "every stored mask replayed");

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
