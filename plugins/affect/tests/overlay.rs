// SPDX-License-Identifier: MPL-2.0
//! `affectoverlay`: which pixels change (the boxes and the label panels under them, nothing
//! else) in packed RGB and planar/semi-planar YUV, untouched frames without faces, the box
//! colour and place, what each part adds, the overlay meta path, and a preview image.

mod common;

use common::init;

use affect_core::labels::{AU_LABELS, EXPRESSION_LABELS, N_AUS, N_EXPRESSIONS};
use gst::glib;
use gst::prelude::*;
use gst_check::Harness;
use gst_video::{VideoOverlayCompositionMeta, VideoRegionOfInterestMeta};
use gstaffect::meta::{AffectResult, Face};

const W: u32 = 560;
const H: u32 = 360;

/// Two faces with room under them for their labels: label zones are `[x1, right) x [y2, y2+h)`.
const FACES: [([f32; 4], u64); 2] = [
    ([40.0, 30.0, 140.0, 130.0], 3),
    ([300.0, 40.0, 400.0, 140.0], 12),
];

fn caps(format: &str) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", format)
        .field("width", W as i32)
        .field("height", H as i32)
        .field("framerate", gst::Fraction::new(25, 1))
        .build()
}

fn info(format: &str) -> gst_video::VideoInfo {
    gst_video::VideoInfo::from_caps(&caps(format)).unwrap()
}

fn harness(format: &str, props: &[(&str, glib::Value)]) -> Harness {
    init();
    let mut h = Harness::new("affectoverlay");
    {
        let element = h.element().unwrap();
        for (name, value) in props {
            element.set_property_from_value(name, value);
        }
    }
    h.set_src_caps(caps(format));
    h
}

/// A frame of deterministic noise, so any change to any byte shows.
fn noise_frame(format: &str) -> gst::Buffer {
    let size = info(format).size();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    gst::Buffer::from_mut_slice(data)
}

fn labels(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A result whose top expression is `expression` (86 %), with the given AU probabilities.
fn result(expression: usize, va: [f32; 2], aus: &[(usize, f32)]) -> AffectResult {
    let mut probs = [0.02f32; N_EXPRESSIONS];
    probs[expression] = 0.86;
    let mut au = [0.1f32; N_AUS];
    for &(k, p) in aus {
        au[k] = p;
    }
    AffectResult::new(
        Some(va),
        &probs,
        &au,
        &labels(&EXPRESSION_LABELS),
        &labels(&AU_LABELS),
        "test".into(),
    )
}

fn happy() -> AffectResult {
    result(4, [0.7, 0.4], &[(3, 0.9), (6, 0.95), (10, 0.6)])
}

/// Adds a face meta as affectfacecrop does, and the results as affectinfer does.
fn add_face(buf: &mut gst::BufferRef, face: &Face, affect: Option<&AffectResult>) {
    face.attach(buf, W, H);
    if let Some(r) = affect {
        let mut meta = buf
            .iter_meta_mut::<VideoRegionOfInterestMeta>()
            .find(|m| m.id() == face.track_id as i32)
            .expect("the face meta just added");
        meta.add_param(r.to_structure());
    }
}

fn face(i: usize) -> Face {
    let (bbox, track_id) = FACES[i];
    let (x, y, w) = (bbox[0], bbox[1], bbox[2] - bbox[0]);
    Face {
        bbox,
        track_id,
        score: 0.9,
        landmarks: Some([
            [x + 0.3 * w, y + 0.4 * w],
            [x + 0.7 * w, y + 0.4 * w],
            [x + 0.5 * w, y + 0.6 * w],
            [x + 0.35 * w, y + 0.8 * w],
            [x + 0.65 * w, y + 0.8 * w],
        ]),
    }
}

/// The input frame with both faces (with `affect` results if given) and what the overlay
/// made of it.
fn run(
    format: &str,
    props: &[(&str, glib::Value)],
    results: [Option<&AffectResult>; 2],
) -> (Vec<u8>, Vec<u8>) {
    let mut h = harness(format, props);
    let mut buf = noise_frame(format);
    let before = buf.map_readable().unwrap().to_vec();
    {
        let b = buf.get_mut().unwrap();
        for (i, r) in results.iter().enumerate() {
            add_face(b, &face(i), *r);
        }
    }
    let out = h.push_and_pull(buf).unwrap();
    let after = out.map_readable().unwrap().to_vec();
    assert_eq!(after.len(), before.len());
    (before, after)
}

/// A changed sample: the frame-pixel block `[x0, x1) x [y0, y1)` it covers (more than one
/// pixel for subsampled chroma).
#[derive(Debug, Clone, Copy)]
struct Block {
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
}

impl Block {
    fn overlaps(&self, r: [u32; 4]) -> bool {
        self.x0 < r[2] && r[0] < self.x1 && self.y0 < r[3] && r[1] < self.y1
    }
}

/// Every changed sample of every plane, mapped to frame pixels through the format's layout.
fn changed(format: &str, before: &[u8], after: &[u8]) -> Vec<Block> {
    let info = info(format);
    let finfo = info.format_info();
    let mut blocks = Vec::new();
    for plane in 0..finfo.n_planes() {
        let comp = (0..finfo.n_components() as usize)
            .find(|&c| finfo.plane()[c] == plane)
            .unwrap();
        let (ws, hs) = (finfo.w_sub()[comp], finfo.h_sub()[comp]);
        let pstride = finfo.pixel_stride()[comp] as usize;
        let (pw, ph) = ((W + (1 << ws) - 1) >> ws, (H + (1 << hs) - 1) >> hs);
        let (offset, stride) = (
            info.offset()[plane as usize],
            info.stride()[plane as usize] as usize,
        );
        for y in 0..ph as usize {
            for x in 0..pw as usize {
                let at = offset + y * stride + x * pstride;
                if before[at..at + pstride] != after[at..at + pstride] {
                    blocks.push(Block {
                        x0: (x as u32) << ws,
                        y0: (y as u32) << hs,
                        x1: ((x as u32 + 1) << ws).min(W),
                        y1: ((y as u32 + 1) << hs).min(H),
                    });
                }
            }
        }
    }
    blocks
}

fn boxes() -> Vec<[u32; 4]> {
    FACES
        .iter()
        .map(|(b, _)| [b[0] as u32, b[1] as u32, b[2] as u32, b[3] as u32])
        .collect()
}

/// Where a face's label panel may be: under its box, from its left edge to the next face or
/// the frame's edge, at most the box's height down.
fn label_zones() -> Vec<[u32; 4]> {
    let b = boxes();
    vec![
        [b[0][0], b[0][3], b[1][0], b[0][3] + (b[0][3] - b[0][1])],
        [b[1][0], b[1][3], W, b[1][3] + (b[1][3] - b[1][1])],
    ]
}

fn count_in(blocks: &[Block], zone: [u32; 4]) -> usize {
    blocks.iter().filter(|b| b.overlaps(zone)).count()
}

fn assert_confined(format: &str, blocks: &[Block], zones: &[[u32; 4]]) {
    for b in blocks {
        assert!(
            zones.iter().any(|z| b.overlaps(*z)),
            "{format}: sample at {b:?} changed outside the boxes and label zones {zones:?}"
        );
    }
}

#[test]
fn draws_on_the_faces_and_their_labels_only() {
    let r = happy();
    for format in ["RGBA", "BGR", "I420", "NV12", "RGB", "BGRx", "YV12", "AYUV"] {
        let (before, after) = run(format, &[], [Some(&r), Some(&r)]);
        let blocks = changed(format, &before, &after);
        let zones: Vec<[u32; 4]> = boxes().into_iter().chain(label_zones()).collect();
        assert_confined(format, &blocks, &zones);
        for (b, l) in boxes().iter().zip(label_zones()) {
            // The box's left edge, a column inside it, and the label panel all changed.
            let edge = [b[0], b[1] + 10, b[0] + 2, b[3] - 10];
            let edge_changed = count_in(&blocks, edge);
            assert!(
                edge_changed >= 2 * 70,
                "{format}: only {edge_changed} changed samples on the box edge {edge:?}"
            );
            let label_changed = count_in(&blocks, l);
            assert!(
                label_changed > 2000,
                "{format}: only {label_changed} changed samples in the label zone {l:?}"
            );
        }
    }
}

#[test]
fn frames_without_faces_pass_byte_identical() {
    for format in ["RGBA", "I420", "NV12", "BGR"] {
        let mut h = harness(format, &[]);
        let buf = noise_frame(format);
        let before = buf.map_readable().unwrap().to_vec();
        let out = h.push_and_pull(buf).unwrap();
        assert_eq!(out.map_readable().unwrap().as_slice(), before.as_slice());
        assert!(out.meta::<VideoOverlayCompositionMeta>().is_none());
        // A region of interest that is not a face is not drawn either.
        let mut buf = noise_frame(format);
        VideoRegionOfInterestMeta::add(buf.get_mut().unwrap(), "car", (10, 10, 100, 80));
        let out = h.push_and_pull(buf).unwrap();
        assert_eq!(out.map_readable().unwrap().as_slice(), before.as_slice());
    }
}

#[test]
fn box_is_drawn_where_the_meta_says_in_the_box_colour() {
    let red = 0xffff0000u32;
    let props = [
        ("box-color", red.to_value()),
        ("line-width", 4u32.to_value()),
        ("show-landmarks", false.to_value()),
    ];
    let (before, after) = run("RGBA", &props, [Some(&happy()), None]);
    let px = |data: &[u8], x: u32, y: u32| {
        let at = ((y * W + x) * 4) as usize;
        [data[at], data[at + 1], data[at + 2]]
    };
    let [x1, y1, x2, y2] = boxes()[0];
    let (mx, my) = ((x1 + x2) / 2, (y1 + y2) / 2);
    // All four sides, their outermost and innermost line pixels, are the box colour.
    for (x, y) in [
        (x1, my),
        (x1 + 3, my),
        (x2 - 1, my),
        (x2 - 4, my),
        (mx, y1),
        (mx, y1 + 3),
        (mx, y2 - 1),
        (mx, y2 - 4),
    ] {
        let got = px(&after, x, y);
        for (c, want) in got.iter().zip([255u8, 0, 0]) {
            assert!(
                c.abs_diff(want) <= 2,
                "pixel ({x}, {y}) is {got:?}, not the box colour (255, 0, 0)"
            );
        }
    }
    // Just outside the box and just inside the line the frame is as it was.
    for (x, y) in [
        (x1 - 1, my),
        (x1 + 4, my),
        (x2, my),
        (x2 - 5, my),
        (mx, y1 - 1),
        (mx, y1 + 4),
    ] {
        assert_eq!(
            px(&after, x, y),
            px(&before, x, y),
            "pixel ({x}, {y}) beside the line changed"
        );
    }
    // In I420 the line's luma is red's as gst_video_blend converts overlay colours, with
    // BT.709 coefficients in limited range: Y = 16 + 219 x 0.2126.
    let (before, after) = run("I420", &props, [Some(&happy()), None]);
    let want = 16.0 + 219.0 * 0.2126;
    for (x, y) in [(x1 + 1, my), (x2 - 2, my), (mx, y1 + 1), (mx, y2 - 2)] {
        let at = (y * info("I420").stride()[0] as u32 + x) as usize;
        assert!(
            (after[at] as f64 - want).abs() <= 3.0,
            "I420 luma at ({x}, {y}) is {}, red's is {want:.1}",
            after[at]
        );
        assert_ne!(before[at], after[at]);
    }
}

#[test]
fn each_part_adds_pixels_and_only_show_box_draws_only_the_box() {
    let r = happy();
    let all_off = |keep: &str| -> Vec<(&'static str, glib::Value)> {
        [
            "show-box",
            "show-id",
            "show-expression",
            "show-va",
            "show-aus",
            "show-landmarks",
        ]
        .into_iter()
        .map(|p| (p, (p == keep).to_value()))
        .collect()
    };
    for format in ["RGBA", "NV12"] {
        let count = |props: &[(&str, glib::Value)]| {
            let (before, after) = run(format, props, [Some(&r), Some(&r)]);
            changed(format, &before, &after)
        };
        let everything = count(&[]).len();
        let box_only = count(&all_off("show-box"));
        assert!(!box_only.is_empty());
        assert_confined(format, &box_only, &boxes());
        // Only the outline: the box's inside is untouched.
        for b in boxes() {
            let inside = [b[0] + 10, b[1] + 10, b[2] - 10, b[3] - 10];
            assert_eq!(
                count_in(&box_only, inside),
                0,
                "{format}: box inside changed"
            );
        }
        assert!(
            box_only.len() < everything,
            "{format}: box only {} vs everything {everything}",
            box_only.len()
        );
        // Each label part alone draws something, under the boxes, and less than everything.
        for part in ["show-id", "show-expression", "show-va", "show-aus"] {
            let blocks = count(&all_off(part));
            assert_confined(format, &blocks, &label_zones());
            assert!(
                !blocks.is_empty() && blocks.len() < everything,
                "{format}: {part} alone changed {} of {everything}",
                blocks.len()
            );
        }
        let nothing = count(&all_off("none"));
        assert!(nothing.is_empty(), "{format}: all parts off still drew");
    }
}

#[test]
fn au_threshold_and_missing_results_shrink_the_labels() {
    let r = happy();
    let labelled = |props: &[(&str, glib::Value)], results: [Option<&AffectResult>; 2]| {
        let (before, after) = run("RGBA", props, results);
        let blocks = changed("RGBA", &before, &after);
        count_in(&blocks, label_zones()[0])
    };
    let default = labelled(&[], [Some(&r), Some(&r)]);
    // No AU of `happy` reaches 0.99: the AU line goes.
    let strict = labelled(&[("au-threshold", 0.99.to_value())], [Some(&r), Some(&r)]);
    assert!(strict < default, "au-threshold 0.99: {strict} vs {default}");
    // A face without results gets its box and id only.
    let bare = labelled(&[], [None, Some(&r)]);
    assert!(bare > 0 && bare < strict, "no results: {bare} vs {strict}");
}

#[test]
fn labels_go_above_faces_at_the_bottom_of_the_frame() {
    let format = "RGBA";
    let mut h = harness(format, &[]);
    let mut buf = noise_frame(format);
    let before = buf.map_readable().unwrap().to_vec();
    let (x1, y1, x2, y2) = (440u32, 250u32, 540u32, 350u32);
    let bottom = Face {
        bbox: [x1 as f32, y1 as f32, x2 as f32, y2 as f32],
        track_id: 5,
        score: 0.9,
        landmarks: None,
    };
    add_face(buf.get_mut().unwrap(), &bottom, Some(&happy()));
    let out = h.push_and_pull(buf).unwrap();
    let blocks = changed(format, &before, &out.map_readable().unwrap());
    // No room under the box: the panel sits on it, inside the frame, ending at the box's
    // right edge or before (the frame ends 20 pixels after it).
    let above = [0, y1 - (y2 - y1), W, y1];
    assert_confined(format, &blocks, &[[x1, y1, x2, y2], above]);
    assert!(count_in(&blocks, above) > 2000);
}

#[test]
fn different_expressions_draw_different_labels() {
    let sad = result(5, [0.7, 0.4], &[(3, 0.9), (6, 0.95), (10, 0.6)]);
    for format in ["RGBA", "I420"] {
        let (_, happy_out) = run(format, &[], [Some(&happy()), Some(&happy())]);
        let (_, sad_out) = run(format, &[], [Some(&sad), Some(&happy())]);
        let blocks = changed(format, &happy_out, &sad_out);
        let zone = label_zones()[0];
        assert!(
            count_in(&blocks, zone) > 50,
            "{format}: Happiness and Sadness labels differ in only {} samples",
            count_in(&blocks, zone)
        );
        // Only the first face's label differs.
        assert_confined(format, &blocks, &[zone]);
    }
}

#[test]
fn attaches_the_composition_when_downstream_takes_it() {
    let r = happy();
    let format = "RGBA";
    init();
    let mut h = Harness::new("affectoverlay");
    let feature = gst_video::CAPS_FEATURE_META_GST_VIDEO_OVERLAY_COMPOSITION;
    let mut meta_caps = caps(format);
    meta_caps.make_mut().set_features(
        0,
        Some(gst::CapsFeatures::new([
            gst::CAPS_FEATURE_MEMORY_SYSTEM_MEMORY,
            feature,
        ])),
    );
    h.set_sink_caps(meta_caps);
    h.add_propose_allocation_meta(VideoOverlayCompositionMeta::meta_api(), None);
    h.set_src_caps(caps(format));
    let mut buf = noise_frame(format);
    let before = buf.map_readable().unwrap().to_vec();
    for i in 0..2 {
        add_face(buf.get_mut().unwrap(), &face(i), Some(&r));
    }
    let mut out = h.push_and_pull(buf).unwrap();
    assert_eq!(
        out.map_readable().unwrap().as_slice(),
        before.as_slice(),
        "the frame was drawn on although downstream takes the meta"
    );
    let composition = out
        .meta::<VideoOverlayCompositionMeta>()
        .expect("an overlay composition meta")
        .overlay_owned();
    // Per face: the box, five landmarks and the label panel.
    assert_eq!(composition.n_rectangles(), 2 * 7);
    // Blending it gives what the element draws itself.
    let (_, blended) = run(format, &[], [Some(&r), Some(&r)]);
    let info = info(format);
    let out = out.make_mut();
    let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(out, &info).unwrap();
    composition.blend(&mut frame).unwrap();
    drop(frame);
    assert_eq!(out.map_readable().unwrap().as_slice(), blended.as_slice());
}

/// Draws two synthetic faces with results, writes `target/overlay-preview.png` to look at.
#[test]
fn renders_a_preview_of_synthetic_faces() {
    use affect_synth::face::{self, Identity, Lighting, Pose};
    use affect_synth::raster::Canvas;
    use affect_synth::rng::Rng;
    use affect_synth::world::{CIRCUMPLEX, PROTOTYPES};

    let (w, h) = (640u32, 400u32);
    let mut canvas = Canvas::new(w, h);
    canvas.fill(
        [0.0, 0.0, w as f32, h as f32],
        1.0,
        |_, _| -1.0,
        |x, y| {
            [
                70.0 + 60.0 * x / w as f32,
                90.0,
                120.0 - 40.0 * y / h as f32,
            ]
        },
    );
    let mut rng = Rng::new(7);
    let mut faces = Vec::new();
    for (i, (expression, cx)) in [(4usize, 170.0f32), (6, 470.0)].into_iter().enumerate() {
        let id = Identity::random(&mut rng);
        let intensity: [f32; N_AUS] =
            std::array::from_fn(|k| (PROTOTYPES[expression][k] * id.au_gain[k]).min(1.0));
        let pose = Pose {
            cx,
            cy: 150.0,
            scale: 62.0,
            roll: 0.0,
            yaw: 0.0,
        };
        let g = face::render(&mut canvas, &id, &pose, &Lighting::default(), &intensity);
        let [x, y, bw, bh] = g.bbox;
        let aus: Vec<(usize, f32)> = intensity.iter().copied().enumerate().collect();
        faces.push((
            Face {
                bbox: [x, y, x + bw, y + bh],
                track_id: i as u64 + 1,
                score: 0.97,
                landmarks: Some(g.landmarks),
            },
            result(expression, CIRCUMPLEX[expression], &aus),
        ));
    }
    init();
    let mut hn = Harness::new("affectoverlay");
    hn.set_src_caps(
        gst::Caps::builder("video/x-raw")
            .field("format", "RGB")
            .field("width", w as i32)
            .field("height", h as i32)
            .field("framerate", gst::Fraction::new(25, 1))
            .build(),
    );
    let mut buf = gst::Buffer::from_mut_slice(canvas.data.clone());
    for (f, r) in &faces {
        let b = buf.get_mut().unwrap();
        f.attach(b, w, h);
        let mut meta = b
            .iter_meta_mut::<VideoRegionOfInterestMeta>()
            .find(|m| m.id() == f.track_id as i32)
            .unwrap();
        meta.add_param(r.to_structure());
    }
    let out = hn.push_and_pull(buf).unwrap();
    let data = out.map_readable().unwrap().to_vec();
    // Something was drawn under each face, where its label goes.
    for (f, _) in &faces {
        let (x0, y0) = (f.bbox[0] as u32 + 4, f.bbox[3] as u32 + 4);
        let differs = (y0..y0 + 20)
            .flat_map(|y| (x0..x0 + 60).map(move |x| ((y * w + x) * 3) as usize))
            .filter(|&at| data[at..at + 3] != canvas.data[at..at + 3])
            .count();
        assert!(differs > 200, "label of face {} barely drawn", f.track_id);
    }
    // Cargo's scratch folder for integration tests is `<target>/tmp`: the preview goes next
    // to it, whatever the target folder is.
    let scratch = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = scratch
        .parent()
        .unwrap_or(scratch)
        .join("overlay-preview.png");
    image::RgbImage::from_raw(w, h, data)
        .unwrap()
        .save(&path)
        .unwrap();
    eprintln!("preview: {}", path.display());
}
