// SPDX-License-Identifier: MPL-2.0
//! MTCNN (Zhang et al. 2016) from the weights PyPI's `facenet-pytorch` wheel ships
//! (`facenet_pytorch/data/{pnet,rnet,onet}.pt`, MIT licence): the three networks written as
//! ONNX files with the layers of facenet-pytorch's `PNet`, `RNet` and `ONet` modules.
//!
//! Every file takes RGB in NCHW, normalised as `(x - 127.5) * 0.0078125`, and ends in the
//! softmax the modules apply. The P-Net is fully convolutional (free height and width); the
//! R-Net and O-Net take batches of 24x24 and 48x48 crops. The dense layers of R-Net and O-Net
//! were converted from Caffe with the features in (width, height, channel) order, which the
//! modules reproduce with `permute(0, 3, 2, 1)` before flattening; the graphs do the same.
//!
//! The written bytes depend only on the weights: importing the same wheel twice gives the
//! same files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use affect_core::detect::mtcnn as spec;

use super::torch_legacy::{self, Tensor};
use super::{ImportError, WeightSource, sha256_hex, write_model};
use crate::export::graph::{Attr, GraphBuilder};
use crate::export::proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
use crate::export::{IR_VERSION, OPSET};

/// The distribution the weights come from.
pub const DISTRIBUTION: &str = "facenet-pytorch";
/// Its licence, as its `LICENSE.md` states it.
pub const LICENSE: &str = "MIT (facenet-pytorch, Copyright (c) 2019 Timothy Esler)";

/// One of the three networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    P,
    R,
    O,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::P, Stage::R, Stage::O];

    /// The stage's name in file names and metadata (`pnet`, `rnet`, `onet`).
    pub fn name(self) -> &'static str {
        match self {
            Stage::P => spec::PNET,
            Stage::R => spec::RNET,
            Stage::O => spec::ONET,
        }
    }

    /// Where the wheel keeps the weights.
    pub fn member(self) -> String {
        format!("facenet_pytorch/data/{}.pt", self.name())
    }
}

struct Weights {
    file: String,
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    fn get(&self, name: &str, shape: &[usize]) -> Result<&Tensor, ImportError> {
        let t = self.tensors.get(name).ok_or_else(|| ImportError::Network {
            file: self.file.clone(),
            why: format!("has no tensor '{name}'"),
        })?;
        if t.shape != shape {
            return Err(ImportError::Network {
                file: self.file.clone(),
                why: format!(
                    "tensor '{name}' has shape {:?}, expected {shape:?}",
                    t.shape
                ),
            });
        }
        Ok(t)
    }
}

fn conv(
    g: &mut GraphBuilder,
    w: &Weights,
    x: &str,
    layer: &str,
    out: usize,
    input: usize,
    k: usize,
) -> Result<String, ImportError> {
    let weight = w.get(&format!("{layer}.weight"), &[out, input, k, k])?;
    let bias = w.get(&format!("{layer}.bias"), &[out])?;
    let dims = [out as i64, input as i64, k as i64, k as i64];
    Ok(g.conv(x, (&dims, &weight.data), &bias.data, 1, 0, 1))
}

/// PReLU with one slope per channel: `[C, 1, 1]` after convolutions, `[C]` after dense layers.
fn prelu(
    g: &mut GraphBuilder,
    w: &Weights,
    x: &str,
    layer: &str,
    channels: usize,
    spatial: bool,
) -> Result<String, ImportError> {
    let slope = w.get(&format!("{layer}.weight"), &[channels])?;
    let dims: Vec<i64> = if spatial {
        vec![channels as i64, 1, 1]
    } else {
        vec![channels as i64]
    };
    let s = g.constant("prelu_slope", &dims, &slope.data);
    Ok(g.prelu(x, &s))
}

/// `MaxPool2d(k, s, ceil_mode=True)` without padding.
fn max_pool(g: &mut GraphBuilder, x: &str, k: i64, s: i64) -> String {
    g.op(
        "MaxPool",
        &[x],
        vec![
            ("kernel_shape", Attr::Ints(vec![k, k])),
            ("strides", Attr::Ints(vec![s, s])),
            ("ceil_mode", Attr::Int(1)),
        ],
    )
}

fn dense(
    g: &mut GraphBuilder,
    w: &Weights,
    x: &str,
    layer: &str,
    out: usize,
    input: usize,
) -> Result<String, ImportError> {
    let weight = w.get(&format!("{layer}.weight"), &[out, input])?;
    let bias = w.get(&format!("{layer}.bias"), &[out])?;
    Ok(g.linear(x, &weight.data, out as i64, input as i64, Some(&bias.data)))
}

fn softmax(g: &mut GraphBuilder, x: &str) -> String {
    g.op("Softmax", &[x], vec![("axis", Attr::Int(1))])
}

/// Features in the (width, height, channel) order of the Caffe originals, flattened.
fn caffe_flatten(g: &mut GraphBuilder, x: &str) -> String {
    let t = g.op(
        "Transpose",
        &[x],
        vec![("perm", Attr::Ints(vec![0, 3, 2, 1]))],
    );
    g.op("Flatten", &[&t], vec![("axis", Attr::Int(1))])
}

fn build(stage: Stage, w: &Weights) -> Result<GraphBuilder, ImportError> {
    let mut g = GraphBuilder::new(false);
    match stage {
        Stage::P => {
            let x = g.input(spec::INPUT, &[None, Some(3), None, None]);
            let x = conv(&mut g, w, &x, "conv1", 10, 3, 3)?;
            let x = prelu(&mut g, w, &x, "prelu1", 10, true)?;
            let x = max_pool(&mut g, &x, 2, 2);
            let x = conv(&mut g, w, &x, "conv2", 16, 10, 3)?;
            let x = prelu(&mut g, w, &x, "prelu2", 16, true)?;
            let x = conv(&mut g, w, &x, "conv3", 32, 16, 3)?;
            let x = prelu(&mut g, w, &x, "prelu3", 32, true)?;
            let a = conv(&mut g, w, &x, "conv4_1", 2, 32, 1)?;
            let a = softmax(&mut g, &a);
            let b = conv(&mut g, w, &x, "conv4_2", 4, 32, 1)?;
            g.output(&b, spec::REGRESSION, &[None, Some(4), None, None]);
            g.output(&a, spec::PROBABILITY, &[None, Some(2), None, None]);
        }
        Stage::R => {
            let x = g.input(spec::INPUT, &[None, Some(3), Some(24), Some(24)]);
            let x = conv(&mut g, w, &x, "conv1", 28, 3, 3)?;
            let x = prelu(&mut g, w, &x, "prelu1", 28, true)?;
            let x = max_pool(&mut g, &x, 3, 2);
            let x = conv(&mut g, w, &x, "conv2", 48, 28, 3)?;
            let x = prelu(&mut g, w, &x, "prelu2", 48, true)?;
            let x = max_pool(&mut g, &x, 3, 2);
            let x = conv(&mut g, w, &x, "conv3", 64, 48, 2)?;
            let x = prelu(&mut g, w, &x, "prelu3", 64, true)?;
            let x = caffe_flatten(&mut g, &x);
            let x = dense(&mut g, w, &x, "dense4", 128, 576)?;
            let x = prelu(&mut g, w, &x, "prelu4", 128, false)?;
            let a = dense(&mut g, w, &x, "dense5_1", 2, 128)?;
            let a = softmax(&mut g, &a);
            let b = dense(&mut g, w, &x, "dense5_2", 4, 128)?;
            g.output(&b, spec::REGRESSION, &[None, Some(4)]);
            g.output(&a, spec::PROBABILITY, &[None, Some(2)]);
        }
        Stage::O => {
            let x = g.input(spec::INPUT, &[None, Some(3), Some(48), Some(48)]);
            let x = conv(&mut g, w, &x, "conv1", 32, 3, 3)?;
            let x = prelu(&mut g, w, &x, "prelu1", 32, true)?;
            let x = max_pool(&mut g, &x, 3, 2);
            let x = conv(&mut g, w, &x, "conv2", 64, 32, 3)?;
            let x = prelu(&mut g, w, &x, "prelu2", 64, true)?;
            let x = max_pool(&mut g, &x, 3, 2);
            let x = conv(&mut g, w, &x, "conv3", 64, 64, 3)?;
            let x = prelu(&mut g, w, &x, "prelu3", 64, true)?;
            let x = max_pool(&mut g, &x, 2, 2);
            let x = conv(&mut g, w, &x, "conv4", 128, 64, 2)?;
            let x = prelu(&mut g, w, &x, "prelu4", 128, true)?;
            let x = caffe_flatten(&mut g, &x);
            let x = dense(&mut g, w, &x, "dense5", 256, 1152)?;
            let x = prelu(&mut g, w, &x, "prelu5", 256, false)?;
            let a = dense(&mut g, w, &x, "dense6_1", 2, 256)?;
            let a = softmax(&mut g, &a);
            let b = dense(&mut g, w, &x, "dense6_2", 4, 256)?;
            let c = dense(&mut g, w, &x, "dense6_3", 10, 256)?;
            g.output(&b, spec::REGRESSION, &[None, Some(4)]);
            g.output(&c, spec::LANDMARKS, &[None, Some(10)]);
            g.output(&a, spec::PROBABILITY, &[None, Some(2)]);
        }
    }
    Ok(g)
}

/// The ONNX model of one stage from the bytes of its `.pt` file.
pub fn stage_model(
    stage: Stage,
    weights: &[u8],
    version: Option<&str>,
) -> Result<ModelProto, ImportError> {
    let file = stage.member();
    let tensors = torch_legacy::read_state_dict(weights)
        .map_err(|source| ImportError::Weights {
            file: file.clone(),
            source,
        })?
        .into_iter()
        .collect();
    let w = Weights {
        file: file.clone(),
        tensors,
    };
    let g = build(stage, &w)?;
    let source = format!(
        "{DISTRIBUTION} {} (Python package index wheel), {file}",
        version.unwrap_or("(version unknown)")
    );
    let metadata = [
        (spec::keys::DETECTOR, spec::DETECTOR_NAME.to_string()),
        (spec::keys::STAGE, stage.name().to_string()),
        (spec::keys::NORMALIZATION, spec::NORMALIZATION.to_string()),
        (spec::keys::SOURCE, source),
        (spec::keys::LICENSE, LICENSE.to_string()),
        (spec::keys::WEIGHTS_SHA256, sha256_hex(weights)),
    ];
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "affect-train import mtcnn".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: String::new(),
        model_version: 1,
        doc_string: format!(
            "MTCNN {} from {DISTRIBUTION}'s {file} ({LICENSE})",
            stage.name()
        ),
        graph: Some(g.into_graph(&format!("mtcnn_{}", stage.name()))),
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| StringStringEntryProto {
                key: key.to_string(),
                value,
            })
            .collect(),
    })
}

/// Reads the three `.pt` files from `source` and writes `mtcnn-{pnet,rnet,onet}.onnx` into
/// `out`; returns the written paths.
pub fn import(source: &WeightSource, out: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let version = source.version(DISTRIBUTION);
    std::fs::create_dir_all(out).map_err(|e| ImportError::Io {
        path: out.to_path_buf(),
        source: e,
    })?;
    let mut written = Vec::new();
    for stage in Stage::ALL {
        let bytes = source.read(&stage.member())?;
        let model = stage_model(stage, &bytes, version.as_deref())?;
        let path = out.join(spec::file_name(stage.name()));
        write_model(&model, &path)?;
        written.push(path);
    }
    Ok(written)
}
