// SPDX-License-Identifier: MPL-2.0
//! Pure logic shared by the affect GStreamer elements and the training crate.
//!
//! Nothing here depends on GStreamer or ONNX Runtime, so every step a model sees in training
//! (spectrogram, labels, the model contract) is the same code a pipeline runs, and all of it is
//! unit-tested without a media framework.

pub mod align;
pub mod bench;
pub mod contract;
pub mod detect;
pub mod exif;
pub mod labels;
pub mod landmark_prior;
pub mod melspec;
pub mod metrics;
pub mod pixels;
#[doc(hidden)]
pub mod testutil;
pub mod track;
