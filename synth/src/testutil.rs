// SPDX-License-Identifier: MPL-2.0
//! Helpers shared by the integration tests of the crates that run GStreamer pipelines on the
//! synthetic world (the elements, the end-to-end tests, the `affect` command): reading a
//! parsed pipeline's output from its appsink.

use gst::prelude::*;

/// The appsink named `sink` in `pipeline`; panics if there is none.
pub fn appsink(pipeline: &gst::Pipeline) -> gst_app::AppSink {
    pipeline
        .by_name("sink")
        .expect("the pipeline has an element named sink")
        .downcast::<gst_app::AppSink>()
        .expect("the element named sink is an appsink")
}

/// Sets `pipeline` playing and returns its appsink named `sink`.
pub fn play(pipeline: &gst::Pipeline) -> gst_app::AppSink {
    let sink = appsink(pipeline);
    pipeline
        .set_state(gst::State::Playing)
        .expect("the pipeline starts playing");
    sink
}

/// The samples `sink` gives until the end of the stream, or until none comes within
/// `timeout` (check [`gst_app::AppSink::is_eos`] to tell the two apart).
pub fn samples(
    sink: &gst_app::AppSink,
    timeout: gst::ClockTime,
) -> impl Iterator<Item = gst::Sample> + '_ {
    std::iter::from_fn(move || sink.try_pull_sample(timeout))
}
