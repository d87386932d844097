//! How a generator plugs into a dataset run: plan sample k, run it on the device, finish it on
//! the host, store it. The shell supplies where host work runs and how progress shows.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::run::{DatasetRun, SampleId, SampleOutput};
use crate::error::Result;

/// The host part of a sample (masks, encoding): free of the device, so it may run on another
/// thread while the next sample uses the device.
pub type HostWork<D> = Box<dyn FnOnce() -> Result<SampleOutput<D>> + Send>;

/// A method that makes dataset samples: MosaicFusion, SegGen's MaskSyn/ImgSyn, …
pub trait SampleGenerator {
    /// The generator's own fields of the manifest record.
    type Details: Serialize + DeserializeOwned + Send + 'static;
    /// What is fixed before the device runs (layout, prompts, …), drawn from the sample's seed.
    type Plan;
    /// `info.description` of the assembled `annotations.json`.
    const DESCRIPTION: &'static str;

    /// Plans `sample`.
    fn plan(&self, sample: SampleId) -> Result<Self::Plan>;

    /// Runs `plan` on the device; `on_step(i, n)` after each denoising step.
    fn run(
        &self,
        plan: Self::Plan,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<HostWork<Self::Details>>;
}

/// Where host work runs: inline ([`Inline`]) or a pool of the shell's.
pub trait HostPool {
    /// Runs `job`, now or later; returns the error of an earlier job if one failed.
    fn submit(&mut self, job: Box<dyn FnOnce() -> Result<()> + Send>) -> Result<()>;
    /// Waits for every submitted job; the first error if any failed.
    fn finish(&mut self) -> Result<()>;
}

/// Runs host work at once, on the calling thread.
pub struct Inline;

impl HostPool for Inline {
    fn submit(&mut self, job: Box<dyn FnOnce() -> Result<()> + Send>) -> Result<()> {
        job()
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// What a run shows while it works.
pub trait Progress: Send + Sync {
    /// Step `step` of `total` of the sample on the device.
    fn step(&self, _step: usize, _total: usize) {}
    /// A sample is finished (now, or by an earlier run).
    fn sample_done(&self) {}
}

/// No progress display.
pub struct Quiet;

impl Progress for Quiet {}

/// Makes every sample of `samples` that `run` has no record of yet: planned and run on the
/// device here, finished and stored through `pool`. Returns how many were made.
pub fn generate_samples<G: SampleGenerator>(
    generator: &G,
    run: &DatasetRun,
    samples: impl IntoIterator<Item = SampleId>,
    pool: &mut dyn HostPool,
    progress: &std::sync::Arc<dyn Progress>,
) -> Result<usize> {
    let mut made = 0;
    for sample in samples {
        if run.record::<G::Details>(sample)?.is_some() {
            progress.sample_done();
            continue;
        }
        let plan = generator.plan(sample)?;
        let host = generator.run(plan, &mut |i, n| progress.step(i, n))?;
        let (run, progress) = (run.clone(), progress.clone());
        pool.submit(Box::new(move || {
            run.save(&host()?)?;
            progress.sample_done();
            Ok(())
        }))?;
        made += 1;
    }
    pool.finish()?;
    Ok(made)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::dataset::run::{RunFile, collect};
    use crate::dataset::{
        Annotated, AnnotationRecord, ImageRecord, MemoryStorage, SampleRecord, Shard, Storage,
    };

    /// A generator whose sample k is one tiny file holding its seed.
    struct Toy {
        planned: Mutex<Vec<u64>>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct ToyDetails {
        note: String,
    }

    impl Annotated for ToyDetails {
        fn image_record(&self, _id: u64) -> Option<ImageRecord> {
            None
        }

        fn annotations(&self) -> &[AnnotationRecord] {
            &[]
        }
    }

    impl SampleGenerator for Toy {
        type Details = ToyDetails;
        type Plan = SampleId;
        const DESCRIPTION: &'static str = "toy";

        fn plan(&self, sample: SampleId) -> Result<SampleId> {
            self.planned.lock().unwrap().push(sample.index);
            Ok(sample)
        }

        fn run(
            &self,
            sample: SampleId,
            on_step: &mut dyn FnMut(usize, usize),
        ) -> Result<HostWork<ToyDetails>> {
            on_step(1, 1);
            Ok(Box::new(move || {
                Ok(SampleOutput {
                    record: SampleRecord {
                        id: sample.image_id(),
                        index: sample.index,
                        seed: sample.seed,
                        kept: false,
                        reason: Some("a toy".into()),
                        model: "toy".into(),
                        scheduler: "none".into(),
                        steps: 1,
                        details: ToyDetails {
                            note: format!("sample {}", sample.index),
                        },
                    },
                    files: vec![(
                        format!("files/{}.txt", sample.index),
                        sample.seed.to_string().into_bytes(),
                    )],
                })
            }))
        }
    }

    fn run_file(num_images: u64) -> RunFile<serde_json::Value> {
        let mut category = serde_json::Map::new();
        category.insert("id".into(), 1.into());
        category.insert("name".into(), "cat".into());
        RunFile {
            model: "toy".into(),
            num_images,
            seed: 100,
            categories: vec![category],
            settings: serde_json::json!({"steps": 1}),
        }
    }

    #[test]
    fn shards_resume_and_collect() {
        let storage = Arc::new(MemoryStorage::new());
        let run_file = run_file(5);
        let run = DatasetRun::open(storage.clone(), &run_file).unwrap();
        let toy = Toy {
            planned: Mutex::new(vec![]),
        };
        let progress: Arc<dyn Progress> = Arc::new(Quiet);
        let shard = Shard::new(1, 2).unwrap();
        let made = generate_samples(&toy, &run, run_file.samples(shard), &mut Inline, &progress);
        assert_eq!(made.unwrap(), 2);
        assert_eq!(*toy.planned.lock().unwrap(), vec![1, 3]);
        let e = collect::<ToyDetails>(storage.as_ref(), "toy")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("3 of 5 samples are not finished (first: sample 0)"),
            "{e}"
        );

        // The rest, in a run that rejoins the same storage: finished samples are skipped.
        let run = DatasetRun::open(storage.clone(), &run_file).unwrap();
        let made = generate_samples(
            &toy,
            &run,
            run_file.samples(Shard::WHOLE),
            &mut Inline,
            &progress,
        );
        assert_eq!(made.unwrap(), 3);
        assert_eq!(*toy.planned.lock().unwrap(), vec![1, 3, 0, 2, 4]);
        assert_eq!(storage.read("files/4.txt").unwrap().unwrap(), b"104");
        let records = collect::<ToyDetails>(storage.as_ref(), "toy").unwrap();
        assert_eq!(
            records.iter().map(|r| r.index).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        let manifest = storage.read("manifest.jsonl").unwrap().unwrap();
        let first = std::str::from_utf8(&manifest)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string();
        assert_eq!(
            first,
            r#"{"id":1,"index":0,"seed":100,"kept":false,"reason":"a toy","model":"toy","scheduler":"none","steps":1,"note":"sample 0"}"#,
            "details follow the common fields"
        );
        let annotations: serde_json::Value =
            serde_json::from_slice(&storage.read("annotations.json").unwrap().unwrap()).unwrap();
        assert_eq!(annotations["info"]["description"], "toy");
        assert_eq!(annotations["categories"][0]["image_count"], 0);
    }

    #[test]
    fn a_run_with_other_settings_is_refused() {
        let storage = Arc::new(MemoryStorage::new());
        DatasetRun::open(storage.clone(), &run_file(5)).unwrap();
        DatasetRun::open(storage.clone(), &run_file(5)).unwrap();
        let e = DatasetRun::open(storage.clone(), &run_file(6))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("other settings (num_images)"), "{e}");
        storage
            .write("samples/000000000001.json", b"{trunc")
            .unwrap();
        let run = DatasetRun::open(storage.clone(), &run_file(5)).unwrap();
        let e = run
            .record::<ToyDetails>(SampleId::new(0, 100))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("samples/000000000001.json") && e.contains("delete it"),
            "{e}"
        );
    }

    /// A failing host job stops the run with its error, and what was stored stays.
    #[test]
    fn a_failing_write_keeps_finished_samples() {
        struct FailSecond(MemoryStorage);
        impl Storage for FailSecond {
            fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
                self.0.read(path)
            }
            fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
                if path == "files/1.txt" {
                    return Err(crate::Error::Io {
                        file: path.into(),
                        message: "cannot write".into(),
                    });
                }
                self.0.write(path, bytes)
            }
            fn display(&self, path: &str) -> String {
                path.into()
            }
        }
        let storage = Arc::new(FailSecond(MemoryStorage::new()));
        let run_file = run_file(3);
        let run = DatasetRun::open(storage.clone(), &run_file).unwrap();
        let toy = Toy {
            planned: Mutex::new(vec![]),
        };
        let progress: Arc<dyn Progress> = Arc::new(Quiet);
        let e = generate_samples(
            &toy,
            &run,
            run_file.samples(Shard::WHOLE),
            &mut Inline,
            &progress,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("files/1.txt"), "{e}");
        assert!(
            run.record::<ToyDetails>(SampleId::new(0, 100))
                .unwrap()
                .is_some()
        );
        assert!(
            run.record::<ToyDetails>(SampleId::new(1, 100))
                .unwrap()
                .is_none()
        );
    }
}
