use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "affectanalysisbin",
        gst::DebugColorFlags::empty(),
        Some("Affect whole-analysis bin"),
    )
});

const DEFAULT_DETECTOR: &str = "haar";
// The numbers and the flag go straight to affectinfer and are read back from it: its
// defaults are the bin's.
use crate::infer::imp::{DEFAULT_BATCH_SIZE, DEFAULT_MAX_LATENCY_MS, DEFAULT_POST_MESSAGES};
const DEFAULT_EXECUTION_PROVIDER: &str = "cpu";
const DEFAULT_AUDIO_MISSING: &str = "silence";

#[derive(Debug, Clone)]
struct Settings {
    /// The enum properties as the user named them (a rejected nick is kept to be reported).
    detector: String,
    execution_provider: String,
    audio_missing: String,
    /// Enum properties set to a value the inner element does not have, with the reason: the
    /// bin refuses to start with any (the inner element keeps its previous value).
    rejected: Vec<(String, String)>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            detector: DEFAULT_DETECTOR.into(),
            execution_provider: DEFAULT_EXECUTION_PROVIDER.into(),
            audio_missing: DEFAULT_AUDIO_MISSING.into(),
            rejected: Vec::new(),
        }
    }
}

/// What decodebin has exposed of the current input, and the elements linked to it.
#[derive(Default)]
struct State {
    /// A video stream goes to `affectfacecrop`.
    video: bool,
    /// An audio stream goes to `affectspectro`.
    audio: bool,
    /// The `audio_sink` pad requested from `affectinfer`.
    audio_pad: Option<gst::Pad>,
    /// Media types of the streams decodebin found no decoder for.
    undecodable: Vec<String>,
    /// `no-more-pads` came and the streams were checked.
    checked: bool,
    /// The missing audio stream was reported: `affectinfer`'s own warning about missing audio
    /// says the same again and is not passed on.
    no_audio_reported: bool,
    /// Elements added for decodebin's pads, removed when the input stops.
    branches: Vec<gst::Element>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Video,
    Audio,
    Other,
}

pub struct AffectAnalysisBin {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// `None` when the playback plugin of gst-plugins-base is not installed: the bin then
    /// refuses to start, naming it.
    decodebin: Option<gst::Element>,
    facecrop: gst::Element,
    infer: gst::Element,
}

/// The value named `nick` (or the value's name) of the enum property `property` of
/// `element`; the values there are when it names none.
fn enum_value(element: &gst::Element, property: &str, nick: &str) -> Result<glib::Value, String> {
    let pspec = element
        .find_property(property)
        .ok_or_else(|| format!("{} has no property '{property}'", element.name()))?;
    glib::Value::deserialize_with_pspec(nick, &pspec).map_err(|_| {
        let nicks = glib::EnumClass::with_type(pspec.value_type())
            .map(|c| {
                c.values()
                    .iter()
                    .map(|v| v.nick().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        format!("property '{property}' is '{nick}', which is none of {nicks}")
    })
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| format!("the element {factory} is not installed"))
}

impl AffectAnalysisBin {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Links a pad decodebin exposed: the first video stream to the face branch, the first
    /// audio stream to the spectrogram branch, anything else to a fakesink. Runs on
    /// decodebin's streaming thread: a failure is an error message, never a panic.
    fn pad_added(&self, pad: &gst::Pad) {
        if pad.direction() != gst::PadDirection::Src {
            return;
        }
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let media = caps
            .structure(0)
            .map(|s| s.name().to_string())
            .unwrap_or_else(|| "an unknown type".into());
        let stream = {
            let mut state = self.state();
            if media.starts_with("video/") && !state.video {
                state.video = true;
                Stream::Video
            } else if media.starts_with("audio/") && !state.audio {
                state.audio = true;
                Stream::Audio
            } else {
                Stream::Other
            }
        };
        gst::debug!(
            CAT,
            imp = self,
            "Decodebin pad {} of {}: {:?} branch",
            pad.name(),
            caps,
            stream
        );
        let linked = match stream {
            Stream::Video => self.link_video(pad),
            Stream::Audio => self.link_audio(pad),
            Stream::Other => self.link_discard(pad, &media),
        };
        if let Err(e) = linked {
            gst::element_imp_error!(
                self,
                gst::CoreError::Pad,
                ("Cannot link the {} stream of the input: {}", media, e)
            );
        }
    }

    fn link_video(&self, pad: &gst::Pad) -> Result<(), String> {
        let target = self
            .facecrop
            .static_pad("sink")
            .ok_or("affectfacecrop has no sink pad")?;
        self.link_branch(
            pad,
            vec![make("queue")?, make("videoconvert")?],
            Some(&target),
        )
    }

    fn link_audio(&self, pad: &gst::Pad) -> Result<(), String> {
        let elements = vec![
            make("queue")?,
            make("audioconvert")?,
            make("audioresample")?,
            glib::Object::new::<crate::AffectSpectro>().upcast(),
        ];
        let target = self
            .infer
            .request_pad_simple("audio_sink")
            .ok_or("affectinfer gave no audio_sink pad")?;
        self.state().audio_pad = Some(target.clone());
        self.link_branch(pad, elements, Some(&target))
    }

    fn link_discard(&self, pad: &gst::Pad, media: &str) -> Result<(), String> {
        gst::info!(
            CAT,
            imp = self,
            "The input's {} stream (decodebin pad {}) is not analysed: discarded",
            media,
            pad.name()
        );
        // Neither waiting for the clock nor for a preroll: a sparse stream (subtitles) must
        // hold nothing up.
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
            .map_err(|_| "the element fakesink is missing (GStreamer core)".to_string())?;
        self.link_branch(pad, vec![sink], None)
    }

    /// Adds `elements` to the bin, links them in a chain from `pad` to `target`, and brings
    /// them to the bin's state.
    fn link_branch(
        &self,
        pad: &gst::Pad,
        elements: Vec<gst::Element>,
        target: Option<&gst::Pad>,
    ) -> Result<(), String> {
        let obj = self.obj();
        let (Some(first), Some(last)) = (elements.first(), elements.last()) else {
            return Err("an empty branch".into());
        };
        obj.add_many(&elements)
            .map_err(|e| format!("cannot add the branch to the bin: {e}"))?;
        self.state().branches.extend(elements.iter().cloned());
        gst::Element::link_many(&elements).map_err(|e| format!("cannot link the branch: {e}"))?;
        if let Some(target) = target {
            let src = last
                .static_pad("src")
                .ok_or_else(|| format!("{} has no src pad", last.name()))?;
            src.link(target).map_err(|e| {
                format!(
                    "cannot link {} to {}:{}: {e:?}",
                    last.name(),
                    target.parent().map(|p| p.name()).unwrap_or_default(),
                    target.name()
                )
            })?;
        }
        for element in elements.iter().rev() {
            element
                .sync_state_with_parent()
                .map_err(|e| format!("cannot bring {} to the bin's state: {e}", element.name()))?;
        }
        let sink = first
            .static_pad("sink")
            .ok_or_else(|| format!("{} has no sink pad", first.name()))?;
        pad.link(&sink).map_err(|e| {
            format!(
                "cannot link decodebin's {} to the branch: {e:?}",
                pad.name()
            )
        })?;
        Ok(())
    }

    fn unknown_type(&self, caps: Option<gst::Caps>) {
        let media = caps
            .as_ref()
            .and_then(|c| c.structure(0))
            .map(|s| s.name().to_string())
            .unwrap_or_else(|| "an unknown type".into());
        gst::info!(CAT, imp = self, "No decoder for a stream of {media}");
        self.state().undecodable.push(media);
    }

    /// Once decodebin has exposed every stream: without video there is nothing to analyse
    /// (an error); without audio the analysis goes on video only (one warning).
    fn no_more_pads(&self) {
        let (video, audio, undecodable) = {
            let mut state = self.state();
            if state.checked {
                return;
            }
            state.checked = true;
            if state.video && !state.audio {
                state.no_audio_reported = true;
            }
            (state.video, state.audio, state.undecodable.clone())
        };
        let undecodable_of = |prefix: &str| {
            undecodable
                .iter()
                .filter(|m| m.starts_with(prefix))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !video {
            let missing = undecodable_of("video/");
            if !missing.is_empty() {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::CodecNotFound,
                    (
                        "the input has no video stream that can be decoded (no decoder for {}): \
                         affectanalysisbin analyses faces and needs video",
                        missing
                    )
                );
            } else {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::WrongType,
                    (
                        "the input has no video stream: affectanalysisbin analyses faces and \
                         needs video ({})",
                        if audio {
                            "audio-only input"
                        } else {
                            "and no audio stream either"
                        }
                    )
                );
            }
        } else if !audio {
            let policy = self.settings().audio_missing.clone();
            let missing = undecodable_of("audio/");
            if missing.is_empty() {
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Demux,
                    ("the input has no audio stream: video-only results"),
                    [
                        "an audio-visual model gets the audio-missing policy ({}) on every frame",
                        policy
                    ]
                );
            } else {
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Demux,
                    (
                        "the input has no audio stream that can be decoded (no decoder for {}): \
                         video-only results",
                        missing
                    ),
                    [
                        "an audio-visual model gets the audio-missing policy ({}) on every frame",
                        policy
                    ]
                );
            }
        }
    }

    /// Removes the branches of the input that stopped, and gives back the audio pad.
    fn remove_branches(&self) {
        let (branches, audio_pad) = {
            let mut state = self.state();
            let branches = std::mem::take(&mut state.branches);
            let audio_pad = state.audio_pad.take();
            *state = State::default();
            (branches, audio_pad)
        };
        let obj = self.obj();
        for element in branches {
            let _ = element.set_state(gst::State::Null);
            if let Err(e) = obj.remove(&element) {
                gst::warning!(CAT, imp = self, "Cannot remove {}: {e}", element.name());
            }
        }
        if let Some(pad) = audio_pad {
            self.infer.release_request_pad(&pad);
        }
    }

    fn check_settings(&self) -> Result<(), gst::StateChangeError> {
        if self.decodebin.is_none() {
            gst::element_imp_error!(
                self,
                gst::CoreError::MissingPlugin,
                ("the element decodebin is missing: install gst-plugins-base (playback plugin)")
            );
            return Err(gst::StateChangeError);
        }
        let rejected = self.settings().rejected.clone();
        if !rejected.is_empty() {
            let reasons: Vec<String> = rejected.into_iter().map(|(_, r)| r).collect();
            gst::element_imp_error!(
                self,
                gst::LibraryError::Settings,
                ("{}", reasons.join("; "))
            );
            return Err(gst::StateChangeError);
        }
        Ok(())
    }
}

#[glib::object_subclass]
impl ObjectSubclass for AffectAnalysisBin {
    const NAME: &'static str = "GstAffectAnalysisBin";
    type Type = super::AffectAnalysisBin;
    type ParentType = gst::Bin;

    fn new() -> Self {
        let decodebin = gst::ElementFactory::make("decodebin")
            .name("decodebin")
            .build()
            .ok();
        let facecrop = glib::Object::builder::<crate::AffectFaceCrop>()
            .property("name", "facecrop")
            .build()
            .upcast();
        let infer = glib::Object::builder::<crate::AffectInfer>()
            .property("name", "infer")
            .build()
            .upcast();
        Self {
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
            decodebin,
            facecrop,
            infer,
        }
    }
}

impl ObjectImpl for AffectAnalysisBin {
    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        // The bin is a filter: its fakesinks do not make the pipeline wait for its EOS.
        obj.set_suppressed_flags(gst::ElementFlags::SINK | gst::ElementFlags::SOURCE);
        obj.add_many([&self.facecrop, &self.infer])
            .expect("add the inner elements");
        self.facecrop
            .link_pads(Some("src"), &self.infer, Some("video_sink"))
            .expect("affectfacecrop links to affectinfer");

        let templ = obj.pad_template("src").expect("template exists");
        let target = self.infer.static_pad("src").expect("affectinfer has a src");
        let src = gst::GhostPad::builder_from_template_with_target(&templ, &target)
            .expect("a src target for the src template")
            .build();
        obj.add_pad(&src).expect("add the src pad");

        let templ = obj.pad_template("sink").expect("template exists");
        let sink = match &self.decodebin {
            Some(decodebin) => {
                obj.add(decodebin).expect("add decodebin");
                let weak = obj.downgrade();
                decodebin.connect_pad_added(move |_, pad| {
                    if let Some(obj) = weak.upgrade() {
                        obj.imp().pad_added(pad);
                    }
                });
                let weak = obj.downgrade();
                decodebin.connect_no_more_pads(move |_| {
                    if let Some(obj) = weak.upgrade() {
                        obj.imp().no_more_pads();
                    }
                });
                let weak = obj.downgrade();
                decodebin.connect("unknown-type", false, move |args| {
                    if let Some(obj) = weak.upgrade() {
                        let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
                        obj.imp().unknown_type(caps);
                    }
                    None
                });
                let target = decodebin.static_pad("sink").expect("decodebin has a sink");
                gst::GhostPad::builder_from_template_with_target(&templ, &target)
                    .expect("a sink target for the sink template")
                    .build()
            }
            None => {
                gst::error!(CAT, imp = self, "decodebin is missing");
                gst::GhostPad::builder_from_template(&templ).build()
            }
        };
        obj.add_pad(&sink).expect("add the sink pad");
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("ONNX model file following the affect model contract (affectinfer model)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("detector")
                    .nick("Detector")
                    .blurb("Where faces come from: haar, onnx, upstream or full-frame (affectfacecrop detector)")
                    .default_value(Some(DEFAULT_DETECTOR))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb("Post an 'affect' element message per frame with every face's results (affectinfer post-messages)")
                    .default_value(DEFAULT_POST_MESSAGES)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("batch-size")
                    .nick("Batch size")
                    .blurb("Most faces in one model run (affectinfer batch-size)")
                    .minimum(1)
                    .maximum(4096)
                    .default_value(DEFAULT_BATCH_SIZE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-latency")
                    .nick("Maximum batching latency")
                    .blurb("Milliseconds a face may wait for a batch to fill (affectinfer max-latency)")
                    .maximum(60_000)
                    .default_value(DEFAULT_MAX_LATENCY_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("execution-provider")
                    .nick("Execution provider")
                    .blurb("Where inference runs: cpu or cuda (affectinfer execution-provider)")
                    .default_value(Some(DEFAULT_EXECUTION_PROVIDER))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("audio-missing")
                    .nick("Missing audio")
                    .blurb("What an audio-visual model gets when no audio covers a frame: silence, zeros or skip (affectinfer audio-missing)")
                    .default_value(Some(DEFAULT_AUDIO_MISSING))
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings();
        let name = pspec.name();
        match name {
            "model" | "post-messages" | "batch-size" | "max-latency" => {
                self.infer.set_property_from_value(name, value);
            }
            "detector" | "execution-provider" | "audio-missing" => {
                let (element, default) = match name {
                    "detector" => (&self.facecrop, DEFAULT_DETECTOR),
                    "execution-provider" => (&self.infer, DEFAULT_EXECUTION_PROVIDER),
                    _ => (&self.infer, DEFAULT_AUDIO_MISSING),
                };
                let nick = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| default.to_string());
                settings.rejected.retain(|(p, _)| p != name);
                match enum_value(element, name, &nick) {
                    Ok(v) => element.set_property_from_value(name, &v),
                    Err(e) => {
                        gst::error!(CAT, imp = self, "{e}");
                        settings.rejected.push((name.to_string(), e));
                    }
                }
                match name {
                    "detector" => settings.detector = nick,
                    "execution-provider" => settings.execution_provider = nick,
                    _ => settings.audio_missing = nick,
                }
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings();
        match pspec.name() {
            name @ ("model" | "post-messages" | "batch-size" | "max-latency") => {
                self.infer.property_value(name)
            }
            "detector" => s.detector.to_value(),
            "execution-provider" => s.execution_provider.to_value(),
            "audio-missing" => s.audio_missing.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for AffectAnalysisBin {}

impl ElementImpl for AffectAnalysisBin {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Affect analysis bin",
                "Generic/Bin/Analyzer/Video/Audio",
                "Decodes any input and analyses its faces with affectfacecrop, affectspectro and affectinfer, with or without an audio stream",
                "affect developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let video = crate::frame::video_caps();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &video,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &gst::Caps::new_any(),
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::NullToReady => self.check_settings()?,
            gst::StateChange::ReadyToPaused => {
                // The bin brings its children up in an order of its own, and decodebin may
                // be first (nothing links it yet): its streaming thread must not find the
                // elements its pads are linked to still in READY, flushing.
                for element in [&self.infer, &self.facecrop] {
                    element.set_state(gst::State::Paused).inspect_err(|_| {
                        gst::debug!(CAT, imp = self, "{} refused PAUSED", element.name());
                    })?;
                }
            }
            _ => {}
        }
        let success = self.parent_change_state(transition)?;
        if matches!(
            transition,
            gst::StateChange::PausedToReady | gst::StateChange::ReadyToNull
        ) {
            self.remove_branches();
        }
        Ok(success)
    }
}

impl BinImpl for AffectAnalysisBin {
    fn handle_message(&self, msg: gst::Message) {
        if let gst::MessageView::Warning(w) = msg.view()
            && w.error().matches(gst::StreamError::Demux)
            && msg
                .src()
                .is_some_and(|s| s == self.infer.upcast_ref::<gst::Object>())
            && self.state().no_audio_reported
        {
            gst::debug!(
                CAT,
                imp = self,
                "Not passing on affectinfer's warning, the missing audio stream is reported: {}",
                w.error()
            );
            return;
        }
        self.parent_handle_message(msg)
    }
}
