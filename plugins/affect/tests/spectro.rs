// SPDX-License-Identifier: MPL-2.0
//! `affectspectro` against librosa and against itself under every way a stream can arrive.

mod common;

use common::init;

use affect_core::melspec::{MelConfig, MelSpectrogram};
use affect_core::testutil::{read_f32, run_python, scratch_dir, write_f32};
use gst::prelude::*;
use gst_check::Harness;

const RATE: u64 = 16_000;
const HOP: u64 = 160;
const N_MELS: usize = 64;

fn f32_caps(rate: u64, channels: u32) -> String {
    format!("audio/x-raw,format=F32LE,layout=interleaved,rate={rate},channels={channels}")
}

/// A voice-like test signal: harmonics with a moving pitch, amplitude-modulated.
fn voice(n: usize, seed: f64) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t = i as f64 / RATE as f64;
            let f0 = 140.0 + 40.0 * (2.0 * std::f64::consts::PI * (0.7 + seed) * t).sin();
            let env = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            let x: f64 = (1..8)
                .map(|h| (2.0 * std::f64::consts::PI * f0 * h as f64 * t + seed).sin() / h as f64)
                .sum();
            (0.3 * env * x) as f32
        })
        .collect()
}

fn f32_buffer(samples: &[f32], pts: Option<gst::ClockTime>) -> gst::Buffer {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut buf = gst::Buffer::from_mut_slice(bytes);
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(pts);
    }
    buf
}

fn time_of(samples: u64) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(samples * 1_000_000_000 / RATE)
}

/// Pushes `signal` as timestamped buffers of `chunk` samples starting at `start`; returns the
/// concatenated frames and every output buffer's (pts, duration, n_frames).
fn run_chunks(
    signal: &[f32],
    chunk: usize,
    start: gst::ClockTime,
) -> (Vec<f32>, Vec<(gst::ClockTime, gst::ClockTime, usize)>) {
    run_sizes(signal, &[chunk], start, Flagging::None)
}

/// Which input buffers carry the DISCONT flag.
#[derive(Clone, Copy, Debug)]
enum Flagging {
    None,
    /// The first, as every source flags its first buffer.
    First,
    /// Every one, although the timestamps are continuous.
    All,
}

/// Pushes `signal` as timestamped buffers whose sizes cycle through `sizes`, flagged as
/// `flagging` says; returns the concatenated frames and every output buffer's (pts, duration,
/// n_frames).
fn run_sizes(
    signal: &[f32],
    sizes: &[usize],
    start: gst::ClockTime,
    flagging: Flagging,
) -> (Vec<f32>, Vec<(gst::ClockTime, gst::ClockTime, usize)>) {
    init();
    let mut h = Harness::new("affectspectro");
    h.set_src_caps_str(&f32_caps(RATE, 1));
    let mut pos = 0usize;
    for (i, &size) in sizes.iter().cycle().enumerate() {
        if pos >= signal.len() {
            break;
        }
        let piece = &signal[pos..(pos + size).min(signal.len())];
        let mut buf = f32_buffer(piece, Some(start + time_of(pos as u64)));
        if matches!((flagging, i), (Flagging::First, 0) | (Flagging::All, _)) {
            buf.get_mut().unwrap().set_flags(gst::BufferFlags::DISCONT);
        }
        h.push(buf).unwrap();
        pos += piece.len();
    }
    h.push_event(gst::event::Eos::new());
    let mut frames = Vec::new();
    let mut stamps = Vec::new();
    while let Some(buf) = h.try_pull() {
        let map = buf.map_readable().unwrap();
        let values: Vec<f32> = map
            .as_slice()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(values.len() % N_MELS, 0, "partial frame in a buffer");
        stamps.push((
            buf.pts().unwrap(),
            buf.duration().unwrap(),
            values.len() / N_MELS,
        ));
        frames.extend(values);
    }
    (frames, stamps)
}

/// Frame k of the output starts at `start + k * hop`, the buffers tile the time line, and
/// `expected_frames` frames came out.
fn assert_exact_stamps(
    stamps: &[(gst::ClockTime, gst::ClockTime, usize)],
    start: gst::ClockTime,
    expected_frames: usize,
    what: &str,
) {
    let mut k = 0u64;
    for &(pts, duration, n) in stamps {
        assert_eq!(pts, start + time_of(k * HOP), "{what}: frame {k}");
        k += n as u64;
        assert_eq!(
            pts + duration,
            start + time_of(k * HOP),
            "{what}: frame {k}"
        );
    }
    assert_eq!(k as usize, expected_frames, "{what}: frames out");
}

#[test]
fn output_matches_librosa() {
    let signal = voice(3 * RATE as usize, 0.1);
    let (frames, _) = run_chunks(&signal, 1024, gst::ClockTime::ZERO);
    let dir = scratch_dir("element-librosa");
    let (inp, out) = (dir.join("in.f32"), dir.join("out.f32"));
    write_f32(&inp, &signal);
    run_python(
        r#"
import sys, numpy as np, librosa
y = np.fromfile(sys.argv[1], dtype='<f4')
S = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, win_length=400, hop_length=160,
    n_mels=64, center=False, power=2.0, htk=False, norm='slaney')
np.log(S + 1e-6).T.astype('<f4').tofile(sys.argv[2])
"#,
        &[inp.to_str().unwrap(), out.to_str().unwrap()],
    );
    let expected = read_f32(&out);
    assert_eq!(frames.len(), expected.len());
    let worst = frames
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-3, "max |element - librosa| = {worst}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn any_buffer_split_gives_identical_frames_and_times() {
    let signal = voice(RATE as usize + 777, 0.4);
    let start = gst::ClockTime::from_mseconds(1234);
    let (reference, ref_stamps) = run_chunks(&signal, signal.len(), start);
    let expected_frames = MelConfig::default().n_frames(signal.len());
    assert_eq!(reference.len(), expected_frames * N_MELS);
    assert_eq!(
        reference,
        MelSpectrogram::new(MelConfig::default())
            .unwrap()
            .compute(&signal)
    );
    assert_eq!(ref_stamps.len(), 1);
    for chunk in [1, 100, 160, 161, 512, 4000] {
        let (frames, stamps) = run_chunks(&signal, chunk, start);
        assert_eq!(frames, reference, "chunk {chunk}");
        assert_exact_stamps(&stamps, start, expected_frames, &format!("chunk {chunk}"));
    }
}

/// Sources flag their first buffer DISCONT; with buffers smaller than one FFT frame (a live
/// microphone's 10-20 ms, or a few samples) every sample still counts, the first buffer's
/// included, and frame k is stamped start + k * hop exactly.
#[test]
fn small_buffers_after_a_flagged_first_buffer_lose_no_sample() {
    let signal = voice(RATE as usize / 2 + 333, 0.6);
    let start = gst::ClockTime::from_mseconds(777);
    let reference = MelSpectrogram::new(MelConfig::default())
        .unwrap()
        .compute(&signal);
    let expected_frames = MelConfig::default().n_frames(signal.len());
    for sizes in [&[160][..], &[320], &[8, 160, 1, 320, 77, 511], &[1]] {
        for flagging in [Flagging::First, Flagging::All] {
            let what = format!("sizes {sizes:?}, {flagging:?} flagged");
            let (frames, stamps) = run_sizes(&signal, sizes, start, flagging);
            assert_eq!(frames.len(), reference.len(), "{what}");
            assert!(
                frames == reference,
                "{what}: frames differ from the whole signal's"
            );
            assert_exact_stamps(&stamps, start, expected_frames, &what);
        }
    }
}

/// A live audio source with 10 and 20 ms buffers, as a microphone delivers them, gives every
/// frame, equal to the frames of the same tone delivered in one buffer.
#[test]
fn live_source_with_10_and_20_ms_buffers_gives_every_frame() {
    init();
    let run = |live: bool, samples_per_buffer: u32, buffers: u32| {
        let pipeline = gst::parse::launch(&format!(
            "audiotestsrc is-live={live} samplesperbuffer={samples_per_buffer} num-buffers={buffers} \
             wave=sine freq=330 ! {} ! affectspectro name=spectro ! appsink name=sink sync=false",
            f32_caps(RATE, 1)
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        // The first input buffer's timestamp: a live source stamps it with the running time
        // at capture.
        let first_in = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen = first_in.clone();
        pipeline
            .by_name("spectro")
            .unwrap()
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(b) = info.buffer() {
                    seen.lock().unwrap().get_or_insert(b.pts().unwrap());
                }
                gst::PadProbeReturn::Ok
            });
        let sink = affect_synth::testutil::play(&pipeline);
        let mut frames = Vec::new();
        let mut stamps = Vec::new();
        for sample in affect_synth::testutil::samples(&sink, gst::ClockTime::from_seconds(10)) {
            let buf = sample.buffer().unwrap();
            let map = buf.map_readable().unwrap();
            frames.extend(
                map.as_slice()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            stamps.push((
                buf.pts().unwrap(),
                buf.duration().unwrap(),
                map.size() / 4 / N_MELS,
            ));
        }
        assert!(sink.is_eos(), "no EOS");
        pipeline.set_state(gst::State::Null).unwrap();
        let first = first_in
            .lock()
            .unwrap()
            .expect("audio reached affectspectro");
        (frames, stamps, first)
    };
    let samples = 8000usize;
    let (reference, _, _) = run(false, samples as u32, 1);
    let expected_frames = MelConfig::default().n_frames(samples);
    assert_eq!(reference.len(), expected_frames * N_MELS);
    for spb in [160u32, 320] {
        let (frames, stamps, first_in) = run(true, spb, samples as u32 / spb);
        assert_eq!(
            frames.len(),
            reference.len(),
            "{spb} samples per buffer: frames out"
        );
        let worst = frames
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{spb} samples per buffer: differs by {worst}");
        assert_exact_stamps(
            &stamps,
            first_in,
            expected_frames,
            &format!("{spb} samples per buffer"),
        );
    }
}

#[test]
fn discont_restarts_framing_at_the_new_timestamp() {
    init();
    let signal = voice(8000, 0.2);
    let mut h = Harness::new("affectspectro");
    h.set_src_caps_str(&f32_caps(RATE, 1));
    h.push(f32_buffer(&signal[..3000], Some(gst::ClockTime::ZERO)))
        .unwrap();
    while h.try_pull().is_some() {}
    // A second piece, flagged DISCONT, that starts 5 s later.
    let later = gst::ClockTime::from_seconds(5);
    let mut buf = f32_buffer(&signal[3000..], Some(later));
    buf.get_mut().unwrap().set_flags(gst::BufferFlags::DISCONT);
    h.push(buf).unwrap();
    let out = h.pull().unwrap();
    assert_eq!(out.pts(), Some(later));
    assert!(out.flags().contains(gst::BufferFlags::DISCONT));
    let map = out.map_readable().unwrap();
    let got: Vec<f32> = map
        .as_slice()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let fresh = MelSpectrogram::new(MelConfig::default())
        .unwrap()
        .compute(&signal[3000..]);
    assert_eq!(
        got, fresh,
        "frames after DISCONT must not use samples before it"
    );
}

#[test]
fn timestamp_gap_without_flag_restarts() {
    init();
    let signal = voice(4000, 0.3);
    let mut h = Harness::new("affectspectro");
    h.set_src_caps_str(&f32_caps(RATE, 1));
    h.push(f32_buffer(&signal[..2000], Some(gst::ClockTime::ZERO)))
        .unwrap();
    while h.try_pull().is_some() {}
    // 2000 samples = 125 ms were delivered; the next buffer claims 500 ms: a 375 ms gap.
    let after_gap = gst::ClockTime::from_mseconds(500);
    h.push(f32_buffer(&signal[2000..], Some(after_gap)))
        .unwrap();
    let out = h.pull().unwrap();
    assert_eq!(out.pts(), Some(after_gap));
    assert_eq!(
        out.size() / 4 / N_MELS,
        MelConfig::default().n_frames(2000),
        "only the samples after the gap make frames"
    );
}

#[test]
fn flush_resets_state() {
    init();
    let signal = voice(6000, 0.5);
    let mut h = Harness::new("affectspectro");
    h.set_src_caps_str(&f32_caps(RATE, 1));
    // 400 samples: less than a frame, held back.
    h.push(f32_buffer(&signal[..400], Some(gst::ClockTime::ZERO)))
        .unwrap();
    assert!(h.try_pull().is_none());
    h.push_event(gst::event::FlushStart::new());
    h.push_event(gst::event::FlushStop::new(true));
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(gst::ClockTime::from_seconds(2));
    h.push_event(gst::event::Segment::new(&segment));
    let t = gst::ClockTime::from_seconds(2);
    h.push(f32_buffer(&signal[400..], Some(t))).unwrap();
    let out = h.pull().unwrap();
    assert_eq!(out.pts(), Some(t));
    assert_eq!(
        out.size() / 4 / N_MELS,
        MelConfig::default().n_frames(signal.len() - 400)
    );
}

#[test]
fn stereo_s16_is_downmixed() {
    init();
    let mono = voice(4000, 0.7);
    let s16: Vec<i16> = mono.iter().map(|v| (v * 32767.0).round() as i16).collect();
    // Left = x, right = x / 2: the mean is 0.75 x.
    let bytes: Vec<u8> = s16
        .iter()
        .flat_map(|&v| {
            let mut b = v.to_le_bytes().to_vec();
            b.extend((v / 2).to_le_bytes());
            b
        })
        .collect();
    let expected_signal: Vec<f32> = s16
        .iter()
        .map(|&v| (v as f32 + (v / 2) as f32) / 2.0 / 32768.0)
        .collect();
    let mut h = Harness::new("affectspectro");
    h.set_src_caps_str("audio/x-raw,format=S16LE,layout=interleaved,rate=16000,channels=2");
    let mut buf = gst::Buffer::from_mut_slice(bytes);
    buf.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
    h.push(buf).unwrap();
    let out = h.pull().unwrap();
    let map = out.map_readable().unwrap();
    let got: Vec<f32> = map
        .as_slice()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let reference = MelSpectrogram::new(MelConfig::default())
        .unwrap()
        .compute(&expected_signal);
    assert_eq!(got.len(), reference.len());
    for (a, b) in got.iter().zip(&reference) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.name(), "audio/x-affect-melspec");
    assert_eq!(s.get::<i32>("rate").unwrap(), 16000);
    assert_eq!(s.get::<i32>("n-mels").unwrap(), 64);
    assert_eq!(s.get::<i32>("hop").unwrap(), 160);
    assert_eq!(s.get::<i32>("win").unwrap(), 400);
    assert_eq!(s.get::<&str>("format").unwrap(), "F32LE");
}

#[test]
fn non_finite_samples_become_zero_with_one_warning() {
    init();
    let mut signal = voice(3000, 0.9);
    signal[100] = f32::NAN;
    signal[2000] = f32::INFINITY;
    let mut cleaned = signal.clone();
    cleaned[100] = 0.0;
    cleaned[2000] = 0.0;

    let pipeline = gst::Pipeline::new();
    let bus = pipeline.bus().unwrap();
    let spectro = gst::ElementFactory::make("affectspectro").build().unwrap();
    pipeline.add(&spectro).unwrap();
    let mut h = Harness::with_element(&spectro, Some("sink"), Some("src"));
    h.set_src_caps_str(&f32_caps(RATE, 1));
    h.push(f32_buffer(&signal[..1500], Some(gst::ClockTime::ZERO)))
        .unwrap();
    h.push(f32_buffer(&signal[1500..], Some(time_of(1500))))
        .unwrap();
    let mut got = Vec::new();
    while let Some(buf) = h.try_pull() {
        let map = buf.map_readable().unwrap();
        got.extend(
            map.as_slice()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    assert!(got.iter().all(|v| v.is_finite()));
    let reference = MelSpectrogram::new(MelConfig::default())
        .unwrap()
        .compute(&cleaned);
    assert_eq!(got, reference);
    let warnings: Vec<String> = std::iter::from_fn(|| bus.pop())
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("NaN"), "{}", warnings[0]);
}

#[test]
fn empty_buffers_pass_harmlessly() {
    init();
    let mut h = Harness::new("affectspectro");
    h.set_src_caps_str(&f32_caps(RATE, 1));
    h.push(f32_buffer(&[], Some(gst::ClockTime::ZERO))).unwrap();
    assert!(h.try_pull().is_none());
    let signal = voice(1000, 0.0);
    h.push(f32_buffer(&signal, Some(gst::ClockTime::ZERO)))
        .unwrap();
    let out = h.pull().unwrap();
    assert_eq!(out.pts(), Some(gst::ClockTime::ZERO));
}

/// Runs a gst-launch style pipeline to its end and returns the error message, if any.
fn run_to_end(description: &str) -> Option<String> {
    init();
    let pipeline = gst::parse::launch(description).unwrap();
    // A failing start() makes this return an error; the bus says why.
    let _ = pipeline.set_state(gst::State::Playing);
    let bus = pipeline.bus().unwrap();
    let mut result = None;
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(30)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                result = Some(format!("{} | {:?}", e.error(), e.debug()));
                break;
            }
            _ => (),
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    result
}

#[test]
fn wrong_rate_names_what_is_expected() {
    // A parser pushes the file's own caps with no converter to adapt them.
    let dir = scratch_dir("wrong-rate");
    let wav = dir.join("cd.wav");
    assert_eq!(
        run_to_end(&format!(
            "audiotestsrc num-buffers=5 ! audio/x-raw,rate=44100,format=S16LE,channels=1 \
             ! wavenc ! filesink location={}",
            wav.display()
        )),
        None
    );
    let err = run_to_end(&format!(
        "filesrc location={} ! wavparse ! affectspectro ! fakesink",
        wav.display()
    ))
    .expect("a 44.1 kHz input must fail");
    let _ = std::fs::remove_dir_all(dir);
    assert!(err.contains("16000 Hz"), "{err}");
    assert!(err.contains("44100 Hz"), "{err}");
    assert!(err.contains("audioresample"), "{err}");
}

#[test]
fn resampled_pipeline_and_eos_with_nothing_seen_run_clean() {
    assert_eq!(
        run_to_end(
            "audiotestsrc num-buffers=20 ! audio/x-raw,rate=44100,channels=2 ! audioconvert \
             ! audioresample ! affectspectro ! fakesink"
        ),
        None
    );
    assert_eq!(
        run_to_end("audiotestsrc num-buffers=0 ! affectspectro ! fakesink"),
        None
    );
}

#[test]
fn properties_shape_the_caps_and_invalid_settings_fail_at_start() {
    init();
    let mut h = Harness::new("affectspectro");
    let e = h.element().unwrap();
    e.set_property("sample-rate", 8000u32);
    e.set_property("n-mels", 40u32);
    e.set_property("hop-length", 80u32);
    e.set_property("win-length", 200u32);
    e.set_property("n-fft", 256u32);
    h.set_src_caps_str(&f32_caps(8000, 1));
    h.push(f32_buffer(&voice(2000, 0.0), Some(gst::ClockTime::ZERO)))
        .unwrap();
    let out = h.pull().unwrap();
    let cfg = MelConfig {
        sample_rate: 8000,
        n_mels: 40,
        hop_length: 80,
        win_length: 200,
        n_fft: 256,
        ..MelConfig::default()
    };
    assert_eq!(out.size() / 4, cfg.n_frames(2000) * 40);
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.get::<i32>("n-mels").unwrap(), 40);
    assert_eq!(s.get::<i32>("rate").unwrap(), 8000);

    let err = run_to_end("audiotestsrc num-buffers=3 ! affectspectro win-length=1024 ! fakesink")
        .expect("a window longer than the FFT must fail");
    assert!(err.contains("window length"), "{err}");
}

#[test]
fn latency_includes_one_fft_frame() {
    init();
    let mut h = Harness::new("affectspectro");
    h.set_src_caps_str(&f32_caps(RATE, 1));
    h.push(f32_buffer(&voice(1000, 0.0), Some(gst::ClockTime::ZERO)))
        .unwrap();
    let latency = h.query_latency().expect("latency answered");
    // 512 samples at 16 kHz = 32 ms on top of the harness source's own zero latency.
    assert_eq!(latency, gst::ClockTime::from_mseconds(32));
}

#[test]
fn gst_inspect_finds_the_element() {
    // `cargo test` builds the cdylib next to the test binary (deps/); `cargo build` also puts
    // it in target/<profile>/. Copy it alone into a folder so the scanner sees only it.
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let built = [
        deps.join("libgstaffect.so"),
        deps.parent().unwrap().join("libgstaffect.so"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .unwrap_or_else(|| panic!("no libgstaffect.so in or next to {}", deps.display()));
    let dir = scratch_dir("gst-inspect");
    std::fs::copy(&built, dir.join("libgstaffect.so")).unwrap();
    let out = std::process::Command::new("gst-inspect-1.0")
        .arg("affectspectro")
        .env("GST_PLUGIN_PATH", &dir)
        .env("GST_REGISTRY", dir.join("registry.bin"))
        .output()
        .expect("gst-inspect-1.0 runs (gstreamer1.0-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("audio/x-affect-melspec"), "{text}");
    assert!(text.contains("sample-rate"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}
