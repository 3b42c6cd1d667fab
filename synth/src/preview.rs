// SPDX-License-Identifier: MPL-2.0
//! A contact sheet of synthetic faces with their labels, so a person can see what the world
//! looks like: one column per expression, one row per person, aligned crops as a model sees
//! them, each captioned with expression, valence/arousal and the AUs that occur.

use std::path::Path;

use affect_core::align::{RgbImage, crop_aligned};
use affect_core::labels::{AU_NUMBERS, EXPRESSION_LABELS, N_AUS, N_EXPRESSIONS};

use super::face::{self, Identity, Lighting, Pose};
use super::raster::Canvas;
use super::world::{AU_THRESHOLD, CIRCUMPLEX, PROTOTYPES};
use super::{SynthError, io_error};
use crate::rng::Rng;

/// 5x7 glyphs, one row per byte (low 5 bits, MSB left).
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        _ => [0; 7],
    }
}

fn draw_text(sheet: &mut Canvas, x: u32, y: u32, text: &str, colour: [u8; 3]) {
    for (i, c) in text.chars().enumerate() {
        let gx = x + 6 * i as u32;
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..5u32 {
                if bits & (0x10 >> col) != 0 {
                    let (px, py) = (gx + col, y + row as u32);
                    if px < sheet.width && py < sheet.height {
                        let o = ((py * sheet.width + px) * 3) as usize;
                        sheet.data[o..o + 3].copy_from_slice(&colour);
                    }
                }
            }
        }
    }
}

const CROP: u32 = 112;
const CAPTION: u32 = 30;
const GAP: u32 = 4;

/// Renders `rows` people showing each of the 8 expressions and writes the sheet as PNG.
pub fn write_preview(path: &Path, seed: u64, rows: usize) -> Result<(), SynthError> {
    let cols = N_EXPRESSIONS as u32;
    let (cell_w, cell_h) = (CROP + GAP, CROP + CAPTION + GAP);
    let mut sheet = Canvas::new(cols * cell_w + GAP, rows as u32 * cell_h + GAP);
    sheet.data.fill(32);
    let root = Rng::new(seed).fork(0x5052_4556);
    let mut frame = Canvas::new(320, 320);
    let mut crop = vec![0u8; (CROP * CROP * 3) as usize];
    for row in 0..rows {
        let mut rng = root.fork(row as u64);
        let id = Identity::random(&mut rng);
        let bg = [
            rng.range(40.0, 200.0),
            rng.range(40.0, 200.0),
            rng.range(40.0, 200.0),
        ];
        for (col, proto) in PROTOTYPES.iter().enumerate() {
            let level = rng.range(0.7, 1.0);
            let mut intensity = [0.0f32; N_AUS];
            for k in 0..N_AUS {
                intensity[k] = (proto[k] * level * id.au_gain[k]).min(1.0);
            }
            let pose = Pose {
                cx: 160.0 + rng.range(-10.0, 10.0),
                cy: 160.0 + rng.range(-10.0, 10.0),
                scale: rng.range(70.0, 85.0),
                roll: rng.range(-0.2, 0.2),
                yaw: rng.range(-0.35, 0.35),
            };
            let light = Lighting {
                brightness: rng.range(0.85, 1.1),
                gradient: [rng.range(-0.2, 0.2), 0.0],
            };
            frame.fill(
                [0.0, 0.0, 320.0, 320.0],
                1.0,
                |_, _| -1.0,
                |_, y| {
                    let k = 0.8 + 0.4 * y / 320.0;
                    [bg[0] * k, bg[1] * k, bg[2] * k]
                },
            );
            let g = face::render(&mut frame, &id, &pose, &light, &intensity);
            let image = RgbImage::new(&frame.data, 320, 320, 320 * 3)?;
            crop_aligned(&image, &g.landmarks, CROP, &mut crop)?;
            let (x0, y0) = (GAP + col as u32 * cell_w, GAP + row as u32 * cell_h);
            for y in 0..CROP {
                let dst = (((y0 + y) * sheet.width + x0) * 3) as usize;
                let src = (y * CROP * 3) as usize;
                sheet.data[dst..dst + (CROP * 3) as usize]
                    .copy_from_slice(&crop[src..src + (CROP * 3) as usize]);
            }
            let [v, a] = CIRCUMPLEX[col];
            let aus: Vec<String> = (0..N_AUS)
                .filter(|&k| intensity[k] >= AU_THRESHOLD)
                .map(|k| AU_NUMBERS[k].to_string())
                .collect();
            let white = [235, 235, 235];
            let y = y0 + CROP + 2;
            draw_text(&mut sheet, x0, y, EXPRESSION_LABELS[col], white);
            draw_text(
                &mut sheet,
                x0,
                y + 9,
                &format!("V{:+.2} A{:+.2}", v * level, a * level),
                [180, 220, 255],
            );
            let au_text = if aus.is_empty() {
                "AU -".to_string()
            } else {
                format!("AU {}", aus.join(" "))
            };
            draw_text(&mut sheet, x0, y + 18, &au_text, [255, 220, 160]);
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    image::save_buffer_with_format(
        path,
        &sheet.data,
        sheet.width,
        sheet.height,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|source| SynthError::Image {
        path: path.to_path_buf(),
        source,
    })
}
