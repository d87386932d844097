//! Dataset formats: LVIS/COCO records and the assembled `annotations.json`.

pub mod assemble;
pub mod records;

pub use assemble::{SampleRecord, assemble_annotations, manifest_jsonl};
pub use records::{AnnotationRecord, ImageRecord, RleRecord, image_file_name};
