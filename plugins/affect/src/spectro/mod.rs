// SPDX-License-Identifier: MPL-2.0
//! `affectspectro`: raw audio in, log-mel spectrogram frames out.
//!
//! ```text
//! gst-launch-1.0 filesrc location=talk.wav ! decodebin ! audioconvert ! audioresample \
//!     ! affectspectro ! fakesink
//! ```
//!
//! The input rate must equal the `sample-rate` property (put `audioresample` in front);
//! any channel count is averaged to mono. Each output buffer holds whole spectrogram frames,
//! `n-mels` little-endian f32 values per frame, frame `k` of a stream stamped with the time
//! of its first sample.

use gst::glib;
use gst::prelude::*;

mod imp;

/// Caps name of the spectrogram stream.
pub const MELSPEC_CAPS_NAME: &str = "audio/x-affect-melspec";

glib::wrapper! {
    pub struct AffectSpectro(ObjectSubclass<imp::AffectSpectro>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "affectspectro",
        gst::Rank::NONE,
        AffectSpectro::static_type(),
    )
}
