//! Merging synthetic COCO/LVIS annotation files into an existing dataset, in bounded memory.
//!
//! The base (e.g. the 1.3 GB LVIS v1 train file) is never loaded whole: it is streamed twice.
//! Pass 1 reads only the largest image and annotation ids and the (small) category list; pass 2
//! copies every top-level value verbatim, in file order, except that
//!
//! * `images` and `annotations` are copied element by element (each element verbatim) and the
//!   added records are appended after the base's,
//! * `categories` is replaced by the base's list with `image_count`/`instance_count` increased
//!   for the added data (untouched categories are copied verbatim), followed by the categories
//!   that only the added files define.
//!
//! Keys the base lacks among `images`, `annotations` and `categories` are appended at the end.
//! The added files are small and loaded whole; their images and annotations get fresh ids
//! after the base's largest, in order over all added files, and `image_id` is remapped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Buffer of the base reader and of the output writer.
const BUFFER: usize = 1 << 20;

/// One added (synthetic) annotation file, loaded and checked for internal consistency.
#[derive(Debug, Clone)]
pub struct AddFile {
    name: String,
    images: Vec<(u64, Map<String, Value>)>,
    /// Annotations with their image id (as in this file) and category id.
    annotations: Vec<(u64, u64, Map<String, Value>)>,
    categories: Vec<(u64, Map<String, Value>)>,
}

/// What a merge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeSummary {
    /// Images and annotations in the base.
    pub base_images: u64,
    pub base_annotations: u64,
    pub images_added: u64,
    pub annotations_added: u64,
    /// First id given to an added image / annotation (the base's largest + 1).
    pub first_image_id: u64,
    pub first_annotation_id: u64,
    /// Base categories whose counts changed.
    pub categories_updated: usize,
    /// Categories only the added files define, appended.
    pub categories_added: usize,
}

impl fmt::Display for MergeSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} images added (ids from {}), {} annotations added (ids from {}) to {} images and {} \
             annotations; {} categories updated, {} added",
            self.images_added,
            self.first_image_id,
            self.annotations_added,
            self.first_annotation_id,
            self.base_images,
            self.base_annotations,
            self.categories_updated,
            self.categories_added
        )
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `v` as an id: a non-negative integer.
fn as_id(v: Option<&Value>, what: &str) -> std::result::Result<u64, String> {
    match v {
        None => Err(format!("has no `{what}`")),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("`{what}` is {v}, expected a non-negative integer")),
    }
}

/// The array under `key` of a top-level object (empty when absent), as objects.
fn records(name: &str, top: &mut Map<String, Value>, key: &str) -> Result<Vec<Map<String, Value>>> {
    let items = match top.remove(key) {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => bail!("{name}: `{key}` is {}, expected an array", kind(&other)),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(m) => Ok(m),
            other => bail!("{name}: {key}[{i}] is {}, expected an object", kind(&other)),
        })
        .collect()
}

impl AddFile {
    /// Reads and checks an added file.
    pub fn read(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let file = File::open(path).with_context(|| format!("{name}: cannot open"))?;
        let value: Value = serde_json::from_reader(BufReader::new(file))
            .map_err(|e| anyhow!("{name}: {}: {e}", json_problem(&e)))?;
        Self::from_value(&name, value)
    }

    /// Checks a parsed added file; `name` is used in error messages.
    pub fn from_value(name: &str, value: Value) -> Result<Self> {
        let mut top = match value {
            Value::Object(m) => m,
            other => bail!(
                "{name}: top level is {}, expected an object with `images`, `annotations` and \
                 `categories`",
                kind(&other)
            ),
        };
        let mut images = Vec::new();
        let mut image_at = HashMap::new();
        for (i, image) in records(name, &mut top, "images")?.into_iter().enumerate() {
            let id =
                as_id(image.get("id"), "id").map_err(|e| anyhow!("{name}: images[{i}] {e}"))?;
            if let Some(j) = image_at.insert(id, i) {
                bail!("{name}: images[{i}]: duplicate image id {id} (also images[{j}])");
            }
            images.push((id, image));
        }
        let mut categories = Vec::new();
        let mut category_at = HashMap::new();
        for (i, cat) in records(name, &mut top, "categories")?
            .into_iter()
            .enumerate()
        {
            let id =
                as_id(cat.get("id"), "id").map_err(|e| anyhow!("{name}: categories[{i}] {e}"))?;
            if let Some(j) = category_at.insert(id, i) {
                bail!("{name}: categories[{i}]: duplicate category id {id} (also categories[{j}])");
            }
            categories.push((id, cat));
        }
        let mut annotations = Vec::new();
        let mut annotation_at = HashMap::new();
        for (i, ann) in records(name, &mut top, "annotations")?
            .into_iter()
            .enumerate()
        {
            let at = |e: String| anyhow!("{name}: annotations[{i}] {e}");
            if ann.contains_key("id") {
                let id = as_id(ann.get("id"), "id").map_err(at)?;
                if let Some(j) = annotation_at.insert(id, i) {
                    bail!(
                        "{name}: annotations[{i}]: duplicate annotation id {id} (also \
                         annotations[{j}])"
                    );
                }
            }
            let image_id = as_id(ann.get("image_id"), "image_id").map_err(at)?;
            let category_id = as_id(ann.get("category_id"), "category_id").map_err(at)?;
            if !image_at.contains_key(&image_id) {
                bail!(
                    "{name}: annotations[{i}]: image_id {image_id} is not the id of an image of \
                     this file"
                );
            }
            annotations.push((image_id, category_id, ann));
        }
        Ok(Self {
            name: name.to_owned(),
            images,
            annotations,
            categories,
        })
    }

    /// Drops the annotations whose detector `agreement` (written by `maskforge collect` after
    /// `maskforge score`) is below `min`; an annotation without one is an error. Returns how
    /// many were dropped.
    pub fn keep_agreeing(&mut self, min: f64) -> Result<usize> {
        let before = self.annotations.len();
        for (i, (_, _, ann)) in self.annotations.iter().enumerate() {
            if !ann.get("agreement").is_some_and(Value::is_number) {
                bail!(
                    "{}: annotations[{i}] has no `agreement`; run `maskforge score` and                      `maskforge collect` on its dataset first",
                    self.name
                );
            }
        }
        self.annotations
            .retain(|(_, _, ann)| ann["agreement"].as_f64().is_some_and(|a| a >= min));
        Ok(before - self.annotations.len())
    }

    /// The name used in error messages (the path, for [`AddFile::read`]).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Merges `adds` into the base dataset at `base`, writing `out` atomically (a temporary file
/// in the same folder, then a rename): `out` is never left half-written. Refuses to overwrite
/// an input file. With `min_agreement`, added annotations below it are left out (see
/// [`AddFile::keep_agreeing`]).
pub fn merge_files(
    base: &Path,
    adds: &[PathBuf],
    out: &Path,
    min_agreement: Option<f64>,
) -> Result<MergeSummary> {
    if adds.is_empty() {
        bail!("nothing to merge: give at least one file to add");
    }
    for input in std::iter::once(base).chain(adds.iter().map(PathBuf::as_path)) {
        if same_file(input, out) {
            bail!(
                "{}: is an input of the merge ({}); write the merged dataset to another file",
                out.display(),
                input.display()
            );
        }
    }
    let base_name = base.display().to_string();
    let open_base = || File::open(base).with_context(|| format!("{base_name}: cannot open"));
    // Fail early, before the added files are read, when the base cannot be opened.
    drop(open_base()?);
    let mut adds = adds
        .iter()
        .map(|p| AddFile::read(p))
        .collect::<Result<Vec<_>>>()?;
    if let Some(min) = min_agreement {
        for add in &mut adds {
            add.keep_agreeing(min)?;
        }
    }
    let out_name = out.display().to_string();
    let mut summary = None;
    crate::write_atomically(out, |tmp| {
        let mut file = File::create(tmp).with_context(|| {
            format!(
                "{out_name}: cannot create the temporary file {}",
                tmp.display()
            )
        })?;
        summary = Some(merge(&base_name, open_base, &adds, &out_name, &mut file)?);
        file.sync_all()
            .with_context(|| format!("{out_name}: cannot write"))
    })?;
    summary.context("merge finished without a summary")
}

/// Whether `a` and `b` name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Merges `adds` into the base dataset, writing the result to `out`.
///
/// `open_base` is called twice (the base is streamed in two passes, each read through a
/// buffer); `base_name` and `out_name` are used in error messages. On error, `out` holds a
/// partial result: write to a temporary file (see [`merge_files`]).
pub fn merge<R: Read, W: Write>(
    base_name: &str,
    mut open_base: impl FnMut() -> Result<R>,
    adds: &[AddFile],
    out_name: &str,
    out: &mut W,
) -> Result<MergeSummary> {
    let info = scan_base(base_name, open_base()?)?;
    let plan = plan(base_name, &info, adds)?;
    let mut writer = BufWriter::with_capacity(BUFFER, out);
    write_merged(base_name, open_base()?, &info, &plan, out_name, &mut writer)?;
    writer
        .flush()
        .with_context(|| format!("{out_name}: cannot write"))?;
    Ok(plan.summary)
}

// ---------------------------------------------------------------------------------------------
// Errors raised while streaming.

/// What went wrong inside a serde visitor, beyond the `serde_json::Error` it returns.
struct Diag<'a> {
    base_name: &'a str,
    out_name: &'a str,
    /// The whole error (write failures, inconsistencies), replacing serde_json's.
    error: Option<anyhow::Error>,
    /// Where in the base serde_json's error arose (e.g. "`images` element 12").
    context: Option<String>,
}

impl<'a> Diag<'a> {
    fn new(base_name: &'a str, out_name: &'a str) -> Self {
        Self {
            base_name,
            out_name,
            error: None,
            context: None,
        }
    }

    /// Records `error` and gives the error a visitor returns.
    fn fail<E: de::Error>(&mut self, error: anyhow::Error) -> E {
        self.error.get_or_insert(error);
        E::custom("merge failed")
    }

    fn at(&mut self, context: impl FnOnce() -> String) {
        if self.context.is_none() && self.error.is_none() {
            self.context = Some(context());
        }
    }

    fn into_error(self, e: serde_json::Error) -> anyhow::Error {
        if let Some(error) = self.error {
            return error;
        }
        let name = self.base_name;
        let problem = json_problem(&e);
        match self.context {
            Some(at) => anyhow!("{name}: {problem}: {at}: {e}"),
            None => anyhow!("{name}: {problem}: {e}"),
        }
    }

    fn write<E: de::Error>(&mut self, out: &mut impl Write, bytes: &[u8]) -> Result<(), E> {
        out.write_all(bytes).map_err(|e| {
            let name = self.out_name;
            self.fail(anyhow::Error::new(e).context(format!("{name}: cannot write")))
        })
    }

    fn write_json<E: de::Error>(
        &mut self,
        out: &mut impl Write,
        v: &impl serde::Serialize,
    ) -> Result<(), E> {
        serde_json::to_writer(&mut *out, v).map_err(|e| {
            let name = self.out_name;
            self.fail(anyhow::Error::new(e).context(format!("{name}: cannot write")))
        })
    }
}

fn json_problem(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "cannot read",
        serde_json::error::Category::Eof => "truncated JSON",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "not a COCO/LVIS dataset",
    }
}

// ---------------------------------------------------------------------------------------------
// Pass 1: ids and categories of the base.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Ids {
    count: u64,
    max: u64,
}

#[derive(Debug)]
struct BaseCategory {
    id: u64,
    raw: Box<RawValue>,
}

#[derive(Debug, Default)]
struct BaseInfo {
    images: Option<Ids>,
    annotations: Option<Ids>,
    categories: Option<Vec<BaseCategory>>,
}

fn scan_base<R: Read>(base_name: &str, reader: R) -> Result<BaseInfo> {
    let mut diag = Diag::new(base_name, "");
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(BUFFER, reader));
    let result = Scan { diag: &mut diag }
        .deserialize(&mut de)
        .and_then(|info| de.end().map(|()| info));
    result.map_err(|e| diag.into_error(e))
}

const TOP_LEVEL: &str = "a JSON object (a COCO/LVIS dataset)";

/// The top-level object, pass 1.
struct Scan<'d, 'a> {
    diag: &'d mut Diag<'a>,
}

impl<'de> DeserializeSeed<'de> for Scan<'_, '_> {
    type Value = BaseInfo;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<BaseInfo, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_, '_> {
    type Value = BaseInfo;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(TOP_LEVEL)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BaseInfo, A::Error> {
        let diag = self.diag;
        let mut info = BaseInfo::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "images" | "annotations" => {
                    let slot = if key == "images" {
                        &mut info.images
                    } else {
                        &mut info.annotations
                    };
                    if slot.is_some() {
                        return Err(de::Error::custom(format_args!(
                            "duplicate top-level key `{key}`"
                        )));
                    }
                    let what = if key == "images" {
                        "images"
                    } else {
                        "annotations"
                    };
                    *slot = Some(map.next_value_seed(ScanIds {
                        what,
                        diag: &mut *diag,
                    })?);
                }
                "categories" => {
                    if info.categories.is_some() {
                        return Err(de::Error::custom("duplicate top-level key `categories`"));
                    }
                    info.categories =
                        Some(map.next_value_seed(ScanCategories { diag: &mut *diag })?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(info)
    }
}

/// An `images` or `annotations` array, pass 1: count and largest id.
struct ScanIds<'d, 'a> {
    what: &'static str,
    diag: &'d mut Diag<'a>,
}

impl<'de> DeserializeSeed<'de> for ScanIds<'_, '_> {
    type Value = Ids;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Ids, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ScanIds<'_, '_> {
    type Value = Ids;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array (`{}`)", self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ids, A::Error> {
        let mut ids = Ids::default();
        loop {
            match seq.next_element_seed(IdOnly) {
                Ok(Some(id)) => {
                    ids.count += 1;
                    ids.max = ids.max.max(id);
                }
                Ok(None) => return Ok(ids),
                Err(e) => {
                    let (what, i) = (self.what, ids.count);
                    self.diag.at(|| format!("`{what}` element {i}"));
                    return Err(e);
                }
            }
        }
    }
}

/// An object's `id` (a non-negative integer); other fields are skipped unparsed.
struct IdOnly;

impl<'de> DeserializeSeed<'de> for IdOnly {
    type Value = u64;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for IdOnly {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with an integer `id`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        let mut id = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Id => {
                    if id.is_some() {
                        return Err(de::Error::duplicate_field("id"));
                    }
                    id = Some(map.next_value::<u64>()?);
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        id.ok_or_else(|| de::Error::missing_field("id"))
    }
}

/// A field name: `id` or another (not copied).
enum Field {
    Id,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(if v == "id" { Field::Id } else { Field::Other })
            }
        }
        d.deserialize_identifier(FieldVisitor)
    }
}

/// The `categories` array, pass 1: each category verbatim, with its id.
struct ScanCategories<'d, 'a> {
    diag: &'d mut Diag<'a>,
}

impl<'de> DeserializeSeed<'de> for ScanCategories<'_, '_> {
    type Value = Vec<BaseCategory>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ScanCategories<'_, '_> {
    type Value = Vec<BaseCategory>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array (`categories`)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut cats: Vec<BaseCategory> = Vec::new();
        let mut seen = HashMap::new();
        loop {
            let i = cats.len();
            let raw = match seq.next_element::<Box<RawValue>>() {
                Ok(Some(raw)) => raw,
                Ok(None) => return Ok(cats),
                Err(e) => {
                    self.diag.at(|| format!("`categories` element {i}"));
                    return Err(e);
                }
            };
            let name = self.diag.base_name;
            let id = match serde_json::from_str::<Value>(raw.get()) {
                Ok(Value::Object(m)) => as_id(m.get("id"), "id"),
                Ok(other) => Err(format!("is {}, expected an object", kind(&other))),
                Err(e) => Err(e.to_string()),
            }
            .map_err(|e| self.diag.fail(anyhow!("{name}: categories[{i}] {e}")))?;
            if let Some(j) = seen.insert(id, i) {
                return Err(self.diag.fail(anyhow!(
                    "{name}: categories[{i}]: duplicate category id {id} (also categories[{j}])"
                )));
            }
            cats.push(BaseCategory { id, raw });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Between the passes: new ids, category counts.

struct Plan {
    images: Vec<Map<String, Value>>,
    annotations: Vec<Map<String, Value>>,
    /// The whole `categories` list, each as JSON text.
    categories: Vec<String>,
    summary: MergeSummary,
}

fn next_id(id: &mut u64, what: &str) -> Result<u64> {
    *id = id
        .checked_add(1)
        .with_context(|| format!("{what} ids would overflow 64 bits"))?;
    Ok(*id)
}

fn plan(base_name: &str, info: &BaseInfo, adds: &[AddFile]) -> Result<Plan> {
    let base_images = info.images.unwrap_or_default();
    let base_annotations = info.annotations.unwrap_or_default();
    let base_categories = info.categories.as_deref().unwrap_or_default();
    let in_base: HashMap<u64, usize> = base_categories
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id, i))
        .collect();

    // Categories only the added files define: the first definition of each id.
    let mut new_categories: BTreeMap<u64, (usize, &Map<String, Value>)> = BTreeMap::new();
    for add in adds {
        let mut mismatches = Vec::new();
        for (id, cat) in &add.categories {
            if !in_base.contains_key(id) && !new_categories.contains_key(id) {
                let order = new_categories.len();
                new_categories.insert(*id, (order, cat));
            }
            if let Some(&at) = in_base.get(id)
                && let Some(mismatch) = name_mismatch(&base_categories[at], cat)
            {
                mismatches.push(mismatch);
            }
        }
        if let Some(first) = mismatches.first() {
            tracing::warn!(
                "{} categories of {} are named differently in {base_name} (e.g. {first}); \
                 counting them under {base_name}'s names",
                mismatches.len(),
                add.name
            );
        }
    }

    let mut image_id = base_images.max;
    let mut annotation_id = base_annotations.max;
    let mut images = Vec::new();
    let mut annotations = Vec::new();
    // Per category: added images that show it, and added annotations.
    let mut per_category: BTreeMap<u64, (BTreeSet<u64>, u64)> = BTreeMap::new();
    for add in adds {
        let mut remap = HashMap::with_capacity(add.images.len());
        for (old, image) in &add.images {
            let id = next_id(&mut image_id, "image")?;
            remap.insert(*old, id);
            let mut image = image.clone();
            image.insert("id".into(), id.into());
            images.push(image);
        }
        for (i, (old_image, category, ann)) in add.annotations.iter().enumerate() {
            if !in_base.contains_key(category) && !new_categories.contains_key(category) {
                bail!(
                    "{}: annotations[{i}]: category_id {category} is a category of neither \
                     {base_name} nor an added file",
                    add.name
                );
            }
            let image = *remap
                .get(old_image)
                .with_context(|| format!("{}: annotations[{i}]: unknown image", add.name))?;
            let id = next_id(&mut annotation_id, "annotation")?;
            let mut ann = ann.clone();
            ann.insert("id".into(), id.into());
            ann.insert("image_id".into(), image.into());
            annotations.push(ann);
            let entry = per_category.entry(*category).or_default();
            entry.0.insert(image);
            entry.1 += 1;
        }
    }

    let mut categories = Vec::with_capacity(base_categories.len() + new_categories.len());
    let mut updated = 0;
    for cat in base_categories {
        match per_category.get(&cat.id) {
            None => categories.push(cat.raw.get().to_owned()),
            Some((imgs, instances)) => {
                let mut m: Map<String, Value> = serde_json::from_str(cat.raw.get())
                    .with_context(|| format!("{base_name}: category {}", cat.id))?;
                add_count(&mut m, "image_count", imgs.len() as u64)
                    .with_context(|| format!("{base_name}: category {}", cat.id))?;
                add_count(&mut m, "instance_count", *instances)
                    .with_context(|| format!("{base_name}: category {}", cat.id))?;
                categories.push(serde_json::to_string(&m)?);
                updated += 1;
            }
        }
    }
    let mut added: Vec<_> = new_categories.into_iter().collect();
    added.sort_by_key(|(_, (order, _))| *order);
    let categories_added = added.len();
    for (id, (_, cat)) in added {
        let (imgs, instances) = per_category
            .get(&id)
            .map(|(imgs, n)| (imgs.len() as u64, *n))
            .unwrap_or_default();
        let mut m = cat.clone();
        m.insert("image_count".into(), imgs.into());
        m.insert("instance_count".into(), instances.into());
        categories.push(serde_json::to_string(&m)?);
    }

    let summary = MergeSummary {
        base_images: base_images.count,
        base_annotations: base_annotations.count,
        images_added: images.len() as u64,
        annotations_added: annotations.len() as u64,
        first_image_id: base_images.max + 1,
        first_annotation_id: base_annotations.max + 1,
        categories_updated: updated,
        categories_added,
    };
    Ok(Plan {
        images,
        annotations,
        categories,
        summary,
    })
}

/// Adds `n` to the count `key` of a category, creating it if absent.
fn add_count(cat: &mut Map<String, Value>, key: &str, n: u64) -> Result<()> {
    let old = match cat.get(key) {
        None => 0,
        Some(v) => v
            .as_u64()
            .with_context(|| format!("`{key}` is {v}, expected a non-negative integer"))?,
    };
    let new = old
        .checked_add(n)
        .with_context(|| format!("`{key}` overflows"))?;
    cat.insert(key.into(), new.into());
    Ok(())
}

/// `id NAME vs BASE_NAME` when an added category's name differs from the base's.
fn name_mismatch(base: &BaseCategory, cat: &Map<String, Value>) -> Option<String> {
    let added = cat.get("name")?.as_str()?;
    let m = serde_json::from_str::<Map<String, Value>>(base.raw.get()).ok()?;
    let name = m.get("name")?.as_str()?;
    (name != added).then(|| format!("category {}: `{added}` vs `{name}`", base.id))
}

// ---------------------------------------------------------------------------------------------
// Pass 2: write.

fn write_merged<R: Read, W: Write>(
    base_name: &str,
    reader: R,
    info: &BaseInfo,
    plan: &Plan,
    out_name: &str,
    out: &mut W,
) -> Result<()> {
    let mut diag = Diag::new(base_name, out_name);
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(BUFFER, reader));
    let result = Emit {
        out,
        info,
        plan,
        diag: &mut diag,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    result.map_err(|e| diag.into_error(e))
}

/// The top-level object, pass 2.
struct Emit<'o, 'd, 'a, W> {
    out: &'o mut W,
    info: &'o BaseInfo,
    plan: &'o Plan,
    diag: &'d mut Diag<'a>,
}

impl<'de, W: Write> DeserializeSeed<'de> for Emit<'_, '_, '_, W> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, W: Write> Visitor<'de> for Emit<'_, '_, '_, W> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(TOP_LEVEL)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Emit {
            out,
            info,
            plan,
            diag,
        } = self;
        let changed = |diag: &mut Diag, what: &str| -> A::Error {
            let name = diag.base_name;
            diag.fail(anyhow!("{name}: changed while being merged ({what})"))
        };
        let (mut images, mut annotations, mut categories) = (false, false, false);
        diag.write(out, b"{")?;
        let mut first = true;
        while let Some(key) = map.next_key::<String>()? {
            if !first {
                diag.write(out, b",")?;
            }
            first = false;
            diag.write_json(out, &key)?;
            diag.write(out, b":")?;
            match key.as_str() {
                "images" | "annotations" => {
                    let (done, expected, extra) = if key == "images" {
                        (&mut images, info.images, &plan.images)
                    } else {
                        (&mut annotations, info.annotations, &plan.annotations)
                    };
                    let Some(expected) = expected.filter(|_| !*done) else {
                        return Err(changed(diag, &format!("a new `{key}` key")));
                    };
                    *done = true;
                    let what = if key == "images" {
                        "images"
                    } else {
                        "annotations"
                    };
                    let count = map.next_value_seed(CopyArray {
                        what,
                        out: &mut *out,
                        extra,
                        diag: &mut *diag,
                    })?;
                    if count != expected.count {
                        return Err(changed(
                            diag,
                            &format!("`{key}` had {} elements, now {count}", expected.count),
                        ));
                    }
                }
                "categories" => {
                    if info.categories.is_none() || categories {
                        return Err(changed(diag, "a new `categories` key"));
                    }
                    categories = true;
                    map.next_value::<IgnoredAny>()?;
                    write_list(diag, out, plan.categories.iter().map(String::as_bytes))?;
                }
                _ => {
                    let raw: Box<RawValue> = map.next_value()?;
                    diag.write(out, raw.get().as_bytes())?;
                }
            }
        }
        if info.images.is_some() != images
            || info.annotations.is_some() != annotations
            || info.categories.is_some() != categories
        {
            return Err(changed(diag, "a key disappeared"));
        }
        for (key, missing) in [
            ("images", !images),
            ("annotations", !annotations),
            ("categories", !categories),
        ] {
            if !missing {
                continue;
            }
            if !first {
                diag.write(out, b",")?;
            }
            first = false;
            diag.write_json(out, &key)?;
            diag.write(out, b":")?;
            match key {
                "images" => write_records(diag, out, &plan.images)?,
                "annotations" => write_records(diag, out, &plan.annotations)?,
                _ => write_list(diag, out, plan.categories.iter().map(String::as_bytes))?,
            }
        }
        diag.write(out, b"}")
    }
}

/// Writes `[a,b,...]`.
fn write_list<'i, E: de::Error>(
    diag: &mut Diag,
    out: &mut impl Write,
    items: impl Iterator<Item = &'i [u8]>,
) -> Result<(), E> {
    diag.write(out, b"[")?;
    for (i, item) in items.enumerate() {
        if i > 0 {
            diag.write(out, b",")?;
        }
        diag.write(out, item)?;
    }
    diag.write(out, b"]")
}

/// Writes `[a,b,...]` of records serialized.
fn write_records<E: de::Error>(
    diag: &mut Diag,
    out: &mut impl Write,
    items: &[Map<String, Value>],
) -> Result<(), E> {
    diag.write(out, b"[")?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            diag.write(out, b",")?;
        }
        diag.write_json(out, item)?;
    }
    diag.write(out, b"]")
}

/// An `images` or `annotations` array, pass 2: the base's elements verbatim, then `extra`.
/// Gives the number of base elements.
struct CopyArray<'o, 'd, 'a, W> {
    what: &'static str,
    out: &'o mut W,
    extra: &'o [Map<String, Value>],
    diag: &'d mut Diag<'a>,
}

impl<'de, W: Write> DeserializeSeed<'de> for CopyArray<'_, '_, '_, W> {
    type Value = u64;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, W: Write> Visitor<'de> for CopyArray<'_, '_, '_, W> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array (`{}`)", self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let CopyArray {
            what,
            out,
            extra,
            diag,
        } = self;
        diag.write(out, b"[")?;
        let mut count = 0u64;
        loop {
            match seq.next_element::<Box<RawValue>>() {
                Ok(Some(raw)) => {
                    if count > 0 {
                        diag.write(out, b",")?;
                    }
                    diag.write(out, raw.get().as_bytes())?;
                    count += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    diag.at(|| format!("`{what}` element {count}"));
                    return Err(e);
                }
            }
        }
        for (i, item) in extra.iter().enumerate() {
            if count > 0 || i > 0 {
                diag.write(out, b",")?;
            }
            diag.write_json(out, item)?;
        }
        diag.write(out, b"]")?;
        Ok(count)
    }
}
