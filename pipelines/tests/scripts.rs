// SPDX-License-Identifier: MPL-2.0
//! The scripts of `pipelines/` on a synthetic talking-face clip: file to annotated file,
//! the webcam pipeline with its camera and screen replaced, RTP over UDP on the loopback
//! interface, and the batch script.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use affect_core::testutil::scratch_dir;
use affect_synth::{self as synth, SynthConfig};
use gst::prelude::*;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// A 2 s clip of one talking person (640x480, 15 fps) and its frame count.
fn clip(dir: &Path) -> (PathBuf, usize) {
    let root = dir.join("world");
    synth::generate(&SynthConfig {
        out: root.clone(),
        videos: 1,
        seconds: 2.0,
        seed: 2,
        faces_per_frame: 1,
        fps: 15,
        ..SynthConfig::default()
    })
    .unwrap();
    let frames = synth::read_ground_truth(&root.join("ground_truth/synth-000.jsonl"))
        .unwrap()
        .len();
    (root.join("videos/synth-000.mkv"), frames)
}

/// Decodes `path`: RGB frames of the video and the number of audio buffers.
fn decode(path: &Path) -> (Vec<Vec<u8>>, usize) {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! decodebin name=d \
         d. ! queue ! videoconvert ! video/x-raw,format=RGB ! appsink name=video sync=false \
         d. ! queue ! audioconvert ! appsink name=audio sync=false",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = |n: &str| {
        pipeline
            .by_name(n)
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap()
    };
    let (video, audio) = (sink("video"), sink("audio"));
    let audio_count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = audio_count.clone();
    audio.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frames = Vec::new();
    while let Some(sample) = video.try_pull_sample(gst::ClockTime::from_seconds(30)) {
        let map = sample.buffer().unwrap().map_readable().unwrap();
        frames.push(map.as_slice().to_vec());
    }
    assert!(video.is_eos(), "{} decodes to the end", path.display());
    pipeline.set_state(gst::State::Null).unwrap();
    (
        frames,
        audio_count.load(std::sync::atomic::Ordering::Relaxed),
    )
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn file_to_annotated_keeps_every_frame_and_the_voice_and_draws_on_the_faces() {
    let dir = scratch_dir("script-file");
    let (input, frames) = clip(&dir);
    let output = dir.join("annotated.webm");
    run(Command::new(script("file-to-annotated.sh"))
        .arg(&input)
        .arg(&output));
    let (annotated, audio_buffers) = decode(&output);
    let (original, _) = decode(&input);
    assert_eq!(annotated.len(), frames, "every frame of the clip");
    assert!(audio_buffers > 0, "the voice is in the output");
    // The overlay changes the frames (the codecs alone differ by a few grey levels).
    let diff = |a: &[u8], b: &[u8]| {
        a.iter()
            .zip(b)
            .filter(|(x, y)| x.abs_diff(**y) > 60)
            .count() as f64
            / a.len() as f64
    };
    let last = frames - 1;
    assert!(
        diff(&annotated[last], &original[last]) > 0.005,
        "the annotated frame differs from the input where the overlay draws"
    );
}

#[test]
fn webcam_pipeline_runs_with_its_camera_and_screen_replaced() {
    let out = run(Command::new(script("webcam-to-screen.sh"))
        .env(
            "SOURCE",
            "videotestsrc is-live=true num-buffers=20 pattern=ball",
        )
        .env("SINK", "fakesink")
        .env("AUDIO", "0"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let messages = stdout
        .lines()
        .filter(|l| l.contains("(element): affect,"))
        .count();
    // The live pipeline drops frames it cannot keep up with (the leaky queue before the
    // face finder), so a loaded machine analyses fewer than the 20 frames, never more.
    assert!(
        (5..=20).contains(&messages),
        "{messages} result messages for 20 live frames"
    );
}

#[test]
fn rtp_stream_in_and_out_on_loopback() {
    let dir = scratch_dir("script-rtp");
    let (input, frames) = clip(&dir);
    // Ports of this process only, so parallel test runs do not cross.
    let base = 20_000 + (std::process::id() % 2_000) as u16 * 8;
    let (video, audio, out) = (base, base + 2, base + 4);
    let capture = Command::new("gst-launch-1.0")
        .args([
            "-e",
            "udpsrc",
            &format!("port={out}"),
            "caps=application/x-rtp,media=video,clock-rate=90000,encoding-name=VP8,payload=96",
            "!",
            "rtpjitterbuffer",
            "!",
            "rtpvp8depay",
            "!",
            "vp8dec",
            "!",
            "fakesink",
            "silent=false",
            "-v",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let receiver = Command::new(script("rtp-analyze.sh"))
        .env("IN_VIDEO_PORT", video.to_string())
        .env("IN_AUDIO_PORT", audio.to_string())
        .env("OUT_PORT", out.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    run(Command::new(script("rtp-send.sh"))
        .env("VIDEO_PORT", video.to_string())
        .env("AUDIO_PORT", audio.to_string())
        .arg(&input));
    std::thread::sleep(Duration::from_secs(3));
    // gst-launch -e turns SIGINT into EOS: both pipelines end cleanly.
    for child in [&receiver, &capture] {
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
    }
    let received = receiver.wait_with_output().unwrap();
    let captured = capture.wait_with_output().unwrap();
    let messages: Vec<String> = String::from_utf8_lossy(&received.stdout)
        .lines()
        .filter(|l| l.contains("(element): affect,"))
        .map(str::to_string)
        .collect();
    let with_faces = messages.iter().filter(|l| l.contains("track-id")).count();
    assert!(
        messages.len() as f64 >= 0.9 * frames as f64,
        "{} result messages for {frames} frames sent:\n{}",
        messages.len(),
        String::from_utf8_lossy(&received.stderr)
    );
    assert!(
        with_faces as f64 >= 0.8 * frames as f64,
        "{with_faces} of the messages have faces"
    );
    let out_frames = String::from_utf8_lossy(&captured.stdout)
        .lines()
        .filter(|l| l.contains("chain"))
        .count();
    assert!(
        out_frames as f64 >= 0.8 * frames as f64,
        "{out_frames} annotated frames came out of {frames}"
    );
}

#[test]
fn batch_script_analyses_a_folder() {
    let dir = scratch_dir("script-batch");
    let (input, frames) = clip(&dir);
    let out = dir.join("results");
    run(Command::new(script("batch.sh"))
        .env("AFFECT", env!("CARGO_BIN_EXE_affect"))
        .arg(&out)
        .arg(input.parent().unwrap())
        .args(["--detector", "full-frame"]));
    // Outputs are named by the input's id: its stem and a hash of its path.
    let id = affect_cli::archive::Source::File(input.clone()).id();
    assert!(id.starts_with("synth-000-"), "{id}");
    let csv = std::fs::read_to_string(out.join(format!("{id}.csv"))).unwrap();
    assert_eq!(
        csv.lines().count(),
        frames + 1,
        "header and one row per frame"
    );
    assert!(out.join(format!("{id}.png")).is_file());
}
