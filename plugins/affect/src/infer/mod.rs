// SPDX-License-Identifier: MPL-2.0
//! `affectinfer`: synchronised audio-visual multi-task inference through ONNX Runtime.
//!
//! ```text
//! gst-launch-1.0 filesrc location=talk.mkv ! decodebin name=d \
//!     d. ! videoconvert ! affectfacecrop ! infer.video_sink \
//!     d. ! audioconvert ! audioresample ! affectspectro ! infer.audio_sink \
//!     affectinfer name=infer model=models/affect-default.onnx ! videoconvert ! autovideosink
//! ```
//!
//! For every face that `affectfacecrop` (or any detector) put on a frame as region-of-interest
//! meta, the element cuts the model's crop, takes the audio window that ends at the frame's
//! running time, carries the track's recurrent state, and writes the model's answer as an
//! `affect` parameter structure on the face's meta. One session per model file serves every
//! `affectinfer` of the process, batching their faces on its own thread.

use gst::glib;
use gst::prelude::*;

pub(crate) mod imp;

glib::wrapper! {
    pub struct AffectInfer(ObjectSubclass<imp::AffectInfer>)
        @extends gst_base::Aggregator, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "affectinfer",
        gst::Rank::NONE,
        AffectInfer::static_type(),
    )
}
