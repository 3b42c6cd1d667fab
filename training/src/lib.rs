// SPDX-License-Identifier: MPL-2.0
//! Training side of the affect models: the synthetic affect world ([`synth`]), reading data
//! laid out as Aff-Wild2 ([`data`]) and ABAW evaluation ([`eval`]).
//!
//! Real affect data (Aff-Wild2) is licensed per user, so the project makes its own ground
//! truth: a world of procedurally drawn faces and voices with known valence/arousal, action
//! units and expressions, written out exactly as Aff-Wild2 is. Everything here builds without
//! libtorch; the networks live behind the `torch` feature.
//!
//! # Prediction files (`affect-train eval --pred FILE`)
//!
//! CSV with the header
//! `video,frame,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26`
//! and one row per predicted frame: `video` is the annotation name (`<video>`,
//! `<video>_left`, `<video>_right`), `frame` is 1-based as in the annotation files,
//! `valence`/`arousal` are in [-1, 1], `expression` is a class index (0..7, ABAW order) or a
//! class name, and each AU column is an occurrence probability or 0/1 (>= 0.5 counts as
//! occurring). Every annotated frame of the evaluated split must have a row.

pub mod data;
pub mod eval;
/// ONNX writing (always) and the export of trained networks (`torch`).
pub mod export;
/// Pretrained third-party networks turned into ONNX files (`affect-train import`).
pub mod import;
pub mod onnx_predict;
pub mod rng;
pub mod synth;
pub mod testutil;

// The networks, their losses and training (libtorch).
#[cfg(feature = "torch")]
pub mod loss;
#[cfg(feature = "torch")]
pub mod model;
#[cfg(feature = "torch")]
pub mod train;
