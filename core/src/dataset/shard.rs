//! Shards: several processes share one run, each making the samples `k` with
//! `k mod count = index`.

use std::str::FromStr;

use crate::error::{Error, Result};

/// One of `count` shards of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The whole run in one process.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// `index/count` with `index < count`.
    pub fn new(index: u64, count: u64) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(Error::Invalid(format!(
                "expected I/N with 0 <= I < N, got `{index}/{count}`"
            )));
        }
        Ok(Self { index, count })
    }

    /// Whether sample `index` belongs to this shard.
    pub fn contains(&self, index: u64) -> bool {
        index % self.count == self.index
    }

    /// The shard a cluster scheduler assigned, from its environment (`var` reads one variable):
    /// a Slurm array job (`SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_MIN`,
    /// `SLURM_ARRAY_TASK_COUNT`) or a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX` with
    /// `MASKFORGE_SHARDS`); `None` when neither is set.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        let num = |k: &str, v: String| {
            v.parse::<u64>().map_err(|_| {
                Error::Invalid(format!(
                    "environment variable {k}={v} is not a whole number"
                ))
            })
        };
        let shard = |what: &str, i: u64, n: u64| {
            Self::new(i, n).map_err(|e| Error::Invalid(format!("{what} shard: {e}")))
        };
        if let (Some(id), Some(count)) = (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT"))
        {
            let min = var("SLURM_ARRAY_TASK_MIN")
                .map(|m| num("SLURM_ARRAY_TASK_MIN", m))
                .transpose()?
                .unwrap_or(0);
            let id = num("SLURM_ARRAY_TASK_ID", id)?;
            let i = id.checked_sub(min).ok_or_else(|| {
                Error::Invalid(format!(
                    "Slurm array shard: SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
                ))
            })?;
            return shard("Slurm array", i, num("SLURM_ARRAY_TASK_COUNT", count)?).map(Some);
        }
        if let Some(index) = var("JOB_COMPLETION_INDEX") {
            let n = var("MASKFORGE_SHARDS").ok_or_else(|| {
                Error::Invalid(
                    "JOB_COMPLETION_INDEX is set: give the number of shards in MASKFORGE_SHARDS \
                     or --shard I/N"
                        .into(),
                )
            })?;
            let (i, n) = (
                num("JOB_COMPLETION_INDEX", index)?,
                num("MASKFORGE_SHARDS", n)?,
            );
            return shard("Indexed Job", i, n).map(Some);
        }
        Ok(None)
    }
}

impl FromStr for Shard {
    type Err = Error;

    /// Parses `I/N`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Invalid(format!("expected I/N with 0 <= I < N, got `{s}`"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (i, n) = (
            i.trim().parse::<u64>().map_err(|_| bad())?,
            n.trim().parse::<u64>().map_err(|_| bad())?,
        );
        Self::new(i, n).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn parses_and_selects() {
        let s: Shard = "1/3".parse().unwrap();
        assert_eq!(s, Shard { index: 1, count: 3 });
        assert!(s.contains(4) && !s.contains(3));
        for bad in ["3/3", "1", "a/2", "0/0"] {
            assert!(bad.parse::<Shard>().unwrap_err().to_string().contains(bad));
        }
    }

    #[test]
    fn from_slurm_and_kubernetes() {
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert_eq!(
            Shard::from_env(slurm).unwrap(),
            Some(Shard::new(1, 3).unwrap())
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2"), ("MASKFORGE_SHARDS", "4")]);
        assert_eq!(
            Shard::from_env(k8s).unwrap(),
            Some(Shard::new(2, 4).unwrap())
        );
        let e = Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "2")])).unwrap_err();
        assert!(e.to_string().contains("MASKFORGE_SHARDS"));
        let e = Shard::from_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "x"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("SLURM_ARRAY_TASK_ID=x"));
        assert_eq!(Shard::from_env(env(&[])).unwrap(), None);
    }
}
