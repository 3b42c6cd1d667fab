// SPDX-License-Identifier: MPL-2.0
//! Log-mel spectrogram: the one implementation the `affectspectro` element and the training
//! crate share, so that a model sees in a pipeline exactly the features it was trained on.
//!
//! With the default [`MelConfig`] the output equals
//! `np.log(librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, win_length=400,
//! hop_length=160, n_mels=64, center=False, power=2.0, htk=False, norm='slaney') + 1e-6)`,
//! transposed to frame-major order (`[frame][mel]`).
//!
//! Framing follows librosa with `center=False`: frame `k` covers samples
//! `k * hop .. k * hop + n_fft`, the window of `win_length` samples sits centred in those
//! `n_fft` samples (zero-padded on both sides), and a signal of `n` samples yields
//! `1 + (n - n_fft) / hop` frames (none when `n < n_fft`).

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use realfft::num_complex::Complex64;
use realfft::{RealFftPlanner, RealToComplex};

/// Frequency scale used to place the mel filters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MelScale {
    /// Slaney's Auditory Toolbox scale (librosa's default, `htk=False`): linear below 1 kHz,
    /// logarithmic above.
    #[default]
    Slaney,
    /// The HTK formula `2595 * log10(1 + f / 700)` (librosa `htk=True`).
    Htk,
}

/// Normalisation of the mel filters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MelNorm {
    /// Slaney-style area normalisation: each triangle is divided by its width in Hz
    /// (librosa `norm='slaney'`), so the filters have roughly constant energy per channel.
    #[default]
    Slaney,
    /// Triangles of peak height 1 (librosa `norm=None`).
    None,
}

/// Analysis window, periodic (as `scipy.signal.get_window(..., fftbins=True)` makes it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WindowKind {
    /// `0.5 - 0.5 cos(2 pi n / N)`.
    #[default]
    Hann,
    /// `0.54 - 0.46 cos(2 pi n / N)`.
    Hamming,
    /// All ones.
    Rectangular,
}

macro_rules! impl_name_parse {
    ($t:ty, $what:literal, $( $v:path => $s:literal ),+ $(,)?) => {
        impl $t {
            /// The lower-case name used in caps, properties and model metadata.
            pub fn as_str(&self) -> &'static str {
                match self { $( $v => $s, )+ }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $t {
            type Err = MelError;
            fn from_str(s: &str) -> Result<Self, MelError> {
                match s.trim().to_ascii_lowercase().as_str() {
                    $( $s => Ok($v), )+
                    _ => Err(MelError::UnknownName {
                        what: $what,
                        got: s.to_string(),
                        expected: concat!($( $s, " " ),+).trim_end(),
                    }),
                }
            }
        }
    };
}

impl_name_parse!(MelScale, "mel scale", MelScale::Slaney => "slaney", MelScale::Htk => "htk");
impl_name_parse!(MelNorm, "mel norm", MelNorm::Slaney => "slaney", MelNorm::None => "none");
impl_name_parse!(
    WindowKind,
    "window",
    WindowKind::Hann => "hann",
    WindowKind::Hamming => "hamming",
    WindowKind::Rectangular => "rectangular",
);

/// A configuration that cannot make a spectrogram, or a name that is not known.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MelError {
    #[error("{what} must be {requirement}, got {got}")]
    Invalid {
        what: &'static str,
        requirement: String,
        got: String,
    },
    #[error("unknown {what} '{got}' (expected one of: {expected})")]
    UnknownName {
        what: &'static str,
        got: String,
        expected: &'static str,
    },
    #[error("output holds {got} values, {expected} needed")]
    OutputSize { got: usize, expected: usize },
}

/// Every parameter of the log-mel spectrogram. The defaults are the features of the model
/// contract: 16 kHz, 512-point FFT, 400-sample (25 ms) Hann window, 160-sample (10 ms) hop,
/// 64 Slaney mels with Slaney norm over 0..8 kHz, power spectrum, `ln(mel + 1e-6)`.
#[derive(Clone, Debug, PartialEq)]
pub struct MelConfig {
    pub sample_rate: u32,
    pub n_fft: usize,
    pub win_length: usize,
    pub hop_length: usize,
    pub n_mels: usize,
    pub f_min: f64,
    /// Upper edge of the filter bank in Hz; `None` means the Nyquist frequency.
    pub f_max: Option<f64>,
    /// Exponent applied to the magnitude spectrum (2 = power, 1 = magnitude).
    pub power: f64,
    /// Added before the natural logarithm so silence stays finite.
    pub log_offset: f64,
    pub mel_scale: MelScale,
    pub norm: MelNorm,
    pub window: WindowKind,
}

impl Default for MelConfig {
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            n_fft: 512,
            win_length: 400,
            hop_length: 160,
            n_mels: 64,
            f_min: 0.0,
            f_max: None,
            power: 2.0,
            log_offset: 1e-6,
            mel_scale: MelScale::Slaney,
            norm: MelNorm::Slaney,
            window: WindowKind::Hann,
        }
    }
}

fn invalid(what: &'static str, requirement: impl Into<String>, got: impl fmt::Display) -> MelError {
    MelError::Invalid {
        what,
        requirement: requirement.into(),
        got: got.to_string(),
    }
}

impl MelConfig {
    /// Upper filter-bank edge in Hz.
    pub fn f_max_hz(&self) -> f64 {
        self.f_max.unwrap_or(self.sample_rate as f64 / 2.0)
    }

    /// Number of FFT bins of one frame (`n_fft / 2 + 1`).
    pub fn n_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Frames a signal of `n_samples` yields (librosa, `center=False`).
    pub fn n_frames(&self, n_samples: usize) -> usize {
        if n_samples < self.n_fft {
            0
        } else {
            1 + (n_samples - self.n_fft) / self.hop_length
        }
    }

    /// Checks every parameter; the error names the first that is out of range.
    pub fn validate(&self) -> Result<(), MelError> {
        if self.sample_rate == 0 {
            return Err(invalid("sample rate", "> 0 Hz", self.sample_rate));
        }
        if self.n_fft < 2 {
            return Err(invalid("n-fft", ">= 2", self.n_fft));
        }
        if self.win_length == 0 || self.win_length > self.n_fft {
            return Err(invalid(
                "window length",
                format!("between 1 and n-fft ({})", self.n_fft),
                self.win_length,
            ));
        }
        if self.hop_length == 0 {
            return Err(invalid("hop length", ">= 1", self.hop_length));
        }
        if self.n_mels == 0 {
            return Err(invalid("n-mels", ">= 1", self.n_mels));
        }
        let nyquist = self.sample_rate as f64 / 2.0;
        if !(self.f_min.is_finite() && self.f_min >= 0.0) {
            return Err(invalid("f-min", ">= 0 Hz", self.f_min));
        }
        let f_max = self.f_max_hz();
        if !(f_max.is_finite() && f_max > self.f_min && f_max <= nyquist) {
            return Err(invalid(
                "f-max",
                format!(
                    "above f-min ({}) and at most the Nyquist frequency ({nyquist})",
                    self.f_min
                ),
                f_max,
            ));
        }
        if !(self.power.is_finite() && self.power > 0.0) {
            return Err(invalid("power", "> 0", self.power));
        }
        if !(self.log_offset.is_finite() && self.log_offset > 0.0) {
            return Err(invalid("log offset", "> 0", self.log_offset));
        }
        Ok(())
    }
}

/// Hz to mel on the given scale (librosa `hz_to_mel`).
pub fn hz_to_mel(hz: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * (1.0 + hz / 700.0).log10(),
        MelScale::Slaney => {
            const F_SP: f64 = 200.0 / 3.0;
            const MIN_LOG_HZ: f64 = 1000.0;
            const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;
            let logstep = 6.4f64.ln() / 27.0;
            if hz >= MIN_LOG_HZ {
                MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / logstep
            } else {
                hz / F_SP
            }
        }
    }
}

/// Mel to Hz on the given scale (librosa `mel_to_hz`).
pub fn mel_to_hz(mel: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (10f64.powf(mel / 2595.0) - 1.0),
        MelScale::Slaney => {
            const F_SP: f64 = 200.0 / 3.0;
            const MIN_LOG_HZ: f64 = 1000.0;
            const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;
            let logstep = 6.4f64.ln() / 27.0;
            if mel >= MIN_LOG_MEL {
                MIN_LOG_HZ * (logstep * (mel - MIN_LOG_MEL)).exp()
            } else {
                F_SP * mel
            }
        }
    }
}

/// One triangular mel filter, stored sparsely: `weights[i]` applies to FFT bin `first_bin + i`.
#[derive(Clone, Debug, PartialEq)]
pub struct MelFilter {
    pub first_bin: usize,
    pub weights: Vec<f32>,
}

/// The mel filter bank of `cfg` (librosa `filters.mel`), one sparse filter per mel band.
pub fn mel_filterbank(cfg: &MelConfig) -> Vec<MelFilter> {
    let n_bins = cfg.n_bins();
    let fft_freqs: Vec<f64> = (0..n_bins)
        .map(|k| k as f64 * cfg.sample_rate as f64 / cfg.n_fft as f64)
        .collect();
    let mel_lo = hz_to_mel(cfg.f_min, cfg.mel_scale);
    let mel_hi = hz_to_mel(cfg.f_max_hz(), cfg.mel_scale);
    let n_points = cfg.n_mels + 2;
    let mel_f: Vec<f64> = (0..n_points)
        .map(|i| {
            let mel = mel_lo + (mel_hi - mel_lo) * i as f64 / (n_points - 1) as f64;
            mel_to_hz(mel, cfg.mel_scale)
        })
        .collect();

    (0..cfg.n_mels)
        .map(|m| {
            let (lo, centre, hi) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
            let scale = match cfg.norm {
                MelNorm::Slaney => 2.0 / (hi - lo),
                MelNorm::None => 1.0,
            };
            let dense: Vec<f32> = fft_freqs
                .iter()
                .map(|&f| {
                    let lower = (f - lo) / (centre - lo);
                    let upper = (hi - f) / (hi - centre);
                    (lower.min(upper).max(0.0) * scale) as f32
                })
                .collect();
            let first = dense.iter().position(|&w| w > 0.0);
            match first {
                None => MelFilter {
                    first_bin: 0,
                    weights: Vec::new(),
                },
                Some(first) => {
                    let last = dense.iter().rposition(|&w| w > 0.0).unwrap_or(first);
                    MelFilter {
                        first_bin: first,
                        weights: dense[first..=last].to_vec(),
                    }
                }
            }
        })
        .collect()
}

/// The analysis window of `cfg`, `win_length` long, centred in `n_fft` zeros
/// (librosa `util.pad_center`).
pub fn padded_window(cfg: &MelConfig) -> Vec<f32> {
    let n = cfg.win_length;
    let mut out = vec![0.0f32; cfg.n_fft];
    let left = (cfg.n_fft - n) / 2;
    for i in 0..n {
        let phase = 2.0 * PI * i as f64 / n as f64;
        let w = match cfg.window {
            WindowKind::Hann => 0.5 - 0.5 * phase.cos(),
            WindowKind::Hamming => 0.54 - 0.46 * phase.cos(),
            WindowKind::Rectangular => 1.0,
        };
        out[left + i] = w as f32;
    }
    out
}

/// A planned log-mel spectrogram: FFT plan, window and filter bank made once, no allocation
/// per frame. The transform and the mel sums run in f64: bands far below a frame's loudest
/// ones sit near the log offset, where single-precision FFT round-off alone moves the log
/// value by more than 1e-3.
pub struct MelSpectrogram {
    cfg: MelConfig,
    window: Vec<f32>,
    filters: Vec<MelFilter>,
    fft: Arc<dyn RealToComplex<f64>>,
    frame: Vec<f64>,
    spectrum: Vec<Complex64>,
    scratch: Vec<Complex64>,
    power: Vec<f64>,
}

impl fmt::Debug for MelSpectrogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MelSpectrogram")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl MelSpectrogram {
    pub fn new(cfg: MelConfig) -> Result<Self, MelError> {
        cfg.validate()?;
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(cfg.n_fft);
        let spectrum = fft.make_output_vec();
        let scratch = fft.make_scratch_vec();
        Ok(Self {
            window: padded_window(&cfg),
            filters: mel_filterbank(&cfg),
            frame: vec![0.0; cfg.n_fft],
            power: vec![0.0; cfg.n_bins()],
            spectrum,
            scratch,
            fft,
            cfg,
        })
    }

    pub fn config(&self) -> &MelConfig {
        &self.cfg
    }

    /// The sparse filter bank in use.
    pub fn filters(&self) -> &[MelFilter] {
        &self.filters
    }

    /// Computes one frame: `samples` holds exactly `n_fft` samples, `out` receives `n_mels`
    /// log-mel values.
    pub fn compute_frame(&mut self, samples: &[f32], out: &mut [f32]) -> Result<(), MelError> {
        if samples.len() != self.cfg.n_fft {
            return Err(MelError::OutputSize {
                got: samples.len(),
                expected: self.cfg.n_fft,
            });
        }
        if out.len() != self.cfg.n_mels {
            return Err(MelError::OutputSize {
                got: out.len(),
                expected: self.cfg.n_mels,
            });
        }
        self.frame_unchecked(samples, out);
        Ok(())
    }

    fn frame_unchecked(&mut self, samples: &[f32], out: &mut [f32]) {
        for ((dst, &s), &w) in self.frame.iter_mut().zip(samples).zip(&self.window) {
            *dst = s as f64 * w as f64;
        }
        // Lengths are fixed by construction, so the transform cannot fail.
        self.fft
            .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
            .expect("FFT buffers sized by the plan");
        if self.cfg.power == 2.0 {
            for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
                *p = c.re * c.re + c.im * c.im;
            }
        } else {
            let exponent = self.cfg.power;
            for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
                *p = (c.re * c.re + c.im * c.im).sqrt().powf(exponent);
            }
        }
        let offset = self.cfg.log_offset;
        for (o, filter) in out.iter_mut().zip(&self.filters) {
            let bins = &self.power[filter.first_bin..filter.first_bin + filter.weights.len()];
            let energy: f64 = bins
                .iter()
                .zip(&filter.weights)
                .map(|(p, &w)| p * w as f64)
                .sum();
            *o = (energy + offset).ln() as f32;
        }
    }

    /// Appends every whole frame of `samples` to `out` (frame-major, `n_mels` values per
    /// frame) and returns how many frames were written.
    pub fn compute_into(&mut self, samples: &[f32], out: &mut Vec<f32>) -> usize {
        let n_frames = self.cfg.n_frames(samples.len());
        let n_mels = self.cfg.n_mels;
        let start = out.len();
        out.resize(start + n_frames * n_mels, 0.0);
        for k in 0..n_frames {
            let s = k * self.cfg.hop_length;
            let dst_start = start + k * n_mels;
            // Split borrows: the frame buffer lives in `self`, the output in `out`.
            let frame = &samples[s..s + self.cfg.n_fft];
            let dst = &mut out[dst_start..dst_start + n_mels];
            self.frame_unchecked(frame, dst);
        }
        n_frames
    }

    /// Every whole frame of `samples`, frame-major.
    pub fn compute(&mut self, samples: &[f32]) -> Vec<f32> {
        let mut out = Vec::new();
        self.compute_into(samples, &mut out);
        out
    }
}

/// A spectrogram over a stream delivered in pieces of any size: the output is the same as
/// [`MelSpectrogram::compute`] over the concatenated input, however it was split.
#[derive(Debug)]
pub struct StreamingMelSpectrogram {
    mel: MelSpectrogram,
    /// Samples from the start of the next frame on.
    pending: Vec<f32>,
    /// Samples still to drop before the next frame starts (only when hop > n_fft).
    skip: usize,
    /// Frames produced since the last reset.
    frames_out: u64,
}

impl StreamingMelSpectrogram {
    pub fn new(cfg: MelConfig) -> Result<Self, MelError> {
        let mel = MelSpectrogram::new(cfg)?;
        let capacity = mel.cfg.n_fft * 2;
        Ok(Self {
            mel,
            pending: Vec::with_capacity(capacity),
            skip: 0,
            frames_out: 0,
        })
    }

    pub fn config(&self) -> &MelConfig {
        self.mel.config()
    }

    /// Index (since the last reset) of the next frame that will be produced. Its first sample
    /// is sample `next_frame_index() * hop` of the stream.
    pub fn next_frame_index(&self) -> u64 {
        self.frames_out
    }

    /// Samples held back waiting for a whole frame.
    pub fn pending_samples(&self) -> usize {
        self.pending.len()
    }

    /// Forgets buffered samples and restarts frame numbering (a discontinuity).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.skip = 0;
        self.frames_out = 0;
    }

    /// Feeds mono samples, appends the frames they complete to `out` and returns how many.
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<f32>) -> usize {
        self.push_with(
            samples.len(),
            |pending| pending.extend_from_slice(samples),
            out,
        )
    }

    /// Feeds samples that `fill` appends to the internal buffer (so callers can convert and
    /// downmix straight into it without an intermediate copy); `n_new` is how many it appends.
    pub fn push_with(
        &mut self,
        n_new: usize,
        fill: impl FnOnce(&mut Vec<f32>),
        out: &mut Vec<f32>,
    ) -> usize {
        let before = self.pending.len();
        fill(&mut self.pending);
        debug_assert_eq!(self.pending.len(), before + n_new);
        if self.skip > 0 {
            let dropped = self.skip.min(self.pending.len());
            self.pending.drain(..dropped);
            self.skip -= dropped;
        }
        let n_frames = self.mel.compute_into(&self.pending, out);
        if n_frames > 0 {
            let consumed = n_frames * self.mel.cfg.hop_length;
            if consumed >= self.pending.len() {
                self.skip = consumed - self.pending.len();
                self.pending.clear();
            } else {
                self.pending.drain(..consumed);
            }
            self.frames_out += n_frames as u64;
        }
        n_frames
    }
}

/// Spectrogram frames of a live stream, kept by time, from which the window of `T` frames that
/// ends at a video frame's time is cut: the last frame is the latest one that ends (start +
/// `n_fft` samples) at or before that time, the earlier ones follow at `hop` steps, and slots
/// with no frame hold the log-mel value of silence. This is the window a model is trained on
/// (frames before the start of a recording are silence too).
#[derive(Clone, Debug)]
pub struct MelRing {
    n_mels: usize,
    hop_ns: f64,
    n_fft_ns: u64,
    capacity: usize,
    starts: std::collections::VecDeque<u64>,
    values: std::collections::VecDeque<f32>,
}

/// What a cut window held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowFill {
    /// Slots filled with real frames (the rest are silence).
    pub filled: usize,
}

impl MelRing {
    /// A ring for spectrograms of `cfg` that keeps at most `capacity` frames.
    pub fn new(cfg: &MelConfig, capacity: usize) -> Self {
        let ns = |samples: usize| samples as f64 * 1e9 / cfg.sample_rate as f64;
        Self {
            n_mels: cfg.n_mels,
            hop_ns: ns(cfg.hop_length),
            n_fft_ns: ns(cfg.n_fft).round() as u64,
            capacity: capacity.max(1),
            starts: std::collections::VecDeque::with_capacity(capacity),
            values: std::collections::VecDeque::with_capacity(capacity * cfg.n_mels),
        }
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    pub fn clear(&mut self) {
        self.starts.clear();
        self.values.clear();
    }

    /// Adds one frame that starts at `start_ns`; frames arrive in time order (an older one
    /// means the stream restarted: the ring is cleared first). The oldest frame is dropped
    /// when the ring is full.
    pub fn push(&mut self, start_ns: u64, frame: &[f32]) {
        debug_assert_eq!(frame.len(), self.n_mels);
        if self.starts.back().is_some_and(|&last| start_ns < last) {
            self.clear();
        }
        if self.starts.len() == self.capacity {
            self.starts.pop_front();
            self.values.drain(..self.n_mels);
        }
        self.starts.push_back(start_ns);
        self.values.extend(frame);
    }

    /// End time (start + FFT frame) of the newest frame.
    pub fn latest_end(&self) -> Option<u64> {
        self.starts.back().map(|s| s + self.n_fft_ns)
    }

    /// Whether every frame that ends at or before `time_ns` has arrived: the next frame after
    /// the newest would end later than `time_ns`.
    pub fn covers(&self, time_ns: u64) -> bool {
        self.latest_end()
            .is_some_and(|end| end as f64 + self.hop_ns > time_ns as f64)
    }

    /// Writes the `frames`-frame window ending at `time_ns` into `out` (`frames * n_mels`
    /// values, frame-major), `silence` where no frame is.
    pub fn window(&self, time_ns: u64, frames: usize, silence: f32, out: &mut [f32]) -> WindowFill {
        let n = self.n_mels;
        debug_assert_eq!(out.len(), frames * n);
        out.fill(silence);
        // The newest frame that has ended by `time_ns`.
        let last = self
            .starts
            .iter()
            .rposition(|&s| s + self.n_fft_ns <= time_ns);
        let Some(last) = last else {
            return WindowFill { filled: 0 };
        };
        let last_start = self.starts[last] as f64;
        let mut filled = 0;
        for (i, &start) in self.starts.iter().enumerate().take(last + 1).rev() {
            // Slot by time, so a gap in the audio stays a gap (silence) in the window.
            let back = ((last_start - start as f64) / self.hop_ns).round() as usize;
            if back >= frames {
                break;
            }
            let slot = frames - 1 - back;
            for (k, v) in out[slot * n..(slot + 1) * n].iter_mut().enumerate() {
                *v = self.values[i * n + k];
            }
            filled += 1;
        }
        WindowFill { filled }
    }

    /// Forgets frames that ended before `time_ns` minus `keep_frames` hops (no future window
    /// can reach them).
    pub fn prune_before(&mut self, time_ns: u64, keep_frames: usize) {
        let horizon =
            time_ns as f64 - (keep_frames as f64 + 1.0) * self.hop_ns - self.n_fft_ns as f64;
        while self.starts.front().is_some_and(|&s| (s as f64) < horizon) {
            self.starts.pop_front();
            self.values.drain(..self.n_mels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg_noise(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) as f64 / (1u64 << 31) as f64 - 1.0) as f32 * 0.5
            })
            .collect()
    }

    #[test]
    fn slaney_scale_round_trips_and_is_linear_below_1khz() {
        for hz in [0.0, 100.0, 999.0, 1000.0, 4000.0, 8000.0] {
            let mel = hz_to_mel(hz, MelScale::Slaney);
            assert!((mel_to_hz(mel, MelScale::Slaney) - hz).abs() < 1e-9);
            let mel = hz_to_mel(hz, MelScale::Htk);
            assert!((mel_to_hz(mel, MelScale::Htk) - hz).abs() < 1e-9);
        }
        assert!((hz_to_mel(600.0, MelScale::Slaney) - 9.0).abs() < 1e-12);
        assert!((hz_to_mel(1000.0, MelScale::Slaney) - 15.0).abs() < 1e-12);
        // 6.4x the frequency is 27 mels higher on the log part.
        assert!((hz_to_mel(6400.0, MelScale::Slaney) - 42.0).abs() < 1e-9);
        assert!((hz_to_mel(700.0, MelScale::Htk) - 2595.0 * 2f64.log10()).abs() < 1e-9);
    }

    #[test]
    fn slaney_filters_have_unit_area_in_hz() {
        // Slaney norm makes every triangle's area (weight x Hz) equal to 1, as long as the
        // triangle is wide enough for the FFT grid to sample it well.
        let cfg = MelConfig {
            n_fft: 8192,
            ..MelConfig::default()
        };
        let df = cfg.sample_rate as f64 / cfg.n_fft as f64;
        for f in mel_filterbank(&cfg).iter().skip(4) {
            let area: f64 = f.weights.iter().map(|&w| w as f64 * df).sum();
            assert!((area - 1.0).abs() < 0.02, "area {area}");
        }
    }

    #[test]
    fn window_is_centred_periodic_hann() {
        let cfg = MelConfig::default();
        let w = padded_window(&cfg);
        assert_eq!(w.len(), 512);
        assert!(w[..56].iter().all(|&v| v == 0.0));
        assert!(w[456..].iter().all(|&v| v == 0.0));
        assert_eq!(w[56], 0.0);
        assert!((w[56 + 200] - 1.0).abs() < 1e-7);
        assert!((w[56 + 100] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn pure_tone_peaks_in_its_mel_band() {
        let cfg = MelConfig::default();
        let tone: Vec<f32> = (0..4000)
            .map(|i| (2.0 * PI * 1000.0 * i as f64 / 16000.0).sin() as f32)
            .collect();
        let mut mel = MelSpectrogram::new(cfg.clone()).unwrap();
        let out = mel.compute(&tone);
        assert_eq!(out.len(), cfg.n_frames(4000) * 64);
        let frame = &out[..64];
        let peak = (0..64)
            .max_by(|&a, &b| frame[a].total_cmp(&frame[b]))
            .unwrap();
        let filters = mel_filterbank(&cfg);
        // Bin of 1 kHz is 32; the strongest band must be one whose triangle covers it.
        let f = &filters[peak];
        assert!(f.first_bin <= 32 && 32 < f.first_bin + f.weights.len());
    }

    #[test]
    fn frame_count_follows_librosa_center_false() {
        let cfg = MelConfig::default();
        assert_eq!(cfg.n_frames(511), 0);
        assert_eq!(cfg.n_frames(512), 1);
        assert_eq!(cfg.n_frames(671), 1);
        assert_eq!(cfg.n_frames(672), 2);
        assert_eq!(cfg.n_frames(16000), 97);
    }

    #[test]
    fn silence_is_log_of_offset() {
        let mut mel = MelSpectrogram::new(MelConfig::default()).unwrap();
        let out = mel.compute(&[0.0; 1024]);
        for v in out {
            assert!((v - (1e-6f32).ln()).abs() < 1e-6);
        }
    }

    #[test]
    fn streaming_equals_batch_for_any_split() {
        for hop in [160, 512, 700] {
            let cfg = MelConfig {
                hop_length: hop,
                ..MelConfig::default()
            };
            let signal = lcg_noise(9000, 7);
            let reference = MelSpectrogram::new(cfg.clone()).unwrap().compute(&signal);
            for chunk in [1, 7, 160, 333, 512, 4096, 9000] {
                let mut stream = StreamingMelSpectrogram::new(cfg.clone()).unwrap();
                let mut out = Vec::new();
                let mut frames = 0;
                for piece in signal.chunks(chunk) {
                    frames += stream.push(piece, &mut out);
                }
                assert_eq!(frames as u64, stream.next_frame_index());
                assert_eq!(out, reference, "hop {hop} chunk {chunk}");
            }
        }
    }

    #[test]
    fn reset_restarts_framing() {
        let cfg = MelConfig::default();
        let signal = lcg_noise(3000, 3);
        let mut stream = StreamingMelSpectrogram::new(cfg.clone()).unwrap();
        let mut out = Vec::new();
        stream.push(&signal[..700], &mut out);
        stream.reset();
        out.clear();
        stream.push(&signal[1000..], &mut out);
        let reference = MelSpectrogram::new(cfg).unwrap().compute(&signal[1000..]);
        assert_eq!(out, reference);
    }

    #[test]
    fn ring_window_matches_offline_framing() {
        // Offline: frame k starts at sample k * hop; the window ending at time t holds the T
        // frames up to the last one ending by t.
        let cfg = MelConfig::default();
        let signal = lcg_noise(16000, 11);
        let offline = MelSpectrogram::new(cfg.clone()).unwrap().compute(&signal);
        let n_frames = offline.len() / 64;
        let base_ns = 5_000_000_000u64;
        let mut ring = MelRing::new(&cfg, 1000);
        for k in 0..n_frames {
            ring.push(
                base_ns + k as u64 * 10_000_000,
                &offline[k * 64..(k + 1) * 64],
            );
        }
        let silence = (1e-6f32).ln();
        let t_frames = 20;
        let mut out = vec![0.0; t_frames * 64];
        // 0.5 s after the start: the last frame ending by then starts at 0.468 s (k = 46).
        let fill = ring.window(base_ns + 500_000_000, t_frames, silence, &mut out);
        assert_eq!(fill.filled, t_frames);
        assert_eq!(&out[..], &offline[27 * 64..47 * 64]);
        // 0.1 s: frames 0..=6 end by then; the first 13 slots are silence.
        let fill = ring.window(base_ns + 100_000_000, t_frames, silence, &mut out);
        assert_eq!(fill.filled, 7);
        assert!(out[..13 * 64].iter().all(|&v| v == silence));
        assert_eq!(&out[13 * 64..], &offline[..7 * 64]);
        // Before any frame ends: all silence.
        let fill = ring.window(base_ns + 10_000_000, t_frames, silence, &mut out);
        assert_eq!(fill.filled, 0);
        assert!(ring.covers(base_ns + 500_000_000));
        assert!(!ring.covers(base_ns + 10_000_000_000));
    }

    #[test]
    fn ring_keeps_gaps_as_silence_and_prunes() {
        let cfg = MelConfig::default();
        let mut ring = MelRing::new(&cfg, 100);
        let frame = |v: f32| vec![v; 64];
        // Frames at 0, 10, 20 ms, then a gap, then 60, 70 ms.
        for (i, t) in [0u64, 10, 20, 60, 70].iter().enumerate() {
            ring.push(t * 1_000_000, &frame(i as f32));
        }
        let mut out = vec![0.0; 8 * 64];
        // Ending at 102 ms: the last frame ending by then starts at 70 ms.
        let fill = ring.window(102_000_000, 8, -1.0, &mut out);
        assert_eq!(fill.filled, 5);
        let slot_values: Vec<f32> = out.chunks(64).map(|c| c[0]).collect();
        assert_eq!(slot_values, vec![0.0, 1.0, 2.0, -1.0, -1.0, -1.0, 3.0, 4.0]);
        ring.prune_before(102_000_000, 2);
        assert_eq!(ring.len(), 2);
        // An older frame means the stream restarted.
        ring.push(0, &frame(9.0));
        assert_eq!(ring.len(), 1);
    }

    #[test]
    fn invalid_configs_name_the_parameter() {
        let bad = [
            (
                MelConfig {
                    win_length: 600,
                    ..Default::default()
                },
                "window length",
            ),
            (
                MelConfig {
                    hop_length: 0,
                    ..Default::default()
                },
                "hop length",
            ),
            (
                MelConfig {
                    f_max: Some(9000.0),
                    ..Default::default()
                },
                "f-max",
            ),
            (
                MelConfig {
                    n_mels: 0,
                    ..Default::default()
                },
                "n-mels",
            ),
            (
                MelConfig {
                    log_offset: 0.0,
                    ..Default::default()
                },
                "log offset",
            ),
        ];
        for (cfg, name) in bad {
            let err = MelSpectrogram::new(cfg).unwrap_err().to_string();
            assert!(err.starts_with(name), "{err}");
        }
        assert_eq!("HTK".parse::<MelScale>().unwrap(), MelScale::Htk);
        let err = "mel".parse::<MelNorm>().unwrap_err().to_string();
        assert!(err.contains("slaney none"), "{err}");
    }
}
