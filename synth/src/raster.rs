// SPDX-License-Identifier: MPL-2.0
//! Anti-aliased drawing on an RGB8 canvas. Every shape is a signed distance function in pixels
//! (negative inside); a pixel's coverage is `clamp(0.5 - distance, 0, 1)`, which gives one
//! pixel of smooth edge at any scale without supersampling.

/// A packed RGB8 image.
#[derive(Clone, Debug, PartialEq)]
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// Colour with components in 0..=255 as floats, so lighting can scale it before rounding.
pub type Rgb = [f32; 3];

impl Canvas {
    pub fn new(width: u32, height: u32) -> Self {
        Canvas {
            width,
            height,
            data: vec![0; width as usize * height as usize * 3],
        }
    }

    /// Integer pixel bounds (inclusive-exclusive) of a float box, clipped to the canvas.
    fn clip(&self, x0: f32, y0: f32, x1: f32, y1: f32) -> Option<(usize, usize, usize, usize)> {
        let xa = (x0.floor() - 1.0).max(0.0);
        let ya = (y0.floor() - 1.0).max(0.0);
        let xb = (x1.ceil() + 2.0).min(self.width as f32);
        let yb = (y1.ceil() + 2.0).min(self.height as f32);
        if !(xa < xb && ya < yb) {
            return None;
        }
        Some((xa as usize, ya as usize, xb as usize, yb as usize))
    }

    /// Fills the shape `sd(x, y)` (signed distance in pixels at pixel centre `(x, y)`) inside
    /// the box `[x0, y0, x1, y1]` with `colour(x, y)`, blended by coverage times `alpha`.
    pub fn fill(
        &mut self,
        bbox: [f32; 4],
        alpha: f32,
        sd: impl Fn(f32, f32) -> f32,
        colour: impl Fn(f32, f32) -> Rgb,
    ) {
        if alpha <= 0.0 {
            return;
        }
        let Some((xa, ya, xb, yb)) = self.clip(bbox[0], bbox[1], bbox[2], bbox[3]) else {
            return;
        };
        let w = self.width as usize;
        for y in ya..yb {
            let fy = y as f32;
            let row = &mut self.data[(y * w + xa) * 3..(y * w + xb) * 3];
            for (i, px) in row.chunks_exact_mut(3).enumerate() {
                let fx = (xa + i) as f32;
                let d = sd(fx, fy);
                let coverage = (0.5 - d).clamp(0.0, 1.0) * alpha;
                if coverage <= 0.0 {
                    continue;
                }
                let c = colour(fx, fy);
                for (p, v) in px.iter_mut().zip(c) {
                    let old = *p as f32;
                    *p = (old + (v.clamp(0.0, 255.0) - old) * coverage + 0.5) as u8;
                }
            }
        }
    }

    /// 3x3 box blur of the whole canvas (defocus nuisance).
    pub fn blur3(&mut self) {
        let (w, h) = (self.width as usize, self.height as usize);
        if w < 3 || h < 3 {
            return;
        }
        let src = self.data.clone();
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                for ch in 0..3 {
                    let mut s = 0u32;
                    for dy in 0..3 {
                        let base = ((y + dy - 1) * w + x - 1) * 3 + ch;
                        s += src[base] as u32 + src[base + 3] as u32 + src[base + 6] as u32;
                    }
                    self.data[(y * w + x) * 3 + ch] = ((s + 4) / 9) as u8;
                }
            }
        }
    }
}

/// Signed distance (approximate, exact on circles) to an axis-aligned ellipse centred at 0.
pub fn sd_ellipse(x: f32, y: f32, rx: f32, ry: f32) -> f32 {
    let (nx, ny) = (x / rx, y / ry);
    let k = (nx * nx + ny * ny).sqrt();
    // The gradient of the normalised radius; first-order distance = (k - 1) / |grad k|.
    let gx = nx / rx;
    let gy = ny / ry;
    let g = (gx * gx + gy * gy).sqrt();
    if g < 1e-6 {
        return -rx.min(ry);
    }
    (k - 1.0) * k / g
}

/// Distance to the segment `a`-`b`.
pub fn dist_segment(p: [f32; 2], a: [f32; 2], b: [f32; 2]) -> f32 {
    let (abx, aby) = (b[0] - a[0], b[1] - a[1]);
    let (apx, apy) = (p[0] - a[0], p[1] - a[1]);
    let len2 = abx * abx + aby * aby;
    let t = if len2 > 0.0 {
        ((apx * abx + apy * aby) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (dx, dy) = (apx - t * abx, apy - t * aby);
    (dx * dx + dy * dy).sqrt()
}

/// Distance to a polyline.
pub fn dist_polyline(p: [f32; 2], points: &[[f32; 2]]) -> f32 {
    points
        .windows(2)
        .map(|s| dist_segment(p, s[0], s[1]))
        .fold(f32::INFINITY, f32::min)
}

/// Points of the quadratic Bezier curve `a`, control `c`, `b`.
pub fn quad_bezier<const N: usize>(a: [f32; 2], c: [f32; 2], b: [f32; 2]) -> [[f32; 2]; N] {
    std::array::from_fn(|i| {
        let t = i as f32 / (N - 1) as f32;
        let u = 1.0 - t;
        [
            u * u * a[0] + 2.0 * u * t * c[0] + t * t * b[0],
            u * u * a[1] + 2.0 * u * t * c[1] + t * t * b[1],
        ]
    })
}

/// Bounding box `[x0, y0, x1, y1]` of points.
pub fn bounds(points: &[[f32; 2]]) -> [f32; 4] {
    points.iter().fold(
        [
            f32::INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        ],
        |b, p| {
            [
                b[0].min(p[0]),
                b[1].min(p[1]),
                b[2].max(p[0]),
                b[3].max(p[1]),
            ]
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disc_area_matches_pi_r_squared() {
        let mut c = Canvas::new(64, 64);
        let r = 20.0;
        c.fill(
            [10.0, 10.0, 54.0, 54.0],
            1.0,
            |x, y| sd_ellipse(x - 32.0, y - 32.0, r, r),
            |_, _| [255.0, 255.0, 255.0],
        );
        let area: f32 = c.data.chunks_exact(3).map(|p| p[0] as f32 / 255.0).sum();
        let expected = std::f32::consts::PI * r * r;
        assert!(
            (area - expected).abs() / expected < 0.01,
            "{area} vs {expected}"
        );
    }

    #[test]
    fn segment_distance() {
        assert_eq!(dist_segment([0.0, 1.0], [-1.0, 0.0], [1.0, 0.0]), 1.0);
        assert_eq!(dist_segment([3.0, 0.0], [-1.0, 0.0], [1.0, 0.0]), 2.0);
        let pts: [[f32; 2]; 3] = quad_bezier([0.0, 0.0], [1.0, 2.0], [2.0, 0.0]);
        assert_eq!(pts[1], [1.0, 1.0]);
    }
}
