//! The shapes world: scenes of 1–4 shapes in named colours on textured low-colour
//! backgrounds, drawn with their exact instance masks, label maps, colour maps and captions.
//! The colour rule makes the truth measurable from the pixels alone: object pixels have HSV
//! saturation ≥ 0.6 and value ≥ 0.4, background pixels saturation ≤ 0.2.
//!
//! [`classes`] are the shape classes (categories and palette), [`geometry`] their outlines and
//! poses, [`colors`] the colours and the rule, [`scene`] draws a scene from a seed, [`render`]
//! draws it, [`captions`] describes it, and [`world`] makes it a dataset generator whose
//! records are [`record`]s. [`truth`] and [`drawn_shape`] read generated images back: where
//! their objects are, and which colour and shape they drew. Pure functions on buffers, but
//! for the run's [`Storage`].
//!
//! [`Storage`]: crate::dataset::Storage

pub mod captions;
pub mod classes;
pub mod colors;
pub mod drawn_shape;
pub mod geometry;
pub mod record;
pub mod render;
pub mod scene;
pub mod truth;
pub mod world;

pub use classes::ShapeClass;
pub use record::{ObjectRecord, ShapesDetails, ShapesRecord};
pub use scene::{Scene, sample_scene};
pub use world::{ShapesSettings, ShapesWorld, finish, start};
