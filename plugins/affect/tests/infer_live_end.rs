// SPDX-License-Identifier: MPL-2.0
//! A live `affectinfer` whose video has ended while its live audio branch has stopped without
//! EOS (an unplugged microphone): every frame still comes out and the stream ends, within the
//! latency and a margin, instead of waiting forever for audio.
//!
//! The pipeline runs on a `gst_check` test clock that the test advances from one waiting clock
//! id to the next, so the end is judged in the pipeline's own time, not the machine's.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::init;
use gst::prelude::*;

const W: usize = 64;
const H: usize = 48;
const FRAMES: u64 = 8;
/// The element's batching window (its `max-latency` property), in milliseconds.
const MAX_LATENCY_MS: u32 = 10;
const MELSPEC_CAPS: &str = "audio/x-affect-melspec,format=F32LE,rate=16000,n-mels=64,hop=160,\
                            win=400,n-fft=512";

fn video_frame(i: u64) -> gst::Buffer {
    let data: Vec<u8> = (0..W * H * 3)
        .map(|p| ((p * 7 + i as usize * 13) % 251) as u8)
        .collect();
    let mut buf = gst::Buffer::from_mut_slice(data);
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(40 * i));
        b.set_duration(gst::ClockTime::from_mseconds(40));
    }
    buf
}

/// `count` spectrogram frames (10 ms apart) of the value `-5.0`, from spectrogram frame `first`.
fn melspec(first: u64, count: u64) -> gst::Buffer {
    let bytes: Vec<u8> = (0..count * 64)
        .flat_map(|_| (-5.0f32).to_le_bytes())
        .collect();
    let mut buf = gst::Buffer::from_mut_slice(bytes);
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(10 * first));
        b.set_duration(gst::ClockTime::from_mseconds(10 * count));
    }
    buf
}

fn appsrc(pipeline: &gst::Pipeline, name: &str) -> gst_app::AppSrc {
    pipeline
        .by_name(name)
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap()
}

#[test]
fn live_stream_ends_when_video_ends_and_audio_stops_without_eos() {
    init();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/affect-default.onnx");
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=v is-live=true format=time \
         caps=video/x-raw,format=RGB,width={W},height={H},framerate=25/1 \
         ! affectfacecrop detector=full-frame ! infer.video_sink \
         appsrc name=a is-live=true format=time caps={MELSPEC_CAPS} ! infer.audio_sink \
         affectinfer name=infer model={} max-latency={MAX_LATENCY_MS} \
         ! appsink name=sink sync=false",
        model.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();

    // The sink counts the frames as they come; an appsink holding them would hold back EOS.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let record = seen.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let pts = sample.buffer().and_then(|b| b.pts());
                record.lock().unwrap().push(pts);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );

    let video = appsrc(&pipeline, "v");
    let audio = appsrc(&pipeline, "a");
    // 200 ms of spectrogram, then the microphone is gone: no more buffers and no EOS.
    audio.push_buffer(melspec(0, 10)).unwrap();
    audio.push_buffer(melspec(10, 10)).unwrap();
    // 320 ms of video, then its end.
    for i in 0..FRAMES {
        video.push_buffer(video_frame(i)).unwrap();
    }
    video.end_of_stream().unwrap();

    let clock = gst_check::TestClock::new();
    pipeline.use_clock(Some(&clock));
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    // The video's end (320 ms), the element's latency (a 40 ms frame and the batching window)
    // and a margin of a frame: in the pipeline's time, the stream must have ended by then.
    let deadline = gst::ClockTime::from_mseconds(40 * FRAMES)
        + gst::ClockTime::from_mseconds(40 + MAX_LATENCY_MS as u64)
        + gst::ClockTime::from_mseconds(40);
    // Only a guard against a pipeline that neither waits on the clock nor ends.
    let guard = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let outcome = loop {
        if let Some(m) = bus.pop_filtered(&[gst::MessageType::Eos, gst::MessageType::Error]) {
            break Some(match m.view() {
                gst::MessageView::Error(e) => Err(format!("{} {:?}", e.error(), e.debug())),
                _ => Ok(clock.time()),
            });
        }
        if clock.time() > deadline || std::time::Instant::now() > guard {
            break None;
        }
        // Time moves only to the next moment something waits for.
        if clock.peek_next_pending_id().is_some() {
            clock.crank();
        } else {
            std::thread::yield_now();
        }
    };
    pipeline.set_state(gst::State::Null).unwrap();

    let seen = seen.lock().unwrap().clone();
    let expected: Vec<_> = (0..FRAMES)
        .map(|i| Some(gst::ClockTime::from_mseconds(40 * i)))
        .collect();
    match outcome {
        None => panic!(
            "no EOS by clock time {deadline} (now {}); frames out: {seen:?}",
            clock.time()
        ),
        Some(Err(e)) => panic!("the pipeline failed: {e}"),
        Some(Ok(at)) => println!("EOS at clock time {at}"),
    }
    assert_eq!(
        seen, expected,
        "every video frame reaches the sink, in order"
    );
}
