// SPDX-License-Identifier: MPL-2.0
//! Live figures of `affect bench`: end-to-end latency of live pipelines (capture to the result
//! leaving `affectinfer`) at 1, 4 and 16 streams against the same pipelines with `identity` in
//! place of `affectinfer`, and a soak run that reports memory over a long live stream whose
//! tracks come and go.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use affect_core::bench::{percentile, rss_kb};
use gst::prelude::*;
use gstaffect::meta::Face;

/// Frames per second of the live sources.
const FPS: u32 = 25;

/// One live stream: `videotestsrc is-live` with a face found on every frame and live audio in
/// 20 ms buffers, into `analysis` (affectinfer, or identity for the baseline).
fn live_stream(index: usize, analysis: &str) -> String {
    let audio = if analysis.starts_with("affectinfer") {
        format!("an{index}.audio_sink")
    } else {
        "fakesink sync=false".into()
    };
    format!(
        "videotestsrc is-live=true pattern=ball \
         ! video/x-raw,format=RGB,width=320,height=240,framerate={FPS}/1 \
         ! affectfacecrop detector=full-frame ! {analysis} name=an{index} \
         ! fakesink name=out{index} sync=false \
         audiotestsrc is-live=true samplesperbuffer=320 wave=pink-noise \
         ! audio/x-raw,rate=16000,channels=1 ! affectspectro ! {audio} "
    )
}

/// Latency of every frame that left the pipeline's `outN` sinks within `duration`: clock
/// time at the sink minus the frame's capture time (base time + running time).
fn frame_latencies(
    description: &str,
    streams: usize,
    duration: Duration,
) -> Result<Vec<f64>, String> {
    let pipeline = gst::parse::launch(description)
        .map_err(|e| format!("cannot build the live pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    for i in 0..streams {
        let sink = pipeline
            .by_name(&format!("out{i}"))
            .ok_or("no output sink")?;
        let pad = sink.static_pad("sink").ok_or("sink without pad")?;
        let latencies = latencies.clone();
        let element = sink.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if let (Some(buffer), Some(clock), Some(base)) =
                (info.buffer(), element.clock(), element.base_time())
                && let Some(segment) = pad.sticky_event::<gst::event::Segment>(0)
                && let Some(segment) = segment.segment().downcast_ref::<gst::ClockTime>()
                && let Some(rt) = segment.to_running_time(buffer.pts())
            {
                let now = clock.time();
                let captured = base + rt;
                if now > captured {
                    latencies
                        .lock()
                        .unwrap()
                        .push((now - captured).nseconds() as f64 / 1e6);
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start the live pipeline: {e}"))?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Error],
        ) && let gst::MessageView::Error(e) = msg.view()
        {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(format!("live pipeline failed: {}", e.error()));
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    let mut v = std::mem::take(&mut *latencies.lock().unwrap());
    // The first second is start-up (negotiation, the first session run).
    let skip = (FPS as usize * streams).min(v.len() / 2);
    v.drain(..skip);
    Ok(v)
}

/// End-to-end latency at 1, 4 and 16 live streams sharing one model, against `identity`;
/// `properties` are more `affectinfer` properties (provider, device, batch size).
pub fn live_latency(model: &Path, seconds: f64, properties: &str) -> Result<(), String> {
    println!(
        "\nlive end-to-end latency (capture to the frame leaving the analysis; 320x240 at {FPS} \
         fps, one face, live audio in 20 ms buffers; {seconds} s per run)"
    );
    println!(
        "  {:>7}  {:>22}  {:>22}  {:>14}",
        "streams", "affectinfer p50/p99 ms", "identity p50/p99 ms", "frames/s out"
    );
    for streams in [1usize, 4, 16] {
        let mut figures = Vec::new();
        for analysis in [
            format!("affectinfer model={}{properties}", model.display()),
            "identity".to_string(),
        ] {
            let description: String = (0..streams).map(|i| live_stream(i, &analysis)).collect();
            let mut v = frame_latencies(&description, streams, Duration::from_secs_f64(seconds))?;
            v.sort_by(f64::total_cmp);
            figures.push((
                percentile(&v, 0.5).unwrap_or(f64::NAN),
                percentile(&v, 0.99).unwrap_or(f64::NAN),
                v.len(),
            ));
        }
        println!(
            "  {:>7}  {:>10.1} / {:>9.1}  {:>10.1} / {:>9.1}  {:>14.1}",
            streams,
            figures[0].0,
            figures[0].1,
            figures[1].0,
            figures[1].1,
            figures[0].2 as f64 / (seconds - 1.0)
        );
    }
    Ok(())
}

/// A live A/V stream for `minutes` in which a new face track starts every 5 frames (faces
/// given as upstream meta with fresh ids), printing the resident memory every minute and
/// at the end.
pub fn soak(model: &Path, minutes: f64, properties: &str) -> Result<(), String> {
    let description = format!(
        "videotestsrc is-live=true pattern=ball \
         ! video/x-raw,format=RGB,width=320,height=240,framerate={FPS}/1 \
         ! affectfacecrop name=faces detector=upstream \
         ! affectinfer name=infer model={}{properties} ! affectoverlay ! fakesink name=out sync=false \
         audiotestsrc is-live=true samplesperbuffer=320 wave=pink-noise \
         ! audio/x-raw,rate=16000,channels=1 ! affectspectro ! infer.audio_sink",
        model.display()
    );
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| format!("cannot build the soak pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let frames = Arc::new(AtomicU64::new(0));
    let seen = frames.clone();
    let pad = pipeline
        .by_name("faces")
        .and_then(|f| f.static_pad("sink"))
        .ok_or("no face finder")?;
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let n = seen.fetch_add(1, Ordering::Relaxed);
        if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
            let b = buffer.make_mut();
            for k in 0..2u64 {
                let x = 40.0 + 140.0 * k as f32;
                Face {
                    bbox: [x, 60.0, x + 100.0, 180.0],
                    // A new track every 5 frames for each of the two faces.
                    track_id: 1 + 2 * (n / 5) + k,
                    score: 1.0,
                    landmarks: None,
                }
                .attach(b, 320, 240);
            }
        }
        gst::PadProbeReturn::Ok
    });
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start the soak pipeline: {e}"))?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(minutes * 60.0);
    let warm_up = started + Duration::from_secs(10);
    let mut start_rss = None;
    let mut next_report = warm_up;
    println!("soak: a live A/V stream for {minutes} min, a new face track every 5 frames");
    while Instant::now() < end {
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(200),
            &[gst::MessageType::Error],
        ) && let gst::MessageView::Error(e) = msg.view()
        {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(format!("soak pipeline failed: {}", e.error()));
        }
        if Instant::now() >= next_report {
            let rss = rss_kb().unwrap_or(0);
            let start = *start_rss.get_or_insert(rss);
            println!(
                "  {:>6.1} min  frames {:>7}  tracks {:>7}  RSS {:>7} kB ({:+} kB since the \
                 first minute)",
                started.elapsed().as_secs_f64() / 60.0,
                frames.load(Ordering::Relaxed),
                frames.load(Ordering::Relaxed) / 5 * 2,
                rss,
                rss as i64 - start as i64
            );
            next_report += Duration::from_secs(60);
        }
    }
    let rss = rss_kb().unwrap_or(0);
    let _ = pipeline.set_state(gst::State::Null);
    let start = start_rss.unwrap_or(rss);
    println!(
        "soak done: {} frames, {} tracks; RSS {} kB after the warm-up, {} kB at the end ({:+} kB)",
        frames.load(Ordering::Relaxed),
        frames.load(Ordering::Relaxed) / 5 * 2,
        start,
        rss,
        rss as i64 - start as i64
    );
    Ok(())
}
