// SPDX-License-Identifier: MPL-2.0
//! `affectfacecrop`: finds, tracks and aligns faces in any video.
//!
//! ```text
//! # Faces as region-of-interest meta on the untouched video (Haar cascade of opencv-data):
//! gst-launch-1.0 filesrc location=talk.mkv ! decodebin ! videoconvert ! affectfacecrop \
//!     ! fakesink
//! # Aff-Wild2-style aligned crops of the largest face, one JPEG per frame:
//! gst-launch-1.0 filesrc location=talk.mkv ! decodebin ! videoconvert \
//!     ! affectfacecrop mode=crop no-face=black ! jpegenc ! multifilesink location=crops/%05d.jpg
//! ```
//!
//! In `annotate` mode (the default) every tracked face becomes a `GstVideoRegionOfInterestMeta`
//! of roi type `face` whose id is the track id, with an `affect-face` parameter structure
//! (`track-id`, `score`, `landmarks`). In `crop` mode the output is the aligned RGB crop of one
//! track.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct AffectFaceCrop(ObjectSubclass<imp::AffectFaceCrop>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "affectfacecrop",
        gst::Rank::NONE,
        AffectFaceCrop::static_type(),
    )
}
