// SPDX-License-Identifier: MPL-2.0
//! `affectoverlay`: draws what the affect elements know of each face onto the video.
//!
//! ```text
//! # Faces, tracks and results drawn into the picture, for any raw format:
//! gst-launch-1.0 filesrc location=talk.mkv ! decodebin ! videoconvert ! affectfacecrop \
//!     ! affectinfer ! affectoverlay ! videoconvert ! autovideosink
//! # Only the boxes and track ids, in red:
//! ... ! affectoverlay show-expression=false show-va=false show-aus=false box-color=0xffff0000 ! ...
//! ```
//!
//! For every face (`GstVideoRegionOfInterestMeta` of roi type `face`) it draws the box, the
//! five landmarks, and a label panel under the box (above it or inside it where the frame
//! ends): the track id, the most probable expression with its probability, valence and
//! arousal as a dot in the valence/arousal circle with their values, and the strongest action
//! units. A face without `affect` results gets its box and id only. Annotations are rendered
//! with cairo and pango into a `GstVideoOverlayComposition`, which is attached as a
//! `GstVideoOverlayCompositionMeta` when downstream negotiated
//! `video/x-raw(meta:GstVideoOverlayComposition)` and lists that meta in its allocation
//! answer, and blended into the frame otherwise. Frames without faces pass untouched.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct AffectOverlay(ObjectSubclass<imp::AffectOverlay>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "affectoverlay",
        gst::Rank::NONE,
        AffectOverlay::static_type(),
    )
}
