//! A benchmark's figures: step-time summary, throughput, FLOP rate and MFU,
//! memory; printed as a few lines and saved as JSON. `scripts/bench_torch.py`
//! writes the same fields, so the two files compare field by field.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Order statistics of the timed steps, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Median.
    pub median: f64,
    /// 10th percentile (nearest rank).
    pub p10: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// Fastest step.
    pub min: f64,
    /// Slowest step.
    pub max: f64,
}

impl Summary {
    /// The summary of `times`; `None` when empty or not all finite.
    pub fn of(times: &[f64]) -> Option<Self> {
        if times.is_empty() || times.iter().any(|t| !t.is_finite()) {
            return None;
        }
        let mut sorted = times.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank =
            |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Self {
            median,
            p10: rank(0.1),
            p90: rank(0.9),
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

/// What one benchmark run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// `gcse` or `pytorch` (and its variant: eager, bf16, compile).
    pub tool: String,
    /// `train` or `embed`.
    pub workload: String,
    /// Preset name or model directory.
    pub model: String,
    /// Backend and device, as printed.
    pub backend: String,
    /// Floating-point precision of the computation.
    pub precision: String,
    /// Sentences per step (a training step encodes each twice).
    pub batch: usize,
    /// Tokens per sentence.
    pub seq_len: usize,
    /// Untimed steps.
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// The first warm-up step alone (compilation, autotuning), seconds.
    pub first_step: f64,
    /// The timed steps.
    pub step_seconds: Summary,
    /// `batch / median`.
    pub sentences_per_second: f64,
    /// `batch * seq_len / median`.
    pub tokens_per_second: f64,
    /// Model FLOPs of one step (see `bench::flops`).
    pub flops_per_step: f64,
    /// `flops_per_step / median / 1e12`.
    pub achieved_tflops: f64,
    /// The peak passed with `--peak-tflops`.
    pub peak_tflops: Option<f64>,
    /// `achieved / peak`.
    pub mfu: Option<f64>,
    /// Peak resident host memory of the process, bytes.
    pub peak_host_bytes: Option<u64>,
    /// Device memory Burn's allocator held after the last step, bytes, on a
    /// GPU backend.
    pub peak_device_bytes: Option<u64>,
    /// `train` with GradCache: sequences per chunk.
    pub grad_cache_chunk: Option<usize>,
    /// `train`: the timed steps' seconds until the update was enqueued,
    /// before the loss was read back (the host's part of the step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_enqueue_seconds: Option<Summary>,
}

/// Bytes in GiB.
pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

impl BenchReport {
    /// Fills in the derived figures from the per-step `times` (warm-up first).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tool: &str,
        workload: &str,
        model: &str,
        backend: &str,
        batch: usize,
        seq_len: usize,
        warmup: usize,
        times: &[f64],
        flops_per_step: f64,
        peak_tflops: Option<f64>,
    ) -> Option<Self> {
        let step_seconds = Summary::of(&times[warmup.min(times.len())..])?;
        let achieved_tflops = flops_per_step / step_seconds.median / 1e12;
        Some(Self {
            tool: tool.into(),
            workload: workload.into(),
            model: model.into(),
            backend: backend.into(),
            precision: "f32".into(),
            batch,
            seq_len,
            warmup,
            steps: times.len() - warmup.min(times.len()),
            first_step: times[0],
            step_seconds,
            sentences_per_second: batch as f64 / step_seconds.median,
            tokens_per_second: (batch * seq_len) as f64 / step_seconds.median,
            flops_per_step,
            achieved_tflops,
            peak_tflops,
            mfu: peak_tflops.map(|p| achieved_tflops / p),
            peak_host_bytes: super::peak_host_rss(),
            peak_device_bytes: None,
            grad_cache_chunk: None,
            host_enqueue_seconds: None,
        })
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.step_seconds;
        writeln!(
            f,
            "{} {} {}: {}, batch {} x {} tokens, {} precision{}",
            self.tool,
            self.workload,
            self.model,
            self.backend,
            self.batch,
            self.seq_len,
            self.precision,
            self.grad_cache_chunk
                .map_or(String::new(), |c| format!(", GradCache chunks of {c}"))
        )?;
        writeln!(
            f,
            "  step {:.1} ms median (p10 {:.1}, p90 {:.1}, min {:.1}, max {:.1}; {} steps after {} warm-up, the first {:.2} s)",
            s.median * 1e3,
            s.p10 * 1e3,
            s.p90 * 1e3,
            s.min * 1e3,
            s.max * 1e3,
            self.steps,
            self.warmup,
            self.first_step
        )?;
        if let Some(e) = &self.host_enqueue_seconds {
            writeln!(
                f,
                "  host enqueue {:.1} ms median ({:.0}% of the step)",
                e.median * 1e3,
                100.0 * e.median / s.median
            )?;
        }
        write!(
            f,
            "  {:.1} sentences/s, {:.0} tokens/s, {:.3} TFLOP/s",
            self.sentences_per_second, self.tokens_per_second, self.achieved_tflops
        )?;
        if let Some(mfu) = self.mfu {
            write!(f, " ({:.1}% MFU)", mfu * 100.0)?;
        }
        if let Some(b) = self.peak_host_bytes {
            write!(f, ", peak host memory {:.2} GiB", gib(b))?;
        }
        if let Some(b) = self.peak_device_bytes {
            write!(f, ", device memory {:.2} GiB", gib(b))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_nearest_ranks_and_the_middle_pair() {
        let times: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let s = Summary::of(&times).unwrap();
        assert_eq!(
            (s.median, s.p10, s.p90, s.min, s.max),
            (5.5, 1.0, 9.0, 1.0, 10.0)
        );
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.p10, s.p90), (2.0, 1.0, 3.0));
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn report_derives_rates_from_the_timed_steps_only() {
        // One slow warm-up step, then four of 0.5 s.
        let r = BenchReport::new(
            "gcse",
            "train",
            "m",
            "cpu",
            64,
            32,
            1,
            &[9.0, 0.5, 0.5, 0.5, 0.5],
            2e12,
            Some(8.0),
        )
        .unwrap();
        assert_eq!(r.steps, 4);
        assert_eq!(r.first_step, 9.0);
        assert_eq!(r.sentences_per_second, 128.0);
        assert_eq!(r.tokens_per_second, 4096.0);
        assert_eq!(r.achieved_tflops, 4.0);
        assert_eq!(r.mfu, Some(0.5));
        assert!(BenchReport::new(
            "gcse",
            "train",
            "m",
            "cpu",
            64,
            32,
            3,
            &[1.0, 1.0, 1.0],
            1.0,
            None
        )
        .is_none());
    }
}
