// SPDX-License-Identifier: MPL-2.0
//! A small deterministic random number generator (SplitMix64). The synthetic world must be
//! the same bytes for the same seed on every machine and every version of every dependency,
//! so it owns its generator instead of borrowing one whose stream may change.

/// SplitMix64: 64-bit state, full period, good enough statistics for procedural content.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng {
            state: seed ^ 0x6a09_e667_f3bc_c908,
        }
    }

    /// An independent stream for a named part (a video, a face, a frame), so that adding
    /// draws in one part never shifts another.
    pub fn fork(&self, tag: u64) -> Rng {
        let mut r = Rng {
            state: self.state ^ tag.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        };
        r.next_u64();
        Rng::new(r.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    pub fn chance(&mut self, p: f32) -> bool {
        self.uniform() < p
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = (self.uniform() as f64).max(1e-12);
        let u2 = self.uniform() as f64;
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_uniform() {
        let mut a = Rng::new(5);
        let mut b = Rng::new(5);
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(
            Rng::new(5).fork(1).next_u64(),
            Rng::new(5).fork(2).next_u64()
        );
        let mut r = Rng::new(1);
        let n = 100_000;
        let mean = (0..n).map(|_| r.uniform() as f64).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let mut hist = [0usize; 4];
        for _ in 0..n {
            hist[r.below(4)] += 1;
        }
        assert!(
            hist.iter()
                .all(|&h| (h as f64 / n as f64 - 0.25).abs() < 0.01)
        );
        let var = (0..n).map(|_| (r.normal() as f64).powi(2)).sum::<f64>() / n as f64;
        assert!((var - 1.0).abs() < 0.03, "{var}");
    }
}
