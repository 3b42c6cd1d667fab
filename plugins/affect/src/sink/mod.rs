// SPDX-License-Identifier: MPL-2.0
//! `affectsink`: writes the faces and results of every frame to a file, one row per face per
//! frame, as CSV in OpenFace's column style or as JSON lines.
//!
//! ```text
//! gst-launch-1.0 filesrc location=talk.mp4 ! decodebin ! videoconvert ! affectfacecrop \
//!     ! affectinfer model=models/affect-default.onnx ! affectsink location=talk.csv
//! ```
//!
//! The element reads only the metadata of the buffers (face ROI meta and the `affect` results
//! `affectinfer` adds to it), so it accepts any caps.
//!
//! CSV columns, in order (OpenFace FeatureExtraction's names where they mean the same):
//! `frame` (1-based count of the frames the sink received since it started), `face_id` (the
//! track id), `timestamp` (stream time of the buffer's PTS, in seconds), `confidence` (detector
//! score), `success` (1 when the face has results), `x`, `y`, `width`, `height` (face box in frame
//! pixels), `valence`, `arousal`, `expression`, one `expr_<label>` probability per expression
//! label, one `AUxx_p` probability per action unit (`AU1` is written `AU01`; OpenFace's `_r`
//! intensities have no counterpart), one `AUxx_c` occurrence (1 when the probability is at least
//! `au-threshold`) per action unit, and `lmk_x_0`..`lmk_x_4`, `lmk_y_0`..`lmk_y_4` (the five
//! alignment landmarks). Cells without a value (no results, no PTS, a non-finite number) are
//! empty. The label columns are those of the first result; until one arrives rows are held
//! back, and a file that never sees one gets the label sets of the model contract.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct AffectSink(ObjectSubclass<imp::AffectSink>)
        @extends gst_base::BaseSink, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "affectsink",
        gst::Rank::NONE,
        AffectSink::static_type(),
    )
}
