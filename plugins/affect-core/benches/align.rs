// SPDX-License-Identifier: MPL-2.0
//! Aligned face crops: 5-point similarity estimate plus bilinear warp of a 112x112 crop out of
//! a 640x480 RGB frame, against copying a 112x112 block of the same frame (the least any crop
//! costs) measured in the same run.

use std::time::Instant;

use affect_core::align::{ARCFACE_112, RgbImage, Similarity, crop_aligned};

fn main() {
    let (w, h) = (640u32, 480u32);
    let frame: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
    let img = RgbImage::new(&frame, w, h, w as usize * 3).unwrap();
    let turn = Similarity {
        a: 1.8 * 0.2f64.cos(),
        b: 1.8 * 0.2f64.sin(),
        tx: 220.0,
        ty: 90.0,
    };
    let landmarks = ARCFACE_112.map(|p| turn.apply(p));
    let mut out = vec![0u8; 112 * 112 * 3];
    let n = 20_000;

    let start = Instant::now();
    for i in 0..n {
        let (x0, y0) = (100 + i % 200, 50 + i % 100);
        for (r, row) in out.chunks_exact_mut(112 * 3).enumerate() {
            let s = ((y0 + r) * w as usize + x0) * 3;
            row.copy_from_slice(&frame[s..s + 112 * 3]);
        }
        std::hint::black_box(&mut out);
    }
    let copy = start.elapsed().as_secs_f64() / n as f64;

    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(
            crop_aligned(&img, std::hint::black_box(&landmarks), 112, &mut out).unwrap(),
        );
    }
    let aligned = start.elapsed().as_secs_f64() / n as f64;

    println!(
        "{:<44} {:>12} {:>10}",
        "what (112x112 RGB from 640x480)", "us/crop", "ratio"
    );
    println!(
        "{:<44} {:>12.2} {:>10.2}",
        "baseline: copy a 112x112 block",
        copy * 1e6,
        1.0
    );
    println!(
        "{:<44} {:>12.2} {:>10.2}",
        "align: estimate + bilinear warp",
        aligned * 1e6,
        aligned / copy
    );
}
