// SPDX-License-Identifier: MPL-2.0
//! `affectanalysisbin`: the whole analysis of a file, whatever streams the file has.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use affect_core::testutil::scratch_dir;
use affect_synth::testutil;
use common::{build_model, init};
use gst::glib;
use gst::prelude::*;
use gstaffect::meta::analysed_faces;

/// The longest any pipeline of these tests may take: a hang fails the test.
const TIMEOUT: Duration = Duration::from_secs(60);

const FRAMES: usize = 30;

const VIDEO: &str = "videotestsrc num-buffers=30 pattern=ball \
     ! video/x-raw,width=96,height=72,framerate=30/1 ! jpegenc ! queue ! mux.";

/// One second of 16 kHz mono audio, as long as the video.
const AUDIO: &str = "audiotestsrc num-buffers=10 samplesperbuffer=1600 wave=sine freq=440 \
     ! audioconvert ! audio/x-raw,format=S16LE,rate=16000,channels=1 ! queue ! mux.";

/// Runs a writing pipeline to EOS.
fn write(description: &str) {
    let pipeline = gst::parse::launch(description).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(TIMEOUT.as_secs()),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).unwrap();
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        Some(gst::MessageView::Error(e)) => panic!("writing {description}: {}", e.error()),
        _ => panic!("writing {description}: no EOS within {TIMEOUT:?}"),
    }
}

fn mkv(dir: &Path, name: &str, branches: &[&str]) -> PathBuf {
    let file = dir.join(name);
    write(&format!(
        "{} matroskamux name=mux ! filesink location={}",
        branches.join(" "),
        file.display()
    ));
    file
}

fn video_only(dir: &Path) -> PathBuf {
    mkv(dir, "video.mkv", &[VIDEO])
}

fn audio_video(dir: &Path) -> PathBuf {
    mkv(dir, "av.mkv", &[VIDEO, AUDIO])
}

fn model(dir: &Path) -> PathBuf {
    build_model(dir, "av.onnx", r#"{"size": 32, "audio_frames": 8}"#)
}

/// What came of analysing a file.
#[derive(Debug)]
struct Outcome {
    frames: Vec<gst::Buffer>,
    warnings: Vec<String>,
    /// The first error, if any.
    error: Option<String>,
    eos: bool,
    /// Streams the bin sent to a fakesink.
    discarded: usize,
}

fn text(error: glib::Error, debug: Option<glib::GString>) -> String {
    format!("{error} | {}", debug.as_deref().unwrap_or(""))
}

/// Plays `filesrc location=file ! affectanalysisbin properties ! appsink` until EOS, the
/// first error or [`TIMEOUT`].
fn analyse(file: &Path, properties: &str) -> Outcome {
    init();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! affectanalysisbin name=analysis {properties} \
         ! appsink name=sink sync=false",
        file.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = testutil::appsink(&pipeline);
    let start = Instant::now();
    // A refused start is reported on the bus.
    let _ = pipeline.set_state(gst::State::Playing);
    let bus = pipeline.bus().unwrap();
    let (mut frames, mut warnings, mut error, mut eos) = (Vec::new(), Vec::new(), None, false);
    let step = gst::ClockTime::from_mseconds(10);
    // The appsink holds its EOS back until its buffers are taken: take them as they come.
    while error.is_none() && !eos && start.elapsed() < TIMEOUT {
        frames.extend(testutil::samples(&sink, step).map(|s| s.buffer_owned().unwrap()));
        let Some(msg) = bus.timed_pop_filtered(
            step,
            &[
                gst::MessageType::Eos,
                gst::MessageType::Error,
                gst::MessageType::Warning,
            ],
        ) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => eos = true,
            gst::MessageView::Error(e) => error = Some(text(e.error(), e.debug())),
            gst::MessageView::Warning(w) => warnings.push(text(w.error(), w.debug())),
            _ => {}
        }
    }
    // Warnings posted before the EOS that are still queued.
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Warning]) {
        if let gst::MessageView::Warning(w) = msg.view() {
            warnings.push(text(w.error(), w.debug()));
        }
    }
    let analysis = pipeline
        .by_name("analysis")
        .unwrap()
        .downcast::<gst::Bin>()
        .unwrap();
    let discarded = analysis
        .iterate_all_by_element_factory_name("fakesink")
        .into_iter()
        .filter_map(Result::ok)
        .count();
    pipeline.set_state(gst::State::Null).unwrap();
    Outcome {
        frames,
        warnings,
        error,
        eos,
        discarded,
    }
}

/// Every frame came out, in order, with its one face analysed; the valence of each.
fn check_frames(outcome: &Outcome) -> Vec<f64> {
    assert_eq!(outcome.frames.len(), FRAMES, "{outcome:?}");
    let mut last = None;
    outcome
        .frames
        .iter()
        .enumerate()
        .map(|(i, buf)| {
            assert!(buf.pts() > last, "frame {i} out of order");
            last = buf.pts();
            let faces = analysed_faces(buf);
            assert_eq!(faces.len(), 1, "frame {i}: one face (full-frame)");
            let affect = faces[0]
                .affect
                .as_ref()
                .unwrap_or_else(|| panic!("frame {i} has no affect result"));
            let valence = affect.valence.expect("the default model has valence");
            assert!(valence.abs() <= 1.0);
            valence
        })
        .collect()
}

#[test]
fn audio_and_video_are_analysed_together() {
    let dir = scratch_dir("bin-av");
    init();
    let model = model(&dir);
    let properties = format!("model={} detector=full-frame", model.display());

    let av = analyse(&audio_video(&dir), &properties);
    assert!(av.eos, "no EOS: {av:?}");
    assert_eq!(av.error, None);
    assert!(av.warnings.is_empty(), "warnings: {:?}", av.warnings);
    let with_audio = check_frames(&av);

    // The audio reached the model: the same frames without it give other results.
    let video = analyse(&video_only(&dir), &properties);
    let without_audio = check_frames(&video);
    let most = with_audio
        .iter()
        .zip(&without_audio)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        most > 1e-4,
        "the results with audio are those without ({most})"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_video_only_file_is_analysed_with_one_warning() {
    let dir = scratch_dir("bin-video");
    init();
    let model = model(&dir);
    let out = analyse(
        &video_only(&dir),
        &format!("model={} detector=full-frame", model.display()),
    );
    assert!(out.eos, "no EOS within {TIMEOUT:?}: {out:?}");
    assert_eq!(out.error, None);
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(
        out.warnings[0].contains("the input has no audio stream: video-only results"),
        "{}",
        out.warnings[0]
    );
    check_frames(&out);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_audio_only_file_is_an_error_naming_the_missing_video() {
    let dir = scratch_dir("bin-audio");
    init();
    let model = model(&dir);
    let file = dir.join("audio.wav");
    write(&format!(
        "audiotestsrc num-buffers=20 ! audioconvert ! wavenc ! filesink location={}",
        file.display()
    ));
    let out = analyse(
        &file,
        &format!("model={} detector=full-frame", model.display()),
    );
    let error = out
        .error
        .as_deref()
        .unwrap_or_else(|| panic!("no error within {TIMEOUT:?}: {out:?}"));
    assert!(
        error.contains("the input has no video stream")
            && error.contains("needs video (audio-only input)"),
        "{error}"
    );
    assert!(out.frames.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_missing_model_is_an_error_naming_the_file() {
    let dir = scratch_dir("bin-no-model");
    init();
    let missing = dir.join("missing.onnx");
    let out = analyse(
        &video_only(&dir),
        &format!("model={} detector=full-frame", missing.display()),
    );
    let error = out
        .error
        .as_deref()
        .unwrap_or_else(|| panic!("no error within {TIMEOUT:?}: {out:?}"));
    assert!(error.contains("missing.onnx"), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_subtitle_stream_is_discarded() {
    let dir = scratch_dir("bin-subtitles");
    init();
    let model = model(&dir);
    let srt = dir.join("talk.srt");
    std::fs::write(
        &srt,
        "1\n00:00:00,100 --> 00:00:00,400\nHello\n\n2\n00:00:00,500 --> 00:00:00,900\nWorld\n\n",
    )
    .unwrap();
    let subtitles = format!(
        "filesrc location={} ! subparse ! text/x-raw,format=utf8 ! queue ! mux.subtitle_0",
        srt.display()
    );
    let file = mkv(&dir, "subtitled.mkv", &[VIDEO, AUDIO, &subtitles]);
    let out = analyse(
        &file,
        &format!("model={} detector=full-frame", model.display()),
    );
    assert!(out.eos, "no EOS within {TIMEOUT:?}: {out:?}");
    assert_eq!(out.error, None);
    assert!(out.warnings.is_empty(), "warnings: {:?}", out.warnings);
    assert_eq!(out.discarded, 1, "the subtitles go to a fakesink");
    check_frames(&out);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_detector_that_does_not_exist_is_refused_naming_the_property() {
    init();
    // The bin's detector is typed as affectfacecrop's: GStreamer itself refuses a value the
    // enumeration does not have (gst-inspect-1.0 lists them), before anything runs.
    let error = gst::parse::launch(
        "videotestsrc ! affectanalysisbin model=whatever.onnx detector=full_frame ! fakesink",
    )
    .map(|_| ())
    .expect_err("an unknown detector is refused");
    let text = error.to_string();
    assert!(
        text.contains("detector") && text.contains("full_frame"),
        "{text}"
    );
    let pspec = gst::ElementFactory::make("affectanalysisbin")
        .build()
        .unwrap()
        .find_property("detector")
        .unwrap();
    let choices = glib::EnumClass::with_type(pspec.value_type()).unwrap();
    for nick in ["auto", "mtcnn", "haar", "onnx", "full-frame", "upstream"] {
        assert!(choices.value_by_nick(nick).is_some(), "{nick}");
    }
}

#[test]
fn the_bin_runs_again_after_stopping() {
    let dir = scratch_dir("bin-restart");
    init();
    let model = model(&dir);
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! affectanalysisbin name=analysis model={} detector=full-frame \
         ! appsink name=sink sync=false",
        audio_video(&dir).display(),
        model.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let analysis = pipeline
        .by_name("analysis")
        .unwrap()
        .downcast::<gst::Bin>()
        .unwrap();
    for run in 0..2 {
        let sink = testutil::play(&pipeline);
        let frames = testutil::samples(&sink, gst::ClockTime::from_seconds(TIMEOUT.as_secs()))
            .filter(|s| analysed_faces(s.buffer().unwrap())[0].affect.is_some())
            .count();
        assert!(sink.is_eos(), "run {run}: no EOS");
        assert_eq!(frames, FRAMES, "run {run}");
        // Through NULL: an appsink keeps its EOS through READY.
        pipeline.set_state(gst::State::Null).unwrap();
        // decodebin, affectfacecrop and affectinfer; the branches of the run are gone.
        assert_eq!(analysis.children().len(), 3, "run {run}");
    }
    assert!(
        pipeline
            .bus()
            .unwrap()
            .pop_filtered(&[gst::MessageType::Error, gst::MessageType::Warning])
            .is_none()
    );
    pipeline.set_state(gst::State::Null).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// The proxied properties reach the inner elements and read back from them, with
/// affectinfer's defaults.
#[test]
fn proxied_properties_are_those_of_the_inner_elements() {
    init();
    let bin = gst::ElementFactory::make("affectanalysisbin")
        .build()
        .unwrap();
    let infer = bin
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("infer")
        .unwrap();
    let defaults = gst::ElementFactory::make("affectinfer").build().unwrap();
    for name in ["batch-size", "max-latency"] {
        assert_eq!(
            bin.property::<u32>(name),
            defaults.property::<u32>(name),
            "default {name}"
        );
    }
    bin.set_property("batch-size", 4u32);
    bin.set_property("max-latency", 25u32);
    bin.set_property("post-messages", true);
    bin.set_property("model", "m.onnx");
    assert_eq!(infer.property::<u32>("batch-size"), 4);
    assert_eq!(infer.property::<u32>("max-latency"), 25);
    assert!(infer.property::<bool>("post-messages"));
    assert_eq!(bin.property::<u32>("batch-size"), 4);
    assert_eq!(
        bin.property::<Option<String>>("model").as_deref(),
        Some("m.onnx")
    );
    // Enumerations are the children's types, with the children's defaults; the provider and
    // device go to the face detector and the models alike.
    let facecrop = bin
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("facecrop")
        .unwrap();
    let facecrop_defaults = gst::ElementFactory::make("affectfacecrop").build().unwrap();
    let nick = |element: &gst::Element, name: &str| {
        element
            .property_value(name)
            .serialize()
            .unwrap()
            .to_string()
    };
    for (name, child) in [
        ("detector", &facecrop_defaults),
        ("detect-interval", &facecrop_defaults),
        ("execution-provider", &defaults),
        ("audio-missing", &defaults),
        ("device-id", &defaults),
    ] {
        let ours = bin.find_property(name).unwrap();
        let theirs = child.find_property(name).unwrap();
        assert_eq!(ours.value_type(), theirs.value_type(), "type of {name}");
        assert_eq!(
            ours.default_value().serialize().unwrap(),
            theirs.default_value().serialize().unwrap(),
            "default {name}"
        );
    }
    bin.set_property_from_str("detector", "full-frame");
    assert_eq!(nick(&bin, "detector"), "full-frame");
    assert_eq!(nick(&facecrop, "detector"), "full-frame");
    bin.set_property_from_str("execution-provider", "cuda");
    bin.set_property("device-id", 1i32);
    for element in [&facecrop, &infer] {
        assert_eq!(nick(element, "execution-provider"), "cuda");
        assert_eq!(element.property::<i32>("device-id"), 1);
    }
    bin.set_property_from_str("audio-missing", "skip");
    assert_eq!(nick(&infer, "audio-missing"), "skip");
    assert!(bin.property::<bool>("apply-orientation"));
}

#[test]
fn a_rotated_video_comes_out_upright_untagged_and_the_bin_says_what_it_found() {
    let dir = scratch_dir("bin-rotated");
    init();
    let model = model(&dir);
    // 96x72 frames stored, displayed turned a quarter clockwise: 72x96; the audio runs 0.5 s
    // past the video.
    let file = dir.join("phone.mov");
    write(&format!(
        "{VIDEO} audiotestsrc num-buffers=15 samplesperbuffer=1600 \
         ! audio/x-raw,rate=16000,channels=1 ! audioconvert ! queue ! mux. \
         qtmux name=mux ! filesink location={}",
        file.display()
    ));
    affect_core::testutil::set_quicktime_rotation(&file, 90);
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! affectanalysisbin model={} detector=full-frame \
         ! appsink name=sink sync=false",
        file.display(),
        model.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = testutil::appsink(&pipeline);
    // Orientation tags that leave the bin: none may say the upright frames need turning.
    let tags = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = tags.clone();
    sink.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data
                && let gst::EventView::Tag(t) = e.view()
                && let Some(o) = t.tag().get::<gst::tags::ImageOrientation>()
            {
                seen.lock().unwrap().push(o.get().to_string());
            }
            gst::PadProbeReturn::Ok
        },
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let mut frames = Vec::new();
    let mut messages = Vec::new();
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < TIMEOUT, "no EOS within {TIMEOUT:?}");
        frames.extend(testutil::samples(&sink, gst::ClockTime::from_mseconds(10)));
        let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(10),
            &[
                gst::MessageType::Eos,
                gst::MessageType::Error,
                gst::MessageType::Element,
            ],
        ) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            gst::MessageView::Element(e) => {
                let s = e.structure().unwrap().to_owned();
                if s.name().starts_with("affect-") && s.name() != "affect" {
                    messages.push(s);
                }
            }
            _ => {}
        }
    }
    frames.extend(testutil::samples(&sink, gst::ClockTime::from_mseconds(10)));
    pipeline.set_state(gst::State::Null).unwrap();

    assert_eq!(frames.len(), FRAMES);
    for sample in &frames {
        let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        assert_eq!((info.width(), info.height()), (72, 96), "displayed size");
        // The full-frame face is the displayed frame.
        let faces = analysed_faces(sample.buffer().unwrap());
        assert_eq!(faces.len(), 1);
        assert_eq!(faces[0].face.bbox, [0.0, 0.0, 72.0, 96.0]);
    }
    assert!(
        tags.lock().unwrap().iter().all(|o| o == "rotate-0"),
        "{:?}",
        tags.lock().unwrap()
    );
    let input = messages
        .iter()
        .find(|s| s.name() == gstaffect::INPUT_MESSAGE)
        .expect("the input message");
    assert!(input.get::<bool>("video").unwrap() && input.get::<bool>("audio").unwrap());
    let end = |stream: &str| {
        messages
            .iter()
            .find(|s| {
                s.name() == gstaffect::STREAM_END_MESSAGE
                    && s.get::<&str>("stream").unwrap() == stream
            })
            .unwrap_or_else(|| panic!("no end of the {stream}: {messages:?}"))
    };
    let video = end("video");
    assert_eq!(video.get::<u64>("buffers").unwrap(), FRAMES as u64);
    assert_eq!(video.get::<u64>("end").unwrap(), 1_000_000_000);
    assert_eq!(video.get::<&str>("orientation").unwrap(), "rotate-90");
    assert!(video.get::<bool>("orientation-applied").unwrap());
    // The audio is read to its own end, past the video's.
    assert_eq!(end("audio").get::<u64>("end").unwrap(), 1_500_000_000);
    let _ = std::fs::remove_dir_all(dir);
}
