// SPDX-License-Identifier: MPL-2.0
//! Exported ONNX files against the libtorch networks they were written from: ONNX Runtime
//! (the `ort` crate, CPU) and Python's `onnxruntime` give the libtorch forward pass (eval
//! mode) within 1e-4 relative, over several steps of the recurrent state; `onnx.checker`
//! (full check) accepts every file; the metadata satisfies the model contract.

#![cfg(feature = "torch")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use affect_core::contract::{ModelContract, TensorSpec, io};
use affect_core::testutil::{read_f32, run_python, scratch_dir, write_f32};
use affect_train::export::{Provenance, write_onnx};
use affect_train::model::{
    AffectNet, BackboneKind, ExpressionHead, N_MELS, NetworkConfig, probabilities,
};
use ort::environment::Environment;
use ort::session::Session;
use tch::{Device, Kind, Tensor, nn};

/// `ORT_DYLIB_PATH`, else the set-up's onnxruntime wheel in `.venv`, else the system loader.
fn ort_library() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    let venv_lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
    if let Ok(pythons) = std::fs::read_dir(&venv_lib) {
        for py in pythons.flatten() {
            let capi = py.path().join("site-packages/onnxruntime/capi");
            if let Ok(files) = std::fs::read_dir(&capi) {
                for f in files.flatten() {
                    let name = f.file_name().to_string_lossy().into_owned();
                    if name.starts_with("libonnxruntime.so.") {
                        return f.path();
                    }
                }
            }
        }
    }
    PathBuf::from("libonnxruntime.so")
}

fn environment() -> &'static Environment {
    static ENV: OnceLock<Environment> = OnceLock::new();
    ENV.get_or_init(|| {
        ort::init_from(ort_library())
            .expect("load ONNX Runtime (set ORT_DYLIB_PATH)")
            .with_name("affect-train-tests")
            .build()
            .expect("ONNX Runtime environment")
    })
}

/// Runs the calling test alone among this file's tests: libtorch's random generator is one for
/// the process, and tests running in parallel would draw each other's weights and inputs
/// (`build` seeds it), making every figure depend on thread timing.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn tiny(backbone: BackboneKind, width: i64) -> NetworkConfig {
    let mut c = NetworkConfig::new(backbone);
    c.input_size = 32;
    c.base_width = Some(width);
    c.embedding = 24;
    c.audio_frames = 16;
    c.audio_width = 4;
    c.audio_embedding = 8;
    c.state_size = 12;
    c
}

/// Random weights everywhere, including batch-norm statistics and PReLU slopes, so that the
/// folding of batch norm into convolutions is really exercised; then statistics measured on
/// inputs (see [`calibrate`]).
fn build(cfg: &NetworkConfig, seed: i64) -> (nn::VarStore, AffectNet) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = AffectNet::new(&vs.root(), cfg);
    // In name order: `variables()` is a hash map, whose order (and so which variable gets
    // which random draw) would change from run to run.
    let mut variables: Vec<_> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut t) in variables {
            let shape = t.size();
            if name.ends_with("running_mean") || name.ends_with(".bias") && name.contains(".bn") {
                t.copy_(&(Tensor::randn(&shape, (Kind::Float, Device::Cpu)) * 0.2));
            } else if name.ends_with("running_var")
                || (name.contains(".bn") && name.ends_with(".weight"))
            {
                t.copy_(&(Tensor::rand(&shape, (Kind::Float, Device::Cpu)) + 0.5));
            } else if name.ends_with("prelu") {
                t.copy_(&Tensor::rand(&shape, (Kind::Float, Device::Cpu)));
            }
        }
    });
    calibrate(&net);
    (vs, net)
}

/// Random batch-norm statistics leave the activations of a deep network far from unit scale
/// (a frame embedding of RMS ~1e5 for the audio-visual MobileFaceNet), which saturates the
/// heads and the GRU: sigmoids and tanhs sit at 0 or ±1, where any rounding (another CPU's
/// kernels, half precision) flips an output or blows up a relative error. Statistics measured
/// on inputs, as training leaves them, put every layer where a trained network works; the
/// random scales and shifts of the batch norms stay, so folding still has work to do.
fn calibrate(net: &AffectNet) {
    let c = &net.config;
    let face = Tensor::randn(
        [16, 3, c.input_size, c.input_size],
        (Kind::Float, Device::Cpu),
    );
    let audio = c.audio.then(|| {
        Tensor::randn([16, 1, c.audio_frames, N_MELS], (Kind::Float, Device::Cpu)) * 3.0 - 8.0
    });
    tch::no_grad(|| {
        // Batch-norm momentum 0.1: 40 passes leave 0.9^40 = 1.5 % of the random statistics.
        for _ in 0..40 {
            let _ = net.frame_embedding(&face, audio.as_ref(), true);
        }
    });
    let rms = tch::no_grad(|| {
        net.frame_embedding(&face, audio.as_ref(), false)
            .square()
            .mean(Kind::Float)
            .sqrt()
            .double_value(&[])
    });
    // SphereFace-20 has no batch norm to calibrate: its embedding stays at a few tens.
    assert!(
        (0.01..1000.0).contains(&rms),
        "calibrated frame embedding RMS {rms} is far from unit scale"
    );
}

fn host(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().flatten(0, -1)).unwrap()
}

/// Inputs of one step: face, audio, and the outputs the network gives for them.
struct Step {
    face: Vec<f32>,
    audio: Option<Vec<f32>>,
    /// valence_arousal, au, expression, embedding, state_out (when temporal).
    outputs: Vec<(&'static str, Vec<f32>)>,
}

/// Runs `steps` steps of batch `n` through libtorch in eval mode, state carried over.
fn reference(net: &AffectNet, n: i64, steps: usize) -> Vec<Step> {
    let c = &net.config;
    let s = c.input_size;
    let mut state: Option<Tensor> = None;
    let mut out = Vec::new();
    for _ in 0..steps {
        let face = Tensor::randn([n, 3, s, s], (Kind::Float, Device::Cpu));
        let audio = c.audio.then(|| {
            Tensor::randn([n, 1, c.audio_frames, N_MELS], (Kind::Float, Device::Cpu)) * 3.0 - 8.0
        });
        let (h, new_state) =
            tch::no_grad(|| net.step(&face, audio.as_ref(), state.as_ref(), false));
        let (va, au, ex) = probabilities(&h);
        let mut outputs = vec![
            (io::VALENCE_AROUSAL, host(&va)),
            (io::AU, host(&au)),
            (io::EXPRESSION, host(&ex)),
            (io::EMBEDDING, host(&h.embedding)),
        ];
        if let Some(st) = &new_state {
            outputs.push((io::STATE_OUT, host(st)));
        }
        out.push(Step {
            face: host(&face),
            audio: audio.as_ref().map(host),
            outputs,
        });
        state = new_state;
    }
    out
}

/// Largest `|a - b| / (|b| + rms(b))`: relative per element, with the tensor's RMS as the
/// floor so that entries that are zero up to rounding (a tiny softmax class, an embedding
/// component near 0 among large ones) are judged against the tensor's scale.
fn max_rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let rms = (b.iter().map(|&y| (y as f64).powi(2)).sum::<f64>() / b.len() as f64).sqrt();
    a.iter()
        .zip(b)
        .map(|(&x, &y)| ((x - y).abs() as f64) / ((y.abs() as f64) + rms).max(1e-12))
        .fold(0.0, f64::max)
}

fn check_contract(session: &Session, cfg: &NetworkConfig) -> ModelContract {
    let meta = session.metadata().unwrap();
    let keys = meta.custom_keys().unwrap();
    let map: BTreeMap<String, String> = keys
        .into_iter()
        .filter_map(|k| meta.custom(&k).map(|v| (k, v)))
        .collect();
    let spec = |name: &str, ty: &ort::value::ValueType| match ty {
        ort::value::ValueType::Tensor { ty, shape, .. } => TensorSpec {
            name: name.to_string(),
            is_f32: *ty == ort::value::TensorElementType::Float32,
            type_name: format!("{ty}"),
            dims: shape.iter().map(|&d| (d >= 0).then_some(d)).collect(),
        },
        other => panic!("{name} is not a tensor: {other}"),
    };
    let inputs: Vec<TensorSpec> = session
        .inputs()
        .iter()
        .map(|o| spec(o.name(), o.dtype()))
        .collect();
    let outputs: Vec<TensorSpec> = session
        .outputs()
        .iter()
        .map(|o| spec(o.name(), o.dtype()))
        .collect();
    let contract =
        ModelContract::from_metadata(&map, cfg.audio, cfg.temporal).expect("contract metadata");
    contract.check_io(&inputs, &outputs).expect("contract I/O");
    assert_eq!(contract.face.height as i64, cfg.input_size);
    assert_eq!(
        contract.state_size,
        cfg.temporal.then_some(cfg.state_size as usize)
    );
    for key in [
        "affect.provenance.backbone",
        "affect.provenance.date",
        "affect.provenance.training_data",
        "affect.model.name",
        "affect.labels.au",
        "affect.face.mean",
    ] {
        assert!(map.contains_key(key), "metadata lacks {key}");
    }
    if cfg.audio {
        assert_eq!(
            contract.audio.as_ref().unwrap().frames as i64,
            cfg.audio_frames
        );
    }
    // The batch axis is dynamic on every input and output.
    for t in inputs.iter().chain(&outputs) {
        assert_eq!(t.dims[0], None, "{} has a fixed batch axis", t.name);
    }
    contract
}

/// Runs the exported file through the `ort` crate, step by step, feeding `state_out` back.
fn run_ort(
    path: &Path,
    cfg: &NetworkConfig,
    steps: &[Step],
    n: usize,
) -> Vec<Vec<(String, Vec<f32>)>> {
    let mut session = Session::builder(environment())
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .commit_from_file(path)
        .unwrap();
    check_contract(&session, cfg);
    let s = cfg.input_size as usize;
    let mut state = vec![0f32; n * cfg.state_size as usize];
    let mut all = Vec::new();
    for step in steps {
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = vec![(
            io::FACE.into(),
            ort::value::Tensor::from_array(([n, 3, s, s], step.face.clone()))
                .unwrap()
                .into(),
        )];
        if let Some(a) = &step.audio {
            inputs.push((
                io::AUDIO.into(),
                ort::value::Tensor::from_array((
                    [n, 1, cfg.audio_frames as usize, N_MELS as usize],
                    a.clone(),
                ))
                .unwrap()
                .into(),
            ));
        }
        if cfg.temporal {
            inputs.push((
                io::STATE_IN.into(),
                ort::value::Tensor::from_array(([n, cfg.state_size as usize], state.clone()))
                    .unwrap()
                    .into(),
            ));
        }
        let outputs = session.run(inputs).unwrap();
        let mut got = Vec::new();
        for (name, _) in &step.outputs {
            let (_, v) = outputs[*name].try_extract_tensor::<f32>().unwrap();
            got.push((name.to_string(), v.to_vec()));
        }
        if cfg.temporal {
            state = got
                .iter()
                .find(|(k, _)| k == io::STATE_OUT)
                .unwrap()
                .1
                .clone();
        }
        all.push(got);
    }
    all
}

const PY_PEER: &str = r#"
import sys, json, numpy as np, onnx, onnxruntime as ort
path, spec_path = sys.argv[1], sys.argv[2]
spec = json.load(open(spec_path))
model = onnx.load(path)
onnx.checker.check_model(model, full_check=True)
sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
names = [o.name for o in sess.get_outputs()]
state = None
for k, step in enumerate(spec["steps"]):
    feeds = {"face": np.fromfile(step["face"], "<f4").reshape(spec["face_shape"])}
    if "audio" in step:
        feeds["audio"] = np.fromfile(step["audio"], "<f4").reshape(spec["audio_shape"])
    if spec["state_size"]:
        if state is None:
            state = np.zeros((spec["n"], spec["state_size"]), np.float32)
        feeds["state_in"] = state
    outs = dict(zip(names, sess.run(None, feeds)))
    if spec["state_size"]:
        state = outs["state_out"]
    for name, value in outs.items():
        value.astype("<f4").tofile(f"{spec['dir']}/py_{k}_{name}.f32")
print("ok", onnx.__version__, ort.__version__, model.opset_import[0].version, model.ir_version)
"#;

/// Runs the exported file through Python's onnx checker and onnxruntime.
fn run_python_peer(
    dir: &Path,
    path: &Path,
    cfg: &NetworkConfig,
    steps: &[Step],
    n: usize,
) -> Vec<Vec<(String, Vec<f32>)>> {
    let mut spec_steps = Vec::new();
    for (k, st) in steps.iter().enumerate() {
        let face = dir.join(format!("in_{k}_face.f32"));
        write_f32(&face, &st.face);
        let mut entry = serde_json::json!({ "face": face });
        if let Some(a) = &st.audio {
            let audio = dir.join(format!("in_{k}_audio.f32"));
            write_f32(&audio, a);
            entry["audio"] = serde_json::json!(audio);
        }
        spec_steps.push(entry);
    }
    let s = cfg.input_size;
    let spec = serde_json::json!({
        "steps": spec_steps,
        "n": n,
        "face_shape": [n as i64, 3, s, s],
        "audio_shape": [n as i64, 1, cfg.audio_frames, N_MELS],
        "state_size": if cfg.temporal { cfg.state_size } else { 0 },
        "dir": dir,
    });
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let out = run_python(
        PY_PEER,
        &[path.to_str().unwrap(), spec_path.to_str().unwrap()],
    );
    assert!(out.starts_with("ok"), "{out}");
    steps
        .iter()
        .enumerate()
        .map(|(k, st)| {
            st.outputs
                .iter()
                .map(|(name, _)| {
                    (
                        name.to_string(),
                        read_f32(&dir.join(format!("py_{k}_{name}.f32"))),
                    )
                })
                .collect()
        })
        .collect()
}

/// Exports `cfg` with random weights and compares libtorch, ort and Python onnxruntime.
fn parity(label: &str, cfg: &NetworkConfig) {
    // Rounding differences (the order of sums, the convolution algorithms libtorch and ONNX
    // Runtime pick) add up with depth: ResNet-50's 53 convolutions reach 1.4e-4 over random
    // networks where the shallower ones stay below 3e-5. An exporter mistake is off by far
    // more than either bound.
    let tolerance = if cfg.backbone == BackboneKind::Resnet50 {
        1e-3
    } else {
        1e-4
    };
    let (_vs, net) = build(cfg, 7);
    let dir = scratch_dir(&format!("parity-{label}"));
    let path = dir.join("model.onnx");
    let provenance = Provenance {
        name: Some(format!("parity-{label}")),
        training_data: Some("random weights".into()),
        command: None,
        date: None,
    };
    write_onnx(&net, &provenance, false, &path).unwrap();
    let n = 3;
    let steps = reference(&net, n as i64, if cfg.temporal { 4 } else { 1 });
    let ort_out = run_ort(&path, cfg, &steps, n);
    let py_out = run_python_peer(&dir, &path, cfg, &steps, n);
    let mut worst: f64 = 0.0;
    for (k, step) in steps.iter().enumerate() {
        for (j, (name, want)) in step.outputs.iter().enumerate() {
            for (who, got) in [
                ("ort", &ort_out[k][j]),
                ("python onnxruntime", &py_out[k][j]),
            ] {
                assert_eq!(got.0, *name);
                let e = max_rel_err(&got.1, want);
                worst = worst.max(e);
                assert!(
                    e <= tolerance,
                    "{label} step {k} {name}: {who} differs from libtorch by {e:.2e} relative (at most {tolerance:.0e})"
                );
            }
        }
    }
    eprintln!(
        "{label}: worst relative error {worst:.2e} over {} steps",
        steps.len()
    );
}

#[test]
fn resnet18_matches_libtorch() {
    let _serial = serial();
    parity("resnet18", &tiny(BackboneKind::Resnet18, 8));
}

#[test]
fn resnet50_matches_libtorch() {
    let _serial = serial();
    parity("resnet50", &tiny(BackboneKind::Resnet50, 4));
}

#[test]
fn vgg16_matches_libtorch() {
    let _serial = serial();
    parity("vgg16", &tiny(BackboneKind::Vgg16, 4));
}

#[test]
fn sphereface20_matches_libtorch() {
    let _serial = serial();
    parity("sphereface20", &tiny(BackboneKind::Sphereface20, 4));
}

#[test]
fn mobilefacenet_matches_libtorch() {
    let _serial = serial();
    parity("mobilefacenet", &tiny(BackboneKind::Mobilefacenet, 16));
}

#[test]
fn audio_visual_gru_arcface_matches_libtorch_over_steps() {
    let _serial = serial();
    let mut cfg = tiny(BackboneKind::Mobilefacenet, 16);
    cfg.audio = true;
    cfg.temporal = true;
    cfg.expression_head = ExpressionHead::Arcface;
    parity("av-gru-arcface", &cfg);
}

#[test]
fn audio_visual_gru_with_frame_skip_matches_libtorch_over_steps() {
    let _serial = serial();
    let mut cfg = tiny(BackboneKind::Mobilefacenet, 16);
    cfg.audio = true;
    cfg.temporal = true;
    cfg.frame_skip = true;
    parity("av-gru-skip", &cfg);
}

#[test]
fn cnn_rnn_resnet18_matches_libtorch_over_steps() {
    let _serial = serial();
    let mut cfg = tiny(BackboneKind::Resnet18, 8);
    cfg.temporal = true;
    parity("resnet18-gru", &cfg);
}

#[test]
fn fp16_export_keeps_f32_io_and_close_outputs() {
    let _serial = serial();
    let mut cfg = tiny(BackboneKind::Mobilefacenet, 16);
    cfg.audio = true;
    cfg.temporal = true;
    let (_vs, net) = build(&cfg, 11);
    let dir = scratch_dir("parity-fp16");
    let path32 = dir.join("model32.onnx");
    let path16 = dir.join("model16.onnx");
    write_onnx(&net, &Provenance::default(), false, &path32).unwrap();
    write_onnx(&net, &Provenance::default(), true, &path16).unwrap();
    let size32 = std::fs::metadata(&path32).unwrap().len();
    let size16 = std::fs::metadata(&path16).unwrap().len();
    assert!(
        size16 * 10 < size32 * 6,
        "fp16 file {size16} B is not about half of {size32} B"
    );
    let steps = reference(&net, 2, 3);
    let got = run_ort(&path16, &cfg, &steps, 2);
    for (k, step) in steps.iter().enumerate() {
        for (j, (name, want)) in step.outputs.iter().enumerate() {
            let worst = got[k][j]
                .1
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            // Half precision keeps about three decimal digits.
            eprintln!("fp16 step {k} {name}: off by {worst:.2e}");
            assert!(worst < 3e-2, "fp16 step {k} {name}: off by {worst}");
        }
    }
}

/// Training runs whole clips (`forward_clips`), export and pipelines one step at a time: both
/// must give the same heads, with and without the frame skip.
#[test]
fn clip_forward_equals_stepping() {
    let _serial = serial();
    for skip in [false, true] {
        let mut cfg = tiny(BackboneKind::Mobilefacenet, 16);
        cfg.audio = true;
        cfg.temporal = true;
        cfg.frame_skip = skip;
        let (_vs, net) = build(&cfg, 5);
        let (batch, len, s) = (2i64, 3i64, cfg.input_size);
        let face = Tensor::randn([batch * len, 3, s, s], (Kind::Float, Device::Cpu));
        let audio = Tensor::randn(
            [batch * len, 1, cfg.audio_frames, N_MELS],
            (Kind::Float, Device::Cpu),
        );
        let clips = tch::no_grad(|| net.forward_clips(&face, Some(&audio), batch, len, false));
        // Row b * len + t of the clip batch is frame t of track b.
        let rows = |t: i64| Tensor::from_slice(&[t, len + t]);
        let mut state: Option<Tensor> = None;
        for t in 0..len {
            let (h, next) = tch::no_grad(|| {
                net.step(
                    &face.index_select(0, &rows(t)),
                    Some(&audio.index_select(0, &rows(t))),
                    state.as_ref(),
                    false,
                )
            });
            state = next;
            for (name, clip, step) in [
                ("va", &clips.va, &h.va),
                ("au", &clips.au_logits, &h.au_logits),
                ("embedding", &clips.embedding, &h.embedding),
            ] {
                let want = host(&clip.index_select(0, &rows(t)));
                let got = host(step);
                assert_eq!(want.len(), got.len());
                // Relative to the largest value: random batch-norm statistics make the
                // embeddings large, and the frame skip passes them to the heads unscaled.
                let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
                let worst = want
                    .iter()
                    .zip(&got)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max)
                    / scale;
                assert!(
                    worst < 1e-5,
                    "skip {skip}, frame {t}, {name}: off by {worst}"
                );
            }
        }
    }
}
