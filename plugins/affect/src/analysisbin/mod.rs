// SPDX-License-Identifier: MPL-2.0
//! `affectanalysisbin`: the whole analysis of a file or stream in one element.
//!
//! ```text
//! gst-launch-1.0 filesrc location=talk.mkv \
//!     ! affectanalysisbin model=models/affect-default.onnx ! affectsink location=talk.csv
//! ```
//!
//! Inside, `decodebin` demuxes and decodes the input; its video goes through `queue !
//! videoconvert ! videoflip video-direction=auto ! affectfacecrop` to `affectinfer`'s
//! `video_sink` (`videoflip` turns the frames upright as the input's `image-orientation` tag
//! says: a phone video's rotation, a photograph's EXIF orientation; `apply-orientation=false`
//! leaves them as stored), its audio (when there is
//! any) through `queue ! audioconvert ! audioresample ! affectspectro` to an `audio_sink`
//! requested for it, and `affectinfer`'s output is the bin's `src`: the video with every face's
//! region-of-interest meta and its `affect` results. Unlike the same pipeline written out on
//! a `gst-launch-1.0` line, the bin links only the branches the input has: a video-only input
//! is analysed on video alone (one warning; the model gets its `audio-missing` policy), an
//! input without video is an error naming the problem, and any other stream (subtitles, a
//! second video or audio stream) is discarded.
//!
//! The properties that are the children's (`detector`, `execution-provider`, `audio-missing`,
//! `batch-size`, ...) have their types and defaults.
//!
//! The bin tells the application what it found, in element messages from itself:
//! - `affect-input` once the streams are known: `video` and `audio` (booleans), `undecodable`
//!   (media types without a decoder, comma-separated);
//! - `affect-stream-end` when an analysed stream ends: `stream` (`video` or `audio`), `buffers`,
//!   `start` and `end` (first time stamp and end of the last buffer, nanoseconds), and for the
//!   video `orientation` (the tag's value, `rotate-0` without one) and `orientation-applied`.
//!
//! The inner elements are named `decodebin`, `facecrop` and `infer`, so that the properties
//! the bin does not proxy can be set through the child proxy:
//! `affectanalysisbin model=... infer::smoothing=0.5 facecrop::max-faces=4`.

use gst::glib;
use gst::prelude::*;

mod imp;

pub use imp::{INPUT_MESSAGE, STREAM_END_MESSAGE};

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
