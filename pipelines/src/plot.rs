// SPDX-License-Identifier: MPL-2.0
//! The timeline plot of one video (PNG, drawn with cairo and pango): valence and arousal
//! over time, a strip of the expression per frame and a heat map of the action units'
//! probabilities; with ground truth (the demo) the true curves are drawn dashed, the true
//! expressions as a second strip and the true AU occurrences as a bar under each AU row.

use std::path::Path;

use affect_core::labels::{AU_LABELS, EXPRESSION_LABELS, N_AUS};

/// Size of the image in pixels.
pub const WIDTH: i32 = 1400;
pub const HEIGHT: i32 = 900;

/// One person's values over time (predictions or truth). `au` holds probabilities for
/// predictions and 0/1 occurrences for truth.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub time: Vec<f64>,
    pub valence: Vec<f32>,
    pub arousal: Vec<f32>,
    pub expression: Vec<usize>,
    pub au: Vec<[f32; N_AUS]>,
}

impl Series {
    pub fn push(&mut self, time: f64, va: [f32; 2], expression: usize, au: [f32; N_AUS]) {
        self.time.push(time);
        self.valence.push(va[0]);
        self.arousal.push(va[1]);
        self.expression.push(expression);
        self.au.push(au);
    }

    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }
}

pub struct Timeline<'a> {
    pub title: &'a str,
    pub subtitle: &'a str,
    /// Length of the time axis in seconds.
    pub duration: f64,
    /// Seconds one frame covers (width of a strip cell).
    pub frame_seconds: f64,
    pub predicted: &'a Series,
    pub truth: Option<&'a Series>,
}

/// Colours of the 8 expressions, in ABAW order (Neutral ... Other).
const EXPRESSION_COLOURS: [(f64, f64, f64); 8] = [
    (0.75, 0.75, 0.75),
    (0.84, 0.15, 0.16),
    (0.55, 0.34, 0.29),
    (0.58, 0.40, 0.74),
    (1.00, 0.73, 0.05),
    (0.12, 0.47, 0.71),
    (0.09, 0.75, 0.81),
    (0.50, 0.50, 0.20),
];
const VALENCE: (f64, f64, f64) = (0.12, 0.47, 0.71);
const AROUSAL: (f64, f64, f64) = (0.90, 0.45, 0.05);

/// Viridis-like ramp for probabilities in [0, 1].
fn heat(p: f64) -> (f64, f64, f64) {
    const STOPS: [(f64, f64, f64); 5] = [
        (0.267, 0.005, 0.329),
        (0.230, 0.322, 0.546),
        (0.128, 0.567, 0.551),
        (0.369, 0.789, 0.383),
        (0.993, 0.906, 0.144),
    ];
    let x = p.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    (
        a.0 + f * (b.0 - a.0),
        a.1 + f * (b.1 - a.1),
        a.2 + f * (b.2 - a.2),
    )
}

struct Canvas {
    cr: cairo::Context,
    font: pango::FontDescription,
}

enum Align {
    Left,
    Right,
    Centre,
}

impl Canvas {
    fn colour(&self, c: (f64, f64, f64)) {
        self.cr.set_source_rgb(c.0, c.1, c.2);
    }

    fn text(&self, x: f64, y: f64, text: &str, size: f64, align: Align) {
        let layout = pangocairo::functions::create_layout(&self.cr);
        let mut font = self.font.clone();
        font.set_absolute_size(size * pango::SCALE as f64);
        layout.set_font_description(Some(&font));
        layout.set_text(text);
        let (w, h) = layout.pixel_size();
        let x = match align {
            Align::Left => x,
            Align::Right => x - w as f64,
            Align::Centre => x - w as f64 / 2.0,
        };
        self.cr.move_to(x, y - h as f64 / 2.0);
        pangocairo::functions::show_layout(&self.cr, &layout);
    }

    fn rect(&self, x: f64, y: f64, w: f64, h: f64) {
        self.cr.rectangle(x, y, w, h);
        let _ = self.cr.fill();
    }
}

/// Plot area in pixels.
const LEFT: f64 = 120.0;
const RIGHT: f64 = WIDTH as f64 - 170.0;

/// Draws the timeline and writes it as PNG.
pub fn write(path: &Path, timeline: &Timeline) -> Result<(), String> {
    let surface = cairo::ImageSurface::create(cairo::Format::Rgb24, WIDTH, HEIGHT)
        .map_err(|e| format!("cannot create the plot surface: {e}"))?;
    {
        let cr = cairo::Context::new(&surface).map_err(|e| format!("cairo: {e}"))?;
        let canvas = Canvas {
            cr,
            font: pango::FontDescription::from_string("DejaVu Sans"),
        };
        draw(&canvas, timeline).map_err(|e| format!("cannot draw the plot: {e}"))?;
    }
    surface.flush();
    let mut file = std::fs::File::create(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    surface
        .write_to_png(&mut file)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn draw(c: &Canvas, t: &Timeline) -> Result<(), cairo::Error> {
    let cr = &c.cr;
    c.colour((1.0, 1.0, 1.0));
    cr.paint()?;
    let duration = t.duration.max(t.frame_seconds).max(1e-3);
    let x_of = |time: f64| LEFT + (RIGHT - LEFT) * (time / duration).clamp(0.0, 1.0);
    // Cells overlap by a fraction of a pixel so anti-aliasing leaves no seams between them.
    let cell = ((RIGHT - LEFT) * t.frame_seconds / duration).max(1.0) + 0.6;
    let dark = (0.15, 0.15, 0.15);
    let grid = (0.88, 0.88, 0.88);

    c.colour(dark);
    c.text(LEFT, 22.0, t.title, 20.0, Align::Left);
    c.colour((0.35, 0.35, 0.35));
    c.text(LEFT, 46.0, t.subtitle, 13.0, Align::Left);

    // Valence and arousal.
    let (va_top, va_bottom) = (75.0, 395.0);
    let y_of = |v: f64| va_bottom - (va_bottom - va_top) * (v.clamp(-1.0, 1.0) + 1.0) / 2.0;
    cr.set_line_width(1.0);
    for k in 0..=4 {
        let v = -1.0 + 0.5 * k as f64;
        c.colour(if k == 2 { (0.7, 0.7, 0.7) } else { grid });
        cr.move_to(LEFT, y_of(v));
        cr.line_to(RIGHT, y_of(v));
        cr.stroke()?;
        c.colour(dark);
        c.text(LEFT - 8.0, y_of(v), &format!("{v:+.1}"), 12.0, Align::Right);
    }
    c.text(18.0, (va_top + va_bottom) / 2.0, "V / A", 14.0, Align::Left);
    let curve = |values: &[f32], times: &[f64], colour, dashed: bool| -> Result<(), cairo::Error> {
        c.colour(colour);
        cr.set_line_width(if dashed { 1.5 } else { 2.2 });
        cr.set_dash(if dashed { &[6.0, 4.0] } else { &[] }, 0.0);
        let mut previous: Option<f64> = None;
        for (&v, &time) in values.iter().zip(times) {
            let (x, y) = (x_of(time), y_of(v as f64));
            // A gap of more than a few frames (no face) breaks the line.
            match previous {
                Some(p) if time - p <= 3.5 * t.frame_seconds => cr.line_to(x, y),
                _ => cr.move_to(x, y),
            }
            previous = Some(time);
        }
        cr.stroke()?;
        cr.set_dash(&[], 0.0);
        Ok(())
    };
    if let Some(truth) = t.truth {
        curve(&truth.valence, &truth.time, VALENCE, true)?;
        curve(&truth.arousal, &truth.time, AROUSAL, true)?;
    }
    curve(&t.predicted.valence, &t.predicted.time, VALENCE, false)?;
    curve(&t.predicted.arousal, &t.predicted.time, AROUSAL, false)?;
    let legend_x = RIGHT + 18.0;
    for (i, (name, colour)) in [("valence", VALENCE), ("arousal", AROUSAL)]
        .into_iter()
        .enumerate()
    {
        let y = va_top + 12.0 + 22.0 * i as f64;
        c.colour(colour);
        cr.set_line_width(2.2);
        cr.move_to(legend_x, y);
        cr.line_to(legend_x + 26.0, y);
        cr.stroke()?;
        c.colour(dark);
        c.text(legend_x + 32.0, y, name, 12.0, Align::Left);
    }
    if t.truth.is_some() {
        let y = va_top + 56.0;
        c.colour(dark);
        cr.set_line_width(1.5);
        cr.set_dash(&[6.0, 4.0], 0.0);
        cr.move_to(legend_x, y);
        cr.line_to(legend_x + 26.0, y);
        cr.stroke()?;
        cr.set_dash(&[], 0.0);
        c.text(legend_x + 32.0, y, "truth", 12.0, Align::Left);
    }

    // Expression strips.
    let strip_h = 26.0;
    let mut y = 425.0;
    let mut strips: Vec<(&str, &Series)> = vec![("expression", t.predicted)];
    if let Some(truth) = t.truth {
        strips.push(("truth", truth));
    }
    for (name, series) in &strips {
        c.colour((0.96, 0.96, 0.96));
        c.rect(LEFT, y, RIGHT - LEFT, strip_h);
        for (&e, &time) in series.expression.iter().zip(&series.time) {
            // A frame without an expression head leaves its cell blank.
            let Some(&colour) = EXPRESSION_COLOURS.get(e) else {
                continue;
            };
            c.colour(colour);
            c.rect(x_of(time), y, cell, strip_h);
        }
        c.colour(dark);
        c.text(LEFT - 8.0, y + strip_h / 2.0, name, 13.0, Align::Right);
        y += strip_h + 6.0;
    }
    // Expression legend in two rows under the strips.
    let legend_y = y + 8.0;
    for (i, label) in EXPRESSION_LABELS.iter().enumerate() {
        let x = LEFT + 130.0 * (i % 8) as f64;
        c.colour(EXPRESSION_COLOURS[i]);
        c.rect(x, legend_y - 6.0, 14.0, 12.0);
        c.colour(dark);
        c.text(x + 19.0, legend_y, label, 12.0, Align::Left);
    }

    // Action unit heat map.
    let au_top = legend_y + 26.0;
    let row_h = 24.0;
    let heat_h = if t.truth.is_some() { 16.0 } else { 22.0 };
    for (k, label) in AU_LABELS.iter().enumerate() {
        let row_y = au_top + row_h * k as f64;
        c.colour((0.96, 0.96, 0.96));
        c.rect(LEFT, row_y, RIGHT - LEFT, heat_h);
        for (au, &time) in t.predicted.au.iter().zip(&t.predicted.time) {
            c.colour(heat(au[k] as f64));
            c.rect(x_of(time), row_y, cell, heat_h);
        }
        if let Some(truth) = t.truth {
            for (au, &time) in truth.au.iter().zip(&truth.time) {
                if au[k] >= 0.5 {
                    c.colour(dark);
                    c.rect(x_of(time), row_y + heat_h + 1.0, cell, row_h - heat_h - 3.0);
                }
            }
        }
        c.colour(dark);
        c.text(LEFT - 8.0, row_y + heat_h / 2.0, label, 12.0, Align::Right);
    }
    let au_bottom = au_top + row_h * N_AUS as f64;
    // Colour bar of the probabilities.
    let (bar_top, bar_h) = (au_top, row_h * N_AUS as f64 - 40.0);
    for i in 0..100 {
        c.colour(heat(1.0 - i as f64 / 99.0));
        c.rect(
            legend_x,
            bar_top + bar_h * i as f64 / 100.0,
            18.0,
            bar_h / 100.0 + 1.0,
        );
    }
    c.colour(dark);
    c.text(legend_x + 24.0, bar_top + 6.0, "p = 1", 12.0, Align::Left);
    c.text(
        legend_x + 24.0,
        bar_top + bar_h - 6.0,
        "p = 0",
        12.0,
        Align::Left,
    );
    if t.truth.is_some() {
        c.rect(legend_x, au_bottom - 22.0, 18.0, 5.0);
        c.text(
            legend_x + 24.0,
            au_bottom - 20.0,
            "true AU",
            12.0,
            Align::Left,
        );
    }

    // Time axis.
    let axis_y = au_bottom + 6.0;
    let step = [
        0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    ]
    .into_iter()
    .find(|s| duration / s <= 12.0)
    .unwrap_or(3600.0);
    let mut tick = 0.0;
    c.colour(dark);
    cr.set_line_width(1.0);
    cr.move_to(LEFT, axis_y);
    cr.line_to(RIGHT, axis_y);
    cr.stroke()?;
    while tick <= duration + 1e-9 {
        let x = x_of(tick);
        cr.move_to(x, axis_y);
        cr.line_to(x, axis_y + 6.0);
        cr.stroke()?;
        let label = if step < 1.0 {
            format!("{tick:.1}")
        } else {
            format!("{tick:.0}")
        };
        c.text(x, axis_y + 18.0, &label, 12.0, Align::Centre);
        tick += step;
    }
    c.text(RIGHT + 18.0, axis_y + 18.0, "time (s)", 12.0, Align::Left);
    Ok(())
}
