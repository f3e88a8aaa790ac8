//! The one seeding function, and the one random number generator.
//!
//! Every random draw in diffscale derives from (suite, claim, case, replicate) through
//! [`derive_seed`], never from shard, thread or wall clock, so a case gives the same numbers
//! whichever machine, shard or order runs it. The generator is xoshiro256++ seeded through
//! SplitMix64: small, fast, and bitwise-identical on every platform.

/// A 64-bit seed from the identity of a draw (BLAKE3 of the tuple, domain-separated).
pub fn derive_seed(suite: &str, claim: &str, case: &str, replicate: u32) -> u64 {
    let mut h = blake3::Hasher::new();
    for part in ["diffscale-seed-v1", suite, claim, case] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    h.update(&replicate.to_le_bytes());
    let bytes = h.finalize();
    u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The seed of item `index` (a sample, a batch) within a case seeded by `seed`: the sample's
/// draws then depend only on (suite, claim, case, replicate, index), never on batching.
pub fn substream(seed: u64, index: u64) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"diffscale-substream-v1");
    h.update(&seed.to_le_bytes());
    h.update(&index.to_le_bytes());
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
}

/// xoshiro256++ (Blackman & Vigna 2019).
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
    spare_normal: Option<f64>,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            // SplitMix64, so that nearby seeds give unrelated states.
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng { s: [next(), next(), next(), next()], spare_normal: None }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) (Lemire's multiply-shift; the bias is below 2^-32 for the
    /// sizes used here).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Standard normal (Box–Muller; both values of a pair are used).
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]: the log stays finite
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (2.0 * std::f64::consts::PI * u2).sin_cos();
        self.spare_normal = Some(r * s);
        r * c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_depend_on_every_part() {
        let a = derive_seed("s", "c", "k", 0);
        assert_eq!(a, derive_seed("s", "c", "k", 0));
        assert_ne!(a, derive_seed("s", "c", "k", 1));
        assert_ne!(a, derive_seed("s", "c", "k2", 0));
        // The separator keeps ("ab", "c") apart from ("a", "bc").
        assert_ne!(derive_seed("ab", "c", "k", 0), derive_seed("a", "bc", "k", 0));
    }

    #[test]
    fn normal_moments() {
        let mut r = Rng::new(7);
        let xs: Vec<f64> = (0..200_000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.01, "{mean} {var}");
    }

    #[test]
    fn below_is_in_range_and_covers() {
        let mut r = Rng::new(1);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            seen[r.below(7)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
