// SPDX-License-Identifier: MPL-2.0
//! A procedural face: identity (what stays the same for a person), pose, and the 12 action
//! unit intensities that move its parts. Geometry lives in face-local units (half the head's
//! width = 1, y down, origin between eyes and mouth); a pose places it in the frame.
//!
//! The AUs act where FACS says they act, strongly enough to be read from a 112x112 crop:
//! AU1/AU2 raise the inner/outer brows (and wrinkle the forehead), AU4 lowers and knits them
//! (vertical lines between them), AU6 lifts the cheeks and the lower lids (crow's feet),
//! AU7 tightens the lids, AU10 raises the upper lip (deepening the nasolabial folds),
//! AU12 pulls the lip corners out and up, AU15 pulls them down, AU23 narrows and thins the
//! lips, AU24 presses them thin, AU25 parts them, AU26 drops the jaw.

use super::raster::{Canvas, Rgb, bounds, dist_polyline, quad_bezier, sd_ellipse};
use crate::rng::Rng;
use affect_core::labels::N_AUS;

/// AU indices in `affect_core::labels::AU_LABELS` order.
pub mod au {
    pub const AU1: usize = 0;
    pub const AU2: usize = 1;
    pub const AU4: usize = 2;
    pub const AU6: usize = 3;
    pub const AU7: usize = 4;
    pub const AU10: usize = 5;
    pub const AU12: usize = 6;
    pub const AU15: usize = 7;
    pub const AU23: usize = 8;
    pub const AU24: usize = 9;
    pub const AU25: usize = 10;
    pub const AU26: usize = 11;
}

/// What stays fixed for one person.
#[derive(Clone, Debug)]
pub struct Identity {
    pub skin: Rgb,
    pub hair: Rgb,
    pub lips: Rgb,
    pub iris: Rgb,
    pub brow: Rgb,
    /// Head height over width.
    pub aspect: f32,
    pub eye_spacing: f32,
    pub eye_y: f32,
    pub eye_size: f32,
    pub brow_height: f32,
    pub brow_thickness: f32,
    pub nose_y: f32,
    pub mouth_y: f32,
    pub mouth_width: f32,
    pub lip_thickness: f32,
    /// 0 short hair, 1 long hair, 2 receding hairline.
    pub hair_style: u8,
    pub hairline: f32,
    /// Gaze offset of the irises, in eye half-widths.
    pub gaze: [f32; 2],
    /// How strongly this person's face moves for each AU of an expression (individual
    /// variation; the world multiplies it in before rendering and labelling).
    pub au_gain: [f32; N_AUS],
}

fn lerp3(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn scale3(c: Rgb, k: f32) -> Rgb {
    [c[0] * k, c[1] * k, c[2] * k]
}

impl Identity {
    pub fn random(rng: &mut Rng) -> Identity {
        // Skin tones from light to dark along a natural ramp.
        let tone = rng.uniform();
        let skin = lerp3([244.0, 214.0, 190.0], [96.0, 62.0, 42.0], tone);
        let skin = [
            skin[0] * rng.range(0.95, 1.05),
            skin[1] * rng.range(0.95, 1.05),
            skin[2] * rng.range(0.93, 1.05),
        ];
        let hairs: [Rgb; 6] = [
            [30.0, 24.0, 20.0],
            [70.0, 45.0, 28.0],
            [120.0, 80.0, 45.0],
            [200.0, 160.0, 100.0],
            [150.0, 60.0, 30.0],
            [170.0, 170.0, 170.0],
        ];
        let hair = hairs[rng.below(hairs.len())];
        let lips = lerp3(skin, [170.0, 60.0, 70.0], rng.range(0.45, 0.7));
        let irises: [Rgb; 4] = [
            [70.0, 45.0, 25.0],
            [40.0, 90.0, 140.0],
            [70.0, 110.0, 60.0],
            [35.0, 25.0, 20.0],
        ];
        let iris = irises[rng.below(irises.len())];
        let brow = lerp3(hair, [25.0, 20.0, 18.0], rng.range(0.3, 0.8));
        let mut au_gain = [1.0; N_AUS];
        for g in &mut au_gain {
            *g = rng.range(0.85, 1.15);
        }
        Identity {
            skin,
            hair,
            lips,
            iris,
            brow,
            aspect: rng.range(1.22, 1.4),
            eye_spacing: rng.range(0.36, 0.42),
            eye_y: rng.range(-0.2, -0.12),
            eye_size: rng.range(0.9, 1.1),
            brow_height: rng.range(0.25, 0.31),
            brow_thickness: rng.range(0.04, 0.06),
            nose_y: rng.range(0.3, 0.36),
            mouth_y: rng.range(0.72, 0.8),
            mouth_width: rng.range(0.28, 0.34),
            lip_thickness: rng.range(0.85, 1.2),
            hair_style: rng.below(3) as u8,
            hairline: rng.range(-0.8, -0.66),
            gaze: [rng.range(-0.25, 0.25), rng.range(-0.15, 0.15)],
            au_gain,
        }
    }
}

/// Where and how a face sits in the frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pose {
    /// Frame position of the face-local origin, pixels.
    pub cx: f32,
    pub cy: f32,
    /// Pixels per face-local unit (half the head's width).
    pub scale: f32,
    /// In-plane rotation, radians (clockwise on screen).
    pub roll: f32,
    /// Turn of the head, radians: squashes the face horizontally and shifts parts that stand
    /// out from it (nose most) towards the turn.
    pub yaw: f32,
}

/// Per-face lighting: overall brightness and a linear gradient across the face.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lighting {
    pub brightness: f32,
    pub gradient: [f32; 2],
}

impl Default for Lighting {
    fn default() -> Self {
        Lighting {
            brightness: 1.0,
            gradient: [0.0, 0.0],
        }
    }
}

/// Where the renderer put a face: its box and 5 landmarks in frame pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaceGeometry {
    /// `[x, y, w, h]` of the head (chin to crown, ear-less outline).
    pub bbox: [f32; 4],
    /// Eye centres (image-left first), nose tip, mouth corners (image-left first).
    pub landmarks: [[f32; 2]; 5],
}

/// Face-local positions of the moving parts for one set of AU intensities.
#[derive(Clone, Debug)]
struct Shape {
    head_rx: f32,
    head_ry_up: f32,
    head_ry_low: f32,
    /// Per eye (image-left first): centre, half-width, upper and lower opening.
    eyes: [([f32; 2], f32, f32, f32); 2],
    /// Per brow: inner, middle, outer point.
    brows: [[[f32; 2]; 3]; 2],
    nose_tip: [f32; 2],
    mouth: Mouth,
    cheek_lift: f32,
}

#[derive(Clone, Copy, Debug)]
struct Mouth {
    half_width: f32,
    corner_y: f32,
    upper_outer: f32,
    upper_inner: f32,
    lower_inner: f32,
    lower_outer: f32,
}

impl Mouth {
    /// A lip curve through both corners and the centre value `centre` (parabolic).
    fn curve(&self, centre: f32, x: f32) -> f32 {
        let t = (x / self.half_width).clamp(-1.0, 1.0);
        centre + (self.corner_y - centre) * t * t
    }

    fn open(&self) -> f32 {
        self.lower_inner - self.upper_inner
    }
}

fn shape(id: &Identity, intensity: &[f32; N_AUS]) -> Shape {
    let u = |k: usize| intensity[k].clamp(0.0, 1.2);
    use au::*;
    let jaw = 0.2 * u(AU26);
    let head_rx = 1.0;
    let head_ry = id.aspect;
    let eye_open_boost = 1.0 + 0.25 * u(AU1).max(u(AU2));
    let mut eyes = [([0.0; 2], 0.0, 0.0, 0.0); 2];
    for (i, e) in eyes.iter_mut().enumerate() {
        let side = if i == 0 { -1.0 } else { 1.0 };
        let half_width = 0.19 * id.eye_size;
        let upper =
            0.1 * id.eye_size * eye_open_boost * (1.0 - 0.4 * u(AU7)) * (1.0 - 0.2 * u(AU6));
        let lower = 0.075 * id.eye_size * (1.0 - 0.65 * u(AU6)) * (1.0 - 0.5 * u(AU7));
        *e = (
            [side * id.eye_spacing, id.eye_y],
            half_width,
            upper.max(0.012),
            lower.max(0.008),
        );
    }
    let mut brows = [[[0.0; 2]; 3]; 2];
    let base = id.eye_y - id.brow_height;
    for (i, b) in brows.iter_mut().enumerate() {
        let side = if i == 0 { -1.0 } else { 1.0 };
        let inner = [
            side * (0.13 - 0.05 * u(AU4)),
            base - 0.15 * u(AU1) + 0.1 * u(AU4) + 0.02,
        ];
        let mid = [
            side * (id.eye_spacing - 0.01),
            base - 0.07 * u(AU1) - 0.1 * u(AU2) + 0.07 * u(AU4) - 0.05,
        ];
        let outer = [
            side * (id.eye_spacing + 0.24),
            base - 0.15 * u(AU2) + 0.03 * u(AU4),
        ];
        *b = [inner, mid, outer];
    }
    let mouth_y = id.mouth_y;
    let open = 0.08 * u(AU25) + 0.2 * u(AU26);
    let half_width = (id.mouth_width + 0.11 * u(AU12)
        - 0.09 * u(AU23)
        - 0.035 * u(AU24)
        - 0.02 * u(AU15)
        - 0.03 * u(AU26))
    .max(0.12);
    let corner_y = mouth_y - 0.13 * u(AU12) + 0.1 * u(AU15) + 0.3 * jaw;
    let thick = id.lip_thickness * (1.0 - 0.5 * u(AU23) - 0.55 * u(AU24)).max(0.25);
    let upper_inner = mouth_y - 0.25 * open - 0.065 * u(AU10);
    let lower_inner = mouth_y + 0.75 * open;
    let mouth = Mouth {
        half_width,
        corner_y,
        upper_outer: upper_inner - 0.06 * thick - 0.02 * u(AU10),
        upper_inner,
        lower_inner,
        lower_outer: lower_inner + 0.085 * thick,
    };
    Shape {
        head_rx,
        head_ry_up: head_ry,
        head_ry_low: head_ry + 0.9 * jaw,
        eyes,
        brows,
        nose_tip: [0.0, id.nose_y],
        mouth,
        cheek_lift: 0.08 * u(AU6),
    }
}

/// Depths (how far a part stands out of the face plane) used for the yaw shift.
const DEPTH_EYES: f32 = 0.3;
const DEPTH_BROWS: f32 = 0.35;
const DEPTH_NOSE: f32 = 0.6;
const DEPTH_MOUTH: f32 = 0.35;
const DEPTH_CHEEKS: f32 = 0.25;

/// Face-local <-> frame mapping of a pose.
#[derive(Clone, Copy, Debug)]
struct Placement {
    cx: f32,
    cy: f32,
    scale: f32,
    cos_r: f32,
    sin_r: f32,
    cos_y: f32,
    sin_y: f32,
}

impl Placement {
    fn new(p: &Pose) -> Self {
        Placement {
            cx: p.cx,
            cy: p.cy,
            scale: p.scale,
            cos_r: p.roll.cos(),
            sin_r: p.roll.sin(),
            cos_y: p.yaw.cos(),
            sin_y: p.yaw.sin(),
        }
    }

    fn frame_point(&self, [x, y]: [f32; 2], depth: f32) -> [f32; 2] {
        let xs = x * self.cos_y + depth * self.sin_y;
        let (u, v) = (xs * self.scale, y * self.scale);
        [
            self.cx + u * self.cos_r - v * self.sin_r,
            self.cy + u * self.sin_r + v * self.cos_r,
        ]
    }

    fn local_point(&self, px: f32, py: f32, depth: f32) -> [f32; 2] {
        let (dx, dy) = (px - self.cx, py - self.cy);
        let u = (dx * self.cos_r + dy * self.sin_r) / self.scale;
        let v = (-dx * self.sin_r + dy * self.cos_r) / self.scale;
        [(u - depth * self.sin_y) / self.cos_y, v]
    }

    /// Pixels per local unit of distance (geometric mean of the squashed axes).
    fn pixel_scale(&self) -> f32 {
        self.scale * self.cos_y.sqrt()
    }

    fn frame_box(&self, local: [f32; 4], depth: f32) -> [f32; 4] {
        let corners = [
            [local[0], local[1]],
            [local[2], local[1]],
            [local[0], local[3]],
            [local[2], local[3]],
        ]
        .map(|p| self.frame_point(p, depth));
        bounds(&corners)
    }
}

/// Draws one part: shape and colour in face-local units, at a depth.
struct Painter<'a> {
    canvas: &'a mut Canvas,
    at: Placement,
    light: Lighting,
}

fn shading(l: &Lighting, [x, y]: [f32; 2]) -> f32 {
    l.brightness
        * (1.0 + l.gradient[0] * x + l.gradient[1] * y)
        * (1.0 - 0.12 * (x * x + 0.4 * y * y)).max(0.6)
}

impl Painter<'_> {
    fn draw(
        &mut self,
        depth: f32,
        local_box: [f32; 4],
        alpha: f32,
        sd: impl Fn([f32; 2]) -> f32,
        colour: impl Fn([f32; 2]) -> Rgb,
    ) {
        let (at, light) = (self.at, self.light);
        let px = at.pixel_scale();
        let bbox = at.frame_box(local_box, depth);
        self.canvas.fill(
            bbox,
            alpha,
            |x, y| sd(at.local_point(x, y, depth)) * px,
            |x, y| {
                let p = at.local_point(x, y, depth);
                scale3(colour(p), shading(&light, p))
            },
        );
    }
}

/// Face box and landmarks for a pose and AU intensities, without drawing.
pub fn geometry(id: &Identity, pose: &Pose, intensity: &[f32; N_AUS]) -> FaceGeometry {
    let s = shape(id, intensity);
    geometry_of(&s, &Placement::new(pose))
}

fn geometry_of(s: &Shape, at: &Placement) -> FaceGeometry {
    let mut outline = [[0.0f32; 2]; 32];
    for (i, p) in outline.iter_mut().enumerate() {
        let a = i as f32 / 32.0 * std::f32::consts::TAU;
        let (c, sn) = (a.cos(), a.sin());
        let ry = if sn < 0.0 {
            s.head_ry_up
        } else {
            s.head_ry_low
        };
        *p = at.frame_point([s.head_rx * c, ry * sn], 0.0);
    }
    let b = bounds(&outline);
    let m = &s.mouth;
    FaceGeometry {
        bbox: [b[0], b[1], b[2] - b[0], b[3] - b[1]],
        landmarks: [
            at.frame_point(s.eyes[0].0, DEPTH_EYES),
            at.frame_point(s.eyes[1].0, DEPTH_EYES),
            at.frame_point(s.nose_tip, DEPTH_NOSE),
            at.frame_point([-m.half_width, m.corner_y], DEPTH_MOUTH),
            at.frame_point([m.half_width, m.corner_y], DEPTH_MOUTH),
        ],
    }
}

fn stroke(points: &[[f32; 2]], half_width: f32) -> impl Fn([f32; 2]) -> f32 + '_ {
    move |p| dist_polyline(p, points) - half_width
}

fn pad(b: [f32; 4], m: f32) -> [f32; 4] {
    [b[0] - m, b[1] - m, b[2] + m, b[3] + m]
}

/// Draws the face and returns where it is.
pub fn render(
    canvas: &mut Canvas,
    id: &Identity,
    pose: &Pose,
    light: &Lighting,
    intensity: &[f32; N_AUS],
) -> FaceGeometry {
    use au::*;
    let s = shape(id, intensity);
    let at = Placement::new(pose);
    let u = |k: usize| intensity[k].clamp(0.0, 1.2);
    let mut p = Painter {
        canvas,
        at,
        light: *light,
    };
    let skin = id.skin;
    let dark = scale3(skin, 0.55);
    let (rx, ryu, ryl) = (s.head_rx, s.head_ry_up, s.head_ry_low);
    let head_sd = move |q: [f32; 2]| {
        let ry = if q[1] < 0.0 { ryu } else { ryl };
        sd_ellipse(q[0], q[1], rx, ry)
    };

    // Hair behind the head (long styles), neck, ears, head.
    if id.hair_style == 1 {
        p.draw(
            -0.2,
            [-1.35, -1.5, 1.35, 1.6],
            1.0,
            |q| sd_ellipse(q[0], q[1] - 0.15, 1.28, 1.55).max(q[1] - 1.3),
            |_| id.hair,
        );
    }
    p.draw(
        -0.1,
        [-0.6, 0.5, 0.6, 3.2],
        1.0,
        |q| (q[0].abs() - 0.5).max(0.6 - q[1]),
        |_| scale3(skin, 0.85),
    );
    for side in [-1.0f32, 1.0] {
        p.draw(
            -0.3,
            [side * 1.0 - 0.2, -0.4, side * 1.0 + 0.2, 0.35],
            1.0,
            move |q| sd_ellipse(q[0] - side * 0.98, q[1] + 0.02, 0.12, 0.24),
            |_| scale3(skin, 0.9),
        );
    }
    p.draw(
        0.0,
        [-1.05, -ryu - 0.05, 1.05, ryl + 0.05],
        1.0,
        head_sd,
        |_| skin,
    );

    // Cheeks: a raised, flushed highlight with AU6.
    let cheek = lerp3(scale3(skin, 1.06), [225.0, 120.0, 120.0], 0.18);
    for side in [-1.0f32, 1.0] {
        let cy = 0.22 - 2.0 * s.cheek_lift;
        p.draw(
            DEPTH_CHEEKS,
            [side * 0.5 - 0.3, cy - 0.25, side * 0.5 + 0.3, cy + 0.25],
            0.12 + 0.5 * u(AU6),
            move |q| sd_ellipse(q[0] - side * 0.5, q[1] - cy, 0.24, 0.15) + 0.04,
            move |_| cheek,
        );
    }

    // Nasolabial folds: from the nose wings towards the mouth corners.
    let m = s.mouth;
    let fold_alpha = (0.15 + 0.6 * u(AU10).max(0.8 * u(AU12)).max(0.4 * u(AU6))).min(0.85);
    let folds: [[[f32; 2]; 8]; 2] = [-1.0f32, 1.0].map(|side| {
        quad_bezier(
            [side * 0.17, id.nose_y + 0.02 - 0.3 * u(AU10) * 0.1],
            [side * (m.half_width + 0.12), id.nose_y + 0.15],
            [side * (m.half_width + 0.07), m.corner_y + 0.1],
        )
    });
    for f in &folds {
        let b = pad(bounds(f), 0.05);
        p.draw(DEPTH_MOUTH, b, fold_alpha, stroke(f, 0.014), |_| {
            scale3(skin, 0.7)
        });
    }

    // Forehead lines with raised brows; vertical lines between knitted brows.
    let raise = u(AU1).max(u(AU2));
    if raise > 0.05 {
        for k in 0..3 {
            let y = id.eye_y - id.brow_height - 0.2 - 0.09 * k as f32;
            let line: [[f32; 2]; 8] =
                quad_bezier([-0.42, y + 0.03], [0.0, y - 0.04], [0.42, y + 0.03]);
            p.draw(
                DEPTH_BROWS,
                pad(bounds(&line), 0.04),
                0.7 * raise,
                stroke(&line, 0.011),
                |_| dark,
            );
        }
    }
    if u(AU4) > 0.05 {
        for side in [-1.0f32, 1.0] {
            let top = id.eye_y - id.brow_height - 0.05;
            let line = [[side * 0.05, top], [side * 0.065, top + 0.14]];
            p.draw(
                DEPTH_BROWS,
                pad(bounds(&line), 0.04),
                0.8 * u(AU4),
                stroke(&line, 0.013),
                |_| dark,
            );
        }
    }

    // Eyes.
    for (i, &(c, hw, up, low)) in s.eyes.iter().enumerate() {
        let eye_sd = move |q: [f32; 2]| {
            let (dx, dy) = (q[0] - c[0], q[1] - c[1]);
            let ry = if dy < 0.0 { up } else { low };
            sd_ellipse(dx, dy, hw, ry)
        };
        let b = [
            c[0] - hw - 0.08,
            c[1] - up - 0.08,
            c[0] + hw + 0.08,
            c[1] + low + 0.08,
        ];
        // Lid shadow under the brow bone, then the eye white.
        p.draw(
            DEPTH_EYES,
            pad(b, 0.05),
            0.3,
            move |q| sd_ellipse(q[0] - c[0], q[1] - c[1] + 0.02, hw + 0.05, up + 0.06),
            move |_| scale3(skin, 0.85),
        );
        p.draw(DEPTH_EYES, b, 1.0, eye_sd, |_| [238.0, 234.0, 228.0]);
        let ic = [c[0] + id.gaze[0] * hw * 0.5, c[1] + id.gaze[1] * 0.05];
        let ir = 0.085 * id.eye_size;
        p.draw(
            DEPTH_EYES,
            b,
            1.0,
            move |q| sd_ellipse(q[0] - ic[0], q[1] - ic[1], ir, ir).max(eye_sd(q)),
            |_| id.iris,
        );
        p.draw(
            DEPTH_EYES,
            b,
            1.0,
            move |q| sd_ellipse(q[0] - ic[0], q[1] - ic[1], 0.4 * ir, 0.4 * ir).max(eye_sd(q)),
            |_| [15.0, 12.0, 12.0],
        );
        // Upper lid with lashes (thicker when tightened) and lower lid line.
        let lid_w = 0.016 + 0.014 * u(AU7);
        p.draw(
            DEPTH_EYES,
            b,
            1.0,
            move |q| {
                let (dx, dy) = (q[0] - c[0], q[1] - c[1]);
                (sd_ellipse(dx, dy, hw, up).abs() - lid_w).max(dy - 0.01)
            },
            |_| [35.0, 25.0, 22.0],
        );
        let low_w = 0.008 + 0.01 * u(AU7) + 0.006 * u(AU6);
        p.draw(
            DEPTH_EYES,
            b,
            0.8,
            move |q| {
                let (dx, dy) = (q[0] - c[0], q[1] - c[1]);
                (sd_ellipse(dx, dy, hw, low).abs() - low_w).max(-dy)
            },
            move |_| scale3(skin, 0.5),
        );
        // Lower-lid bulge raised by AU6/AU7.
        let bulge = u(AU6).max(0.7 * u(AU7));
        if bulge > 0.05 {
            let y = c[1] + low + 0.05;
            let arc: [[f32; 2]; 8] = quad_bezier(
                [c[0] - hw * 0.8, y - 0.02],
                [c[0], y + 0.05],
                [c[0] + hw * 0.8, y - 0.02],
            );
            p.draw(
                DEPTH_EYES,
                pad(bounds(&arc), 0.04),
                0.6 * bulge,
                stroke(&arc, 0.012),
                move |_| scale3(skin, 0.72),
            );
        }
        // Crow's feet at the outer corner with AU6.
        if u(AU6) > 0.05 {
            let side = if i == 0 { -1.0 } else { 1.0 };
            let ox = c[0] + side * (hw + 0.05);
            for k in -1..=1 {
                let kf = k as f32;
                let line = [
                    [ox, c[1] + 0.03 * kf],
                    [ox + side * 0.1, c[1] + 0.07 * kf + 0.01],
                ];
                p.draw(
                    DEPTH_EYES,
                    pad(bounds(&line), 0.03),
                    0.75 * u(AU6),
                    stroke(&line, 0.01),
                    |_| dark,
                );
            }
        }
    }

    // Brows: a curve through inner, middle and outer points.
    for b in &s.brows {
        let control = [
            2.0 * b[1][0] - 0.5 * (b[0][0] + b[2][0]),
            2.0 * b[1][1] - 0.5 * (b[0][1] + b[2][1]),
        ];
        let pts: [[f32; 2]; 12] = quad_bezier(b[0], control, b[2]);
        p.draw(
            DEPTH_BROWS,
            pad(bounds(&pts), 0.1),
            1.0,
            stroke(&pts, id.brow_thickness),
            |_| id.brow,
        );
    }

    // Nose: bridge shading, tip highlight, wings, nostrils.
    let ny = id.nose_y;
    for side in [-1.0f32, 1.0] {
        let line = [[side * 0.07, id.eye_y + 0.05], [side * 0.1, ny - 0.06]];
        p.draw(
            DEPTH_NOSE,
            pad(bounds(&line), 0.04),
            0.3,
            stroke(&line, 0.012),
            move |_| scale3(skin, 0.75),
        );
        p.draw(
            DEPTH_NOSE,
            [side * 0.12 - 0.1, ny - 0.1, side * 0.12 + 0.1, ny + 0.1],
            0.55,
            move |q| sd_ellipse(q[0] - side * 0.12, q[1] - ny + 0.01, 0.055, 0.055).abs() - 0.01,
            move |_| scale3(skin, 0.7),
        );
        p.draw(
            DEPTH_NOSE,
            [side * 0.08 - 0.08, ny - 0.05, side * 0.08 + 0.08, ny + 0.08],
            1.0,
            move |q| sd_ellipse(q[0] - side * 0.075, q[1] - ny - 0.035, 0.042, 0.024),
            move |_| scale3(skin, 0.35),
        );
    }
    p.draw(
        DEPTH_NOSE,
        [-0.1, ny - 0.12, 0.1, ny + 0.05],
        0.45,
        move |q| sd_ellipse(q[0], q[1] - ny + 0.03, 0.06, 0.05),
        move |_| scale3(skin, 1.12),
    );

    // Mouth: lips, the opening with teeth, the line between the lips.
    let mb = [
        -m.half_width - 0.05,
        m.upper_outer.min(m.corner_y) - 0.05,
        m.half_width + 0.05,
        m.lower_outer.max(m.corner_y) + 0.05,
    ];
    let region = move |top: f32, bottom: f32| {
        move |q: [f32; 2]| {
            (m.curve(top, q[0]) - q[1])
                .max(q[1] - m.curve(bottom, q[0]))
                .max(q[0].abs() - m.half_width)
        }
    };
    p.draw(
        DEPTH_MOUTH,
        mb,
        1.0,
        region(m.upper_outer, m.lower_outer),
        |_| id.lips,
    );
    // Lower lip catches more light than the upper.
    p.draw(
        DEPTH_MOUTH,
        mb,
        0.35,
        region(m.lower_inner + 0.01, m.lower_outer - 0.025),
        |_| [255.0, 200.0, 190.0],
    );
    if m.open() > 0.006 {
        p.draw(
            DEPTH_MOUTH,
            mb,
            1.0,
            region(m.upper_inner, m.lower_inner),
            |_| [60.0, 18.0, 22.0],
        );
        let teeth_bottom = m.upper_inner + (0.06f32).min(m.open() * 0.8);
        let opening = region(m.upper_inner, m.lower_inner);
        let teeth = region(m.upper_inner, teeth_bottom);
        p.draw(
            DEPTH_MOUTH,
            mb,
            1.0,
            move |q| teeth(q).max(opening(q) + 0.004),
            |_| [240.0, 236.0, 225.0],
        );
    }
    let line_centre = m.upper_inner;
    p.draw(
        DEPTH_MOUTH,
        mb,
        0.9,
        move |q| {
            ((q[1] - m.curve(line_centre, q[0])).abs() - 0.01).max(q[0].abs() - m.half_width - 0.01)
        },
        |_| [70.0, 30.0, 30.0],
    );
    // Pressed lips bunch the chin.
    if u(AU24).max(u(AU15)) > 0.05 {
        let y = m.lower_outer + 0.13;
        let arc: [[f32; 2]; 8] = quad_bezier([-0.13, y], [0.0, y + 0.07], [0.13, y]);
        p.draw(
            DEPTH_MOUTH,
            pad(bounds(&arc), 0.04),
            0.7 * u(AU24).max(0.6 * u(AU15)),
            stroke(&arc, 0.012),
            |_| dark,
        );
    }

    // Hair over the top of the head.
    if id.hair_style != 2 || id.hairline < -0.7 {
        let hl = if id.hair_style == 2 {
            id.hairline - 0.2
        } else {
            id.hairline
        };
        let top = (rx, ryu);
        p.draw(
            0.0,
            [-1.15, -ryu - 0.2, 1.15, 0.2],
            1.0,
            move |q| {
                let e = sd_ellipse(q[0], q[1] + 0.02, top.0 * 1.07, top.1 * 1.07);
                e.max(q[1] - (hl + 0.5 * q[0] * q[0] * q[0].abs().sqrt()))
            },
            |_| id.hair,
        );
    }
    geometry_of(&s, &at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neutral_pose() -> Pose {
        Pose {
            cx: 100.0,
            cy: 110.0,
            scale: 60.0,
            roll: 0.0,
            yaw: 0.0,
        }
    }

    #[test]
    fn landmarks_follow_the_pose() {
        let id = Identity::random(&mut Rng::new(1));
        let a = geometry(&id, &neutral_pose(), &[0.0; N_AUS]);
        // Eyes level, left of right, nose between them, mouth below nose.
        let [le, re, nose, lm, rm] = a.landmarks;
        assert!((le[1] - re[1]).abs() < 1e-3 && le[0] < re[0]);
        assert!(le[0] < nose[0] && nose[0] < re[0] && nose[1] > le[1]);
        assert!(lm[1] > nose[1] && lm[0] < rm[0]);
        let rolled = Pose {
            roll: 0.3,
            ..neutral_pose()
        };
        let b = geometry(&id, &rolled, &[0.0; N_AUS]);
        let angle =
            (b.landmarks[1][1] - b.landmarks[0][1]).atan2(b.landmarks[1][0] - b.landmarks[0][0]);
        assert!((angle - 0.3).abs() < 1e-4, "{angle}");
    }

    #[test]
    fn painter_marks_pixels_inside_the_box() {
        let id = Identity::random(&mut Rng::new(2));
        let mut c = Canvas::new(200, 240);
        let g = render(
            &mut c,
            &id,
            &neutral_pose(),
            &Lighting::default(),
            &[0.0; N_AUS],
        );
        let [x, y, w, h] = g.bbox;
        let centre = ((y + h / 2.0) as usize * 200 + (x + w / 2.0) as usize) * 3;
        assert_ne!(&c.data[centre..centre + 3], &[0, 0, 0]);
        assert_eq!(&c.data[0..3], &[0, 0, 0]);
    }
}
