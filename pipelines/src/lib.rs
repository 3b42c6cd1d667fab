// SPDX-License-Identifier: MPL-2.0
//! The `affect` command line: the analysis pipeline of a file ([`pipeline`]), the demo on
//! the synthetic world ([`demo`]), batch analysis ([`analyze`]), the elements' benchmarks
//! ([`bench`]) and the timeline plot ([`plot`]).

pub mod analyze;
pub mod archive;
pub mod archive_bench;
pub mod bench;
pub mod demo;
pub mod infer_bench;
pub mod live_bench;
pub mod merge;
pub mod models;
pub mod pipeline;
pub mod plot;
pub mod progress;
pub mod real_bench;
pub mod table;

/// Initialises GStreamer and registers the affect elements linked into this program, so no
/// `GST_PLUGIN_PATH` is needed.
pub fn init() -> Result<(), String> {
    gst::init().map_err(|e| format!("cannot initialise GStreamer: {e}"))?;
    gstaffect::plugin_register_static()
        .map_err(|e| format!("cannot register the affect elements: {e}"))
}
