// SPDX-License-Identifier: MPL-2.0
//! Checkpoints: a folder holding `model.safetensors` (the network's variables),
//! `optimizer.safetensors` (AdamW moments) and `checkpoint.json` (network configuration,
//! progress, provenance), so that a checkpoint alone rebuilds, resumes and exports.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor, nn};
use thiserror::Error;

use crate::model::{AffectNet, NetworkConfig};

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const META_FILE: &str = "checkpoint.json";

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("{path}: no checkpoint here ({META_FILE} is missing)")]
    Missing { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Torch {
        path: PathBuf,
        source: tch::TchError,
    },
}

/// What `checkpoint.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub network: NetworkConfig,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: u64,
    /// Best validation score so far (`P_VA + P_EXPR + P_AU`).
    pub best_score: Option<f64>,
    pub name: Option<String>,
    pub training_data: Option<String>,
    pub command: Option<String>,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub vs: nn::VarStore,
    pub net: AffectNet,
}

fn torch_err(path: &Path) -> impl FnOnce(tch::TchError) -> CheckpointError + '_ {
    move |source| CheckpointError::Torch {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a checkpoint folder (replacing one that is there).
pub fn save(
    dir: &Path,
    meta: &CheckpointMeta,
    vs: &nn::VarStore,
    optimizer: &[(String, Tensor)],
) -> Result<(), CheckpointError> {
    // Write next to the target and rename, so an interruption never leaves half a checkpoint.
    let tmp = dir.with_extension("partial");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CheckpointError::Io { path, source }
    };
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let model = tmp.join(MODEL_FILE);
    vs.save(&model).map_err(torch_err(&model))?;
    let opt = tmp.join(OPTIMIZER_FILE);
    Tensor::write_safetensors(optimizer, &opt).map_err(torch_err(&opt))?;
    let json = serde_json::to_string_pretty(meta).map_err(|e| CheckpointError::Invalid {
        path: tmp.clone(),
        message: e.to_string(),
    })?;
    let m = tmp.join(META_FILE);
    std::fs::write(&m, json).map_err(io(&m))?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir).map_err(io(dir))
}

/// Reads `checkpoint.json` of a checkpoint folder.
pub fn read_meta(dir: &Path) -> Result<CheckpointMeta, CheckpointError> {
    let m = dir.join(META_FILE);
    if !m.is_file() {
        return Err(CheckpointError::Missing {
            path: dir.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(&m).map_err(|source| CheckpointError::Io {
        path: m.clone(),
        source,
    })?;
    let meta: CheckpointMeta =
        serde_json::from_str(&text).map_err(|e| CheckpointError::Invalid {
            path: m.clone(),
            message: e.to_string(),
        })?;
    meta.network
        .validate()
        .map_err(|message| CheckpointError::Invalid { path: m, message })?;
    Ok(meta)
}

/// Rebuilds the network of a checkpoint and loads its weights.
pub fn load(dir: &Path, device: Device) -> Result<Checkpoint, CheckpointError> {
    let meta = read_meta(dir)?;
    let mut vs = nn::VarStore::new(device);
    let net = AffectNet::new(&vs.root(), &meta.network);
    let model = dir.join(MODEL_FILE);
    vs.load(&model).map_err(torch_err(&model))?;
    Ok(Checkpoint { meta, vs, net })
}

/// Reads the optimiser state of a checkpoint.
pub fn load_optimizer(
    dir: &Path,
    device: Device,
) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    let opt = dir.join(OPTIMIZER_FILE);
    let tensors = Tensor::read_safetensors(&opt).map_err(torch_err(&opt))?;
    Ok(tensors
        .into_iter()
        .map(|(k, t)| (k, t.to_device(device)))
        .collect())
}
