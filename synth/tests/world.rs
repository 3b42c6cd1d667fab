// SPDX-License-Identifier: MPL-2.0
//! The synthetic world is deterministic per seed, and its labels are visible in its pixels:
//! each AU moves the rendered face the way its label says, at the landmarks the side file
//! reports.

use affect_core::labels::N_AUS;
use affect_synth::face::{self, Identity, Lighting, Pose, au};
use affect_synth::raster::Canvas;
use affect_synth::rng::Rng;
use affect_synth::{SynthConfig, generate};

const SIZE: u32 = 320;
const BACKGROUND: [u8; 3] = [90, 120, 90];

fn person() -> Identity {
    let mut id = Identity::random(&mut Rng::new(21));
    // No hair over the forehead, so the brows are the only dark strokes above the eyes.
    id.hair_style = 2;
    id.hairline = -0.5;
    id.skin = [220.0, 180.0, 150.0];
    id.lips = [175.0, 70.0, 75.0];
    id
}

fn pose() -> Pose {
    Pose {
        cx: 160.0,
        cy: 150.0,
        scale: 80.0,
        roll: 0.0,
        yaw: 0.0,
    }
}

fn draw(aus: &[(usize, f32)]) -> (Canvas, face::FaceGeometry) {
    let mut c = Canvas::new(SIZE, SIZE);
    for px in c.data.chunks_exact_mut(3) {
        px.copy_from_slice(&BACKGROUND);
    }
    let mut intensity = [0.0f32; N_AUS];
    for &(k, v) in aus {
        intensity[k] = v;
    }
    let g = face::render(&mut c, &person(), &pose(), &Lighting::default(), &intensity);
    (c, g)
}

fn px(c: &Canvas, x: u32, y: u32) -> [i32; 3] {
    let o = ((y * c.width + x) * 3) as usize;
    [c.data[o] as i32, c.data[o + 1] as i32, c.data[o + 2] as i32]
}

/// Horizontal extent of lip-red pixels (red well above green, unlike skin) below the nose.
fn lip_extent(c: &Canvas, g: &face::FaceGeometry) -> (u32, u32) {
    let y0 = g.landmarks[2][1] as u32 + 8;
    let y1 = (g.bbox[1] + g.bbox[3]) as u32 - 5;
    let (mut lo, mut hi) = (u32::MAX, 0);
    for y in y0..y1 {
        for x in 0..c.width {
            let [r, gr, _] = px(c, x, y);
            if r - gr > 80 {
                lo = lo.min(x);
                hi = hi.max(x);
            }
        }
    }
    (lo, hi)
}

/// Number of mouth-interior pixels (very dark red).
fn mouth_interior(c: &Canvas) -> usize {
    (0..c.height)
        .flat_map(|y| (0..c.width).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let [r, g, b] = px(c, x, y);
            r < 90 && g < 40 && b < 45 && r > g + 20
        })
        .count()
}

/// Topmost row of dark brow pixels above the image-left eye.
fn brow_top(c: &Canvas, g: &face::FaceGeometry) -> u32 {
    let [ex, ey] = g.landmarks[0];
    for y in (ey - 60.0) as u32..ey as u32 - 12 {
        for x in (ex - 20.0) as u32..(ex + 20.0) as u32 {
            let [r, gr, b] = px(c, x, y);
            if r + gr + b < 3 * 110 {
                return y;
            }
        }
    }
    panic!("no brow found above the eye");
}

#[test]
fn au12_widens_the_mouth_in_pixels_where_the_landmarks_say() {
    let (neutral, gn) = draw(&[]);
    let (smile, gs) = draw(&[(au::AU12, 1.0)]);
    let (ln, rn) = lip_extent(&neutral, &gn);
    let (ls, rs) = lip_extent(&smile, &gs);
    // 0.11 face units per side at 80 px per unit: about 9 px wider each side.
    assert!(
        ls + 5 < ln && rs > rn + 5,
        "neutral {ln}..{rn}, AU12 {ls}..{rs}"
    );
    // The reported mouth corners sit at the ends of the drawn lips: the lips taper to
    // nothing there, so the clearly red pixels stop a few pixels inside the corners.
    for (g, (l, r)) in [(gn, (ln, rn)), (gs, (ls, rs))] {
        let inside_left = l as f32 - g.landmarks[3][0];
        let inside_right = g.landmarks[4][0] - r as f32;
        assert!(
            (-1.0..=7.0).contains(&inside_left) && (-1.0..=7.0).contains(&inside_right),
            "corners {:?} {:?}, red lips {l}..{r}",
            g.landmarks[3],
            g.landmarks[4]
        );
    }
    // And they rise (smaller y) with the smile.
    assert!(gs.landmarks[3][1] < gn.landmarks[3][1] - 5.0);
}

#[test]
fn au15_pulls_the_corners_down() {
    let (_, gn) = draw(&[]);
    let (_, gd) = draw(&[(au::AU15, 1.0)]);
    assert!(gd.landmarks[3][1] > gn.landmarks[3][1] + 5.0);
    assert!(gd.landmarks[4][1] > gn.landmarks[4][1] + 5.0);
}

#[test]
fn au25_and_au26_open_the_mouth_and_au26_drops_the_jaw() {
    let (neutral, gn) = draw(&[]);
    let (parted, _) = draw(&[(au::AU25, 1.0)]);
    let (dropped, gd) = draw(&[(au::AU25, 1.0), (au::AU26, 1.0)]);
    let (n0, n1, n2) = (
        mouth_interior(&neutral),
        mouth_interior(&parted),
        mouth_interior(&dropped),
    );
    assert_eq!(n0, 0);
    assert!(n1 > 20, "{n1}");
    assert!(n2 > 3 * n1, "{n1} -> {n2}");
    // The chin (bottom of the face box) moves down by the jaw drop: 0.18 units = 14 px.
    let chin = |g: &face::FaceGeometry| g.bbox[1] + g.bbox[3];
    assert!(
        chin(&gd) > chin(&gn) + 10.0,
        "{} -> {}",
        chin(&gn),
        chin(&gd)
    );
}

#[test]
fn brows_rise_with_au1_au2_and_fall_with_au4() {
    let (n, gn) = draw(&[]);
    let (up, gu) = draw(&[(au::AU1, 1.0), (au::AU2, 1.0)]);
    let (down, gd) = draw(&[(au::AU4, 1.0)]);
    let (tn, tu, td) = (brow_top(&n, &gn), brow_top(&up, &gu), brow_top(&down, &gd));
    assert!(tu + 6 <= tn, "raised brow top {tu} vs neutral {tn}");
    assert!(td >= tn + 4, "lowered brow top {td} vs neutral {tn}");
}

#[test]
fn au6_and_au7_narrow_the_eyes() {
    // Eye white: bright, low-saturation pixels.
    let white = |c: &Canvas| {
        c.data
            .chunks_exact(3)
            .filter(|p| p[0] > 200 && p[1] > 200 && p[2] > 195)
            .count()
    };
    let (n, _) = draw(&[]);
    let (cheek, _) = draw(&[(au::AU6, 1.0)]);
    let (tight, _) = draw(&[(au::AU7, 1.0)]);
    let (wn, wc, wt) = (white(&n), white(&cheek), white(&tight));
    assert!((wc as f32) < 0.85 * wn as f32, "AU6: {wn} -> {wc}");
    assert!((wt as f32) < 0.8 * wn as f32, "AU7: {wn} -> {wt}");
}

#[test]
fn same_seed_same_world_other_seed_other_world() {
    let dir = affect_core::testutil::scratch_dir("synth-determinism");
    let cfg = |seed: u64, sub: &str| SynthConfig {
        out: dir.join(sub),
        videos: 2,
        seconds: 1.0,
        fps: 10,
        width: 320,
        height: 240,
        seed,
        ..SynthConfig::default()
    };
    generate(&cfg(5, "a")).unwrap();
    generate(&cfg(5, "b")).unwrap();
    generate(&cfg(6, "c")).unwrap();
    let files = |root: &std::path::Path| {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(root).unwrap().to_path_buf());
                }
            }
        }
        out.sort();
        out
    };
    let (a, b) = (files(&dir.join("a")), files(&dir.join("b")));
    assert_eq!(a, b);
    assert!(a.len() > 30, "{} files", a.len());
    let mut compared = 0;
    for f in &a {
        // Matroska files carry random segment UIDs; their decoded content is checked in the
        // data set tests.
        if f.extension().is_some_and(|e| e == "mkv") {
            continue;
        }
        let (x, y) = (
            std::fs::read(dir.join("a").join(f)).unwrap(),
            std::fs::read(dir.join("b").join(f)).unwrap(),
        );
        assert!(x == y, "{} differs between two runs of seed 5", f.display());
        compared += 1;
    }
    assert!(compared > 25);
    let truth = |s: &str| std::fs::read(dir.join(s).join("ground_truth/synth-000.jsonl")).unwrap();
    assert_ne!(truth("a"), truth("c"), "seeds 5 and 6 made the same world");
}
