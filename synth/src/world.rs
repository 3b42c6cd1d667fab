// SPDX-License-Identifier: MPL-2.0
//! The synthetic affect world: who is in a video, what they express when, how they move, and
//! the labels that follow. Everything is a pure function of the seed and the video index.

use super::face::{self, FaceGeometry, Identity, Lighting, Pose};
use super::raster::{Canvas, Rgb, sd_ellipse};
use crate::rng::Rng;
use affect_core::labels::{N_AUS, N_EXPRESSIONS};

/// FACS-style AU prototype of each expression class (rows in `EXPRESSION_LABELS` order,
/// columns in `AU_LABELS` order: AU1 AU2 AU4 AU6 AU7 AU10 AU12 AU15 AU23 AU24 AU25 AU26).
pub const PROTOTYPES: [[f32; N_AUS]; N_EXPRESSIONS] = [
    // Neutral
    [0.0; N_AUS],
    // Anger: brows lowered and knitted, lids tightened, lips tightened.
    [0.0, 0.0, 1.0, 0.0, 0.9, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
    // Disgust: upper lip raised, corners down, brows slightly lowered.
    [0.0, 0.0, 0.5, 0.0, 0.0, 1.0, 0.0, 0.7, 0.0, 0.0, 0.0, 0.0],
    // Fear: brows raised and drawn together, lids tightened, lips parted.
    [1.0, 0.8, 0.8, 0.0, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    // Happiness: cheeks raised, lip corners pulled up, lips parted.
    [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.5, 0.0],
    // Sadness: inner brows raised and lowered, lip corners down.
    [1.0, 0.0, 0.8, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
    // Surprise: whole brows raised, lips parted, jaw dropped.
    [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0],
    // Other (sceptical): outer brows raised, lips pressed.
    [0.0, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
];

/// Position of each expression at full intensity on Russell's circumplex (valence, arousal).
pub const CIRCUMPLEX: [[f32; 2]; N_EXPRESSIONS] = [
    [0.0, 0.0],
    [-0.65, 0.75],
    [-0.7, 0.35],
    [-0.55, 0.85],
    [0.8, 0.45],
    [-0.7, -0.45],
    [0.35, 0.85],
    [-0.2, -0.15],
];

/// An AU occurs when its intensity reaches this.
pub const AU_THRESHOLD: f32 = 0.3;
/// A frame shows its episode's expression (else Neutral) when the expression's intensity
/// reaches this.
pub const EXPRESSION_THRESHOLD: f32 = 0.3;

/// One expression: rises, holds, falls.
#[derive(Clone, Debug)]
pub struct Episode {
    pub expression: usize,
    pub start: f32,
    pub rise: f32,
    pub hold: f32,
    pub fall: f32,
    pub peak: f32,
}

fn smoothstep(x: f32) -> f32 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

impl Episode {
    fn end(&self) -> f32 {
        self.start + self.rise + self.hold + self.fall
    }

    /// Intensity of the expression at time `t`.
    pub fn level(&self, t: f32) -> f32 {
        let dt = t - self.start;
        let env = if dt < 0.0 || t > self.end() {
            0.0
        } else if dt < self.rise {
            smoothstep(dt / self.rise)
        } else if dt < self.rise + self.hold {
            1.0
        } else {
            1.0 - smoothstep((dt - self.rise - self.hold) / self.fall)
        };
        env * self.peak
    }
}

/// Slow sinusoidal wander of one quantity.
#[derive(Clone, Copy, Debug)]
struct Wander {
    amplitude: f32,
    frequency: f32,
    phase: f32,
}

impl Wander {
    fn random(rng: &mut Rng, amplitude: f32) -> Self {
        Wander {
            amplitude: amplitude * rng.range(0.3, 1.0),
            frequency: rng.range(0.05, 0.35),
            phase: rng.range(0.0, std::f32::consts::TAU),
        }
    }

    fn at(&self, t: f32) -> f32 {
        self.amplitude * (std::f32::consts::TAU * self.frequency * t + self.phase).sin()
    }
}

/// Something passing in front of a face for a while (a hand, a cup).
#[derive(Clone, Debug)]
pub struct Occlusion {
    pub start: f32,
    pub end: f32,
    /// Offset from the face centre and radii, in face-local units.
    pub offset: [f32; 2],
    pub radii: [f32; 2],
    pub colour: Rgb,
    pub round: bool,
}

/// One person of a video.
#[derive(Clone, Debug)]
pub struct Person {
    /// Annotation name: the video name, with `_left`/`_right` in two-person videos.
    pub name: String,
    pub identity: Identity,
    pub episodes: Vec<Episode>,
    base: [f32; 3],
    wander: [Wander; 5],
    base_roll: f32,
    base_yaw: f32,
    pub lighting: Lighting,
    flicker: Wander,
    pub occlusions: Vec<Occlusion>,
    /// Speaking turns `(start, end)` in seconds.
    pub speech: Vec<(f32, f32)>,
    pub voice: Voice,
    va_noise: [Wander; 2],
}

/// The fixed properties of a person's voice.
#[derive(Clone, Copy, Debug)]
pub struct Voice {
    pub pitch_hz: f32,
    pub syllable_rate: f32,
}

/// Everything about a face in one frame.
#[derive(Clone, Debug)]
pub struct FaceState {
    pub pose: Pose,
    pub lighting: Lighting,
    pub intensity: [f32; N_AUS],
    pub au: [u8; N_AUS],
    pub expression: usize,
    pub valence: f32,
    pub arousal: f32,
    pub occlusion: Option<Occlusion>,
}

impl Person {
    fn random(rng: &mut Rng, name: String, slot: [f32; 3], seconds: f32) -> Person {
        let identity = Identity::random(rng);
        let mut episodes = Vec::new();
        let mut t = rng.range(0.1, 0.8);
        while t < seconds {
            let e = Episode {
                expression: 1 + rng.below(N_EXPRESSIONS - 1),
                start: t,
                rise: rng.range(0.25, 0.6),
                hold: rng.range(0.4, 1.5),
                fall: rng.range(0.25, 0.6),
                peak: rng.range(0.55, 1.0),
            };
            t = e.end() + rng.range(0.2, 1.0);
            episodes.push(e);
        }
        let [cx, cy, scale] = slot;
        let mut occlusions = Vec::new();
        if rng.chance(0.35) {
            let start = rng.range(0.0, seconds);
            let round = rng.chance(0.5);
            let other = Identity::random(rng).skin;
            occlusions.push(Occlusion {
                start,
                end: start + rng.range(0.3, 0.7),
                offset: [rng.range(-0.8, 0.8), rng.range(0.3, 1.3)],
                radii: [rng.range(0.35, 0.6), rng.range(0.25, 0.45)],
                colour: if round {
                    other
                } else {
                    [
                        rng.range(20.0, 230.0),
                        rng.range(20.0, 230.0),
                        rng.range(20.0, 230.0),
                    ]
                },
                round,
            });
        }
        Person {
            name,
            identity,
            episodes,
            base: [cx, cy, scale],
            wander: [
                Wander::random(rng, 0.25 * scale),
                Wander::random(rng, 0.2 * scale),
                Wander::random(rng, 0.08),
                Wander::random(rng, 0.15),
                Wander::random(rng, 0.35),
            ],
            base_roll: rng.range(-0.12, 0.12),
            base_yaw: rng.range(-0.2, 0.2),
            lighting: Lighting {
                brightness: rng.range(0.78, 1.12),
                gradient: [rng.range(-0.25, 0.25), rng.range(-0.12, 0.12)],
            },
            flicker: Wander::random(rng, 0.05),
            occlusions,
            speech: Vec::new(),
            voice: Voice {
                pitch_hz: rng.range(95.0, 230.0),
                syllable_rate: rng.range(3.5, 5.5),
            },
            va_noise: [Wander::random(rng, 0.03), Wander::random(rng, 0.03)],
        }
    }

    /// Whether this person is speaking at `t`.
    pub fn speaking(&self, t: f32) -> bool {
        self.speech.iter().any(|&(a, b)| t >= a && t < b)
    }

    /// Expression class and intensity at `t`.
    pub fn expression_at(&self, t: f32) -> (usize, f32) {
        self.episodes
            .iter()
            .map(|e| (e.expression, e.level(t)))
            .fold(
                (0, 0.0),
                |best, cur| if cur.1 > best.1 { cur } else { best },
            )
    }

    /// The face's pose, AUs and labels at `t`.
    pub fn state(&self, t: f32) -> FaceState {
        let (expr, level) = self.expression_at(t);
        let mut intensity = [0.0f32; N_AUS];
        for (k, v) in intensity.iter_mut().enumerate() {
            *v = (PROTOTYPES[expr][k] * level * self.identity.au_gain[k]).min(1.0);
        }
        // Talking parts the lips in time with the syllables.
        if self.speaking(t) {
            let syllable = (std::f32::consts::PI * self.voice.syllable_rate * t)
                .sin()
                .abs();
            let au25 = &mut intensity[super::face::au::AU25];
            *au25 = au25.max(0.6 * syllable);
        }
        let mut au = [0u8; N_AUS];
        for (a, &v) in au.iter_mut().zip(&intensity) {
            *a = (v >= AU_THRESHOLD) as u8;
        }
        let expression = if level >= EXPRESSION_THRESHOLD {
            expr
        } else {
            0
        };
        let [v0, a0] = CIRCUMPLEX[expr];
        let valence = (v0 * level + self.va_noise[0].at(t)).clamp(-1.0, 1.0);
        let arousal = (a0 * level + self.va_noise[1].at(t)).clamp(-1.0, 1.0);
        let [cx, cy, scale] = self.base;
        let pose = Pose {
            cx: cx + self.wander[0].at(t),
            cy: cy + self.wander[1].at(t),
            scale: scale * (1.0 + self.wander[2].at(t)),
            roll: self.base_roll + self.wander[3].at(t),
            yaw: self.base_yaw + self.wander[4].at(t),
        };
        let lighting = Lighting {
            brightness: self.lighting.brightness * (1.0 + self.flicker.at(t)),
            gradient: self.lighting.gradient,
        };
        let occlusion = self
            .occlusions
            .iter()
            .find(|o| t >= o.start && t < o.end)
            .cloned();
        FaceState {
            pose,
            lighting,
            intensity,
            au,
            expression,
            valence,
            arousal,
            occlusion,
        }
    }
}

/// One video of the world.
#[derive(Clone, Debug)]
pub struct VideoPlan {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub n_frames: u32,
    pub people: Vec<Person>,
    pub blur: bool,
    background: Canvas,
}

/// What the renderer drew for one face of one frame.
#[derive(Clone, Debug)]
pub struct RenderedFace {
    pub state: FaceState,
    pub geometry: FaceGeometry,
}

impl VideoPlan {
    /// Plans video `index` of the world `seed`.
    pub fn new(
        seed: u64,
        index: usize,
        n_people: usize,
        seconds: f32,
        fps: u32,
        width: u32,
        height: u32,
    ) -> VideoPlan {
        let root = Rng::new(seed).fork(index as u64);
        let mut rng = root.fork(1);
        let name = format!("synth-{index:03}");
        let n_frames = (seconds * fps as f32).round().max(1.0) as u32;
        let (w, h) = (width as f32, height as f32);
        let slot_w = w / n_people as f32;
        let mut people = Vec::new();
        for i in 0..n_people {
            let suffix = match (n_people, i) {
                (1, _) => String::new(),
                (_, 0) => "_left".into(),
                _ => "_right".into(),
            };
            let max_scale = (0.3 * slot_w).min(h / 3.4);
            let scale = rng.range(0.65, 1.0) * max_scale;
            let cx = slot_w * (i as f32 + 0.5) + rng.range(-0.1, 0.1) * slot_w;
            let cy = h * rng.range(0.42, 0.55);
            let mut person = Person::random(
                &mut rng.fork(10 + i as u64),
                format!("{name}{suffix}"),
                [cx, cy, scale],
                seconds,
            );
            person.base[0] = cx;
            people.push(person);
        }
        // Speaking turns: people take turns with pauses between.
        let mut t = rng.range(0.0, 0.5);
        let mut speaker = rng.below(n_people);
        while t < seconds {
            let len = rng.range(0.6, 2.0);
            people[speaker].speech.push((t, t + len));
            t += len + rng.range(0.2, 0.7);
            if n_people > 1 {
                speaker = (speaker + 1) % n_people;
            }
        }
        let blur = rng.chance(0.25);
        let background = background(&mut rng.fork(2), width, height);
        VideoPlan {
            name,
            width,
            height,
            fps,
            n_frames,
            people,
            blur,
            background,
        }
    }

    /// Time of frame `i` (0-based), seconds.
    pub fn time(&self, frame: u32) -> f32 {
        frame as f32 / self.fps as f32
    }

    /// Renders frame `i` (0-based) into `canvas` (resized as needed).
    pub fn render(&self, frame: u32, canvas: &mut Canvas) -> Vec<RenderedFace> {
        canvas.clone_from(&self.background);
        let t = self.time(frame);
        let mut faces = Vec::with_capacity(self.people.len());
        for person in &self.people {
            let state = person.state(t);
            let geometry = face::render(
                canvas,
                &person.identity,
                &state.pose,
                &state.lighting,
                &state.intensity,
            );
            if let Some(o) = &state.occlusion {
                draw_occlusion(canvas, &state.pose, o);
            }
            faces.push(RenderedFace { state, geometry });
        }
        if self.blur {
            canvas.blur3();
        }
        faces
    }
}

fn draw_occlusion(canvas: &mut Canvas, pose: &Pose, o: &Occlusion) {
    let (c, s) = (pose.roll.cos(), pose.roll.sin());
    let ox = pose.cx + (o.offset[0] * c - o.offset[1] * s) * pose.scale;
    let oy = pose.cy + (o.offset[0] * s + o.offset[1] * c) * pose.scale;
    let (rx, ry) = (o.radii[0] * pose.scale, o.radii[1] * pose.scale);
    let bbox = [ox - rx, oy - ry, ox + rx, oy + ry];
    let colour = o.colour;
    if o.round {
        canvas.fill(
            bbox,
            1.0,
            |x, y| sd_ellipse(x - ox, y - oy, rx, ry),
            |_, _| colour,
        );
    } else {
        canvas.fill(
            bbox,
            1.0,
            |x, y| ((x - ox).abs() - rx).max((y - oy).abs() - ry),
            |_, y| {
                let k = 0.85 + 0.15 * ((y - oy) / ry);
                [colour[0] * k, colour[1] * k, colour[2] * k]
            },
        );
    }
}

/// A cluttered room: a wall gradient, a floor, shapes of furniture and posters.
fn background(rng: &mut Rng, width: u32, height: u32) -> Canvas {
    let mut c = Canvas::new(width, height);
    let (w, h) = (width as f32, height as f32);
    let top: Rgb = [
        rng.range(60.0, 220.0),
        rng.range(60.0, 220.0),
        rng.range(60.0, 220.0),
    ];
    let bottom: Rgb = [
        rng.range(30.0, 160.0),
        rng.range(30.0, 160.0),
        rng.range(30.0, 160.0),
    ];
    c.fill(
        [0.0, 0.0, w, h],
        1.0,
        |_, _| -1.0,
        |_, y| {
            let k = y / h;
            [
                top[0] + (bottom[0] - top[0]) * k,
                top[1] + (bottom[1] - top[1]) * k,
                top[2] + (bottom[2] - top[2]) * k,
            ]
        },
    );
    for _ in 0..rng.range(15.0, 35.0) as usize {
        let colour: Rgb = [
            rng.range(0.0, 255.0),
            rng.range(0.0, 255.0),
            rng.range(0.0, 255.0),
        ];
        let (cx, cy) = (rng.range(0.0, w), rng.range(0.0, h));
        let (rx, ry) = (rng.range(0.02, 0.2) * w, rng.range(0.02, 0.2) * h);
        let alpha = rng.range(0.4, 1.0);
        let bbox = [cx - rx, cy - ry, cx + rx, cy + ry];
        if rng.chance(0.5) {
            c.fill(
                bbox,
                alpha,
                |x, y| ((x - cx).abs() - rx).max((y - cy).abs() - ry),
                |_, _| colour,
            );
        } else {
            c.fill(
                bbox,
                alpha,
                |x, y| sd_ellipse(x - cx, y - cy, rx, ry),
                |_, _| colour,
            );
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episodes_rise_hold_fall() {
        let e = Episode {
            expression: 4,
            start: 1.0,
            rise: 0.5,
            hold: 1.0,
            fall: 0.5,
            peak: 0.8,
        };
        assert_eq!(e.level(0.9), 0.0);
        assert!((e.level(1.25) - 0.4).abs() < 1e-6);
        assert_eq!(e.level(2.0), 0.8);
        assert!((e.level(2.75) - 0.4).abs() < 1e-6);
        assert_eq!(e.level(3.1), 0.0);
    }

    #[test]
    fn labels_follow_prototypes_and_circumplex() {
        let plan = VideoPlan::new(3, 0, 1, 6.0, 15, 320, 240);
        let p = &plan.people[0];
        let e = &p.episodes[0];
        let peak_t = e.start + e.rise + 0.5 * e.hold;
        let s = p.state(peak_t);
        assert_eq!(s.expression, e.expression);
        for (k, proto) in PROTOTYPES[e.expression].iter().enumerate() {
            let expected = (proto * e.peak * p.identity.au_gain[k]).min(1.0);
            if k != face::au::AU25 {
                assert!((s.intensity[k] - expected).abs() < 1e-6);
            }
            assert_eq!(s.au[k], (s.intensity[k] >= AU_THRESHOLD) as u8);
        }
        let [v0, a0] = CIRCUMPLEX[e.expression];
        assert!((s.valence - v0 * e.peak).abs() <= 0.031);
        assert!((s.arousal - a0 * e.peak).abs() <= 0.031);
        let before = p.state(e.start - 0.05);
        assert_eq!(before.expression, 0);
    }
}
