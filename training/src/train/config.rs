// SPDX-License-Identifier: MPL-2.0
//! The training configuration file (TOML). Unknown keys are errors, so a misspelt key is
//! named instead of silently ignored. Relative paths are relative to the working directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TrainError;
use crate::loss::LossWeights;
use crate::model::NetworkConfig;

fn d_clip_len() -> usize {
    8
}
fn d_workers() -> usize {
    2
}
fn d_lr() -> f64 {
    1e-3
}
fn d_wd() -> f64 {
    0.05
}
fn d_beta1() -> f64 {
    0.9
}
fn d_beta2() -> f64 {
    0.999
}
fn d_eps() -> f64 {
    1e-8
}
fn d_warmup() -> f64 {
    0.05
}
fn d_min_lr() -> f64 {
    0.01
}
fn d_batch() -> usize {
    32
}
fn d_epochs() -> usize {
    10
}
fn d_true() -> bool {
    true
}
fn d_jitter() -> f32 {
    0.06
}
fn d_colour() -> f32 {
    0.2
}
fn d_device() -> String {
    "auto".into()
}
fn d_grad_clip() -> f64 {
    5.0
}

/// `[data]`: where the frames come from.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Data root laid out as Aff-Wild2 (e.g. made by `affect-train synth`).
    pub root: PathBuf,
    /// Frames per training clip (the GRU's unrolled length; 1 for per-frame networks).
    #[serde(default = "d_clip_len")]
    pub clip_len: usize,
    /// Threads decoding and augmenting frames.
    #[serde(default = "d_workers")]
    pub workers: usize,
    /// Use at most this many training clips per epoch (all when absent).
    #[serde(default)]
    pub max_train_clips: Option<usize>,
    /// Use at most this many validation clips (all when absent).
    #[serde(default)]
    pub max_val_clips: Option<usize>,
    /// Frames per validation clip (`clip_len` when absent). A pipeline carries the recurrent
    /// state along whole face tracks, so validating on clips much longer than the training
    /// clips picks the checkpoint whose state holds up there.
    #[serde(default)]
    pub val_clip_len: Option<usize>,
    /// What the data is, for the exported model's provenance (the root path when absent).
    #[serde(default)]
    pub description: Option<String>,
}

/// `[optimizer]`: AdamW with linear warm-up and cosine decay.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    #[serde(default = "d_lr")]
    pub lr: f64,
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    #[serde(default = "d_beta1")]
    pub beta1: f64,
    #[serde(default = "d_beta2")]
    pub beta2: f64,
    #[serde(default = "d_eps")]
    pub eps: f64,
    /// Fraction of all steps spent warming up linearly from 0.
    #[serde(default = "d_warmup")]
    pub warmup: f64,
    /// Final learning rate as a fraction of `lr`.
    #[serde(default = "d_min_lr")]
    pub min_lr_fraction: f64,
    /// Gradient norm clip (0 = none).
    #[serde(default = "d_grad_clip")]
    pub grad_clip: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// `[augment]`: applied per clip (the same for every frame of a clip).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Random horizontal flip.
    #[serde(default = "d_true")]
    pub flip: bool,
    /// Random shift and scale of the crop, as a fraction of its size.
    #[serde(default = "d_jitter")]
    pub crop_jitter: f32,
    /// Random brightness, contrast and per-channel gain, as a relative amount.
    #[serde(default = "d_colour")]
    pub colour: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// `[train]`: the run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Output folder: `best/`, `last/` checkpoints and `log.jsonl`.
    pub out: PathBuf,
    /// Clips per batch.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    /// Mixed precision (autocast) on CUDA; ignored on the CPU.
    #[serde(default = "d_true")]
    pub mixed_precision: bool,
    #[serde(default)]
    pub seed: u64,
    /// `auto` (CUDA when available), `cpu` or `cuda`.
    #[serde(default = "d_device")]
    pub device: String,
    /// libtorch intra-op threads (0 = libtorch's choice).
    #[serde(default)]
    pub threads: usize,
    /// Show a progress bar.
    #[serde(default = "d_true")]
    pub progress: bool,
    /// Start from the weights of this checkpoint (same `[network]`), e.g. to fine-tune.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Stop an epoch after this many steps (all when absent); for quick runs.
    #[serde(default)]
    pub max_steps_per_epoch: Option<usize>,
}

/// A whole configuration file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub data: DataConfig,
    pub network: NetworkConfig,
    #[serde(default)]
    pub loss: LossWeights,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub augment: AugmentConfig,
    pub train: RunConfig,
    /// Free text written into the exported model's metadata.
    #[serde(default)]
    pub name: Option<String>,
}

impl TrainConfig {
    pub fn parse(text: &str, path: &Path) -> Result<TrainConfig, TrainError> {
        let cfg: TrainConfig = toml::from_str(text).map_err(|e| TrainError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|message| TrainError::Config {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<TrainConfig, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Checks values serde cannot; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        self.network.validate()?;
        let positive = [
            ("data.clip_len", self.data.clip_len),
            ("data.val_clip_len", self.data.val_clip_len.unwrap_or(1)),
            ("data.workers", self.data.workers),
            ("train.batch_size", self.train.batch_size),
            ("train.epochs", self.train.epochs),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(format!("{key} = 0 must be at least 1"));
            }
        }
        let o = &self.optimizer;
        if o.lr.is_nan() || o.lr <= 0.0 {
            return Err(format!("optimizer.lr = {} must be > 0", o.lr));
        }
        if o.weight_decay.is_nan() || o.weight_decay < 0.0 {
            return Err(format!(
                "optimizer.weight_decay = {} must be >= 0",
                o.weight_decay
            ));
        }
        for (key, v) in [("optimizer.beta1", o.beta1), ("optimizer.beta2", o.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(format!("{key} = {v} must be in [0, 1)"));
            }
        }
        if !(0.0..1.0).contains(&o.warmup) {
            return Err(format!("optimizer.warmup = {} must be in [0, 1)", o.warmup));
        }
        if !(0.0..=1.0).contains(&o.min_lr_fraction) {
            return Err(format!(
                "optimizer.min_lr_fraction = {} must be in [0, 1]",
                o.min_lr_fraction
            ));
        }
        let a = &self.augment;
        if !(0.0..0.5).contains(&a.crop_jitter) {
            return Err(format!(
                "augment.crop_jitter = {} must be in [0, 0.5)",
                a.crop_jitter
            ));
        }
        if !(0.0..1.0).contains(&a.colour) {
            return Err(format!("augment.colour = {} must be in [0, 1)", a.colour));
        }
        if !["auto", "cpu", "cuda"].contains(&self.train.device.as_str()) {
            return Err(format!(
                "train.device = {:?} must be auto, cpu or cuda",
                self.train.device
            ));
        }
        let w = &self.loss;
        for (key, v) in [
            ("loss.va_ccc", w.va_ccc),
            ("loss.va_mse", w.va_mse),
            ("loss.au", w.au),
            ("loss.expression", w.expression),
        ] {
            if v.is_nan() || v < 0.0 {
                return Err(format!("{key} = {v} must be >= 0"));
            }
        }
        Ok(())
    }
}
