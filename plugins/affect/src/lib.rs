// SPDX-License-Identifier: MPL-2.0
//! GStreamer plugin `affect`: audio-visual affect analysis elements.
//!
//! - `affectanalysisbin`: the whole analysis of any file or stream (decodebin, face crop,
//!   spectrogram and inference), with or without an audio stream.
//! - `affectfacecrop`: finds, tracks and aligns faces (region-of-interest meta or aligned crops).
//! - `affectinfer`: multi-task audio-visual inference on every face, through ONNX Runtime.
//! - `affectoverlay`: draws each face's box, id, expression, valence/arousal and AUs.
//! - `affectsink`: writes one row per face per frame as CSV (OpenFace columns) or JSON lines.
//! - `affectspectro`: raw audio to log-mel spectrogram frames (`audio/x-affect-melspec`).

use gst::glib;

mod analysisbin;
mod choices;
pub mod detector;
mod facecrop;
mod frame;
mod infer;
pub mod meta;
pub mod mtcnn;
mod overlay;
pub mod session;
mod sink;
mod spectro;

pub use analysisbin::{AffectAnalysisBin, INPUT_MESSAGE, STREAM_END_MESSAGE};
pub use facecrop::AffectFaceCrop;
pub use infer::AffectInfer;
pub use overlay::AffectOverlay;
pub use sink::AffectSink;
pub use spectro::AffectSpectro;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    analysisbin::register(plugin)?;
    facecrop::register(plugin)?;
    infer::register(plugin)?;
    overlay::register(plugin)?;
    sink::register(plugin)?;
    spectro::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    affect,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL-2.0",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    "affect",
    env!("BUILD_REL_DATE")
);
