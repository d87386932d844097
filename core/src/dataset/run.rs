//! A dataset run: `run.json` (what decides the samples), one record per finished sample under
//! `samples/`, resume, and `collect` (assembling `annotations.json` and `manifest.jsonl`).

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::assemble::assemble_annotations;
use super::categories::{Category, parse_categories};
use super::sample_record::{Annotated, SampleRecord, manifest_jsonl};
use super::shard::Shard;
use super::storage::Storage;
use crate::error::{Error, Result};

/// `run.json`: written by the first process of a run; shards and reruns must agree with it.
pub const RUN_FILE: &str = "run.json";
pub const ANNOTATIONS_FILE: &str = "annotations.json";
pub const MANIFEST_FILE: &str = "manifest.jsonl";
/// Folder of the per-sample records that mark samples finished.
pub const SAMPLES_DIR: &str = "samples";

/// One sample of a run: its position and its seed (`base seed + index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleId {
    pub index: u64,
    pub seed: u64,
}

impl SampleId {
    /// Sample `index` of a run with base seed `base_seed`.
    pub fn new(index: u64, base_seed: u64) -> Self {
        Self {
            index,
            seed: base_seed.wrapping_add(index),
        }
    }

    /// The COCO image id: `index + 1`.
    pub fn image_id(&self) -> u64 {
        self.index + 1
    }

    /// Where this sample's record is kept.
    pub fn record_path(&self) -> String {
        format!("{SAMPLES_DIR}/{:012}.json", self.image_id())
    }
}

/// What a run is: its size, base seed, categories, the model, and the generator's settings
/// (flattened into the same JSON object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: DeserializeOwned"))]
pub struct RunFile<S> {
    pub model: String,
    pub num_images: u64,
    pub seed: u64,
    /// The category objects as given (every source field kept).
    pub categories: Vec<Map<String, Value>>,
    #[serde(flatten)]
    pub settings: S,
}

impl<S> RunFile<S> {
    /// Sample `index` of this run.
    pub fn sample(&self, index: u64) -> SampleId {
        SampleId::new(index, self.seed)
    }

    /// The samples of `shard`, in order.
    pub fn samples(&self, shard: Shard) -> impl Iterator<Item = SampleId> + '_ {
        (0..self.num_images)
            .filter(move |&k| shard.contains(k))
            .map(|k| self.sample(k))
    }
}

/// A run's storage, once `run.json` is known to match.
#[derive(Clone)]
pub struct DatasetRun {
    storage: Arc<dyn Storage>,
}

impl DatasetRun {
    /// Starts or rejoins the run `run` in `storage`: writes `run.json`, or checks that the one
    /// there describes the same run (an error listing the settings that differ otherwise).
    pub fn open<S: Serialize>(storage: Arc<dyn Storage>, run: &RunFile<S>) -> Result<Self> {
        // Through `Value`, so keys are written sorted whatever the settings' field order.
        let value = serde_json::to_value(run).expect("run settings serialise");
        match storage.read(RUN_FILE)? {
            Some(bytes) => {
                let existing: Value = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::bad_file(
                        storage.display(RUN_FILE),
                        format!("unreadable run file: {e}"),
                    )
                })?;
                if existing != value {
                    let differs: Vec<&str> = value
                        .as_object()
                        .expect("a run file is an object")
                        .iter()
                        .filter(|(k, v)| existing.get(k.as_str()) != Some(*v))
                        .map(|(k, _)| k.as_str())
                        .collect();
                    return Err(Error::Invalid(format!(
                        "{} holds a run with other settings ({}); use a new output folder",
                        storage.display(""),
                        differs.join(", ")
                    )));
                }
            }
            None => {
                let bytes = serde_json::to_vec_pretty(&value).expect("JSON values serialise");
                storage.write(RUN_FILE, &bytes)?;
            }
        }
        Ok(Self { storage })
    }

    /// The storage of this run.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The record of `sample` if it is finished.
    pub fn record<D: DeserializeOwned>(&self, sample: SampleId) -> Result<Option<SampleRecord<D>>> {
        read_record(self.storage.as_ref(), sample)
    }

    /// Stores a finished sample: its files first, then the record that marks it finished.
    pub fn save<D: Serialize>(&self, output: &SampleOutput<D>) -> Result<()> {
        for (path, bytes) in &output.files {
            self.storage.write(path, bytes)?;
        }
        let json = serde_json::to_vec(&output.record).expect("records serialise");
        self.storage
            .write(&output.record.sample().record_path(), &json)
    }
}

/// A finished sample: its record and its files (paths relative to the dataset root).
#[derive(Debug, Clone)]
pub struct SampleOutput<D> {
    pub record: SampleRecord<D>,
    pub files: Vec<(String, Vec<u8>)>,
}

fn read_record<D: DeserializeOwned>(
    storage: &dyn Storage,
    sample: SampleId,
) -> Result<Option<SampleRecord<D>>> {
    let path = sample.record_path();
    let Some(bytes) = storage.read(&path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::bad_file(
            storage.display(&path),
            format!("unreadable sample record (delete it to redo the sample): {e}"),
        )
    })
}

/// The categories recorded in `run.json`.
pub fn run_categories(storage: &dyn Storage, run: &RunFile<Value>) -> Result<Vec<Category>> {
    let bytes = serde_json::to_vec(&run.categories).expect("JSON values serialise");
    parse_categories(&bytes, &storage.display(RUN_FILE))
}

/// Reads `run.json` of a dataset in `storage`.
pub fn read_run_file(storage: &dyn Storage) -> Result<RunFile<Value>> {
    let path = storage.display(RUN_FILE);
    let bytes = storage.read(RUN_FILE)?.ok_or_else(|| Error::MissingFile {
        file: path.clone(),
        message: "no run file: is this a dataset folder of `maskforge generate`?".into(),
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::bad_file(path, format!("unreadable run file: {e}")))
}

/// Writes `manifest.jsonl` and `annotations.json` (with `description` in its `info`) from
/// `records`, sorted by sample.
pub fn write_outputs<D: Serialize + Annotated>(
    storage: &dyn Storage,
    categories: &[Category],
    records: &[SampleRecord<D>],
    description: &str,
) -> Result<()> {
    storage.write(MANIFEST_FILE, &manifest_jsonl(records))?;
    let annotations = assemble_annotations(categories, records, description)?;
    let bytes = serde_json::to_vec(&annotations).expect("JSON values serialise");
    storage.write(ANNOTATIONS_FILE, &bytes)
}

/// `collect`: assembles `annotations.json` and `manifest.jsonl` from the records of every
/// sample of the run in `storage` (after all shards finished). Returns the records.
pub fn collect<D: Serialize + DeserializeOwned + Annotated>(
    storage: &dyn Storage,
    description: &str,
) -> Result<Vec<SampleRecord<D>>> {
    let (categories, records) = finished_records(storage)?;
    write_outputs(storage, &categories, &records, description)?;
    Ok(records)
}

/// The run's categories and the record of every sample, in order; an error naming the first
/// unfinished sample if any is missing. Generators with their own output files assemble from it.
pub fn finished_records<D: DeserializeOwned>(
    storage: &dyn Storage,
) -> Result<(Vec<Category>, Vec<SampleRecord<D>>)> {
    let run = read_run_file(storage)?;
    let categories = run_categories(storage, &run)?;
    let mut records = Vec::new();
    let mut missing = Vec::new();
    for sample in run.samples(Shard::WHOLE) {
        match read_record(storage, sample)? {
            Some(r) => records.push(r),
            None => missing.push(sample.index),
        }
    }
    if let Some(first) = missing.first() {
        return Err(Error::Invalid(format!(
            "{}: {} of {} samples are not finished (first: sample {first}); rerun the shards",
            storage.display(""),
            missing.len(),
            run.num_images,
        )));
    }
    Ok((categories, records))
}
