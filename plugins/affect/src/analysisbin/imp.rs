// SPDX-License-Identifier: MPL-2.0
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::choices::{AudioMissing, DetectorKind, ExecutionProvider};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "affectanalysisbin",
        gst::DebugColorFlags::empty(),
        Some("Affect whole-analysis bin"),
    )
});

const DEFAULT_APPLY_ORIENTATION: bool = true;

/// Name of the element message the bin posts once it knows the input's streams.
pub const INPUT_MESSAGE: &str = "affect-input";
/// Name of the element message the bin posts when an analysed stream of the input ends.
pub const STREAM_END_MESSAGE: &str = "affect-stream-end";

#[derive(Debug, Clone)]
struct Settings {
    apply_orientation: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            apply_orientation: DEFAULT_APPLY_ORIENTATION,
        }
    }
}

/// What of one analysed stream has come out of decodebin.
#[derive(Debug, Default, Clone)]
struct Extent {
    /// Presentation time of the first buffer.
    first: Option<gst::ClockTime>,
    /// End of the latest buffer (its time stamp plus its duration).
    end: Option<gst::ClockTime>,
    buffers: u64,
}

impl Extent {
    fn add(&mut self, buffer: &gst::BufferRef) {
        self.buffers += 1;
        if let Some(pts) = buffer.pts() {
            self.first = Some(self.first.map_or(pts, |f| f.min(pts)));
            let end = pts + buffer.duration().unwrap_or(gst::ClockTime::ZERO);
            self.end = Some(self.end.map_or(end, |e| e.max(end)));
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
    /// What came of the analysed video and audio streams.
    video_extent: Extent,
    audio_extent: Extent,
    /// The video's orientation tag (`image-orientation`), once one came.
    orientation: Option<String>,
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

/// The default of `property` as the element type `element_type` declares it: the bin's
/// forwarded properties have their children's defaults.
fn child_default<T>(element_type: glib::Type, property: &str) -> T
where
    T: for<'a> glib::value::FromValue<'a> + 'static,
{
    glib::object::ObjectClass::from_type(element_type)
        .and_then(|class| class.find_property(property))
        .and_then(|pspec| pspec.default_value().get::<T>().ok())
        .unwrap_or_else(|| panic!("{element_type} has a property '{property}' of its type"))
}

/// The `image-orientation` tag's transform as `videoflip video-direction` names it.
fn orientation_of(tags: &gst::TagListRef) -> Option<String> {
    tags.get::<gst::tags::ImageOrientation>()
        .map(|v| v.get().to_string())
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
        let mut elements = vec![make("queue")?, make("videoconvert")?];
        if self.settings().apply_orientation {
            // videoflip turns frames upright as the input's orientation tag says (a phone
            // video's rotate-90, a photograph's EXIF orientation), so faces are found upright
            // and boxes are in displayed pixels. The tag is taken off behind it: the frames
            // are upright now, and an encoder downstream must not rotate them again.
            let flip = gst::ElementFactory::make("videoflip")
                .property_from_str("video-direction", "auto")
                .build()
                .map_err(|_| "the element videoflip is not installed (gst-plugins-good)")?;
            let flip_src = flip.static_pad("src").ok_or("videoflip has no src pad")?;
            flip_src.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, |_, info| {
                if let Some(gst::PadProbeData::Event(event)) = &info.data
                    && let gst::EventView::Tag(tag) = event.view()
                    && tag.tag().get::<gst::tags::ImageOrientation>().is_some()
                {
                    let mut tags = tag.tag_owned();
                    tags.make_mut().remove::<gst::tags::ImageOrientation>();
                    info.data = Some(gst::PadProbeData::Event(gst::event::Tag::new(tags)));
                }
                gst::PadProbeReturn::Ok
            });
            elements.push(flip);
        }
        self.watch_stream(pad, Stream::Video);
        self.link_branch(pad, elements, Some(&target))
    }

    /// Follows what of the stream on decodebin's `pad` comes out (first and last time stamp,
    /// buffers, the orientation tag) and posts [`STREAM_END_MESSAGE`] at its end, so the
    /// application learns each stream's own length without probing the file itself.
    fn watch_stream(&self, pad: &gst::Pad, stream: Stream) {
        let weak = self.obj().downgrade();
        pad.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                let Some(obj) = weak.upgrade() else {
                    return gst::PadProbeReturn::Remove;
                };
                let imp = obj.imp();
                match &info.data {
                    Some(gst::PadProbeData::Buffer(buffer)) => {
                        let mut state = imp.state();
                        match stream {
                            Stream::Video => state.video_extent.add(buffer),
                            _ => state.audio_extent.add(buffer),
                        }
                    }
                    Some(gst::PadProbeData::Event(event)) => match event.view() {
                        gst::EventView::Tag(tag) if stream == Stream::Video => {
                            if let Some(orientation) = orientation_of(tag.tag()) {
                                imp.state().orientation = Some(orientation);
                            }
                        }
                        gst::EventView::FlushStop(_) => {
                            // A seek: what came before is not what the stream ends with.
                            let mut state = imp.state();
                            match stream {
                                Stream::Video => state.video_extent = Extent::default(),
                                _ => state.audio_extent = Extent::default(),
                            }
                        }
                        gst::EventView::Eos(_) => imp.post_stream_end(stream),
                        _ => {}
                    },
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
    }

    /// GStreamer's JPEG decoder does not read the EXIF orientation of photographs: the first
    /// image `jpegdec` gets is read here, and its orientation goes downstream as the
    /// `image-orientation` tag a video's container would give.
    fn watch_jpeg(&self, decoder: &gst::Element) {
        let Some(sink) = decoder.static_pad("sink") else {
            return;
        };
        let weak = self.obj().downgrade();
        sink.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let orientation = info
                .buffer()
                .and_then(|b| b.map_readable().ok())
                .and_then(|map| affect_core::exif::jpeg_orientation(map.as_slice()))
                .and_then(affect_core::exif::orientation_name);
            if let (Some(orientation), Some(obj)) = (orientation, weak.upgrade()) {
                gst::debug!(CAT, obj = obj, "EXIF orientation {orientation}");
                let mut tags = gst::TagList::new();
                tags.make_mut()
                    .add::<gst::tags::ImageOrientation>(&orientation, gst::TagMergeMode::Replace);
                // Before this buffer reaches the decoder, which passes it on with its frame.
                pad.send_event(gst::event::Tag::new(tags));
            }
            gst::PadProbeReturn::Remove
        });
    }

    fn post_stream_end(&self, stream: Stream) {
        let (extent, orientation) = {
            let state = self.state();
            match stream {
                Stream::Video => (state.video_extent.clone(), state.orientation.clone()),
                _ => (state.audio_extent.clone(), None),
            }
        };
        let mut s = gst::Structure::builder(STREAM_END_MESSAGE)
            .field(
                "stream",
                if stream == Stream::Video {
                    "video"
                } else {
                    "audio"
                },
            )
            .field("buffers", extent.buffers)
            .field_if_some("start", extent.first.map(|t| t.nseconds()))
            .field_if_some("end", extent.end.map(|t| t.nseconds()));
        if stream == Stream::Video {
            s = s
                .field(
                    "orientation",
                    orientation.unwrap_or_else(|| "rotate-0".to_string()),
                )
                .field("orientation-applied", self.settings().apply_orientation);
        }
        gst::debug!(CAT, imp = self, "Stream ended: {:?}", s);
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s.build()).src(&*obj).build());
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
        self.watch_stream(pad, Stream::Audio);
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
        let obj = self.obj();
        let input = gst::Structure::builder(INPUT_MESSAGE)
            .field("video", video)
            .field("audio", audio)
            .field("undecodable", undecodable.join(", "))
            .build();
        let _ = obj.post_message(gst::message::Element::builder(input).src(&*obj).build());
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
            let policy = self.infer.property::<AudioMissing>("audio-missing");
            let missing = undecodable_of("audio/");
            if missing.is_empty() {
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Demux,
                    ("the input has no audio stream: video-only results"),
                    [
                        "an audio-visual model gets the audio-missing policy ({:?}) on every frame",
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
                        "an audio-visual model gets the audio-missing policy ({:?}) on every frame",
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
        // The input is read to its end, audio too: the length of each stream is then known
        // (affect-stream-end), and an audio track longer than the video is not cut short.
        self.infer.set_property("drain-audio", true);
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
                let weak = obj.downgrade();
                decodebin.connect("deep-element-added", false, move |args| {
                    let element = args.get(2).and_then(|v| v.get::<gst::Element>().ok());
                    if let (Some(obj), Some(element)) = (weak.upgrade(), element)
                        && element.factory().is_some_and(|f| f.name() == "jpegdec")
                    {
                        obj.imp().watch_jpeg(&element);
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
            // Forwarded properties carry their children's types and defaults.
            let facecrop = crate::AffectFaceCrop::static_type();
            let infer = crate::AffectInfer::static_type();
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("ONNX model file following the affect model contract (affectinfer model)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "detector",
                    child_default::<DetectorKind>(facecrop, "detector"),
                )
                .nick("Detector")
                .blurb("Where faces come from (affectfacecrop detector)")
                .mutable_ready()
                .build(),
                glib::ParamSpecString::builder("detector-model")
                    .nick("Detector model")
                    .blurb("ONNX face detector file for detector=onnx or detector=blazeface (affectfacecrop detector-model)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("detect-interval")
                    .nick("Detect interval")
                    .blurb("Run the face detector every N frames and track in between (affectfacecrop detect-interval)")
                    .default_value(child_default::<u32>(facecrop, "detect-interval"))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("apply-orientation")
                    .nick("Apply orientation")
                    .blurb("Turn frames upright as the input's orientation tag says (phone videos, EXIF photographs) before faces are found; boxes and landmarks are then in displayed pixels")
                    .default_value(DEFAULT_APPLY_ORIENTATION)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb("Post an 'affect' element message per frame with every face's results (affectinfer post-messages)")
                    .default_value(child_default::<bool>(infer, "post-messages"))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("batch-size")
                    .nick("Batch size")
                    .blurb("Most faces in one model run (affectinfer batch-size)")
                    .minimum(1)
                    .maximum(4096)
                    .default_value(child_default::<u32>(infer, "batch-size"))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-latency")
                    .nick("Maximum batching latency")
                    .blurb("Milliseconds a face may wait for a batch to fill (affectinfer max-latency)")
                    .maximum(60_000)
                    .default_value(child_default::<u32>(infer, "max-latency"))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "execution-provider",
                    child_default::<ExecutionProvider>(infer, "execution-provider"),
                )
                .nick("Execution provider")
                .blurb("Where the models and the face detector run (affectinfer and affectfacecrop execution-provider)")
                .mutable_ready()
                .build(),
                glib::ParamSpecInt::builder("device-id")
                    .nick("Device id")
                    .blurb("GPU the models and the face detector run on with execution-provider=cuda (affectinfer and affectfacecrop device-id)")
                    .minimum(0)
                    .default_value(child_default::<i32>(infer, "device-id"))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "audio-missing",
                    child_default::<AudioMissing>(infer, "audio-missing"),
                )
                .nick("Missing audio")
                .blurb("What an audio-visual model gets when no audio covers a frame (affectinfer audio-missing)")
                .mutable_playing()
                .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        match pspec.name() {
            "apply-orientation" => {
                self.settings().apply_orientation = value.get().expect("type checked upstream");
            }
            name @ ("detector" | "detector-model" | "detect-interval") => {
                self.facecrop.set_property_from_value(name, value);
            }
            name @ ("execution-provider" | "device-id") => {
                self.facecrop.set_property_from_value(name, value);
                self.infer.set_property_from_value(name, value);
            }
            name => self.infer.set_property_from_value(name, value),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "apply-orientation" => self.settings().apply_orientation.to_value(),
            name @ ("detector" | "detector-model" | "detect-interval") => {
                self.facecrop.property_value(name)
            }
            name => self.infer.property_value(name),
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
