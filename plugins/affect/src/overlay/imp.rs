// SPDX-License-Identifier: MPL-2.0
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::{VideoOverlayComposition, VideoOverlayCompositionMeta, VideoOverlayRectangle};

use crate::meta::{AffectResult, AnalysedFace};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "affectoverlay",
        gst::DebugColorFlags::empty(),
        Some("Affect results overlay"),
    )
});

const DEFAULT_SHOW_BOX: bool = true;
const DEFAULT_SHOW_ID: bool = true;
const DEFAULT_SHOW_EXPRESSION: bool = true;
const DEFAULT_SHOW_VA: bool = true;
const DEFAULT_SHOW_AUS: bool = true;
const DEFAULT_SHOW_LANDMARKS: bool = true;
const DEFAULT_AU_THRESHOLD: f64 = 0.5;
const DEFAULT_MAX_AUS: u32 = 3;
const DEFAULT_FONT_FAMILY: &str = "Sans";
const DEFAULT_FONT_SIZE: u32 = 0;
const DEFAULT_LINE_WIDTH: u32 = 0;
const DEFAULT_BOX_COLOR: u32 = 0xff20e070;
const DEFAULT_TEXT_COLOR: u32 = 0xffffffff;
const DEFAULT_BACKGROUND_COLOR: u32 = 0xb4000000;

/// Rendered sprites kept between frames; the cache starts again past this many.
const MAX_CACHED_SPRITES: usize = 256;

/// Cairo's ARGB32 is a native-endian 32-bit word, which is BGRA in memory on little-endian
/// machines: the layout `GstVideoOverlayRectangle` takes for its raw pixels.
#[cfg(target_endian = "little")]
const SPRITE_FORMAT: gst_video::VideoFormat = gst_video::VideoFormat::Bgra;
#[cfg(target_endian = "big")]
const SPRITE_FORMAT: gst_video::VideoFormat = gst_video::VideoFormat::Argb;

/// Raw formats the overlay draws on: those the other elements read, plus more that
/// `gst_video_blend` handles.
const OVERLAY_FORMATS: [&str; 16] = [
    "RGB", "BGR", "RGBx", "BGRx", "RGBA", "BGRA", "I420", "NV12", "xRGB", "xBGR", "ARGB", "ABGR",
    "AYUV", "YV12", "NV21", "Y444",
];

#[derive(Debug, Clone, PartialEq)]
struct Settings {
    show_box: bool,
    show_id: bool,
    show_expression: bool,
    show_va: bool,
    show_aus: bool,
    show_landmarks: bool,
    au_threshold: f64,
    max_aus: u32,
    font_family: String,
    font_size: u32,
    line_width: u32,
    box_color: u32,
    text_color: u32,
    background_color: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            show_box: DEFAULT_SHOW_BOX,
            show_id: DEFAULT_SHOW_ID,
            show_expression: DEFAULT_SHOW_EXPRESSION,
            show_va: DEFAULT_SHOW_VA,
            show_aus: DEFAULT_SHOW_AUS,
            show_landmarks: DEFAULT_SHOW_LANDMARKS,
            au_threshold: DEFAULT_AU_THRESHOLD,
            max_aus: DEFAULT_MAX_AUS,
            font_family: DEFAULT_FONT_FAMILY.into(),
            font_size: DEFAULT_FONT_SIZE,
            line_width: DEFAULT_LINE_WIDTH,
            box_color: DEFAULT_BOX_COLOR,
            text_color: DEFAULT_TEXT_COLOR,
            background_color: DEFAULT_BACKGROUND_COLOR,
        }
    }
}

impl Settings {
    /// Text height in pixels for a face `face_height` pixels tall.
    fn font_px(&self, face_height: f32) -> u32 {
        if self.font_size > 0 {
            self.font_size
        } else {
            (face_height / 12.0).round().clamp(12.0, 32.0) as u32
        }
    }

    /// Box outline width in pixels for a face `face_height` pixels tall.
    fn line_px(&self, face_height: f32) -> u32 {
        if self.line_width > 0 {
            self.line_width
        } else {
            (face_height / 60.0).round().clamp(2.0, 8.0) as u32
        }
    }
}

/// What one sprite shows; the colours and font are the settings', which empty the cache when
/// they change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SpriteKey {
    /// A box outline `width` x `height` with lines `line` pixels wide inside it.
    Box { width: u32, height: u32, line: u32 },
    /// A landmark dot of this radius.
    Dot { radius: u32 },
    /// A label panel: pango markup lines, and the valence/arousal dot in hundredths.
    Panel {
        markup: String,
        va: Option<[i32; 2]>,
        font_px: u32,
    },
}

/// Premultiplied ARGB pixels of one rendered sprite, with a video meta.
#[derive(Debug, Clone)]
struct Sprite {
    pixels: gst::Buffer,
    width: u32,
    height: u32,
}

struct State {
    info: gst_video::VideoInfo,
    /// Whether downstream takes the composition as meta; decided on the first buffer after
    /// caps, once downstream has them.
    attach: Option<bool>,
    sprites: HashMap<SpriteKey, Sprite>,
}

#[derive(Default)]
pub struct AffectOverlay {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

/// `0xAARRGGBB` as cairo's (r, g, b, a) in 0..=1.
fn argb(c: u32) -> (f64, f64, f64, f64) {
    let ch = |shift: u32| ((c >> shift) & 0xff) as f64 / 255.0;
    (ch(16), ch(8), ch(0), ch(24))
}

fn set_colour(cr: &cairo::Context, c: u32) {
    let (r, g, b, a) = argb(c);
    cr.set_source_rgba(r, g, b, a);
}

/// The action units at or above `threshold`, strongest first, at most `max`.
fn strongest_aus(result: &AffectResult, threshold: f64, max: usize) -> Vec<(&str, f64)> {
    let mut aus: Vec<(&str, f64)> = result
        .au_labels
        .iter()
        .zip(&result.au_probs)
        .filter(|(_, p)| p.is_finite() && **p >= threshold)
        .map(|(l, p)| (l.as_str(), *p))
        .collect();
    aus.sort_by(|a, b| b.1.total_cmp(&a.1));
    aus.truncate(max);
    aus
}

/// The label panel of one face: its pango markup and the valence/arousal dot in hundredths,
/// or `None` when there is nothing to show.
fn panel_content(face: &AnalysedFace, s: &Settings) -> Option<(String, Option<[i32; 2]>)> {
    let esc = |t: &str| glib::markup_escape_text(t).to_string();
    let mut lines = Vec::new();
    let mut head = Vec::new();
    if s.show_id {
        head.push(format!("#{}", face.face.track_id));
    }
    let mut va = None;
    if let Some(r) = &face.affect {
        // Only the heads the models gave are drawn.
        if let Some(expression) = r
            .expression
            .as_deref()
            .filter(|e| s.show_expression && !e.is_empty())
        {
            match r.expression_prob(expression).filter(|p| p.is_finite()) {
                Some(p) => head.push(format!("{} {:.0}%", esc(expression), p * 100.0)),
                None => head.push(esc(expression)),
            }
        }
        if let (true, Some(v), Some(a)) = (s.show_va, r.valence, r.arousal)
            && v.is_finite()
            && a.is_finite()
        {
            let hundredths = |v: f64| (v.clamp(-1.0, 1.0) * 100.0).round() as i32;
            let dot = [hundredths(v), hundredths(a)];
            lines.push(format!(
                "V {:+.2}  A {:+.2}",
                dot[0] as f64 / 100.0,
                dot[1] as f64 / 100.0
            ));
            va = Some(dot);
        }
        if s.show_aus {
            let aus = strongest_aus(r, s.au_threshold, s.max_aus as usize);
            if !aus.is_empty() {
                let text: Vec<String> = aus
                    .iter()
                    .map(|(l, p)| format!("{} {:.0}%", esc(l), p * 100.0))
                    .collect();
                lines.push(text.join("  "));
            }
        }
    }
    if !head.is_empty() {
        lines.insert(0, format!("<b>{}</b>", head.join("  ")));
    }
    if lines.is_empty() && va.is_none() {
        return None;
    }
    Some((lines.join("\n"), va))
}

/// Where a `size` panel of the face boxed `[x1, y1, x2, y2]` goes in a `frame`: under the
/// box or above it where it fits (inside the box's top where neither does), left-aligned
/// with the box or else right-aligned, always inside the frame; the first of these places
/// clear of the panels already `placed`, or the first when none is.
fn place_panel(
    [x1, y1, x2, y2]: [i32; 4],
    (pw, ph): (i32, i32),
    (fw, fh): (i32, i32),
    placed: &[[i32; 4]],
) -> (i32, i32) {
    let clamp_x = |x: i32| x.min(fw - pw).max(0);
    let mut rows: Vec<i32> = [
        (y2 + ph <= fh).then_some(y2),
        (y1 - ph >= 0).then_some(y1 - ph),
    ]
    .into_iter()
    .flatten()
    .collect();
    if rows.is_empty() {
        // Covering the face's top is the last resort.
        rows.push(y1.min(fh - ph).max(0));
    }
    let candidates: Vec<(i32, i32)> = rows
        .into_iter()
        .flat_map(|y| [(clamp_x(x1), y), (clamp_x(x2 - pw), y)])
        .collect();
    let clear = |&(x, y): &(i32, i32)| {
        placed
            .iter()
            .all(|p| x + pw <= p[0] || p[2] <= x || y + ph <= p[1] || p[3] <= y)
    };
    candidates
        .iter()
        .copied()
        .find(clear)
        .unwrap_or(candidates[0])
}

/// Copies a finished cairo surface into a buffer an overlay rectangle can take.
fn surface_to_sprite(mut surface: cairo::ImageSurface) -> Result<Sprite, String> {
    surface.flush();
    let (width, height) = (surface.width() as usize, surface.height() as usize);
    let stride = surface.stride() as usize;
    let data = surface
        .data()
        .map_err(|e| format!("cannot read the rendered surface: {e}"))?;
    let mut pixels = gst::Buffer::with_size(width * height * 4)
        .map_err(|e| format!("cannot allocate {width}x{height} overlay pixels: {e}"))?;
    {
        let pixels = pixels.get_mut().expect("a new buffer is writable");
        {
            let mut map = pixels
                .map_writable()
                .map_err(|e| format!("cannot map the overlay pixels: {e}"))?;
            for (dst, src) in map
                .as_mut_slice()
                .chunks_exact_mut(width * 4)
                .zip(data.chunks(stride))
            {
                dst.copy_from_slice(&src[..width * 4]);
            }
        }
        gst_video::VideoMeta::add(
            pixels,
            gst_video::VideoFrameFlags::empty(),
            SPRITE_FORMAT,
            width as u32,
            height as u32,
        )
        .map_err(|e| format!("cannot describe the overlay pixels: {e}"))?;
    }
    Ok(Sprite {
        pixels,
        width: width as u32,
        height: height as u32,
    })
}

fn new_surface(width: u32, height: u32) -> Result<(cairo::ImageSurface, cairo::Context), String> {
    let surface = cairo::ImageSurface::create(cairo::Format::ARgb32, width as i32, height as i32)
        .map_err(|e| format!("cannot create a {width}x{height} cairo surface: {e}"))?;
    let cr = cairo::Context::new(&surface).map_err(|e| format!("cannot draw with cairo: {e}"))?;
    Ok((surface, cr))
}

fn render_box(width: u32, height: u32, line: u32, colour: u32) -> Result<Sprite, String> {
    let (surface, cr) = new_surface(width, height)?;
    // Lines of integer width on the pixel grid, fully inside the box: crisp edges, and the
    // box's edge pixels are exactly the box colour.
    let l = line as f64;
    cr.rectangle(
        l / 2.0,
        l / 2.0,
        (width as f64 - l).max(0.0),
        (height as f64 - l).max(0.0),
    );
    cr.set_line_width(l);
    set_colour(&cr, colour);
    cr.stroke()
        .map_err(|e| format!("cannot draw the box: {e}"))?;
    drop(cr);
    surface_to_sprite(surface)
}

fn render_dot(radius: u32, fill: u32, outline: u32) -> Result<Sprite, String> {
    let side = 2 * radius + 1;
    let (surface, cr) = new_surface(side, side)?;
    let c = side as f64 / 2.0;
    cr.arc(c, c, radius as f64 - 0.5, 0.0, std::f64::consts::TAU);
    set_colour(&cr, fill);
    cr.fill_preserve()
        .map_err(|e| format!("cannot draw a landmark: {e}"))?;
    cr.set_line_width(1.0);
    set_colour(&cr, outline);
    cr.stroke()
        .map_err(|e| format!("cannot draw a landmark: {e}"))?;
    drop(cr);
    surface_to_sprite(surface)
}

fn render_panel(
    markup: &str,
    va: Option<[i32; 2]>,
    font_px: u32,
    s: &Settings,
) -> Result<Sprite, String> {
    let font_px = font_px.max(1);
    let pad = (font_px / 3).max(2);
    // Measure the text on a scratch context; pango's cairo font map is per thread and keeps
    // its fonts, so this is cheap after the first frame.
    let (_scratch, measure) = new_surface(1, 1)?;
    let layout = pangocairo::functions::create_layout(&measure);
    let mut font = pango::FontDescription::from_string(&s.font_family);
    font.set_absolute_size(font_px as f64 * pango::SCALE as f64);
    layout.set_font_description(Some(&font));
    layout.set_markup(markup);
    let (text_w, text_h) = if markup.is_empty() {
        (0, 0)
    } else {
        let (_, logical) = layout.pixel_extents();
        (
            logical.width().max(0) as u32,
            logical.height().max(0) as u32,
        )
    };
    let gauge = va.map(|_| text_h.max(font_px * 5 / 2));
    let inner_h = text_h.max(gauge.unwrap_or(0));
    let text_x = pad + gauge.map_or(0, |g| g + pad);
    let width = text_x + text_w + if text_w > 0 { pad } else { 0 };
    let height = inner_h + 2 * pad;

    let (surface, cr) = new_surface(width, height)?;
    let fail = |e: cairo::Error| format!("cannot draw the label panel: {e}");
    set_colour(&cr, s.background_color);
    let (w, h, r) = (width as f64, height as f64, pad as f64);
    cr.new_sub_path();
    cr.arc(w - r, r, r, -std::f64::consts::FRAC_PI_2, 0.0);
    cr.arc(w - r, h - r, r, 0.0, std::f64::consts::FRAC_PI_2);
    cr.arc(
        r,
        h - r,
        r,
        std::f64::consts::FRAC_PI_2,
        std::f64::consts::PI,
    );
    cr.arc(r, r, r, std::f64::consts::PI, 1.5 * std::f64::consts::PI);
    cr.close_path();
    cr.fill().map_err(fail)?;

    if let (Some(g), Some([v, a])) = (gauge, va) {
        // The circumplex: valence left to right, arousal bottom to top.
        let radius = g as f64 / 2.0 - 1.0;
        let (cx, cy) = (pad as f64 + g as f64 / 2.0, h / 2.0);
        let (tr, tg, tb, ta) = argb(s.text_color);
        cr.set_line_width(1.0);
        cr.set_source_rgba(tr, tg, tb, ta * 0.8);
        cr.arc(cx, cy, radius, 0.0, std::f64::consts::TAU);
        cr.stroke().map_err(fail)?;
        cr.set_source_rgba(tr, tg, tb, ta * 0.45);
        cr.move_to(cx - radius, cy);
        cr.line_to(cx + radius, cy);
        cr.move_to(cx, cy - radius);
        cr.line_to(cx, cy + radius);
        cr.stroke().map_err(fail)?;
        let (dx, dy) = (
            cx + v as f64 / 100.0 * radius,
            cy - a as f64 / 100.0 * radius,
        );
        cr.arc(
            dx,
            dy,
            (g as f64 / 9.0).max(2.0),
            0.0,
            std::f64::consts::TAU,
        );
        set_colour(&cr, s.box_color);
        cr.fill_preserve().map_err(fail)?;
        set_colour(&cr, s.text_color);
        cr.stroke().map_err(fail)?;
    }

    if text_w > 0 {
        pangocairo::functions::update_layout(&cr, &layout);
        cr.move_to(text_x as f64, (h - text_h as f64) / 2.0);
        set_colour(&cr, s.text_color);
        pangocairo::functions::show_layout(&cr, &layout);
    }
    drop(cr);
    surface_to_sprite(surface)
}

impl AffectOverlay {
    fn sink_caps() -> gst::Caps {
        gst::Caps::builder("video/x-raw")
            .field("format", gst::List::new(OVERLAY_FORMATS))
            .field("width", gst::IntRange::new(1, i32::MAX))
            .field("height", gst::IntRange::new(1, i32::MAX))
            .field("framerate", gst::FractionRange::new((0, 1), (i32::MAX, 1)))
            .build()
    }

    /// `caps` with the overlay-composition feature added (`add`) or taken away.
    fn with_overlay_feature(caps: &gst::Caps, add: bool) -> gst::Caps {
        if caps.is_any() {
            return caps.clone();
        }
        let feature = gst_video::CAPS_FEATURE_META_GST_VIDEO_OVERLAY_COMPOSITION;
        let mut out = gst::Caps::new_empty();
        {
            let out = out.get_mut().expect("a new caps is writable");
            for (s, f) in caps.iter_with_features() {
                let mut features = f.to_owned();
                if add {
                    if features.is_any() {
                        continue;
                    }
                    features.add(feature);
                } else {
                    features.remove(feature);
                }
                out.append_structure_full(s.to_owned(), Some(features));
            }
        }
        out
    }

    fn sprite(state: &mut State, key: SpriteKey, settings: &Settings) -> Result<Sprite, String> {
        if let Some(sprite) = state.sprites.get(&key) {
            return Ok(sprite.clone());
        }
        let sprite = match &key {
            SpriteKey::Box {
                width,
                height,
                line,
            } => render_box(*width, *height, *line, settings.box_color)?,
            SpriteKey::Dot { radius } => {
                render_dot(*radius, settings.box_color, settings.background_color)?
            }
            SpriteKey::Panel {
                markup,
                va,
                font_px,
            } => render_panel(markup, *va, *font_px, settings)?,
        };
        if state.sprites.len() >= MAX_CACHED_SPRITES {
            state.sprites.clear();
        }
        state.sprites.insert(key, sprite.clone());
        Ok(sprite)
    }

    /// The rectangles of every face, in drawing order (boxes, landmarks, then panels).
    fn compose(
        state: &mut State,
        settings: &Settings,
        faces: &[AnalysedFace],
    ) -> Result<Vec<VideoOverlayRectangle>, String> {
        let (fw, fh) = (state.info.width() as i32, state.info.height() as i32);
        let flags = gst_video::VideoOverlayFormatFlags::PREMULTIPLIED_ALPHA;
        let mut rects = Vec::new();
        let mut panels = Vec::new();
        let mut placed: Vec<[i32; 4]> = Vec::new();
        for face in faces {
            let b = face.face.bbox;
            let (x1, y1) = (b[0].round() as i32, b[1].round() as i32);
            let (x2, y2) = (b[2].round() as i32, b[3].round() as i32);
            let (w, h) = (x2 - x1, y2 - y1);
            if w <= 0 || h <= 0 {
                continue;
            }
            let line = settings.line_px(h as f32);
            if settings.show_box {
                let key = SpriteKey::Box {
                    width: w as u32,
                    height: h as u32,
                    line,
                };
                let sp = Self::sprite(state, key, settings)?;
                rects.push(VideoOverlayRectangle::new_raw(
                    &sp.pixels, x1, y1, sp.width, sp.height, flags,
                ));
            }
            if settings.show_landmarks
                && let Some(points) = face.face.landmarks
            {
                let radius = line + 1;
                let sp = Self::sprite(state, SpriteKey::Dot { radius }, settings)?;
                for [x, y] in points {
                    let (x, y) = (x.round() as i32, y.round() as i32);
                    if (0..fw).contains(&x) && (0..fh).contains(&y) {
                        rects.push(VideoOverlayRectangle::new_raw(
                            &sp.pixels,
                            x - radius as i32,
                            y - radius as i32,
                            sp.width,
                            sp.height,
                            flags,
                        ));
                    }
                }
            }
            if let Some((markup, va)) = panel_content(face, settings) {
                let key = SpriteKey::Panel {
                    markup,
                    va,
                    font_px: settings.font_px(h as f32),
                };
                let sp = Self::sprite(state, key, settings)?;
                let (x, y) = place_panel(
                    [x1, y1, x2, y2],
                    (sp.width as i32, sp.height as i32),
                    (fw, fh),
                    &placed,
                );
                placed.push([x, y, x + sp.width as i32, y + sp.height as i32]);
                panels.push(VideoOverlayRectangle::new_raw(
                    &sp.pixels, x, y, sp.width, sp.height, flags,
                ));
            }
        }
        rects.extend(panels);
        Ok(rects)
    }

    /// Whether downstream takes overlay-composition meta: the negotiated caps carry the
    /// feature and its allocation answer lists the meta.
    fn downstream_takes_meta(&self) -> bool {
        let Some(caps) = self.obj().src_pad().current_caps() else {
            return false;
        };
        let feature = gst_video::CAPS_FEATURE_META_GST_VIDEO_OVERLAY_COMPOSITION;
        if !caps.features(0).is_some_and(|f| f.contains(feature)) {
            return false;
        }
        let mut query = gst::query::Allocation::new(Some(&caps), false);
        if !self.obj().src_pad().peer_query(&mut query) {
            gst::debug!(
                CAT,
                imp = self,
                "Downstream did not answer the allocation query"
            );
            return false;
        }
        query
            .find_allocation_meta::<VideoOverlayCompositionMeta>()
            .is_some()
    }
}

#[glib::object_subclass]
impl ObjectSubclass for AffectOverlay {
    const NAME: &'static str = "GstAffectOverlay";
    type Type = super::AffectOverlay;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for AffectOverlay {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let flag = |name: &str, nick: &str, blurb: &str, default: bool| {
                glib::ParamSpecBoolean::builder(name)
                    .nick(nick)
                    .blurb(blurb)
                    .default_value(default)
                    .mutable_playing()
                    .build()
            };
            let colour = |name: &str, nick: &str, blurb: &str, default: u32| {
                glib::ParamSpecUInt::builder(name)
                    .nick(nick)
                    .blurb(blurb)
                    .default_value(default)
                    .mutable_playing()
                    .build()
            };
            vec![
                flag("show-box", "Show box", "Draw each face's box", DEFAULT_SHOW_BOX),
                flag("show-id", "Show id", "Write each face's track id", DEFAULT_SHOW_ID),
                flag(
                    "show-expression",
                    "Show expression",
                    "Write the most probable expression and its probability",
                    DEFAULT_SHOW_EXPRESSION,
                ),
                flag(
                    "show-va",
                    "Show valence/arousal",
                    "Draw valence and arousal as a dot in the circumplex, with their values",
                    DEFAULT_SHOW_VA,
                ),
                flag(
                    "show-aus",
                    "Show action units",
                    "Write the strongest action units (see au-threshold and max-aus)",
                    DEFAULT_SHOW_AUS,
                ),
                flag(
                    "show-landmarks",
                    "Show landmarks",
                    "Draw the five face landmarks where the face finder gave them",
                    DEFAULT_SHOW_LANDMARKS,
                ),
                glib::ParamSpecDouble::builder("au-threshold")
                    .nick("AU threshold")
                    .blurb("Smallest probability of an action unit that is written")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_AU_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-aus")
                    .nick("Maximum AUs")
                    .blurb("Write at most this many action units, the most probable")
                    .maximum(64)
                    .default_value(DEFAULT_MAX_AUS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("font-family")
                    .nick("Font family")
                    .blurb("Pango font description of the labels without size, e.g. \"Sans\" or \"DejaVu Sans Mono\"")
                    .default_value(Some(DEFAULT_FONT_FAMILY))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("font-size")
                    .nick("Font size")
                    .blurb("Text size in pixels (0: a twelfth of the face's height, 12 to 32)")
                    .maximum(512)
                    .default_value(DEFAULT_FONT_SIZE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("line-width")
                    .nick("Line width")
                    .blurb("Box outline width in pixels (0: a sixtieth of the face's height, 2 to 8)")
                    .maximum(64)
                    .default_value(DEFAULT_LINE_WIDTH)
                    .mutable_playing()
                    .build(),
                colour(
                    "box-color",
                    "Box colour",
                    "Colour of boxes, landmarks and the valence/arousal dot, as 0xAARRGGBB",
                    DEFAULT_BOX_COLOR,
                ),
                colour(
                    "text-color",
                    "Text colour",
                    "Colour of the labels' text and circumplex, as 0xAARRGGBB",
                    DEFAULT_TEXT_COLOR,
                ),
                colour(
                    "background-color",
                    "Background colour",
                    "Colour of the label panels, as 0xAARRGGBB",
                    DEFAULT_BACKGROUND_COLOR,
                ),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let before = s.clone();
        match pspec.name() {
            "show-box" => s.show_box = value.get().expect("type checked upstream"),
            "show-id" => s.show_id = value.get().expect("type checked upstream"),
            "show-expression" => s.show_expression = value.get().expect("type checked upstream"),
            "show-va" => s.show_va = value.get().expect("type checked upstream"),
            "show-aus" => s.show_aus = value.get().expect("type checked upstream"),
            "show-landmarks" => s.show_landmarks = value.get().expect("type checked upstream"),
            "au-threshold" => s.au_threshold = value.get().expect("type checked upstream"),
            "max-aus" => s.max_aus = value.get().expect("type checked upstream"),
            "font-family" => {
                s.font_family = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|f| !f.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_FONT_FAMILY.into())
            }
            "font-size" => s.font_size = value.get().expect("type checked upstream"),
            "line-width" => s.line_width = value.get().expect("type checked upstream"),
            "box-color" => s.box_color = value.get().expect("type checked upstream"),
            "text-color" => s.text_color = value.get().expect("type checked upstream"),
            "background-color" => s.background_color = value.get().expect("type checked upstream"),
            other => unreachable!("unknown property {other}"),
        }
        let changed = *s != before;
        drop(s);
        if changed && let Some(state) = self.state.lock().unwrap().as_mut() {
            // Sprites are drawn with the colours and font of the settings.
            state.sprites.clear();
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "show-box" => s.show_box.to_value(),
            "show-id" => s.show_id.to_value(),
            "show-expression" => s.show_expression.to_value(),
            "show-va" => s.show_va.to_value(),
            "show-aus" => s.show_aus.to_value(),
            "show-landmarks" => s.show_landmarks.to_value(),
            "au-threshold" => s.au_threshold.to_value(),
            "max-aus" => s.max_aus.to_value(),
            "font-family" => s.font_family.to_value(),
            "font-size" => s.font_size.to_value(),
            "line-width" => s.line_width.to_value(),
            "box-color" => s.box_color.to_value(),
            "text-color" => s.text_color.to_value(),
            "background-color" => s.background_color.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for AffectOverlay {}

impl ElementImpl for AffectOverlay {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Affect overlay",
                "Filter/Editor/Video",
                "Draws each face's box, track id, expression, valence/arousal and action units",
                "affect developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let sink = AffectOverlay::sink_caps();
            let mut src = AffectOverlay::with_overlay_feature(&sink, true);
            src.merge(sink.clone());
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &src,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &sink,
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for AffectOverlay {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        let other = if direction == gst::PadDirection::Sink {
            // Offer downstream the composition as meta first, then blended frames.
            let mut out = Self::with_overlay_feature(caps, true);
            out.merge(caps.clone());
            out
        } else {
            Self::with_overlay_feature(caps, false)
        };
        Some(match filter {
            Some(f) => f.intersect_with_mode(&other, gst::CapsIntersectMode::First),
            None => other,
        })
    }

    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "Cannot parse input caps {}", incaps))?;
        let mut guard = self.state.lock().unwrap();
        let sprites = guard.take().map(|s| s.sprites).unwrap_or_default();
        *guard = Some(State {
            info,
            attach: None,
            sprites,
        });
        gst::debug!(CAT, imp = self, "Configured {incaps} -> {outcaps}");
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let faces = crate::meta::analysed_faces(buf);
        if faces.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let settings = self.settings.lock().unwrap().clone();
        let attach = {
            let guard = self.state.lock().unwrap();
            guard.as_ref().ok_or(gst::FlowError::NotNegotiated)?.attach
        };
        let attach = match attach {
            Some(a) => a,
            None => {
                // Asked without the state lock: the query travels downstream.
                let a = self.downstream_takes_meta();
                gst::debug!(CAT, imp = self, "Attaching overlay meta: {a}");
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.attach = Some(a);
                }
                a
            }
        };
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let rects = Self::compose(state, &settings, &faces).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::LibraryError::Failed,
                ("Cannot render the face annotations: {}", e)
            );
            gst::FlowError::Error
        })?;
        if rects.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let composition = VideoOverlayComposition::new(&rects).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::LibraryError::Failed,
                ("Cannot build the overlay composition: {}", e)
            );
            gst::FlowError::Error
        })?;
        gst::trace!(
            CAT,
            imp = self,
            "{} faces, {} rectangles",
            faces.len(),
            rects.len()
        );
        if attach {
            VideoOverlayCompositionMeta::add(buf, &composition);
            return Ok(gst::FlowSuccess::Ok);
        }
        let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &state.info)
            .map_err(|_| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Failed,
                    ("Cannot map the frame for writing")
                );
                gst::FlowError::Error
            })?;
        composition.blend(&mut frame).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::CoreError::Failed,
                (
                    "Cannot blend the annotations into a {:?} frame: {}",
                    state.info.format(),
                    e
                )
            );
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}
