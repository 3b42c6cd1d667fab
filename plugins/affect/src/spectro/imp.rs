// SPDX-License-Identifier: MPL-2.0
use std::sync::{LazyLock, Mutex, MutexGuard};

use affect_core::melspec::{MelConfig, MelNorm, MelScale, StreamingMelSpectrogram, WindowKind};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_transform::GenerateOutputSuccess;
use gst_base::subclass::prelude::*;

use super::MELSPEC_CAPS_NAME;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "affectspectro",
        gst::DebugColorFlags::empty(),
        Some("Affect log-mel spectrogram"),
    )
});

const DEFAULT_SAMPLE_RATE: u32 = 16_000;
const DEFAULT_N_FFT: u32 = 512;
const DEFAULT_WIN_LENGTH: u32 = 400;
const DEFAULT_HOP_LENGTH: u32 = 160;
const DEFAULT_N_MELS: u32 = 64;
const DEFAULT_F_MIN: f64 = 0.0;
const DEFAULT_F_MAX: f64 = 0.0;
const DEFAULT_POWER: f64 = 2.0;
const DEFAULT_LOG_OFFSET: f64 = 1e-6;

/// A timestamp further than this from where the samples received so far put it is a gap (or
/// an overlap) in the audio: the spectrogram restarts there, as on a DISCONT flag. The same
/// tolerance GStreamer's audio sinks and aggregators use.
const DISCONT_THRESHOLD: gst::ClockTime = gst::ClockTime::from_mseconds(40);

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAffectMelScale")]
pub enum MelScaleChoice {
    #[enum_value(name = "Slaney (linear below 1 kHz, log above)", nick = "slaney")]
    Slaney = 0,
    #[enum_value(name = "HTK (2595 log10(1 + f/700))", nick = "htk")]
    Htk = 1,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAffectMelNorm")]
pub enum MelNormChoice {
    #[enum_value(name = "Slaney area normalisation", nick = "slaney")]
    Slaney = 0,
    #[enum_value(name = "None (peak 1)", nick = "none")]
    None = 1,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAffectWindow")]
pub enum WindowChoice {
    #[enum_value(name = "Hann (periodic)", nick = "hann")]
    Hann = 0,
    #[enum_value(name = "Hamming (periodic)", nick = "hamming")]
    Hamming = 1,
    #[enum_value(name = "Rectangular", nick = "rectangular")]
    Rectangular = 2,
}

#[derive(Debug, Clone)]
struct Settings {
    sample_rate: u32,
    n_fft: u32,
    win_length: u32,
    hop_length: u32,
    n_mels: u32,
    f_min: f64,
    f_max: f64,
    power: f64,
    log_offset: f64,
    mel_scale: MelScaleChoice,
    mel_norm: MelNormChoice,
    window: WindowChoice,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            sample_rate: DEFAULT_SAMPLE_RATE,
            n_fft: DEFAULT_N_FFT,
            win_length: DEFAULT_WIN_LENGTH,
            hop_length: DEFAULT_HOP_LENGTH,
            n_mels: DEFAULT_N_MELS,
            f_min: DEFAULT_F_MIN,
            f_max: DEFAULT_F_MAX,
            power: DEFAULT_POWER,
            log_offset: DEFAULT_LOG_OFFSET,
            mel_scale: MelScaleChoice::Slaney,
            mel_norm: MelNormChoice::Slaney,
            window: WindowChoice::Hann,
        }
    }
}

impl Settings {
    fn mel_config(&self) -> MelConfig {
        MelConfig {
            sample_rate: self.sample_rate,
            n_fft: self.n_fft as usize,
            win_length: self.win_length as usize,
            hop_length: self.hop_length as usize,
            n_mels: self.n_mels as usize,
            f_min: self.f_min,
            f_max: (self.f_max > 0.0).then_some(self.f_max),
            power: self.power,
            log_offset: self.log_offset,
            mel_scale: match self.mel_scale {
                MelScaleChoice::Slaney => MelScale::Slaney,
                MelScaleChoice::Htk => MelScale::Htk,
            },
            norm: match self.mel_norm {
                MelNormChoice::Slaney => MelNorm::Slaney,
                MelNormChoice::None => MelNorm::None,
            },
            window: match self.window {
                WindowChoice::Hann => WindowKind::Hann,
                WindowChoice::Hamming => WindowKind::Hamming,
                WindowChoice::Rectangular => WindowKind::Rectangular,
            },
        }
    }
}

/// The output caps that describe spectrograms made with `cfg`.
fn melspec_caps(cfg: &MelConfig) -> gst::Caps {
    gst::Caps::builder(MELSPEC_CAPS_NAME)
        .field("format", "F32LE")
        .field("rate", cfg.sample_rate as i32)
        .field("n-mels", cfg.n_mels as i32)
        .field("hop", cfg.hop_length as i32)
        .field("win", cfg.win_length as i32)
        .field("n-fft", cfg.n_fft as i32)
        .field("f-min", cfg.f_min)
        .field("f-max", cfg.f_max_hz())
        .field("power", cfg.power)
        .field("log-offset", cfg.log_offset)
        .field("mel-scale", cfg.mel_scale.as_str())
        .field("mel-norm", cfg.norm.as_str())
        .field("window", cfg.window.as_str())
        .build()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SampleFormat {
    F32,
    S16,
}

struct State {
    format: SampleFormat,
    channels: usize,
    rate: u32,
    hop: u64,
    n_mels: usize,
    stream: StreamingMelSpectrogram,
    /// Time of the first sample since the last discontinuity, if the input is timestamped.
    base_pts: Option<gst::ClockTime>,
    /// Samples (per channel) received since the last discontinuity.
    samples_in: u64,
    /// The next output buffer starts a new run (after a reset) and carries DISCONT.
    discont: bool,
    /// NaN/Inf samples were already reported for this stream.
    warned_non_finite: bool,
    /// Spectrogram frames of the buffer being processed, handed out by `generate_output`.
    pending: Option<gst::Buffer>,
    scratch: Vec<f32>,
}

impl State {
    fn reset(&mut self) {
        self.stream.reset();
        self.base_pts = None;
        self.samples_in = 0;
        self.discont = true;
        self.pending = None;
    }

    fn sample_time(&self, samples: u64) -> Option<gst::ClockTime> {
        let offset = samples
            .mul_div_floor(*gst::ClockTime::SECOND, self.rate as u64)
            .map(gst::ClockTime::from_nseconds)?;
        self.base_pts.map(|b| b + offset)
    }
}

#[derive(Default)]
pub struct AffectSpectro {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

impl AffectSpectro {
    fn lock_state(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap()
    }

    fn sink_template_caps() -> gst::Caps {
        gst::Caps::builder("audio/x-raw")
            .field("format", gst::List::new(["F32LE", "S16LE"]))
            .field("layout", "interleaved")
            .field("rate", gst::IntRange::new(1, i32::MAX))
            .field("channels", gst::IntRange::new(1, i32::MAX))
            .build()
    }

    /// Whether a buffer at `pts` starts a new time line: the samples received so far put the
    /// next sample at an expected time; a flagged buffer within one sample of it, or an
    /// unflagged one within `DISCONT_THRESHOLD`, continues the stream (sources flag their
    /// first buffer DISCONT, and converters may flag continuous audio).
    fn is_discontinuity(&self, state: &State, pts: Option<gst::ClockTime>, flagged: bool) -> bool {
        if state.samples_in == 0 && state.stream.pending_samples() == 0 {
            // Nothing received since the last reset: there is nothing to throw away.
            return false;
        }
        let Some(expected) = state.sample_time(state.samples_in) else {
            // Untimestamped so far: only the flag can say.
            return flagged || pts.is_some();
        };
        let Some(pts) = pts else {
            return flagged;
        };
        let drift = if pts > expected {
            pts - expected
        } else {
            expected - pts
        };
        let tolerance = if flagged {
            gst::ClockTime::from_nseconds(
                gst::ClockTime::SECOND
                    .nseconds()
                    .div_ceil(state.rate as u64),
            )
        } else {
            DISCONT_THRESHOLD
        };
        if drift > tolerance {
            gst::debug!(
                CAT,
                imp = self,
                "Timestamp {pts} is {drift} away from the expected {expected} \
                 (flagged DISCONT: {flagged}): restarting"
            );
            return true;
        }
        if flagged {
            gst::debug!(
                CAT,
                imp = self,
                "DISCONT at {pts} is within {drift} of the expected time: continuing"
            );
        }
        false
    }

    /// Converts interleaved samples to mono (channel mean) straight into the spectrogram's
    /// buffer, replacing NaN/Inf by 0; returns how many non-finite samples there were.
    fn downmix_into(
        bytes: &[u8],
        format: SampleFormat,
        channels: usize,
        dst: &mut Vec<f32>,
    ) -> usize {
        let mut non_finite = 0;
        let scale = 1.0 / channels as f32;
        match format {
            SampleFormat::F32 => {
                for frame in bytes.chunks_exact(4 * channels) {
                    let mut sum = 0.0f32;
                    for s in frame.chunks_exact(4) {
                        let v = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                        if v.is_finite() {
                            sum += v;
                        } else {
                            non_finite += 1;
                        }
                    }
                    dst.push(if channels == 1 { sum } else { sum * scale });
                }
            }
            SampleFormat::S16 => {
                const S16_SCALE: f32 = 1.0 / 32768.0;
                for frame in bytes.chunks_exact(2 * channels) {
                    let sum: i32 = frame
                        .chunks_exact(2)
                        .map(|s| i16::from_le_bytes([s[0], s[1]]) as i32)
                        .sum();
                    dst.push(sum as f32 * S16_SCALE * scale);
                }
            }
        }
        non_finite
    }
}

#[glib::object_subclass]
impl ObjectSubclass for AffectSpectro {
    const NAME: &'static str = "GstAffectSpectro";
    type Type = super::AffectSpectro;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for AffectSpectro {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt::builder("sample-rate")
                    .nick("Sample rate")
                    .blurb("Sample rate in Hz the input must have (put audioresample before this element)")
                    .minimum(1)
                    .default_value(DEFAULT_SAMPLE_RATE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("n-fft")
                    .nick("FFT size")
                    .blurb("Samples per FFT frame")
                    .minimum(2)
                    .maximum(1 << 16)
                    .default_value(DEFAULT_N_FFT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("win-length")
                    .nick("Window length")
                    .blurb("Samples of the analysis window, centred in the FFT frame (at most n-fft)")
                    .minimum(1)
                    .maximum(1 << 16)
                    .default_value(DEFAULT_WIN_LENGTH)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("hop-length")
                    .nick("Hop length")
                    .blurb("Samples between the starts of consecutive frames")
                    .minimum(1)
                    .maximum(1 << 20)
                    .default_value(DEFAULT_HOP_LENGTH)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("n-mels")
                    .nick("Mel bands")
                    .blurb("Number of mel bands per frame")
                    .minimum(1)
                    .maximum(1024)
                    .default_value(DEFAULT_N_MELS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("f-min")
                    .nick("Lowest frequency")
                    .blurb("Lower edge of the mel filter bank in Hz")
                    .minimum(0.0)
                    .default_value(DEFAULT_F_MIN)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("f-max")
                    .nick("Highest frequency")
                    .blurb("Upper edge of the mel filter bank in Hz (0 = half the sample rate)")
                    .minimum(0.0)
                    .default_value(DEFAULT_F_MAX)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("power")
                    .nick("Power")
                    .blurb("Exponent of the magnitude spectrum (2 = power, 1 = magnitude)")
                    .minimum(f64::MIN_POSITIVE)
                    .default_value(DEFAULT_POWER)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("log-offset")
                    .nick("Log offset")
                    .blurb("Added to the mel energies before the natural logarithm")
                    .minimum(f64::MIN_POSITIVE)
                    .default_value(DEFAULT_LOG_OFFSET)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("mel-scale", MelScaleChoice::Slaney)
                    .nick("Mel scale")
                    .blurb("Frequency scale of the mel filters")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("mel-norm", MelNormChoice::Slaney)
                    .nick("Mel normalisation")
                    .blurb("Normalisation of the mel filters")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("window", WindowChoice::Hann)
                    .nick("Window")
                    .blurb("Analysis window")
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "sample-rate" => s.sample_rate = value.get().expect("type checked upstream"),
            "n-fft" => s.n_fft = value.get().expect("type checked upstream"),
            "win-length" => s.win_length = value.get().expect("type checked upstream"),
            "hop-length" => s.hop_length = value.get().expect("type checked upstream"),
            "n-mels" => s.n_mels = value.get().expect("type checked upstream"),
            "f-min" => s.f_min = value.get().expect("type checked upstream"),
            "f-max" => s.f_max = value.get().expect("type checked upstream"),
            "power" => s.power = value.get().expect("type checked upstream"),
            "log-offset" => s.log_offset = value.get().expect("type checked upstream"),
            "mel-scale" => s.mel_scale = value.get().expect("type checked upstream"),
            "mel-norm" => s.mel_norm = value.get().expect("type checked upstream"),
            "window" => s.window = value.get().expect("type checked upstream"),
            other => unreachable!("unknown property {other}"),
        }
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "sample-rate" => s.sample_rate.to_value(),
            "n-fft" => s.n_fft.to_value(),
            "win-length" => s.win_length.to_value(),
            "hop-length" => s.hop_length.to_value(),
            "n-mels" => s.n_mels.to_value(),
            "f-min" => s.f_min.to_value(),
            "f-max" => s.f_max.to_value(),
            "power" => s.power.to_value(),
            "log-offset" => s.log_offset.to_value(),
            "mel-scale" => s.mel_scale.to_value(),
            "mel-norm" => s.mel_norm.to_value(),
            "window" => s.window.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for AffectSpectro {}

impl ElementImpl for AffectSpectro {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Affect log-mel spectrogram",
                "Filter/Converter/Audio",
                "Turns raw audio into timestamped log-mel spectrogram frames for affect models",
                "affect developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let src_caps = gst::Caps::builder(MELSPEC_CAPS_NAME)
                .field("format", "F32LE")
                .field("rate", gst::IntRange::new(1, i32::MAX))
                .field("n-mels", gst::IntRange::new(1, i32::MAX))
                .field("hop", gst::IntRange::new(1, i32::MAX))
                .field("win", gst::IntRange::new(1, i32::MAX))
                .build();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &src_caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &AffectSpectro::sink_template_caps(),
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for AffectSpectro {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::NeverInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let cfg = self.settings.lock().unwrap().mel_config();
        // Refuse impossible parameter combinations before any data flows.
        cfg.validate().map_err(|e| {
            gst::error_msg!(
                gst::LibraryError::Settings,
                ["Invalid spectrogram settings: {}", e]
            )
        })?;
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.lock_state() = None;
        Ok(())
    }

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        let cfg = self.settings.lock().unwrap().mel_config();
        let other = match direction {
            // From raw audio on the sink pad to what the src pad produces.
            gst::PadDirection::Sink => melspec_caps(&cfg),
            // From the spectrogram on the src pad back to the audio the sink pad wants.
            _ => {
                let mut raw = Self::sink_template_caps();
                raw.make_mut().set("rate", cfg.sample_rate as i32);
                raw
            }
        };
        gst::trace!(CAT, imp = self, "{direction:?} {caps} -> {other}");
        match filter {
            Some(f) => Some(f.intersect_with_mode(&other, gst::CapsIntersectMode::First)),
            None => Some(other),
        }
    }

    fn accept_caps(&self, direction: gst::PadDirection, caps: &gst::Caps) -> bool {
        if direction == gst::PadDirection::Sink {
            // Any raw audio of a supported format is accepted here so that a wrong rate
            // reaches `set_caps`, which says what is expected instead of a bare
            // not-negotiated from upstream.
            return caps.is_subset(&Self::sink_template_caps());
        }
        self.parent_accept_caps(direction, caps)
    }

    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let cfg = self.settings.lock().unwrap().mel_config();
        let info = gst_audio::AudioInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "Cannot parse input caps {}", incaps))?;
        if info.rate() != cfg.sample_rate {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                (
                    "affectspectro needs audio at {} Hz (its sample-rate property) but upstream \
                     offers {} Hz; put audioresample before it",
                    cfg.sample_rate,
                    info.rate()
                ),
                ["input caps: {}", incaps]
            );
            return Err(gst::loggable_error!(
                CAT,
                "Unsupported rate {}",
                info.rate()
            ));
        }
        let format = match info.format() {
            gst_audio::AudioFormat::F32le => SampleFormat::F32,
            gst_audio::AudioFormat::S16le => SampleFormat::S16,
            other => {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    (
                        "affectspectro takes F32LE or S16LE audio, got {:?}; put audioconvert before it",
                        other
                    )
                );
                return Err(gst::loggable_error!(CAT, "Unsupported format {:?}", other));
            }
        };
        let stream = StreamingMelSpectrogram::new(cfg.clone())
            .map_err(|e| gst::loggable_error!(CAT, "Invalid spectrogram settings: {}", e))?;
        gst::debug!(CAT, imp = self, "Configured {incaps} -> {outcaps}");
        *self.lock_state() = Some(State {
            format,
            channels: info.channels() as usize,
            rate: cfg.sample_rate,
            hop: cfg.hop_length as u64,
            n_mels: cfg.n_mels,
            stream,
            base_pts: None,
            samples_in: 0,
            discont: true,
            warned_non_finite: false,
            pending: None,
            scratch: Vec::new(),
        });
        Ok(())
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction == gst::PadDirection::Src
            && let gst::QueryViewMut::Latency(q) = query.view_mut()
        {
            let mut upstream = gst::query::Latency::new();
            if !self.obj().sink_pad().peer_query(&mut upstream) {
                return false;
            }
            let (live, min, max) = upstream.result();
            // A frame leaves once its last sample has arrived: one FFT frame after its
            // timestamp.
            let s = self.settings.lock().unwrap();
            let ours = (s.n_fft as u64)
                .mul_div_ceil(*gst::ClockTime::SECOND, s.sample_rate as u64)
                .map(gst::ClockTime::from_nseconds)
                .unwrap_or(gst::ClockTime::ZERO);
            gst::debug!(CAT, imp = self, "Latency: upstream {min}, ours {ours}");
            q.set(live, min + ours, max.map(|m| m + ours));
            return true;
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::FlushStop(_) | gst::EventView::Segment(_) => {
                // A flush or a new segment (seek, new stream) starts a new time line: frames
                // must not straddle the old and the new one.
                if let Some(state) = self.lock_state().as_mut() {
                    gst::debug!(CAT, imp = self, "Resetting on {:?}", event.type_());
                    state.reset();
                }
            }
            gst::EventView::Eos(_) => {
                if let Some(state) = self.lock_state().as_mut() {
                    // Every whole frame was pushed as soon as its samples arrived; what is
                    // left is shorter than one FFT frame.
                    gst::debug!(
                        CAT,
                        imp = self,
                        "EOS after {} frames; {} trailing samples make no whole frame",
                        state.stream.next_frame_index(),
                        state.stream.pending_samples()
                    );
                }
            }
            _ => (),
        }
        self.parent_sink_event(event)
    }

    fn submit_input_buffer(
        &self,
        _is_discont: bool,
        inbuf: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut guard = self.lock_state();
        let Some(state) = guard.as_mut() else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("Received audio before caps: the stream never said what it carries")
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let map = inbuf.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::CoreError::Failed, ("Cannot map input buffer"));
            gst::FlowError::Error
        })?;
        let bytes = map.as_slice();
        let bytes_per_frame = state.channels
            * match state.format {
                SampleFormat::F32 => 4,
                SampleFormat::S16 => 2,
            };
        let n_samples = bytes.len() / bytes_per_frame;
        if bytes.len() % bytes_per_frame != 0 {
            gst::warning!(
                CAT,
                imp = self,
                "Buffer of {} bytes holds no whole number of {}-byte sample frames; \
                 ignoring the tail",
                bytes.len(),
                bytes_per_frame
            );
        }
        if n_samples == 0 {
            gst::trace!(CAT, imp = self, "Empty buffer");
            return Ok(gst::FlowSuccess::Ok);
        }

        let pts = inbuf.pts();
        // BaseTransform keeps reporting `is_discont` until an output buffer has been
        // produced, which with 10-20 ms buffers is several buffers after the flagged one:
        // only the buffer's own flag, checked against where its samples land, says whether
        // this is a real discontinuity.
        let restart = self.is_discontinuity(
            state,
            pts,
            inbuf.flags().contains(gst::BufferFlags::DISCONT),
        );
        if restart {
            state.reset();
        }
        if state.base_pts.is_none() && state.samples_in == 0 {
            state.base_pts = pts;
        }

        let first_frame = state.stream.next_frame_index();
        let mut non_finite = 0;
        let (format, channels) = (state.format, state.channels);
        let mut frames = std::mem::take(&mut state.scratch);
        frames.clear();
        let n_frames = state.stream.push_with(
            n_samples,
            |dst| non_finite = Self::downmix_into(bytes, format, channels, dst),
            &mut frames,
        );
        state.samples_in += n_samples as u64;
        drop(map);

        if non_finite > 0 && !state.warned_non_finite {
            state.warned_non_finite = true;
            gst::element_imp_warning!(
                self,
                gst::StreamError::Decode,
                (
                    "Input audio holds {} NaN or infinite samples; they are replaced by 0 \
                     (reported once per stream)",
                    non_finite
                )
            );
        }

        if n_frames > 0 {
            let mut outbuf = gst::Buffer::with_size(frames.len() * 4).map_err(|_| {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::NoSpaceLeft,
                    ("Cannot allocate {} bytes", frames.len() * 4)
                );
                gst::FlowError::Error
            })?;
            {
                let out = outbuf.get_mut().expect("new buffer is writable");
                let start = state.sample_time(first_frame * state.hop);
                let end = state.sample_time((first_frame + n_frames as u64) * state.hop);
                out.set_pts(start);
                out.set_duration(end.zip(start).map(|(e, s)| e - s));
                out.set_offset(first_frame);
                out.set_offset_end(first_frame + n_frames as u64);
                if state.discont {
                    out.set_flags(gst::BufferFlags::DISCONT);
                    state.discont = false;
                }
                let mut omap = out.map_writable().map_err(|_| gst::FlowError::Error)?;
                for (dst, v) in omap.as_mut_slice().chunks_exact_mut(4).zip(&frames) {
                    dst.copy_from_slice(&v.to_le_bytes());
                }
            }
            gst::log!(
                CAT,
                imp = self,
                "{n_frames} frames of {} mels at {:?}",
                state.n_mels,
                outbuf.pts()
            );
            state.pending = Some(outbuf);
        }
        state.scratch = frames;
        Ok(gst::FlowSuccess::Ok)
    }

    fn generate_output(&self) -> Result<GenerateOutputSuccess, gst::FlowError> {
        let pending = self.lock_state().as_mut().and_then(|s| s.pending.take());
        Ok(match pending {
            Some(buf) => GenerateOutputSuccess::Buffer(buf),
            None => GenerateOutputSuccess::NoOutput,
        })
    }
}
