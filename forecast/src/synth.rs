//! Synthetic settlement history for the backtest: a participant's net flow
//! per bucket with a daily profile (pay-outs in the morning, receipts in the
//! afternoon), a level that wanders slowly, and noise of a chosen shape.
//! Deterministic from its seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp1, StandardNormal, StudentT};

/// The shape of the noise; every shape is scaled to standard deviation 1
/// (then to [`Synth::noise_sd`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noise {
    Gaussian,
    /// Double exponential: heavier tails than Gaussian.
    Laplace,
    /// Student's t with 5 degrees of freedom: heavier still.
    StudentT5,
    /// A centred exponential: skewed (large receipts, small pay-outs).
    Skewed,
}

impl Noise {
    pub const ALL: [Noise; 4] = [
        Noise::Gaussian,
        Noise::Laplace,
        Noise::StudentT5,
        Noise::Skewed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Noise::Gaussian => "gaussian",
            Noise::Laplace => "laplace",
            Noise::StudentT5 => "student-t(5)",
            Noise::Skewed => "skewed (exp - 1)",
        }
    }

    fn sample(self, rng: &mut ChaCha8Rng) -> f64 {
        match self {
            Noise::Gaussian => rng.sample(StandardNormal),
            Noise::Laplace => {
                let (a, b): (f64, f64) = (rng.sample(Exp1), rng.sample(Exp1));
                (a - b) / std::f64::consts::SQRT_2
            }
            Noise::StudentT5 => {
                let t = StudentT::new(5.0).expect("5 degrees of freedom");
                t.sample(rng) * (3.0f64 / 5.0).sqrt()
            }
            Noise::Skewed => {
                let e: f64 = rng.sample(Exp1);
                e - 1.0
            }
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Synth {
    /// Buckets per day.
    pub season: usize,
    pub days: usize,
    pub seed: u64,
    pub noise: Noise,
    pub noise_sd: f64,
    /// Height of the daily profile.
    pub amplitude: f64,
    /// The mean flow per bucket at the start (negative: a net payer).
    pub drift: f64,
    /// Standard deviation of the level's step per bucket (a random walk).
    pub level_walk_sd: f64,
}

impl Synth {
    /// The default shape of the backtest: a day of 96 quarter hours, noise
    /// as large as half the profile, a level that wanders a little.
    pub fn standard(seed: u64, noise: Noise, days: usize) -> Synth {
        Synth {
            season: 96,
            days,
            seed,
            noise,
            noise_sd: 1_000.0,
            amplitude: 2_000.0,
            drift: -100.0,
            level_walk_sd: 10.0,
        }
    }

    /// The flows, oldest first.
    pub fn flows(&self) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut level = self.drift;
        let m = self.season as f64;
        (0..self.days * self.season)
            .map(|t| {
                let phase = (t % self.season) as f64 / m;
                let tau = std::f64::consts::TAU;
                let profile = -(tau * phase).sin() + 0.5 * (2.0 * tau * phase + 1.0).sin();
                let walk: f64 = rng.sample(StandardNormal);
                level += self.level_walk_sd * walk;
                level + self.amplitude * profile + self.noise_sd * self.noise.sample(&mut rng)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_history_and_noise_is_scaled() {
        for noise in Noise::ALL {
            let a = Synth::standard(7, noise, 3).flows();
            assert_eq!(a, Synth::standard(7, noise, 3).flows());
            assert_ne!(a, Synth::standard(8, noise, 3).flows());
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let xs: Vec<f64> = (0..20_000).map(|_| noise.sample(&mut rng)).collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
            assert!(mean.abs() < 0.05, "{noise:?} mean {mean}");
            assert!((var - 1.0).abs() < 0.1, "{noise:?} variance {var}");
        }
    }
}
