// SPDX-License-Identifier: MPL-2.0
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use affect_core::align::{self, RgbImage};
use affect_core::melspec::MelRing;
use affect_core::pixels::{self, FrameLayout};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::VideoRegionOfInterestMeta;

use crate::meta::{AFFECT_PARAMS, AffectResult, FACE_ROI_TYPE, Face};
use crate::session::{self, FaceRequest, FaceResult, Provider, SessionOptions, SharedModel};
use affect_core::contract::{Head, Heads};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "affectinfer",
        gst::DebugColorFlags::empty(),
        Some("Affect audio-visual inference"),
    )
});

const DEFAULT_DEVICE_ID: i32 = 0;
const DEFAULT_INTRA_OP_THREADS: u32 = 0;
const DEFAULT_FALLBACK_TO_CPU: bool = false;
pub(crate) const DEFAULT_BATCH_SIZE: u32 = 16;
pub(crate) const DEFAULT_MAX_LATENCY_MS: u32 = 10;
const DEFAULT_SMOOTHING: f64 = 0.0;
pub(crate) const DEFAULT_POST_MESSAGES: bool = false;
const DEFAULT_DRAIN_AUDIO: bool = false;

/// Seconds of spectrogram kept beyond the model's window, for audio that runs ahead.
const AUDIO_SLACK_SECONDS: f64 = 5.0;

pub use crate::choices::{AudioMissing, ExecutionProvider};

#[derive(Debug, Clone)]
struct Settings {
    model: Option<PathBuf>,
    provider: ExecutionProvider,
    device_id: i32,
    intra_op_threads: u32,
    fallback_to_cpu: bool,
    batch_size: u32,
    max_latency_ms: u32,
    audio_missing: AudioMissing,
    smoothing: f64,
    post_messages: bool,
    drain_audio: bool,
    /// The model's heads to write, comma-separated (empty: all of them).
    heads: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: None,
            provider: ExecutionProvider::Cpu,
            device_id: DEFAULT_DEVICE_ID,
            intra_op_threads: DEFAULT_INTRA_OP_THREADS,
            fallback_to_cpu: DEFAULT_FALLBACK_TO_CPU,
            batch_size: DEFAULT_BATCH_SIZE,
            max_latency_ms: DEFAULT_MAX_LATENCY_MS,
            audio_missing: AudioMissing::Silence,
            smoothing: DEFAULT_SMOOTHING,
            post_messages: DEFAULT_POST_MESSAGES,
            drain_audio: DEFAULT_DRAIN_AUDIO,
            heads: None,
        }
    }
}

/// One face of a frame on its way through the model.
struct PendingFace {
    /// Position among the frame's face metas.
    meta_index: usize,
    track_id: u64,
    bbox: [f32; 4],
}

/// A frame waiting for its faces' results, in stream order.
struct InFlight {
    buffer: gst::Buffer,
    faces: Vec<PendingFace>,
    reply: Option<Receiver<Result<Vec<FaceResult>, String>>>,
    /// The reply, once it came.
    answer: Option<Result<Vec<FaceResult>, String>>,
    running_time: Option<gst::ClockTime>,
    /// Tracks last seen on the frame before this one: their smoothing state goes when this
    /// frame leaves (frames leave in order, so the earlier frames of those tracks have used it).
    ended: Vec<u64>,
    /// Faces whose box reached outside the frame: the meta gets the box cut to the frame
    /// (meta index, x, y, w, h) and no result.
    clipped: Vec<(usize, (u32, u32, u32, u32))>,
}

/// The audio an audio-visual model gets for one frame.
enum AudioInput {
    /// The model takes no audio.
    NotUsed,
    /// No audio covers the frame and the policy is to skip its faces.
    Skip,
    Window(Vec<f32>),
}

struct State {
    model: Arc<SharedModel>,
    /// The heads this element writes (the `heads` property, or all the model has).
    heads: Heads,
    user: u64,
    layout: Option<FrameLayout>,
    ring: Option<MelRing>,
    audio_eos: bool,
    in_flight: VecDeque<InFlight>,
    tracks: HashSet<u64>,
    smoothed: HashMap<u64, FaceResult>,
    rgb: Vec<u8>,
    crop: Vec<u8>,
    warned_no_audio: bool,
    warned_outside: bool,
    warned_non_finite: bool,
    /// Whether the element warned that its model repeats a head of one upstream.
    warned_overlap: bool,
}

pub struct AffectInfer {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    video_pad: gst_base::AggregatorPad,
    audio_pad: Mutex<Option<gst_base::AggregatorPad>>,
}

/// The `affect` results of one face: the heads this element writes.
fn result_structure(model: &SharedModel, heads: &Heads, r: &FaceResult) -> gst::Structure {
    let c = &model.contract;
    let (expression, expression_labels): (&[f32], &[String]) = if heads.expression {
        (&r.expression, &c.expression_labels)
    } else {
        (&[], &[])
    };
    let (au, au_labels): (&[f32], &[String]) = if heads.au {
        (&r.au, &c.au_labels)
    } else {
        (&[], &[])
    };
    AffectResult::new(
        r.valence_arousal.filter(|_| heads.valence_arousal),
        expression,
        au,
        expression_labels,
        au_labels,
        c.name
            .clone()
            .unwrap_or_else(|| model.path.display().to_string()),
    )
    .to_structure()
}

/// Gives the face metas listed in `merged` (by their index among the buffer's face metas) the
/// `affect` structure given with them in place of their own. ROI meta parameters cannot be
/// edited, so every face meta is re-added, in its order, with the same box, id and other
/// parameters.
fn replace_results(buf: &mut gst::BufferRef, merged: &[(usize, gst::Structure)]) {
    let mut faces = Vec::new();
    let mut index = 0;
    buf.foreach_meta_mut(|mut meta| {
        if let Some(roi) = meta.downcast_ref::<VideoRegionOfInterestMeta>()
            && roi.roi_type() == FACE_ROI_TYPE
        {
            let mut params: Vec<gst::Structure> = roi.params().map(|p| p.to_owned()).collect();
            if let Some((_, s)) = merged.iter().find(|(i, _)| *i == index) {
                params.retain(|p| p.name() != AFFECT_PARAMS);
                params.push(s.clone());
            }
            faces.push((roi.rect(), roi.id(), params));
            index += 1;
            return std::ops::ControlFlow::Continue(gst::buffer::BufferMetaForeachAction::Remove);
        }
        std::ops::ControlFlow::Continue(gst::buffer::BufferMetaForeachAction::Keep)
    });
    for (rect, id, params) in faces {
        let mut meta = VideoRegionOfInterestMeta::add(buf, FACE_ROI_TYPE, rect);
        meta.set_id(id);
        for p in params {
            meta.add_param(p);
        }
    }
}

/// Exponential smoothing: `alpha` of the past, `1 - alpha` of the new result.
fn smooth(previous: &FaceResult, new: &FaceResult, alpha: f32) -> FaceResult {
    let mix = |p: &[f32], n: &[f32]| -> Vec<f32> {
        p.iter()
            .zip(n)
            .map(|(p, n)| alpha * p + (1.0 - alpha) * n)
            .collect()
    };
    let valence_arousal = match (previous.valence_arousal, new.valence_arousal) {
        (Some(p), Some(n)) => {
            let va = mix(&p, &n);
            Some([va[0], va[1]])
        }
        (_, n) => n,
    };
    FaceResult {
        valence_arousal,
        au: mix(&previous.au, &new.au),
        expression: mix(&previous.expression, &new.expression),
    }
}

/// How a frame's results are written: the `smoothing` factor and whether an element message
/// is posted (`post-messages`).
#[derive(Clone, Copy)]
struct Output {
    alpha: f32,
    post: bool,
}

/// A face whose box reached outside the frame: its meta index and the box cut to the frame
/// (x, y, w, h).
type ClippedFace = (usize, (u32, u32, u32, u32));

/// The model's answer for the faces of one frame.
type Answer = Result<Vec<FaceResult>, String>;

/// The answer of a frame's faces: the one that came, else the one waited for on `reply`;
/// nothing to wait for when no face was sent.
fn wait_for_answer(answer: Option<Answer>, reply: Option<Receiver<Answer>>) -> Answer {
    match (answer, reply) {
        (Some(a), _) => a,
        (None, Some(rx)) => rx
            .recv()
            .unwrap_or_else(|_| Err("the inference thread stopped".into())),
        (None, None) => Ok(Vec::new()),
    }
}

impl AffectInfer {
    fn element_error(&self, message: String) -> gst::FlowError {
        gst::element_imp_error!(self, gst::StreamError::Failed, ("{}", message));
        gst::FlowError::Error
    }

    /// Checks the spectrogram caps against the features the model was trained on and makes
    /// the ring for them; `None` for a video-only model, which ignores audio.
    fn check_audio_caps(
        &self,
        caps: &gst::CapsRef,
        model: &SharedModel,
    ) -> Result<Option<MelRing>, String> {
        let s = caps
            .structure(0)
            .ok_or_else(|| "empty audio caps".to_string())?;
        let Some(spec) = &model.contract.audio else {
            return Ok(None);
        };
        let m = &spec.mel;
        let int = |f: &str| s.get::<i32>(f).ok().map(|v| v as i64);
        let mut mismatches = Vec::new();
        for (field, want, property) in [
            ("rate", m.sample_rate as i64, "sample-rate"),
            ("n-mels", m.n_mels as i64, "n-mels"),
            ("hop", m.hop_length as i64, "hop-length"),
            ("win", m.win_length as i64, "win-length"),
            ("n-fft", m.n_fft as i64, "n-fft"),
        ] {
            match int(field) {
                Some(got) if got != want => mismatches.push(format!(
                    "{field} is {got}, the model needs {want} (affectspectro {property}={want})"
                )),
                None if field != "n-fft" => mismatches.push(format!("caps have no {field}")),
                _ => {}
            }
        }
        for (field, want) in [
            ("mel-scale", m.mel_scale.as_str()),
            ("mel-norm", m.norm.as_str()),
            ("window", m.window.as_str()),
        ] {
            if let Ok(got) = s.get::<&str>(field)
                && got != want
            {
                mismatches.push(format!("{field} is {got}, the model needs {want}"));
            }
        }
        for (field, want) in [
            ("f-min", m.f_min),
            ("f-max", m.f_max_hz()),
            ("power", m.power),
            ("log-offset", m.log_offset),
        ] {
            if let Ok(got) = s.get::<f64>(field)
                && (got - want).abs() > 1e-9 * want.abs().max(1.0)
            {
                mismatches.push(format!("{field} is {got}, the model needs {want}"));
            }
        }
        if !mismatches.is_empty() {
            return Err(format!(
                "the audio features differ from those model '{}' was trained on: {}",
                model.path.display(),
                mismatches.join("; ")
            ));
        }
        let slack = (AUDIO_SLACK_SECONDS * m.sample_rate as f64 / m.hop_length as f64) as usize;
        Ok(Some(MelRing::new(m, spec.frames + slack)))
    }

    /// Moves spectrogram buffers from the audio pad into the ring until it covers the video
    /// frame at `running_time`. `Ok(false)`: wait for more audio.
    fn gather_audio(
        &self,
        state: &mut State,
        pad: &gst_base::AggregatorPad,
        running_time: Option<gst::ClockTime>,
        timeout: bool,
    ) -> Result<bool, gst::FlowError> {
        let Some(spec) = state.model.contract.audio.clone() else {
            // A video-only model: audio is not needed; do not let it pile up upstream.
            while pad.drop_buffer() {}
            return Ok(true);
        };
        let hop_ns = spec.mel.hop_length as f64 * 1e9 / spec.mel.sample_rate as f64;
        let n_mels = spec.mel.n_mels;
        loop {
            if let (Some(ring), Some(t)) = (&state.ring, running_time)
                && ring.covers(t.nseconds())
            {
                return Ok(true);
            }
            let Some(buf) = pad.peek_buffer() else {
                if pad.is_eos() {
                    state.audio_eos = true;
                    return Ok(true);
                }
                // Live: the aggregator's latency has passed, go on without it.
                return Ok(timeout);
            };
            let segment = pad.segment();
            let start = segment
                .downcast_ref::<gst::ClockTime>()
                .and_then(|s| s.to_running_time(buf.pts()));
            if let (Some(ring), Some(start)) = (state.ring.as_mut(), start) {
                let map = buf.map_readable().map_err(|_| gst::FlowError::Error)?;
                let mut values = Vec::with_capacity(n_mels);
                for (k, frame) in map.as_slice().chunks_exact(n_mels * 4).enumerate() {
                    values.clear();
                    values.extend(
                        frame
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    );
                    ring.push(
                        start.nseconds() + (k as f64 * hop_ns).round() as u64,
                        &values,
                    );
                }
            }
            pad.drop_buffer();
        }
    }

    /// Pushes frames from the head of the queue, in stream order: those already answered,
    /// and, waiting for their answers, as many more as it takes to leave at most `keep` in
    /// flight.
    fn push_ready(&self, keep: usize) -> Result<gst::FlowSuccess, gst::FlowError> {
        while let Some((frame, model, output)) = self.next_ready_frame(keep) {
            let InFlight {
                mut buffer,
                faces,
                reply,
                answer,
                running_time,
                ended,
                clipped,
            } = frame;
            let results = wait_for_answer(answer, reply).map_err(|e| self.element_error(e))?;
            let mut guard = self.state.lock().unwrap();
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            for t in &ended {
                state.smoothed.remove(t);
            }
            if output.alpha == 0.0 {
                state.smoothed.clear();
            }
            let faces_msg = if !results.is_empty() || !clipped.is_empty() {
                self.write_results(
                    state,
                    &model,
                    output,
                    &mut buffer,
                    &faces,
                    &results,
                    &clipped,
                )
            } else {
                Vec::new()
            };
            drop(guard);
            if output.post {
                self.post_results_message(&buffer, running_time, faces_msg);
            }
            self.obj().finish_buffer(buffer)?;
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// Takes the frame at the head of the queue when its answer came, or, still waiting for
    /// it, when more than `keep` frames are in flight; with the model and how results are
    /// written. None when the head stays (or there is none).
    fn next_ready_frame(&self, keep: usize) -> Option<(InFlight, Arc<SharedModel>, Output)> {
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut()?;
        let queued = state.in_flight.len();
        let head = state.in_flight.front_mut()?;
        if head.answer.is_none()
            && let Some(reply) = &head.reply
        {
            match reply.try_recv() {
                Ok(answer) => head.answer = Some(answer),
                Err(TryRecvError::Empty) if queued <= keep => return None,
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    head.answer = Some(Err("the inference thread stopped".into()))
                }
            }
        }
        let s = self.settings.lock().unwrap();
        Some((
            state.in_flight.pop_front().expect("head exists"),
            state.model.clone(),
            Output {
                alpha: s.smoothing as f32,
                post: s.post_messages,
            },
        ))
    }

    /// Writes the results of one frame's faces on their metas (boxes reaching outside the
    /// frame cut to it, results smoothed along their tracks, merged into an upstream model's)
    /// and returns the faces of the frame's element message (empty without `post`).
    #[allow(clippy::too_many_arguments)]
    fn write_results(
        &self,
        state: &mut State,
        model: &SharedModel,
        output: Output,
        buffer: &mut gst::Buffer,
        faces: &[PendingFace],
        results: &[FaceResult],
        clipped: &[ClippedFace],
    ) -> Vec<gst::Structure> {
        let Output { alpha, post } = output;
        let mut faces_msg = Vec::new();
        let pts = buffer.pts();
        let buf = buffer.make_mut();
        let mut metas: Vec<_> = buf
            .iter_meta_mut::<VideoRegionOfInterestMeta>()
            .filter(|m| m.roi_type() == FACE_ROI_TYPE)
            .collect();
        let mut replace: Vec<usize> = Vec::new();
        let mut merged_params: Vec<(usize, gst::Structure)> = Vec::new();
        for &(i, rect) in clipped {
            if let Some(meta) = metas.get_mut(i) {
                meta.set_rect(rect);
            }
        }
        for (face, result) in faces.iter().zip(results) {
            if !result.is_finite() {
                self.warn_non_finite(state, model, face, pts);
                state.smoothed.remove(&face.track_id);
                continue;
            }
            let result = match state.smoothed.get(&face.track_id) {
                Some(prev) if alpha > 0.0 => smooth(prev, result, alpha),
                _ => result.clone(),
            };
            let mut s = result_structure(model, &state.heads, &result);
            // A model upstream already gave results for this face: ours are added to
            // its structure, and a head both give is ours.
            if let Some(earlier) = metas
                .get(face.meta_index)
                .and_then(|m| m.param(AFFECT_PARAMS))
                .and_then(AffectResult::from_structure)
                && let Some(ours) = AffectResult::from_structure(&s)
            {
                s = self.merge_upstream(state, earlier, ours);
                replace.push(face.meta_index);
            }
            if post {
                let mut m = s.clone();
                m.set("track-id", face.track_id);
                m.set("x", face.bbox[0] as f64);
                m.set("y", face.bbox[1] as f64);
                m.set("width", (face.bbox[2] - face.bbox[0]) as f64);
                m.set("height", (face.bbox[3] - face.bbox[1]) as f64);
                faces_msg.push(m);
            }
            if let Some(meta) = metas.get_mut(face.meta_index) {
                if replace.last() == Some(&face.meta_index) {
                    merged_params.push((face.meta_index, s));
                } else {
                    meta.add_param(s);
                }
            }
            if alpha > 0.0 {
                state.smoothed.insert(face.track_id, result);
            }
        }
        drop(metas);
        if !merged_params.is_empty() {
            replace_results(buf, &merged_params);
        }
        faces_msg
    }

    /// Warns, once per stream, that the model gave NaN or infinite outputs for `face`.
    fn warn_non_finite(
        &self,
        state: &mut State,
        model: &SharedModel,
        face: &PendingFace,
        pts: Option<gst::ClockTime>,
    ) {
        if !state.warned_non_finite {
            state.warned_non_finite = true;
            gst::element_imp_warning!(
                self,
                gst::StreamError::Decode,
                (
                    "Model '{}' gave NaN or infinite outputs for face {} at {}: \
                     such faces get no result (success 0); reported once per \
                     stream",
                    model.path.display(),
                    face.track_id,
                    pts.display()
                )
            );
        }
    }

    /// The results of an upstream model on a face with ours added, ours replacing a head both
    /// give (with a warning, once per stream).
    fn merge_upstream(
        &self,
        state: &mut State,
        earlier: AffectResult,
        ours: AffectResult,
    ) -> gst::Structure {
        let mut merged = earlier.clone();
        let our_model = ours.model.clone();
        let replaced = merged.merge(ours);
        if !replaced.is_empty() && !state.warned_overlap {
            state.warned_overlap = true;
            gst::element_imp_warning!(
                self,
                gst::CoreError::Negotiation,
                (
                    "Model '{}' gives {}, which '{}' upstream already gave on \
                     the same faces: this element's replace them (set heads on \
                     one of the two to choose; reported once per stream)",
                    our_model,
                    replaced.join(", "),
                    earlier.model
                )
            );
        }
        merged.to_structure()
    }

    /// Posts the `affect` element message of one frame: its time and its faces' results.
    fn post_results_message(
        &self,
        buffer: &gst::Buffer,
        running_time: Option<gst::ClockTime>,
        faces_msg: Vec<gst::Structure>,
    ) {
        let msg = gst::Structure::builder(AFFECT_PARAMS)
            .field("timestamp", buffer.pts())
            .field("running-time", running_time)
            .field("faces", gst::Array::new(faces_msg))
            .build();
        let _ = self.obj().post_message(
            gst::message::Element::builder(msg)
                .src(&*self.obj())
                .build(),
        );
    }

    /// The video has ended and every frame is out. With drain-audio and not live, the audio
    /// is still read to its end (and dropped): an audio track longer than the video is not cut
    /// short upstream, so its own length is known there (affectanalysisbin reports it).
    /// Otherwise the stream ends now: an audio source may never end.
    fn end_after_video(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.push_ready(0)?;
        let drain = self.settings.lock().unwrap().drain_audio;
        if drain
            && self.obj().latency().is_none()
            && let Some(pad) = self.audio_pad.lock().unwrap().clone()
        {
            while pad.drop_buffer() {}
            if !pad.is_eos() {
                return Err(gst_base::AGGREGATOR_FLOW_NEED_DATA);
            }
        }
        Err(gst::FlowError::Eos)
    }

    /// The aggregator turns a GAP event (a frame lost on the network, a decoder that dropped
    /// one) into an empty buffer: it is no frame to analyse or to hand to an encoder. It goes
    /// on as the GAP event it was, after the frames before it.
    fn forward_gap(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.push_ready(0)?;
        let src = self.obj().src_pad().clone();
        if src.has_current_caps() {
            let gap = gst::event::Gap::builder(buffer.pts().unwrap_or(gst::ClockTime::ZERO))
                .duration(buffer.duration())
                .build();
            src.push_event(gap);
        }
        gst::log!(CAT, imp = self, "Gap at {}", buffer.pts().display());
        Ok(gst::FlowSuccess::Ok)
    }

    /// The audio the model gets for the frame at `running_time`: none for a model without
    /// audio; where no audio covers the frame (`missing`), what the audio-missing policy says
    /// (with a warning, once per stream); otherwise the window ending at the frame.
    fn audio_input(
        &self,
        state: &mut State,
        missing: bool,
        running_time: Option<gst::ClockTime>,
        audio_missing: AudioMissing,
    ) -> AudioInput {
        let Some(spec) = &state.model.contract.audio else {
            return AudioInput::NotUsed;
        };
        let len = spec.frames * spec.mel.n_mels;
        let silence = spec.mel.log_offset.ln() as f32;
        if missing && !state.warned_no_audio {
            state.warned_no_audio = true;
            gst::element_imp_warning!(
                self,
                gst::StreamError::Demux,
                (
                    "No audio covers the frame at running time {}: the model gets \
                     the audio-missing policy ({:?}) wherever audio is late, silent or \
                     absent; reported once per stream",
                    running_time.display(),
                    audio_missing
                )
            );
        }
        match (missing, audio_missing) {
            (true, AudioMissing::Skip) => AudioInput::Skip,
            (true, AudioMissing::Zeros) => AudioInput::Window(vec![0.0; len]),
            // What has arrived, silence where nothing has: as in training.
            _ => {
                let mut window = vec![silence; len];
                if let (Some(ring), Some(t)) = (&state.ring, running_time) {
                    ring.window(t.nseconds(), spec.frames, silence, &mut window);
                }
                AudioInput::Window(window)
            }
        }
    }

    /// How many frames may stay in flight after one more was queued (`in_flight` of them).
    /// Live, each frame leaves as soon as its faces are answered: the next frame is a frame
    /// period away, and other streams fill the batch. Otherwise keep at most one batch of
    /// frames in flight, so that one stream's frames batch together; beyond that, wait for
    /// the oldest.
    fn frames_to_keep(&self, in_flight: usize, batch_size: u32) -> usize {
        if self.obj().latency().is_some() {
            0
        } else if in_flight > batch_size.max(1) as usize {
            batch_size as usize
        } else {
            usize::MAX
        }
    }

    /// Cuts and normalises the model's crop of every face of `buffer`; faces whose box
    /// reaches outside the frame are left out and listed with the box cut to the frame.
    #[allow(clippy::type_complexity)]
    fn prepare_faces(
        &self,
        state: &mut State,
        buffer: &gst::BufferRef,
    ) -> Result<
        (
            Vec<PendingFace>,
            Vec<Vec<f32>>,
            Vec<(usize, (u32, u32, u32, u32))>,
        ),
        gst::FlowError,
    > {
        let faces: Vec<Face> = crate::meta::faces(buffer);
        if faces.is_empty() {
            return Ok((Vec::new(), Vec::new(), Vec::new()));
        }
        let base = state.layout.ok_or(gst::FlowError::NotNegotiated)?;
        let layout = crate::frame::buffer_layout(&base, buffer);
        let map = buffer
            .map_readable()
            .map_err(|_| self.element_error("cannot map the video frame".into()))?;
        let data = map.as_slice();
        let (src, stride): (&[u8], usize) = if layout.is_rgb() {
            (&data[layout.offsets[0]..], layout.strides[0])
        } else {
            pixels::to_rgb(data, &layout, &mut state.rgb)
                .map_err(|e| self.element_error(e.to_string()))?;
            (&state.rgb, layout.width * 3)
        };
        let image = RgbImage::new(src, layout.width as u32, layout.height as u32, stride)
            .map_err(|e| self.element_error(e.to_string()))?;
        let spec = &state.model.contract.face;
        let (cw, ch) = (spec.width, spec.height);
        state.crop.resize((cw * ch * 3) as usize, 0);
        let mut pending = Vec::with_capacity(faces.len());
        let mut tensors = Vec::with_capacity(faces.len());
        let mut clipped = Vec::new();
        let (fw, fh) = (layout.width as f32, layout.height as f32);
        for (i, face) in faces.iter().enumerate() {
            let [x1, y1, x2, y2] = face.bbox;
            if !(x2 <= fw && y2 <= fh && x2 > x1 && y2 > y1) {
                // Upstream said something impossible (a box past the frame's edge, or one
                // wrapped around 2^32): what part of it is in the frame stays, unanalysed.
                let cut = Face {
                    bbox: [x1.min(fw), y1.min(fh), x2.min(fw), y2.min(fh)],
                    ..*face
                };
                let rect = cut.roi_rect(layout.width as u32, layout.height as u32);
                if !state.warned_outside {
                    state.warned_outside = true;
                    gst::element_imp_warning!(
                        self,
                        gst::StreamError::Format,
                        (
                            "Face {} has the box ({}, {}) - ({}, {}) outside the {}x{} frame: it \
                             is cut to the frame and gets no result (success 0); reported once \
                             per stream",
                            face.track_id,
                            x1,
                            y1,
                            x2,
                            y2,
                            layout.width,
                            layout.height
                        )
                    );
                }
                clipped.push((i, rect));
                continue;
            }
            let transform = spec
                .crop_transform(face.bbox, face.landmarks.as_ref())
                .and_then(|t| align::warp_rgb8(&image, &t.affine(), &mut state.crop, cw, ch));
            if let Err(e) = transform {
                gst::debug!(CAT, imp = self, "Face {} skipped: {e}", face.track_id);
                continue;
            }
            let mut tensor = vec![0.0; spec.tensor_len()];
            spec.normalize_into(&state.crop, &mut tensor);
            pending.push(PendingFace {
                meta_index: i,
                track_id: face.track_id,
                bbox: face.bbox,
            });
            tensors.push(tensor);
        }
        Ok((pending, tensors, clipped))
    }
}

#[glib::object_subclass]
impl ObjectSubclass for AffectInfer {
    const NAME: &'static str = "GstAffectInfer";
    type Type = super::AffectInfer;
    type ParentType = gst_base::Aggregator;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("video_sink").expect("template exists");
        let video_pad = gst::PadBuilder::<gst_base::AggregatorPad>::from_template(&templ)
            .name("video_sink")
            .build();
        Self {
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(None),
            video_pad,
            audio_pad: Mutex::new(None),
        }
    }
}

impl ObjectImpl for AffectInfer {
    fn constructed(&self) {
        self.parent_constructed();
        self.obj()
            .add_pad(&self.video_pad)
            .expect("add the video pad");
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("ONNX model file following the affect model contract")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("execution-provider", ExecutionProvider::Cpu)
                    .nick("Execution provider")
                    .blurb("Where inference runs")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("device-id")
                    .nick("Device id")
                    .blurb("GPU to run on (execution-provider=cuda)")
                    .minimum(0)
                    .default_value(DEFAULT_DEVICE_ID)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("intra-op-threads")
                    .nick("Intra-op threads")
                    .blurb("Threads of a pool of this model's own (0: the process's one ONNX Runtime pool, shared by every session, sized to the machine or AFFECT_THREADS)")
                    .default_value(DEFAULT_INTRA_OP_THREADS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("fallback-to-cpu")
                    .nick("Fall back to the CPU")
                    .blurb("Run on the CPU when the asked-for provider is unavailable (else fail)")
                    .default_value(DEFAULT_FALLBACK_TO_CPU)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("batch-size")
                    .nick("Batch size")
                    .blurb("Most faces in one model run, gathered across frames and elements sharing the model")
                    .minimum(1)
                    .maximum(4096)
                    .default_value(DEFAULT_BATCH_SIZE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-latency")
                    .nick("Maximum batching latency")
                    .blurb("Milliseconds a face may wait for a batch to fill")
                    .maximum(60_000)
                    .default_value(DEFAULT_MAX_LATENCY_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("audio-missing", AudioMissing::Silence)
                    .nick("Missing audio")
                    .blurb("What an audio-visual model gets when no audio covers a frame")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("smoothing")
                    .nick("Smoothing")
                    .blurb("Exponential smoothing of each track's results: weight of the past (0: off)")
                    .minimum(0.0)
                    .maximum(0.99)
                    .default_value(DEFAULT_SMOOTHING)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb("Post an 'affect' element message per frame with every face's results")
                    .default_value(DEFAULT_POST_MESSAGES)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("drain-audio")
                    .nick("Drain audio")
                    .blurb("Not live, after the last frame read the audio to its end (dropping it) \
                            before ending the stream, so that upstream learns the audio's own \
                            length (affectanalysisbin sets it); off, the stream ends with the video")
                    .default_value(DEFAULT_DRAIN_AUDIO)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("heads")
                    .nick("Heads")
                    .blurb("The model's heads to write, comma-separated: valence_arousal, au, \
                            expression (empty: all it has); leave one to a model downstream")
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => {
                s.model = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
            }
            "execution-provider" => s.provider = value.get().expect("type checked upstream"),
            "device-id" => s.device_id = value.get().expect("type checked upstream"),
            "intra-op-threads" => s.intra_op_threads = value.get().expect("type checked upstream"),
            "fallback-to-cpu" => s.fallback_to_cpu = value.get().expect("type checked upstream"),
            "batch-size" => s.batch_size = value.get().expect("type checked upstream"),
            "max-latency" => s.max_latency_ms = value.get().expect("type checked upstream"),
            "audio-missing" => s.audio_missing = value.get().expect("type checked upstream"),
            "smoothing" => s.smoothing = value.get().expect("type checked upstream"),
            "post-messages" => s.post_messages = value.get().expect("type checked upstream"),
            "drain-audio" => s.drain_audio = value.get().expect("type checked upstream"),
            "heads" => {
                s.heads = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|h| !h.trim().is_empty())
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => s.model.as_ref().map(|p| p.display().to_string()).to_value(),
            "execution-provider" => s.provider.to_value(),
            "device-id" => s.device_id.to_value(),
            "intra-op-threads" => s.intra_op_threads.to_value(),
            "fallback-to-cpu" => s.fallback_to_cpu.to_value(),
            "batch-size" => s.batch_size.to_value(),
            "max-latency" => s.max_latency_ms.to_value(),
            "audio-missing" => s.audio_missing.to_value(),
            "smoothing" => s.smoothing.to_value(),
            "post-messages" => s.post_messages.to_value(),
            "drain-audio" => s.drain_audio.to_value(),
            "heads" => s.heads.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for AffectInfer {}

impl ElementImpl for AffectInfer {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Affect inference",
                "Filter/Analyzer/Video/Audio",
                "Valence/arousal, action units and expressions of every face, from video and audio, through ONNX Runtime",
                "affect developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let video = crate::frame::video_caps();
            let audio = gst::Caps::builder(crate::spectro::MELSPEC_CAPS_NAME)
                .field("format", "F32LE")
                .build();
            let pad_type = gst_base::AggregatorPad::static_type();
            vec![
                gst::PadTemplate::with_gtype(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &video,
                    pad_type,
                )
                .unwrap(),
                gst::PadTemplate::with_gtype(
                    "video_sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &video,
                    pad_type,
                )
                .unwrap(),
                gst::PadTemplate::with_gtype(
                    "audio_sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Request,
                    &audio,
                    pad_type,
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }

    fn release_pad(&self, pad: &gst::Pad) {
        let mut audio = self.audio_pad.lock().unwrap();
        if audio
            .as_ref()
            .is_some_and(|a| a.upcast_ref::<gst::Pad>() == pad)
        {
            *audio = None;
        }
        drop(audio);
        self.parent_release_pad(pad);
    }
}

impl AggregatorImpl for AffectInfer {
    fn create_new_pad(
        &self,
        templ: &gst::PadTemplate,
        _req_name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst_base::AggregatorPad> {
        let mut audio = self.audio_pad.lock().unwrap();
        if templ.name_template() != "audio_sink" || audio.is_some() {
            gst::warning!(CAT, imp = self, "Only one audio_sink pad can be requested");
            return None;
        }
        let pad = gst::PadBuilder::<gst_base::AggregatorPad>::from_template(templ)
            .name("audio_sink")
            .build();
        // The spectrogram is moved into the ring as soon as it arrives, which keeps
        // `AUDIO_SLACK_SECONDS` of it: that much audio can wait here, and upstream's maximum
        // latency says so. Without it a queue-less live audio branch (a live `appsrc`, or any
        // source that reports max = min) would cap the maximum latency below the video
        // frame's, the aggregator could not configure its latency, and it would wait for
        // audio as if it were not live.
        pad.add_probe(
            gst::PadProbeType::QUERY_UPSTREAM | gst::PadProbeType::PULL,
            |_, info| {
                if let Some(gst::PadProbeData::Query(q)) = info.data.as_mut()
                    && let gst::QueryViewMut::Latency(l) = q.view_mut()
                {
                    let (live, min, max) = l.result();
                    let slack =
                        gst::ClockTime::from_mseconds((AUDIO_SLACK_SECONDS * 1000.0) as u64);
                    l.set(live, min, max.map(|m| m + slack));
                }
                gst::PadProbeReturn::Ok
            },
        );
        *audio = Some(pad.clone());
        Some(pad)
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings.lock().unwrap().clone();
        let path = s.model.clone().ok_or_else(|| {
            gst::error_msg!(
                gst::LibraryError::Settings,
                ["No model: set the model property to an ONNX file of the affect model contract"]
            )
        })?;
        let options = SessionOptions {
            provider: match s.provider {
                ExecutionProvider::Cpu => Provider::Cpu,
                ExecutionProvider::Cuda => Provider::Cuda {
                    device_id: s.device_id,
                },
            },
            intra_op_threads: s.intra_op_threads as usize,
            fallback_to_cpu: s.fallback_to_cpu,
        };
        let model = session::shared_model(&path, &options, s.batch_size as usize)
            .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ["{}", e]))?;
        if model.provider != options.provider {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Settings,
                (
                    "{} is not available: running '{}' on the CPU",
                    options.provider,
                    path.display()
                )
            );
        }
        gst::info!(
            CAT,
            imp = self,
            "Model {} on {} (audio: {}, state: {:?})",
            model.path.display(),
            model.provider,
            model.contract.audio.is_some(),
            model.contract.state_size
        );
        let heads = match &s.heads {
            None => model.contract.heads,
            Some(list) => {
                let mut chosen = Heads::NONE;
                for head in Head::parse_list(list) {
                    let head = head.map_err(|name| {
                        gst::error_msg!(
                            gst::LibraryError::Settings,
                            [
                                "heads: unknown head '{}' (valence_arousal, au, expression)",
                                name
                            ]
                        )
                    })?;
                    if !model.contract.heads.has(head) {
                        return Err(gst::error_msg!(
                            gst::LibraryError::Settings,
                            [
                                "heads: model '{}' has no {} head (it has {})",
                                path.display(),
                                head,
                                model.contract.heads.list()
                            ]
                        ));
                    }
                    chosen.insert(head);
                }
                if chosen.iter().next().is_none() {
                    return Err(gst::error_msg!(
                        gst::LibraryError::Settings,
                        ["heads: name at least one head, or leave it empty for all"]
                    ));
                }
                chosen
            }
        };
        let user = model.new_user();
        *self.state.lock().unwrap() = Some(State {
            heads,
            model,
            user,
            layout: None,
            ring: None,
            audio_eos: false,
            in_flight: VecDeque::new(),
            tracks: HashSet::new(),
            smoothed: HashMap::new(),
            rgb: Vec::new(),
            crop: Vec::new(),
            warned_no_audio: false,
            warned_outside: false,
            warned_non_finite: false,
            warned_overlap: false,
        });
        // Faces wait up to max-latency for their batch.
        let latency = gst::ClockTime::from_mseconds(s.max_latency_ms as u64);
        self.obj().set_latency(latency, Some(latency));
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(state) = self.state.lock().unwrap().take() {
            state.model.forget_user(state.user);
        }
        Ok(())
    }

    fn flush(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.in_flight.clear();
            if let Some(ring) = state.ring.as_mut() {
                ring.clear();
            }
            state.audio_eos = false;
            state.tracks.clear();
            state.smoothed.clear();
            state.model.forget_user(state.user);
        }
        self.parent_flush()
    }

    fn sink_event(&self, pad: &gst_base::AggregatorPad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Caps(c) if pad == &self.video_pad => {
                let caps = c.caps_owned();
                let Some(layout) = gst_video::VideoInfo::from_caps(&caps)
                    .ok()
                    .as_ref()
                    .and_then(crate::frame::frame_layout)
                else {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        ("Unsupported video caps {}", caps)
                    );
                    return false;
                };
                // Frames still waiting for their results were decoded under the old caps:
                // they leave before the new caps go downstream, or an encoder would read them
                // with the new size.
                if let Err(e) = self.push_ready(0) {
                    gst::debug!(CAT, imp = self, "Draining before new caps: {e:?}");
                }
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.layout = Some(layout);
                }
                self.obj().set_src_caps(&caps);
            }
            gst::EventView::Caps(c) => {
                let mut guard = self.state.lock().unwrap();
                if let Some(state) = guard.as_mut() {
                    match self.check_audio_caps(c.caps(), &state.model) {
                        Ok(Some(ring)) => state.ring = Some(ring),
                        Ok(None) => {
                            gst::info!(CAT, imp = self, "Video-only model: audio is ignored");
                        }
                        Err(e) => {
                            drop(guard);
                            gst::element_imp_error!(self, gst::CoreError::Negotiation, ("{}", e));
                            return false;
                        }
                    }
                }
            }
            gst::EventView::Segment(s) if pad == &self.video_pad => {
                if let Some(segment) = s.segment().downcast_ref::<gst::ClockTime>() {
                    self.obj().update_segment(segment);
                }
            }
            gst::EventView::Segment(_) => {
                // Audio of a new segment starts a new time line.
                if let Some(ring) = self
                    .state
                    .lock()
                    .unwrap()
                    .as_mut()
                    .and_then(|s| s.ring.as_mut())
                {
                    ring.clear();
                }
            }
            _ => {}
        }
        self.parent_sink_event(pad, event)
    }

    fn sink_query(&self, pad: &gst_base::AggregatorPad, query: &mut gst::QueryRef) -> bool {
        if pad == &self.video_pad
            && let gst::QueryViewMut::Caps(q) = query.view_mut()
        {
            // The video passes through: offer what downstream takes.
            let templ = pad.pad_template_caps();
            let filter = q.filter_owned();
            let downstream = self.obj().src_pad().peer_query_caps(filter.as_ref());
            let caps = downstream.intersect_with_mode(&templ, gst::CapsIntersectMode::First);
            q.set_result(&caps);
            return true;
        }
        self.parent_sink_query(pad, query)
    }

    /// Live, the aggregator waits for audio until the queued frame's running time plus the
    /// latency, then calls `aggregate` with `timeout`; with no frame queued it waits for one,
    /// unless the video has ended.
    fn next_time(&self) -> Option<gst::ClockTime> {
        let Some(buffer) = self.video_pad.peek_buffer() else {
            // The video has ended and every frame has been taken: there is nothing left to
            // wait for. A live audio branch that stops without EOS (an unplugged microphone)
            // keeps the pads from being ready, and without a time the aggregator would wait
            // for a buffer or event that never comes, never calling `aggregate`, which is
            // what ends the stream. Running time zero is never later than now: the wait
            // times out at once (after the latency at most) and `aggregate(timeout)` drains
            // the frames in flight and sends EOS. Not live, the aggregator ignores this time.
            return self.video_pad.is_eos().then_some(gst::ClockTime::ZERO);
        };
        self.video_pad
            .segment()
            .downcast_ref::<gst::ClockTime>()?
            .to_running_time(buffer.pts())
    }

    fn update_src_caps(&self, _caps: &gst::Caps) -> Result<gst::Caps, gst::FlowError> {
        self.video_pad
            .current_caps()
            .ok_or(gst_base::AGGREGATOR_FLOW_NEED_DATA)
    }

    fn aggregate(&self, timeout: bool) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.push_ready(usize::MAX)?;
        let Some(buffer) = self.video_pad.peek_buffer() else {
            if self.video_pad.is_eos() {
                return self.end_after_video();
            }
            return Err(gst_base::AGGREGATOR_FLOW_NEED_DATA);
        };
        let segment = self.video_pad.segment();
        let running_time = segment
            .downcast_ref::<gst::ClockTime>()
            .and_then(|s| s.to_running_time(buffer.pts()));
        let (audio_missing, max_latency, batch_size) = {
            let s = self.settings.lock().unwrap();
            (s.audio_missing, s.max_latency_ms, s.batch_size)
        };
        let audio_pad = self.audio_pad.lock().unwrap().clone();

        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let mut audio_complete = false;
        if let Some(pad) = &audio_pad {
            if !self.gather_audio(state, pad, running_time, timeout)? {
                return Err(gst_base::AGGREGATOR_FLOW_NEED_DATA);
            }
            audio_complete = state.audio_eos
                || matches!((&state.ring, running_time), (Some(r), Some(t)) if r.covers(t.nseconds()));
        }
        let buffer = self
            .video_pad
            .pop_buffer()
            .expect("peeked buffer is still queued");
        if buffer.flags().contains(gst::BufferFlags::GAP) && buffer.size() == 0 {
            drop(guard);
            return self.forward_gap(&buffer);
        }

        let (pending, tensors, clipped) = self.prepare_faces(state, &buffer)?;
        // Tracks gone from this frame have ended: their state goes with them.
        let present: HashSet<u64> = pending.iter().map(|f| f.track_id).collect();
        let ended: Vec<u64> = state.tracks.difference(&present).copied().collect();
        if !ended.is_empty() {
            state.model.forget(state.user, ended.clone());
        }
        state.tracks = present;

        let mut frame = InFlight {
            buffer,
            faces: Vec::new(),
            reply: None,
            answer: None,
            running_time,
            ended,
            clipped,
        };
        if !pending.is_empty() {
            let missing = audio_pad.is_none() || !audio_complete || running_time.is_none();
            let audio = self.audio_input(state, missing, running_time, audio_missing);
            if let (Some(ring), Some(t), Some(spec)) = (
                state.ring.as_mut(),
                running_time,
                &state.model.contract.audio,
            ) {
                ring.prune_before(t.nseconds(), spec.frames);
            }
            let audio = match audio {
                AudioInput::Skip => None,
                AudioInput::NotUsed => Some(None),
                AudioInput::Window(w) => Some(Some(Arc::<[f32]>::from(w))),
            };
            if let Some(audio) = audio {
                let stateful = state.model.contract.state_size.is_some();
                let requests: Vec<FaceRequest> = pending
                    .iter()
                    .zip(tensors)
                    .map(|(f, face)| FaceRequest {
                        face,
                        audio: audio.clone(),
                        track: stateful.then_some(f.track_id),
                    })
                    .collect();
                let reply = state
                    .model
                    .submit(
                        state.user,
                        requests,
                        Duration::from_millis(max_latency as u64),
                    )
                    .map_err(|e| self.element_error(e))?;
                frame.faces = pending;
                frame.reply = Some(reply);
            }
        }
        state.in_flight.push_back(frame);
        let keep = self.frames_to_keep(state.in_flight.len(), batch_size);
        drop(guard);
        self.push_ready(keep)
    }
}
