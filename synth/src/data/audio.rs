// SPDX-License-Identifier: MPL-2.0
//! Audio of a video for any frame: decoded through GStreamer (`filesrc ! decodebin !
//! audioconvert ! audioresample ! appsink` at 16 kHz F32 mono), turned into the affect-core
//! log-mel spectrogram (the same function the `affectspectro` element runs), and cut into the
//! window of `T` spectrogram frames that ends at a video frame's timestamp.

use std::path::Path;
use std::sync::{Arc, Mutex};

use affect_core::melspec::{MelConfig, MelSpectrogram};
use gst::prelude::*;

use super::DataError;

/// A video's decoded audio and its frame rate.
#[derive(Clone, Debug)]
pub struct DecodedMedia {
    /// Mono samples at the requested rate.
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    /// Video frame rate from the stream's caps, when the file has video.
    pub fps: Option<f64>,
}

fn media_error(path: &Path, message: impl std::fmt::Display) -> DataError {
    DataError::Media {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Decodes the audio track of `path` to mono f32 at `sample_rate`.
pub fn decode(path: &Path, sample_rate: u32) -> Result<DecodedMedia, DataError> {
    gst::init().map_err(|e| media_error(path, e))?;
    let pipeline = gst::Pipeline::new();
    let make = |factory: &str| {
        gst::ElementFactory::make(factory)
            .build()
            .map_err(|e| media_error(path, format!("cannot create {factory}: {e}")))
    };
    let src = make("filesrc")?;
    src.set_property("location", path.to_string_lossy().as_ref());
    let decodebin = make("decodebin")?;
    let convert = make("audioconvert")?;
    let resample = make("audioresample")?;
    let caps = gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
        .field("layout", "interleaved")
        .field("rate", sample_rate as i32)
        .field("channels", 1i32)
        .build();
    let sink = gst_app::AppSink::builder().caps(&caps).sync(false).build();
    pipeline
        .add_many([&src, &decodebin, &convert, &resample, sink.upcast_ref()])
        .map_err(|e| media_error(path, e))?;
    src.link(&decodebin).map_err(|e| media_error(path, e))?;
    gst::Element::link_many([&convert, &resample, sink.upcast_ref()])
        .map_err(|e| media_error(path, e))?;

    let fps: Arc<Mutex<Option<f64>>> = Arc::default();
    let fps_seen = fps.clone();
    let audio_in = convert
        .static_pad("sink")
        .expect("audioconvert has a sink pad");
    let pipeline_weak = pipeline.downgrade();
    decodebin.connect_pad_added(move |_, pad| {
        let Some(caps) = pad.current_caps().or_else(|| Some(pad.query_caps(None))) else {
            return;
        };
        let Some(s) = caps.structure(0) else { return };
        if s.name().starts_with("audio/") && !audio_in.is_linked() {
            let _ = pad.link(&audio_in);
        } else if let Some(pipeline) = pipeline_weak.upgrade() {
            if s.name().starts_with("video/")
                && let Ok(f) = s.get::<gst::Fraction>("framerate")
                && f.denom() != 0
            {
                *fps_seen.lock().expect("fps lock") = Some(f.numer() as f64 / f.denom() as f64);
            }
            // Streams we do not need still have to flow somewhere.
            if let Ok(fake) = gst::ElementFactory::make("fakesink")
                .property("sync", false)
                .build()
                && pipeline.add(&fake).is_ok()
            {
                let _ = fake.sync_state_with_parent();
                if let Some(sinkpad) = fake.static_pad("sink") {
                    let _ = pad.link(&sinkpad);
                }
            }
        }
    });

    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| media_error(path, format!("cannot start decoding: {e}")))?;
    let mut samples = Vec::new();
    let mut failure = None;
    // `pull_sample` fails at the end of the stream (or on an error, read from the bus below).
    while let Ok(sample) = sink.pull_sample() {
        if let Some(buffer) = sample.buffer()
            && let Ok(map) = buffer.map_readable()
        {
            samples.extend(
                map.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
    }
    if let Some(bus) = pipeline.bus()
        && let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
        && let gst::MessageView::Error(e) = msg.view()
    {
        failure = Some(format!("{} ({:?})", e.error(), e.debug()));
    }
    let _ = pipeline.set_state(gst::State::Null);
    if let Some(message) = failure {
        return Err(media_error(path, message));
    }
    if samples.is_empty() {
        return Err(media_error(
            path,
            "no audio decoded (does the file have an audio track?)",
        ));
    }
    let fps = *fps.lock().expect("fps lock");
    Ok(DecodedMedia {
        samples,
        sample_rate,
        fps,
    })
}

/// The log-mel spectrogram of a whole track, frame-major.
#[derive(Clone, Debug)]
pub struct AudioFeatures {
    pub mel: Vec<f32>,
    pub n_frames: usize,
    pub n_mels: usize,
    pub config: MelConfig,
}

impl AudioFeatures {
    /// Computes the spectrogram of `samples` (at `config.sample_rate`).
    pub fn new(samples: &[f32], config: MelConfig) -> Result<AudioFeatures, DataError> {
        let mut spectrogram =
            MelSpectrogram::new(config.clone()).map_err(|e| DataError::Media {
                path: Default::default(),
                message: e.to_string(),
            })?;
        let mel = spectrogram.compute(samples);
        Ok(AudioFeatures {
            n_frames: mel.len() / config.n_mels,
            n_mels: config.n_mels,
            mel,
            config,
        })
    }

    /// Decodes `path` and computes its spectrogram with `config`.
    pub fn from_file(
        path: &Path,
        config: MelConfig,
    ) -> Result<(AudioFeatures, Option<f64>), DataError> {
        let media = decode(path, config.sample_rate)?;
        Ok((AudioFeatures::new(&media.samples, config)?, media.fps))
    }

    /// Index of the last spectrogram frame that ends at or before `time` seconds, or `None`
    /// if no frame ends that early. Frame `k` covers samples `k * hop .. k * hop + n_fft`.
    pub fn last_frame_before(&self, time: f64) -> Option<usize> {
        let sample = (time * self.config.sample_rate as f64).round();
        let end = sample - self.config.n_fft as f64;
        (end >= 0.0).then(|| (end / self.config.hop_length as f64).floor() as usize)
    }

    /// The `frames` spectrogram frames ending at `time` (frame-major, `frames * n_mels`
    /// values written into `out`). Frames before the start or past the end of the track are
    /// silence: `ln(log_offset)`.
    pub fn window(&self, time: f64, frames: usize, out: &mut Vec<f32>) {
        let silence = self.config.log_offset.ln() as f32;
        out.clear();
        out.resize(frames * self.n_mels, silence);
        let Some(last) = self.last_frame_before(time) else {
            return;
        };
        for slot in 0..frames {
            // Slot `frames - 1` holds frame `last`.
            let Some(k) = (last + slot + 1).checked_sub(frames) else {
                continue;
            };
            if k < self.n_frames {
                out[slot * self.n_mels..(slot + 1) * self.n_mels]
                    .copy_from_slice(&self.mel[k * self.n_mels..(k + 1) * self.n_mels]);
            }
        }
    }
}
