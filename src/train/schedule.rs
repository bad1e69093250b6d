//! Learning-rate schedule: linear warm-up from 0, then linear decay to 0 at
//! the last step (Hugging Face's `get_linear_schedule_with_warmup`, which the
//! SimCSE and GCSE code use).

use burn::optim::lr_scheduler::LrScheduler;
use burn::optim::LearningRate;
use burn::tensor::backend::Backend;

/// The schedule and its position (the number of steps taken).
#[derive(Debug, Clone, PartialEq)]
pub struct LinearWarmupDecay {
    peak: f64,
    warmup: usize,
    total: usize,
    step: usize,
}

impl LinearWarmupDecay {
    /// `total` optimizer steps, the first `warmup` of them warming up to `peak`.
    pub fn new(peak: f64, warmup: usize, total: usize) -> Self {
        Self {
            peak,
            warmup,
            total,
            step: 0,
        }
    }

    /// The rate of step `k` (0-based).
    pub fn at(&self, k: usize) -> f64 {
        if k < self.warmup {
            return self.peak * k as f64 / self.warmup.max(1) as f64;
        }
        let left = self.total.saturating_sub(k) as f64;
        self.peak * (left / self.total.saturating_sub(self.warmup).max(1) as f64).max(0.0)
    }
}

impl LrScheduler for LinearWarmupDecay {
    type Record<B: Backend> = usize;

    fn step(&mut self) -> LearningRate {
        let lr = self.at(self.step);
        self.step += 1;
        lr
    }

    fn to_record<B: Backend>(&self) -> usize {
        self.step
    }

    fn load_record<B: Backend>(mut self, record: usize) -> Self {
        self.step = record;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hugging_face_linear_schedule() {
        // transformers.get_linear_schedule_with_warmup(opt, 2, 6) with lr 1.0:
        // 0, 0.5, 1.0, 0.75, 0.5, 0.25
        let mut s = LinearWarmupDecay::new(1.0, 2, 6);
        let lrs: Vec<f64> = (0..6).map(|_| s.step()).collect();
        assert_eq!(lrs, vec![0.0, 0.5, 1.0, 0.75, 0.5, 0.25]);
        let plain: Vec<f64> = (0..4)
            .map(|k| LinearWarmupDecay::new(2.0, 0, 4).at(k))
            .collect();
        assert_eq!(plain, vec![2.0, 1.5, 1.0, 0.5]);
    }

    #[test]
    fn resumes_from_its_record() {
        let mut a = LinearWarmupDecay::new(1.0, 1, 10);
        a.step();
        a.step();
        let record = LrScheduler::to_record::<burn::backend::NdArray>(&a);
        let mut b =
            LinearWarmupDecay::new(1.0, 1, 10).load_record::<burn::backend::NdArray>(record);
        assert_eq!(a.step(), b.step());
    }
}
