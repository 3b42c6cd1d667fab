// SPDX-License-Identifier: MPL-2.0
//! Export of a trained [`AffectNet`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use affect_core::contract::{
    Alignment, AudioSpec, CONTRACT_VERSION, FaceSpec, Heads, ModelContract, keys,
};
use affect_core::labels::{AU_LABELS, EXPRESSION_LABELS};
use affect_core::melspec::MelConfig;
use prost::Message;
use thiserror::Error;

use super::graph::GraphBuilder;
use super::proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
use super::{IR_VERSION, OPSET, Provenance, utc_date};
use crate::model::AffectNet;

#[derive(Debug, Error)]
pub enum ExportError {
    #[error("cannot read the network weights: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Checkpoint(#[from] crate::train::checkpoint::CheckpointError),
}

/// The model contract of a network.
pub fn contract(net: &AffectNet, provenance: &Provenance) -> ModelContract {
    let c = &net.config;
    let mut extra = BTreeMap::new();
    extra.insert(keys::PROVENANCE_BACKBONE.to_string(), describe(net));
    extra.insert(
        keys::PROVENANCE_DATE.to_string(),
        provenance.date.clone().unwrap_or_else(utc_date),
    );
    extra.insert(
        keys::PROVENANCE_TRAINING_DATA.to_string(),
        provenance
            .training_data
            .clone()
            .unwrap_or_else(|| "unknown".into()),
    );
    if let Some(cmd) = &provenance.command {
        extra.insert(keys::PROVENANCE_COMMAND.to_string(), cmd.clone());
    }
    ModelContract {
        version: CONTRACT_VERSION,
        heads: Heads::ALL,
        face: FaceSpec {
            height: c.input_size as u32,
            width: c.input_size as u32,
            channels: 3,
            mean: c.mean,
            std: c.std,
            alignment: Alignment::ArcFace5Point,
            box_margin: 0.0,
        },
        audio: c.audio.then(|| AudioSpec {
            mel: MelConfig::default(),
            frames: c.audio_frames as usize,
        }),
        state_size: c.temporal.then_some(c.state_size as usize),
        au_labels: AU_LABELS.iter().map(|s| s.to_string()).collect(),
        expression_labels: EXPRESSION_LABELS.iter().map(|s| s.to_string()).collect(),
        name: Some(provenance.name.clone().unwrap_or_else(|| describe(net))),
        provenance: extra,
    }
}

/// A short description of the architecture, e.g. `mobilefacenet+audio+gru128+arcface`.
pub fn describe(net: &AffectNet) -> String {
    let c = &net.config;
    let mut s = format!("{}-w{}-{}px", c.backbone.as_str(), c.width(), c.input_size);
    if c.audio {
        s.push_str(&format!("+audio{}", c.audio_frames));
    }
    if c.temporal {
        s.push_str(&format!("+gru{}", c.state_size));
        if c.frame_skip {
            s.push_str("+skip");
        }
    }
    if c.expression_head == crate::model::ExpressionHead::Arcface {
        s.push_str(&format!(
            "+arcface(s={},m={})",
            c.arcface_scale, c.arcface_margin
        ));
    }
    s
}

/// Builds the ONNX model of `net` (its weights as they are now, inference behaviour).
pub fn to_onnx(
    net: &AffectNet,
    provenance: &Provenance,
    fp16: bool,
) -> Result<ModelProto, ExportError> {
    let mut g = GraphBuilder::new(fp16);
    tch::no_grad(|| net.export(&mut g))?;
    let metadata_props = contract(net, provenance)
        .to_metadata()
        .into_iter()
        .map(|(key, value)| StringStringEntryProto { key, value })
        .collect();
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "affect-train".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: String::new(),
        model_version: 1,
        doc_string: format!("affect model: {}", describe(net)),
        graph: Some(g.into_graph("affect")),
        metadata_props,
    })
}

/// Writes `net` as an ONNX file.
pub fn write_onnx(
    net: &AffectNet,
    provenance: &Provenance,
    fp16: bool,
    out: &Path,
) -> Result<(), ExportError> {
    let model = to_onnx(net, provenance, fp16)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ExportError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(out, model.encode_to_vec()).map_err(|source| ExportError::Io {
        path: out.to_path_buf(),
        source,
    })
}

/// Loads a checkpoint and writes its network as ONNX.
pub fn export_checkpoint(
    checkpoint: &Path,
    out: &Path,
    fp16: bool,
    command: Option<String>,
) -> Result<(), ExportError> {
    let ck = crate::train::checkpoint::load(checkpoint, tch::Device::Cpu)?;
    let provenance = Provenance {
        name: ck.meta.name.clone(),
        training_data: ck.meta.training_data.clone(),
        command: command.or_else(|| ck.meta.command.clone()),
        date: None,
    };
    write_onnx(&ck.net, &provenance, fp16, out)
}
