//! Dynamic loss scaling for `f16-mixed` training, PyTorch's `GradScaler`
//! policy: the loss's gradient is multiplied by the scale before the
//! backward pass (so that small gradients of the f16 products do not flush
//! to zero) and the parameter gradients divided by it after, in f32. A step
//! whose gradients overflowed (not finite) makes no update and halves the
//! scale; after [`LossScale::GROWTH_INTERVAL`] finite steps in a row it
//! doubles. The state is saved with every checkpoint, so a resumed run
//! scales as the uninterrupted one.

use serde::{Deserialize, Serialize};

/// The scale and how many finite steps it has lasted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    /// The factor of the loss's gradient.
    pub scale: f64,
    /// Finite steps in a row at this scale.
    pub good_steps: usize,
}

/// What a step's gradients mean for the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Finite: update.
    Apply,
    /// Overflowed at this scale: no update; the scale was halved.
    Skip,
    /// Not finite even at the smallest scale: the run diverged.
    Diverged,
}

impl Default for LossScale {
    fn default() -> Self {
        Self {
            scale: Self::INITIAL,
            good_steps: 0,
        }
    }
}

impl LossScale {
    /// The first scale, 2^16 (PyTorch's).
    pub const INITIAL: f64 = 65536.0;
    /// Finite steps in a row before the scale doubles (PyTorch's).
    pub const GROWTH_INTERVAL: usize = 2000;
    /// Below this scale, gradients that are still not finite are not an
    /// f16 overflow: the run diverged.
    pub const MIN: f64 = 1.0;
    /// The largest scale: twice it would overflow f16's range by itself.
    pub const MAX: f64 = 16777216.0;

    /// Takes a step's verdict from whether its unscaled gradients and loss
    /// were all finite, and moves the scale for the next step.
    pub fn observe(&mut self, finite: bool) -> Verdict {
        if finite {
            self.good_steps += 1;
            if self.good_steps == Self::GROWTH_INTERVAL {
                self.scale = (self.scale * 2.0).min(Self::MAX);
                self.good_steps = 0;
            }
            Verdict::Apply
        } else if self.scale / 2.0 < Self::MIN {
            Verdict::Diverged
        } else {
            self.scale /= 2.0;
            self.good_steps = 0;
            Verdict::Skip
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflow_halves_the_scale_and_a_long_finite_run_doubles_it() {
        let mut s = LossScale::default();
        assert_eq!(s.observe(false), Verdict::Skip);
        assert_eq!(s.scale, 32768.0);
        for _ in 0..LossScale::GROWTH_INTERVAL - 1 {
            assert_eq!(s.observe(true), Verdict::Apply);
        }
        assert_eq!(s.scale, 32768.0);
        s.observe(true);
        assert_eq!((s.scale, s.good_steps), (65536.0, 0));
        s.observe(true);
        assert_eq!(s.observe(false), Verdict::Skip);
        assert_eq!((s.scale, s.good_steps), (32768.0, 0));
    }

    #[test]
    fn overflows_down_to_the_smallest_scale_are_divergence() {
        let mut s = LossScale::default();
        let skips = (0..40)
            .take_while(|_| s.observe(false) == Verdict::Skip)
            .count();
        assert_eq!(skips, 16);
        assert_eq!(s.scale, 1.0);
        assert_eq!(s.observe(false), Verdict::Diverged);
    }

    #[test]
    fn the_scale_stops_growing_at_its_largest() {
        let mut s = LossScale {
            scale: LossScale::MAX,
            good_steps: LossScale::GROWTH_INTERVAL - 1,
        };
        s.observe(true);
        assert_eq!(s.scale, LossScale::MAX);
    }
}
