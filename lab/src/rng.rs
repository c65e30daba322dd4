//! The lab's random numbers: a small, fast, seedable xorshift generator.
//! The workloads need variety and repeatable streams, not quality.

pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Self {
        // Spread small seeds (client numbers) over the state, never zero:
        // xorshift stays at zero forever.
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number below `bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream_within_bounds() {
        let (mut a, mut b) = (Dice::new(7), Dice::new(7));
        for _ in 0..100 {
            let n = a.below(10);
            assert!(n < 10);
            assert_eq!(n, b.below(10));
        }
        assert_eq!(Dice::new(0).below(0), 0);
    }
}
