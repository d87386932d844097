//! Datasets, for any generator: categories, LVIS/COCO records, sample records, runs (seeds,
//! shards, resume, atomic storage) and their assembly into `annotations.json` and
//! `manifest.jsonl`. Knows no generator: MosaicFusion and the others plug in through
//! [`SampleGenerator`].

pub mod assemble;
pub mod categories;
pub mod generator;
pub mod records;
pub mod run;
pub mod sample_record;
pub mod shard;
pub mod storage;

pub use assemble::assemble_annotations;
pub use categories::{Category, Frequency, main_pool, parse_categories};
pub use generator::{
    HostPool, HostWork, Inline, Progress, Quiet, SampleGenerator, generate_samples,
};
pub use records::{AnnotationRecord, ImageRecord, RleRecord, image_file_name};
pub use run::{
    DatasetRun, RunFile, SampleId, SampleOutput, collect, finished_records, read_run_file,
    write_outputs,
};
pub use sample_record::{Annotated, SampleRecord, manifest_jsonl};
pub use shard::Shard;
pub use storage::{MemoryStorage, Storage};
