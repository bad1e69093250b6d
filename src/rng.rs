//! A small, fixed pseudo-random generator (SplitMix64). Data order and
//! sampling depend only on a seed and this code, never on a library's
//! version, so runs reproduce and resume exactly.

/// SplitMix64 (Steele, Lea, Flood 2014).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for one purpose: `seed` mixed with stream ids (epoch, step...).
    pub fn derived(seed: u64, streams: &[u64]) -> Self {
        let mut state = SplitMix64(seed);
        for &s in streams {
            state = SplitMix64(state.next_u64() ^ s.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        }
        state
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by rejection so there is no modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_fixed() {
        // SplitMix64 reference outputs for seed 1234567.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn shuffles_are_permutations_and_depend_on_the_stream() {
        let mut a: Vec<u32> = (0..100).collect();
        SplitMix64::derived(7, &[0]).shuffle(&mut a);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        let mut b: Vec<u32> = (0..100).collect();
        SplitMix64::derived(7, &[1]).shuffle(&mut b);
        assert_ne!(a, b);
        let mut c: Vec<u32> = (0..100).collect();
        SplitMix64::derived(7, &[0]).shuffle(&mut c);
        assert_eq!(a, c);
    }
}
