//! `affectanalysisbin`: the whole analysis of a file or stream in one element.
//!
//! ```text
//! gst-launch-1.0 filesrc location=talk.mkv \
//!     ! affectanalysisbin model=models/affect-default.onnx ! affectsink location=talk.csv
//! ```
//!
//! Inside, `decodebin` demuxes and decodes the input; its video goes through `queue !
//! videoconvert ! affectfacecrop` to `affectinfer`'s `video_sink`, its audio (when there is
//! any) through `queue ! audioconvert ! audioresample ! affectspectro` to an `audio_sink`
//! requested for it, and `affectinfer`'s output is the bin's `src`: the video with every face's
//! region-of-interest meta and its `affect` results. Unlike the same pipeline written out on
//! a `gst-launch-1.0` line, the bin links only the branches the input has: a video-only input
//! is analysed on video alone (one warning; the model gets its `audio-missing` policy), an
//! input without video is an error naming the problem, and any other stream (subtitles, a
//! second video or audio stream) is discarded.
//!
//! The inner elements are named `decodebin`, `facecrop` and `infer`, so that the properties
//! the bin does not proxy can be set through the child proxy:
//! `affectanalysisbin model=... infer::smoothing=0.5 facecrop::max-faces=4`.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct AffectAnalysisBin(ObjectSubclass<imp::AffectAnalysisBin>)
        @extends gst::Bin, gst::Element, gst::Object,
        @implements gst::ChildProxy;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "affectanalysisbin",
        gst::Rank::NONE,
        AffectAnalysisBin::static_type(),
    )
}
