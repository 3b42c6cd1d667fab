// SPDX-License-Identifier: MPL-2.0
//! Shared set-up of the end-to-end tests: GStreamer with the affect elements registered,
//! small synthetic data sets made on the spot, their ground truth put on frames as upstream
//! face meta, and pipelines run to the end.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};

use affect_synth::testutil;
use affect_synth::{self as synth, FrameTruth, SynthConfig};
use gst::prelude::*;
use gstaffect::meta::Face;

/// Frame size of the sets [`synthetic_set`] makes.
pub const WIDTH: u32 = 320;
pub const HEIGHT: u32 = 240;

/// Initialises GStreamer and registers the affect elements once per process.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstaffect::plugin_register_static().expect("register the affect plugin");
    });
}

/// Generates a synthetic data set into `dir` and returns its root.
pub fn synthetic_set(dir: &Path, videos: usize, seconds: f32, fps: u32, seed: u64) -> PathBuf {
    let root = dir.join("synth");
    synth::generate(&SynthConfig {
        out: root.clone(),
        videos,
        seconds,
        seed,
        faces_per_frame: 2,
        fps,
        width: WIDTH,
        height: HEIGHT,
        ..SynthConfig::default()
    })
    .expect("generate the synthetic set");
    root
}

/// Puts each frame's ground-truth faces (boxes and landmarks, as a detector would) on the
/// buffers arriving at `element`'s sink pad as upstream face meta, the n-th buffer getting
/// `truth[n]`. The frames are [`WIDTH`] x [`HEIGHT`], as [`synthetic_set`] makes them.
pub fn attach_truth(element: &gst::Element, truth: Vec<FrameTruth>) {
    let frame = Arc::new(Mutex::new(0usize));
    element
        .static_pad("sink")
        .expect("the element has a sink pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let mut index = frame.lock().unwrap();
            if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut()
                && let Some(t) = truth.get(*index)
            {
                let b = buffer.make_mut();
                for f in &t.faces {
                    let [x, y, w, h] = f.bbox;
                    Face {
                        bbox: [x, y, x + w, y + h],
                        track_id: 0,
                        score: 1.0,
                        landmarks: Some(f.landmarks),
                    }
                    .attach(b, WIDTH, HEIGHT);
                }
            }
            *index += 1;
            gst::PadProbeReturn::Ok
        });
}

/// Plays `pipeline` (which ends in `appsink name=sink`) to the end of the stream and returns
/// `each` of every sample, taken as it comes; panics if the pipeline posts an error or no
/// sample comes within `timeout` before the end.
pub fn run_to_eos<T>(
    pipeline: &gst::Pipeline,
    timeout: gst::ClockTime,
    each: impl FnMut(gst::Sample) -> T,
) -> Vec<T> {
    let sink = testutil::play(pipeline);
    let out = testutil::samples(&sink, timeout).map(each).collect();
    let bus = pipeline.bus().unwrap();
    if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        panic!("pipeline error: {msg:?}");
    }
    assert!(sink.is_eos(), "the pipeline did not finish");
    pipeline.set_state(gst::State::Null).unwrap();
    out
}
