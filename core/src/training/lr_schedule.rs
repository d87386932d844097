//! [`LrSchedule`]: the learning rate of each optimiser step, as diffusers' `get_scheduler`.

use std::f64::consts::PI;

/// diffusers' `--lr_scheduler` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrScheduleKind {
    Constant,
    ConstantWithWarmup,
    Linear,
    Cosine,
}

impl std::str::FromStr for LrScheduleKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "constant" => Self::Constant,
            "constant_with_warmup" => Self::ConstantWithWarmup,
            "linear" => Self::Linear,
            "cosine" => Self::Cosine,
            _ => {
                return Err(format!(
                    "unknown learning-rate schedule {s:?} (constant, constant_with_warmup, linear, cosine)"
                ));
            }
        })
    }
}

/// A base learning rate scaled by a warm-up and a decay over `total` optimiser steps
/// (`LambdaLR` with transformers' lambdas; the cosine is half a period).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LrSchedule {
    pub kind: LrScheduleKind,
    pub base: f64,
    pub warmup: usize,
    pub total: usize,
}

impl LrSchedule {
    /// The learning rate of optimiser step `step` (0-based): `LambdaLR` before its
    /// `step`-th `scheduler.step()`.
    pub fn lr(&self, step: usize) -> f64 {
        let (s, w, n) = (step as f64, self.warmup as f64, self.total as f64);
        let warming = step < self.warmup;
        let factor = match self.kind {
            LrScheduleKind::Constant => 1.0,
            _ if warming => s / w.max(1.0),
            LrScheduleKind::ConstantWithWarmup => 1.0,
            LrScheduleKind::Linear => ((n - s) / (n - w).max(1.0)).max(0.0),
            LrScheduleKind::Cosine => {
                let progress = (s - w) / (n - w).max(1.0);
                (0.5 * (1.0 + (PI * 0.5 * 2.0 * progress).cos())).max(0.0)
            }
        };
        self.base * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_matches_transformers() {
        let s = LrSchedule {
            kind: LrScheduleKind::Cosine,
            base: 1.0,
            warmup: 2,
            total: 10,
        };
        // transformers.get_cosine_schedule_with_warmup(opt, 2, 10) lambdas 0..=10.
        let expected = [
            0.0,
            0.5,
            1.0,
            0.9619397662556434,
            0.8535533905932737,
            0.6913417161825449,
            0.5,
            0.30865828381745514,
            0.14644660940672627,
            0.03806023374435663,
            0.0,
        ];
        for (k, e) in expected.iter().enumerate() {
            assert!((s.lr(k) - e).abs() < 1e-12, "step {k}: {} vs {e}", s.lr(k));
        }
        let linear = LrSchedule {
            kind: LrScheduleKind::Linear,
            ..s
        };
        assert_eq!(linear.lr(6), 0.5);
        assert!("cosine_x".parse::<LrScheduleKind>().is_err());
    }
}
