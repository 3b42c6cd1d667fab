// SPDX-License-Identifier: MPL-2.0
//! `affectinfer` and `affectspectro` as live capture runs them: live sources at 25 fps with
//! 10-20 ms audio buffers, audio that is late, silent or absent, and the latency they answer.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use affect_core::testutil::scratch_dir;
use affect_synth::testutil;
use common::{build_model, init};
use gst::prelude::*;
use gstaffect::meta::analysed_faces;

const FPS: u64 = 25;
const FRAMES: u64 = 40;
/// Samples of one audio buffer: 20 ms at 16 kHz, as a live microphone delivers them.
const AUDIO_BUFFER: usize = 320;
const RATE: u64 = 16_000;

/// What the audio branch of the live pipeline does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum AudioBranch {
    /// 20 ms buffers paced by the clock, silence but for a burst from `BURST_START` on.
    Paced,
    /// A live source that never delivers anything.
    Absent,
}

const BURST_START: gst::ClockTime = gst::ClockTime::from_mseconds(1000);

/// The live A/V pipeline: `videotestsrc is-live` at 25 fps with one full-frame face, and a live
/// `appsrc` pushing raw audio, through `affectspectro`, into `affectinfer` on `model`.
fn live_pipeline(model: &std::path::Path, max_latency_ms: u32) -> gst::Pipeline {
    gst::parse::launch(&format!(
        "videotestsrc is-live=true num-buffers={FRAMES} \
         ! video/x-raw,format=RGB,width=64,height=48,framerate={FPS}/1 \
         ! affectfacecrop detector=full-frame ! infer.video_sink \
         appsrc name=audio is-live=true format=time do-timestamp=false \
         caps=audio/x-raw,format=F32LE,layout=interleaved,rate={RATE},channels=1 \
         ! affectspectro name=spectro ! infer.audio_sink \
         affectinfer name=infer model={} max-latency={max_latency_ms} batch-size=4 \
         ! appsink name=sink sync=true",
        model.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap()
}

/// Pushes 20 ms audio buffers stamped with the pipeline's running time, each at the clock
/// time it ends, until `stop` is set.
fn pace_audio(pipeline: &gst::Pipeline, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let src = pipeline
        .by_name("audio")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let pipeline = pipeline.clone();
    std::thread::spawn(move || {
        let clock = loop {
            if let Some(c) = pipeline.clock()
                && pipeline.current_state() == gst::State::Playing
            {
                break c;
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let base = pipeline.base_time().unwrap();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let pts = gst::ClockTime::from_nseconds(n * 1_000_000_000 / RATE);
            let end =
                gst::ClockTime::from_nseconds((n + AUDIO_BUFFER as u64) * 1_000_000_000 / RATE);
            // A live microphone hands a buffer over once its last sample is captured.
            let id = clock.new_single_shot_id(base + end);
            let _ = id.wait();
            let samples: Vec<f32> = (0..AUDIO_BUFFER as u64)
                .map(|i| {
                    let t = gst::ClockTime::from_nseconds((n + i) * 1_000_000_000 / RATE);
                    if t >= BURST_START {
                        0.8 * ((n + i) as f32 * 0.3).sin()
                    } else {
                        0.0
                    }
                })
                .collect();
            let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
            let mut buf = gst::Buffer::from_mut_slice(bytes);
            {
                let b = buf.get_mut().unwrap();
                b.set_pts(pts);
                b.set_duration(end - pts);
            }
            if src.push_buffer(buf).is_err() {
                break;
            }
            n += AUDIO_BUFFER as u64;
        }
    })
}

struct LiveRun {
    /// (pts, valence) of every frame that came out; valence is None without a result.
    frames: Vec<(gst::ClockTime, Option<f64>)>,
    warnings: Vec<String>,
    errors: Vec<String>,
    latency: Option<(gst::ClockTime, gst::ClockTime)>,
}

fn run_live(model: &std::path::Path, branch: AudioBranch, max_latency_ms: u32) -> LiveRun {
    init();
    let pipeline = live_pipeline(model, max_latency_ms);
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = (branch == AudioBranch::Paced).then(|| pace_audio(&pipeline, stop.clone()));
    let sink = testutil::play(&pipeline);
    let mut frames = Vec::new();
    // 40 frames at 25 fps take 1.6 s; a stall shows as no frame for 5 s.
    for sample in testutil::samples(&sink, gst::ClockTime::from_seconds(5)) {
        let buf = sample.buffer().unwrap();
        let valence = analysed_faces(buf)
            .first()
            .and_then(|f| f.affect.as_ref().and_then(|a| a.valence));
        frames.push((buf.pts().unwrap(), valence));
    }
    // What affectinfer answers downstream (the sink adds its own processing deadline).
    let mut query = gst::query::Latency::new();
    let infer_src = pipeline
        .by_name("infer")
        .unwrap()
        .static_pad("src")
        .unwrap();
    let latency = infer_src.query(&mut query).then(|| {
        let (_, min, max) = query.result();
        (min, max.unwrap_or(gst::ClockTime::MAX))
    });
    stop.store(true, Ordering::Relaxed);
    let bus = pipeline.bus().unwrap();
    let (mut warnings, mut errors) = (Vec::new(), Vec::new());
    while let Some(msg) = bus.pop() {
        match msg.view() {
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Error(e) => errors.push(format!("{} {:?}", e.error(), e.debug())),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    if let Some(f) = feeder {
        f.join().unwrap();
    }
    LiveRun {
        frames,
        warnings,
        errors,
        latency,
    }
}

fn av_model(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = scratch_dir(name);
    let model = build_model(
        &dir,
        "live.onnx",
        r#"{"size": 32, "audio_frames": 8, "va_from_audio_slots": true}"#,
    );
    (dir, model)
}

/// Live video at 25 fps and live audio in 20 ms buffers, no queue in either branch: every
/// frame gets a result, and the audio burst at 1 s reaches the frames that follow it and no
/// earlier one (the audio window ends at the frame's running time).
#[test]
fn live_audio_and_video_give_a_result_per_frame_in_time() {
    let (dir, model) = av_model("live-av");
    let run = run_live(&model, AudioBranch::Paced, 10);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert_eq!(
        run.frames.len() as u64,
        FRAMES,
        "frames out: {:?}",
        run.frames
    );
    let silence_valence = (0.05 * (1e-6f64).ln()).tanh();
    for (pts, valence) in &run.frames {
        let v = valence.unwrap_or_else(|| panic!("frame at {pts} has no result"));
        // The newest spectrogram frame that ends by t (32 ms long, on the 10 ms grid)
        // holds burst samples once it ends after 1 s: for t >= 1.040 s on the 40 ms grid.
        let hears_burst = (v - silence_valence).abs() > 1e-3;
        let should = *pts >= BURST_START + gst::ClockTime::from_mseconds(40);
        assert_eq!(
            hears_burst, should,
            "frame at {pts}: valence {v} (silence gives {silence_valence})"
        );
    }
    // Latency: the video source's frame (40 ms) or the audio's FFT window (32 ms), whichever
    // is longer, plus the batching window.
    let (min, _) = run.latency.expect("the pipeline answers the latency query");
    assert_eq!(
        min,
        gst::ClockTime::from_mseconds(40 + 10),
        "affectinfer's latency"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A live audio branch that delivers nothing: every frame still leaves, with the
/// `audio-missing` policy (silence), and one warning says so.
#[test]
fn absent_live_audio_degrades_to_the_policy_with_one_warning() {
    let (dir, model) = av_model("live-absent");
    let run = run_live(&model, AudioBranch::Absent, 10);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert_eq!(run.frames.len() as u64, FRAMES, "frames out");
    let silence_valence = (0.05 * (1e-6f64).ln()).tanh();
    for (pts, valence) in &run.frames {
        let v = valence.unwrap_or_else(|| panic!("frame at {pts} has no result"));
        assert!((v - silence_valence).abs() < 1e-4, "frame at {pts}: {v}");
    }
    let audio_warnings: Vec<_> = run
        .warnings
        .iter()
        .filter(|w| w.contains("audio"))
        .collect();
    assert_eq!(audio_warnings.len(), 1, "{:?}", run.warnings);
    let _ = std::fs::remove_dir_all(dir);
}

/// Video and audio over RTP through `netsim` (5 % loss, jitter up to 40 ms), received with the
/// jitterbuffer settings of `pipelines/rtp-analyze.sh`: the stream ends cleanly, the frames
/// that arrive keep coming, and every one of them has its face's result.
#[test]
fn rtp_with_loss_and_jitter_keeps_producing_results() {
    init();
    let (dir, model) = av_model("live-rtp");
    let frames = 100u64;
    let netsim = "netsim drop-probability=0.05 delay-probability=0.3 min-delay=5 max-delay=40";
    let jitterbuffer = "rtpjitterbuffer latency=100 do-lost=true";
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true num-buffers={frames} pattern=ball \
         ! video/x-raw,width=96,height=72,framerate={FPS}/1 \
         ! vp8enc deadline=1 keyframe-max-dist=10 error-resilient=default ! rtpvp8pay pt=96 mtu=300 \
         ! {netsim} ! {jitterbuffer} \
         ! rtpvp8depay wait-for-keyframe=true request-keyframe=true ! vp8dec ! videoconvert \
         ! queue ! affectfacecrop detector=full-frame ! infer.video_sink \
         audiotestsrc is-live=true samplesperbuffer=320 wave=sine \
         ! audio/x-raw,format=S16BE,rate=16000,channels=1 ! rtpL16pay pt=97 \
         ! {netsim} ! {jitterbuffer} ! rtpL16depay ! audioconvert ! audioresample \
         ! queue ! affectspectro ! infer.audio_sink \
         affectinfer name=infer model={} ! appsink name=sink sync=false",
        model.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = testutil::play(&pipeline);
    let mut out = Vec::new();
    // 100 frames at 25 fps: 4 s; a stall shows as 5 s without a frame.
    for sample in testutil::samples(&sink, gst::ClockTime::from_seconds(5)) {
        let buf = sample.buffer().unwrap();
        // A frame lost on the way must not come out as an empty video buffer.
        assert!(
            buf.size() > 0 && !buf.flags().contains(gst::BufferFlags::GAP),
            "an empty frame came out: {buf:?}"
        );
        out.push(
            analysed_faces(buf)
                .first()
                .is_some_and(|f| f.affect.is_some()),
        );
        if out.len() as u64 == frames {
            break;
        }
    }
    let bus = pipeline.bus().unwrap();
    let errors: Vec<String> = std::iter::from_fn(|| bus.pop())
        .filter_map(|m| match m.view() {
            gst::MessageView::Error(e) => Some(format!("{} {:?}", e.error(), e.debug())),
            _ => None,
        })
        .collect();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    // With 5 % of packets lost, a frame is lost with its packets and the decoder waits for
    // the next keyframe (every 10 frames): most frames still arrive.
    assert!(
        out.len() as u64 >= frames / 2,
        "{} of {frames} frames came through",
        out.len()
    );
    assert!(
        out.iter().all(|&analysed| analysed),
        "a frame that arrived has no result: {out:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
