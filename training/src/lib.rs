// SPDX-License-Identifier: MPL-2.0
//! Training side of the affect models: the networks, their training and ONNX export (behind
//! the `torch` feature), importers of pretrained weights and a reference predictor of exported
//! models through ONNX Runtime ([`onnx_predict`]).
//!
//! The synthetic affect world ([`synth`]), the reader of data laid out as Aff-Wild2 ([`data`])
//! and ABAW evaluation ([`eval`]) are the crate `affect-synth`, re-exported here under the
//! names training has always used. Everything here builds without libtorch.
//!
//! # Prediction files (`affect-train eval --pred FILE`)
//!
//! The format is described in [`eval`] (`affect_synth::eval`).

pub use affect_synth as synth;
pub use affect_synth::{data, eval, rng};

/// ONNX writing (always) and the export of trained networks (`torch`).
pub mod export;
/// Pretrained third-party networks turned into ONNX files (`affect-train import`).
pub mod import;
pub mod onnx_predict;

// The networks, their losses and training (libtorch).
#[cfg(feature = "torch")]
pub mod loss;
#[cfg(feature = "torch")]
pub mod model;
#[cfg(feature = "torch")]
pub mod train;
