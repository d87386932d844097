//! What one MosaicFusion sample will be, fixed by its seed before anything runs: number of
//! regions, layout, one category and prompt per region, and the prompt token whose attention
//! becomes the mask.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::layout::{Layout, LayoutConfig, LayoutDraws, RegionBox};
use crate::dataset::categories::Category;
use crate::error::{Error, Result};
use crate::text::tokenizer::ClipTokenizer;

/// MosaicFusion's prompt template (`--prompt "a photo of a single category" --fg_def`).
pub const DEFAULT_TEMPLATE: &str = "a photo of a single {name}, {def}";

/// How samples are drawn.
#[derive(Debug, Clone)]
pub struct PlanConfig {
    /// Region counts to draw from (each 1, 2 or 4).
    pub regions: Vec<usize>,
    pub layout: LayoutConfig,
    /// Prompt with `{name}` and optionally `{def}`; without a definition, `, {def}` is dropped.
    pub template: String,
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self {
            regions: vec![4],
            layout: LayoutConfig::default(),
            template: DEFAULT_TEMPLATE.into(),
        }
    }
}

impl PlanConfig {
    pub fn validate(&self) -> Result<()> {
        self.layout.validate()?;
        if self.regions.is_empty() || self.regions.iter().any(|n| ![1, 2, 4].contains(n)) {
            return Err(Error::Invalid(format!(
                "region counts must each be 1, 2 or 4, got {:?}",
                self.regions
            )));
        }
        if !self.template.contains("{name}") {
            return Err(Error::Invalid(format!(
                "prompt template must contain {{name}}, got {:?}",
                self.template
            )));
        }
        Ok(())
    }
}

/// One region of a sample.
#[derive(Debug, Clone, Serialize)]
pub struct RegionPlan {
    pub category_id: u64,
    pub category_name: String,
    pub prompt: String,
    /// Position of the category's last sub-token in the tokenized prompt (bos at 0).
    pub token_index: usize,
    #[serde(rename = "box")]
    pub bbox: RegionBox,
}

/// One sample, reproducible from `seed` alone.
#[derive(Debug, Clone, Serialize)]
pub struct SamplePlan {
    /// Position of the sample in the run (0-based).
    pub index: u64,
    /// `base seed + index`: seeds the draws here and the diffusion noise.
    pub seed: u64,
    pub main_category_id: u64,
    pub draws: LayoutDraws,
    pub layout: Layout,
    pub regions: Vec<RegionPlan>,
}

/// The prompt for `category` under `template`.
pub fn prompt_for(template: &str, category: &Category) -> String {
    let name = category.name.replace('_', " ");
    let with_name = template.replace("{name}", &name);
    match &category.def {
        Some(def) => with_name.replace("{def}", def),
        None => with_name
            .replace(", {def}", "")
            .replace(" {def}", "")
            .replace("{def}", ""),
    }
}

/// Index in `tokenizer.encode(prompt)` of the last sub-token of `name` (underscores as spaces,
/// `)` removed, as MosaicFusion), at its first occurrence.
pub fn attention_token_index(tokenizer: &ClipTokenizer, prompt: &str, name: &str) -> Result<usize> {
    let cleaned = name.replace('_', " ").replace(')', "");
    let token = *tokenizer
        .tokenize_word_ids(&cleaned)
        .last()
        .ok_or_else(|| Error::Invalid(format!("category name {name:?} has no tokens")))?;
    tokenizer
        .encode(prompt)
        .iter()
        .position(|&t| t == token)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "the last token of {name:?} is not within the first {} tokens of prompt {prompt:?}",
                tokenizer.max_length()
            ))
        })
}

/// Plans sample `index` of a run with `base_seed`. The main category cycles through `pool`
/// (indices into `categories`), so every main category gets its share; the other regions draw
/// uniformly from all categories (with replacement) and the order is shuffled.
pub fn plan_sample(
    index: u64,
    base_seed: u64,
    categories: &[Category],
    pool: &[usize],
    config: &PlanConfig,
    tokenizer: &ClipTokenizer,
) -> Result<SamplePlan> {
    if pool.is_empty() || categories.is_empty() {
        return Err(Error::Invalid("no categories to draw from".into()));
    }
    let seed = base_seed.wrapping_add(index);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = *config
        .regions
        .choose(&mut rng)
        .expect("validated: non-empty");
    let main = pool[(index % pool.len() as u64) as usize];
    let mut chosen = vec![main];
    chosen.extend((1..n).map(|_| rng.random_range(0..categories.len())));
    chosen.shuffle(&mut rng);
    let draws = LayoutDraws::sample(n, &config.layout, &mut rng)?;
    let layout = Layout::new(&config.layout, &draws);
    let regions = chosen
        .iter()
        .zip(&layout.regions)
        .map(|(&c, &bbox)| {
            let category = &categories[c];
            let prompt = prompt_for(&config.template, category);
            let token_index = attention_token_index(tokenizer, &prompt, &category.name)?;
            Ok(RegionPlan {
                category_id: category.id,
                category_name: category.name.clone(),
                prompt,
                token_index,
                bbox,
            })
        })
        .collect::<Result<_>>()?;
    Ok(SamplePlan {
        index,
        seed,
        main_category_id: categories[main].id,
        draws,
        layout,
        regions,
    })
}
