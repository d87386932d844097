//! MosaicFusion's options as users give them (CLI flags, a TOML run file, the JS API): one
//! type, its defaults (MosaicFusion's) and its checks. [`MosaicOptions::config`] resolves them
//! into a [`GenerateConfig`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::attention_mask::Threshold;
use super::denoise::MosaicParams;
use super::instances::{ComponentPolicy, InstanceFilter};
use super::layout::LayoutConfig;
use super::plan::{DEFAULT_TEMPLATE, PlanConfig};
use super::sample::{GenerateConfig, Refine};
use crate::dataset::Frequency;
use crate::error::{Error, Result};
use crate::schedulers::SchedulerKind;

/// The file of a model folder that holds the model's own MosaicFusion settings (a JSON object
/// of [`MosaicOptions`] keys, e.g. a small model's region size), used under the user's.
pub const MODEL_SETTINGS: &str = "mosaic.json";

/// Everything a user sets about MosaicFusion samples. Field names are the CLI's flags and the
/// run file's keys (`region_size` ↔ `--region-size`); the JS API's camelCase names are aliases.
/// Sizes read as `"HxW"`, `[h, w]` or one number; lists as arrays, one number or `"1,2,4"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MosaicOptions {
    /// Region counts to draw from (each 1, 2 or 4).
    #[serde(deserialize_with = "counts")]
    pub regions: Vec<usize>,
    /// Size of one region (the canvas is up to 2×2 regions).
    #[serde(alias = "regionSize", with = "size")]
    pub region_size: (usize, usize),
    /// Band shared by neighbouring regions.
    #[serde(with = "size")]
    pub overlap: (usize, usize),
    pub steps: usize,
    pub guidance: f64,
    /// `None`: the model's own scheduler.
    #[serde(with = "scheduler_name")]
    pub scheduler: Option<SchedulerKind>,
    /// diffusers' `use_karras_sigmas=True` over the model's scheduler config. Written only when
    /// set, so that settings from before the option read the same.
    #[serde(alias = "karrasSigmas", skip_serializing_if = "std::ops::Not::not")]
    pub karras_sigmas: bool,
    /// Frequencies of each image's main category (`r,c`; LVIS files); `None`: every category.
    #[serde(alias = "mainFrequency")]
    pub main_frequency: Option<String>,
    /// Prompt with `{name}` and `{def}`; `, {def}` is dropped for categories without one.
    #[serde(alias = "promptTemplate")]
    pub prompt_template: String,
    /// `strict`, `largest` or `all`.
    #[serde(alias = "componentPolicy")]
    pub component_policy: String,
    #[serde(alias = "minAreaFrac")]
    pub min_area_frac: f64,
    #[serde(alias = "maxAreaFrac")]
    pub max_area_frac: f64,
    /// `none` or `bilateral` (the fast bilateral solver, twice).
    pub refine: String,
    /// The bilateral solver's bandwidths, MosaicFusion's `--sigma_spatial`, `--sigma_luma` and
    /// `--sigma_chroma` (pixels; 8-bit luma and chroma levels); `None`: its 16, 16 and 8, made
    /// for regions of about 512 pixels. Written only when set, as `karras_sigmas`.
    #[serde(alias = "sigmaSpatial", skip_serializing_if = "Option::is_none")]
    pub sigma_spatial: Option<f64>,
    #[serde(alias = "sigmaLuma", skip_serializing_if = "Option::is_none")]
    pub sigma_luma: Option<f64>,
    #[serde(alias = "sigmaChroma", skip_serializing_if = "Option::is_none")]
    pub sigma_chroma: Option<f64>,
    /// The fraction of its maximum the solver's output must exceed to stay in the mask,
    /// MosaicFusion's `--bfs_threshold`; `None`: its 0.5.
    #[serde(alias = "bfsThreshold", skip_serializing_if = "Option::is_none")]
    pub bfs_threshold: Option<f64>,
    /// `otsu`, or a fixed fraction in (0, 1) of the attention map's maximum.
    #[serde(deserialize_with = "text_or_number")]
    pub threshold: String,
    /// Attention resolutions to average, as fractions of the region: 32 = 1/32.
    #[serde(alias = "attentionResolutions", deserialize_with = "counts")]
    pub attention_resolutions: Vec<usize>,
    /// `png` or `jpg` (masks are always lossless RLE).
    #[serde(alias = "imageFormat")]
    pub image_format: String,
}

impl Default for MosaicOptions {
    fn default() -> Self {
        let layout = LayoutConfig::default();
        let denoise = MosaicParams::default();
        let filter = InstanceFilter::default();
        Self {
            regions: PlanConfig::default().regions,
            region_size: (layout.region_height, layout.region_width),
            overlap: (layout.overlap_height, layout.overlap_width),
            steps: denoise.steps,
            guidance: denoise.guidance,
            scheduler: None,
            karras_sigmas: false,
            main_frequency: None,
            prompt_template: DEFAULT_TEMPLATE.into(),
            component_policy: "largest".into(),
            min_area_frac: filter.min_area_frac,
            max_area_frac: filter.max_area_frac,
            refine: "bilateral".into(),
            sigma_spatial: None,
            sigma_luma: None,
            sigma_chroma: None,
            bfs_threshold: None,
            threshold: "otsu".into(),
            attention_resolutions: vec![32, 16, 8],
            image_format: "png".into(),
        }
    }
}

impl MosaicOptions {
    /// MosaicFusion's refinement with the solver settings given.
    fn bilateral(&self) -> Result<Refine> {
        let mut refine = Refine::bilateral();
        let Refine::Bilateral {
            params, threshold, ..
        } = &mut refine
        else {
            unreachable!("bilateral refinement")
        };
        for (name, given, value) in [
            (
                "sigma_spatial",
                self.sigma_spatial,
                &mut params.sigma_spatial,
            ),
            ("sigma_luma", self.sigma_luma, &mut params.sigma_luma),
            ("sigma_chroma", self.sigma_chroma, &mut params.sigma_chroma),
        ] {
            if let Some(v) = given {
                if !(v.is_finite() && v > 0.0) {
                    return Err(Error::Invalid(format!(
                        "{name} must be a positive number, got {v}"
                    )));
                }
                *value = v;
            }
        }
        if let Some(v) = self.bfs_threshold {
            if !(v > 0.0 && v < 1.0) {
                return Err(Error::Invalid(format!(
                    "bfs_threshold must be a number in (0, 1), got {v}"
                )));
            }
            *threshold = v;
        }
        Ok(refine)
    }

    /// The checked settings; `model_name` is recorded in the manifest.
    pub fn config(&self, model_name: String) -> Result<GenerateConfig> {
        let threshold = match self.threshold.as_str() {
            "otsu" => Threshold::Otsu,
            v => match v.parse::<f64>() {
                Ok(value) if value > 0.0 && value < 1.0 => Threshold::Fixed { value },
                _ => {
                    return Err(Error::Invalid(format!(
                        "threshold must be `otsu` or a number in (0, 1), got `{v}`"
                    )));
                }
            },
        };
        let refine = match self.refine.as_str() {
            "none" => Refine::None,
            "bilateral" => self.bilateral()?,
            r => {
                return Err(Error::Invalid(format!(
                    "refine must be `none` or `bilateral`, got `{r}`"
                )));
            }
        };
        let image_extension = match self.image_format.as_str() {
            "png" => "png",
            "jpg" | "jpeg" => "jpg",
            f => {
                return Err(Error::Invalid(format!(
                    "image format must be `png` or `jpg`, got `{f}`"
                )));
            }
        };
        if let Some(r) = self
            .attention_resolutions
            .iter()
            .find(|r| !r.is_power_of_two() || !(2..=64).contains(*r))
        {
            return Err(Error::Invalid(format!(
                "attention resolutions are fractions of the region: 8, 16, 32 or 64 \
                 (2 or 4 with VAEs that downsample less), got {r}"
            )));
        }
        if self.steps == 0 {
            return Err(Error::Invalid("steps must be at least 1".into()));
        }
        self.main_frequencies()?;
        let config = GenerateConfig {
            plan: PlanConfig {
                regions: self.regions.clone(),
                layout: LayoutConfig {
                    region_height: self.region_size.0,
                    region_width: self.region_size.1,
                    overlap_height: self.overlap.0,
                    overlap_width: self.overlap.1,
                    ..LayoutConfig::default()
                },
                template: self.prompt_template.clone(),
            },
            denoise: MosaicParams {
                steps: self.steps,
                guidance: self.guidance,
                scheduler: self.scheduler,
                karras_sigmas: self.karras_sigmas,
                ..MosaicParams::default()
            },
            resolutions: self.attention_resolutions.clone(),
            threshold,
            refine,
            filter: InstanceFilter {
                min_area_frac: self.min_area_frac,
                max_area_frac: self.max_area_frac,
                ..InstanceFilter::default()
            },
            policy: ComponentPolicy::from_name(&self.component_policy)?,
            image_extension: image_extension.into(),
            model_name,
        };
        config.validate()?;
        Ok(config)
    }

    /// The main-category frequencies asked for, `None` for all categories.
    pub fn main_frequencies(&self) -> Result<Option<Vec<Frequency>>> {
        self.main_frequency
            .as_deref()
            .map(Frequency::parse_list)
            .transpose()
    }
}

/// `"HxW"` as `(h, w)`.
pub fn parse_size(s: &str) -> Result<(usize, usize)> {
    let (h, w) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| Error::Invalid(format!("expected HxW, got `{s}`")))?;
    let n = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| Error::Invalid(format!("expected HxW with whole numbers, got `{s}`")))
    };
    Ok((n(h)?, n(w)?))
}

/// A size as `[h, w]`; read from `"HxW"`, `[h, w]` or one number for both.
mod size {
    use super::*;

    pub fn serialize<S: Serializer>(
        v: &(usize, usize),
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        [v.0, v.1].serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<(usize, usize), D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Size {
            One(usize),
            Pair([usize; 2]),
            Text(String),
        }
        match Size::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a size: \"HxW\", [height, width] or a number")
        })? {
            Size::One(n) => Ok((n, n)),
            Size::Pair([h, w]) => Ok((h, w)),
            Size::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A list of whole numbers from an array, one number or `"1,2,4"`.
fn counts<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Counts {
        One(usize),
        Many(Vec<usize>),
        Text(String),
    }
    let bad = || serde::de::Error::custom("expected whole numbers: [1, 2, 4], 4 or \"1,2,4\"");
    match Counts::deserialize(d).map_err(|_| bad())? {
        Counts::One(n) => Ok(vec![n]),
        Counts::Many(v) => Ok(v),
        Counts::Text(t) => t
            .split(',')
            .map(|p| p.trim().parse::<usize>().map_err(|_| bad()))
            .collect(),
    }
}

/// A string, or a number written as one (`threshold = 0.3`).
fn text_or_number<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrNumber {
        Text(String),
        Number(f64),
    }
    match TextOrNumber::deserialize(d)
        .map_err(|_| serde::de::Error::custom("expected a string or a number"))?
    {
        TextOrNumber::Text(t) => Ok(t),
        TextOrNumber::Number(n) => Ok(n.to_string()),
    }
}

/// A scheduler by its CLI name (`euler-a`), `null` for the model's own.
mod scheduler_name {
    use super::*;

    pub fn serialize<S: Serializer>(
        v: &Option<SchedulerKind>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        v.map(|k| k.cli_name()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<SchedulerKind>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|name| name.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_mosaicfusions_and_every_form_reads() {
        let o: MosaicOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(o, MosaicOptions::default());
        assert_eq!(o.region_size, (384, 512));
        assert_eq!((o.steps, o.guidance), (50, 7.5));
        let o: MosaicOptions = serde_json::from_str(
            r#"{"regions": "1,2", "regionSize": [64, 96], "overlap": 16, "threshold": 0.3,
                "attention_resolutions": 8, "scheduler": "euler-a"}"#,
        )
        .unwrap();
        assert_eq!(o.regions, vec![1, 2]);
        assert_eq!((o.region_size, o.overlap), ((64, 96), (16, 16)));
        assert_eq!(o.threshold, "0.3");
        assert_eq!(o.attention_resolutions, vec![8]);
        assert_eq!(o.scheduler, Some(SchedulerKind::EulerAncestral));
        let config = o.config("m".into()).unwrap();
        assert_eq!(config.threshold, Threshold::Fixed { value: 0.3 });
    }

    #[test]
    fn karras_sigmas_are_written_only_when_set() {
        let json = serde_json::to_value(MosaicOptions::default()).unwrap();
        assert!(json.get("karras_sigmas").is_none(), "{json}");
        let o: MosaicOptions =
            serde_json::from_str(r#"{"karrasSigmas": true, "scheduler": "heun"}"#).unwrap();
        assert_eq!(serde_json::to_value(&o).unwrap()["karras_sigmas"], true);
        let config = o.config("m".into()).unwrap();
        assert!(config.denoise.karras_sigmas);
        assert_eq!(config.denoise.scheduler, Some(SchedulerKind::Heun));
    }

    #[test]
    fn bilateral_sigmas_reach_the_solver_and_are_written_only_when_set() {
        let json = serde_json::to_value(MosaicOptions::default()).unwrap();
        assert!(json.get("sigma_spatial").is_none(), "{json}");
        let o: MosaicOptions = serde_json::from_str(
            r#"{"sigmaSpatial": 4, "sigma_chroma": 6.5, "bfsThreshold": 0.3}"#,
        )
        .unwrap();
        assert_eq!(serde_json::to_value(&o).unwrap()["sigma_spatial"], 4.0);
        let Refine::Bilateral {
            params,
            times,
            threshold,
        } = o.config("m".into()).unwrap().refine
        else {
            panic!("bilateral refinement");
        };
        let mosaicfusion = crate::masks::BilateralSolverParams::default();
        assert_eq!(
            (params.sigma_spatial, params.sigma_luma, params.sigma_chroma),
            (4.0, mosaicfusion.sigma_luma, 6.5)
        );
        assert_eq!((times, threshold), (2, 0.3));
        let luma = |v| MosaicOptions {
            sigma_luma: Some(v),
            ..Default::default()
        };
        let bfs = |v| MosaicOptions {
            bfs_threshold: Some(v),
            ..Default::default()
        };
        let (positive, fraction) = (
            "sigma_luma must be a positive number",
            "bfs_threshold must be a number in (0, 1)",
        );
        for (o, needle) in [
            (luma(0.0), positive),
            (luma(f64::NAN), positive),
            (luma(f64::INFINITY), positive),
            (bfs(1.0), fraction),
            (bfs(-0.5), fraction),
        ] {
            let e = o.config("m".into()).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn bad_options_are_named() {
        for (json, needle) in [
            (r#"{"bogus": 1}"#, "bogus"),
            (r#"{"regionSize": "64"}"#, "HxW"),
            (r#"{"scheduler": "magic"}"#, "unknown scheduler \"magic\""),
            (r#"{"regions": [1, -2]}"#, "whole numbers"),
        ] {
            let e = serde_json::from_str::<MosaicOptions>(json)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{json}: {e}");
        }
        for (o, needle) in [
            (
                MosaicOptions {
                    steps: 0,
                    ..Default::default()
                },
                "steps",
            ),
            (
                MosaicOptions {
                    threshold: "1.5".into(),
                    ..Default::default()
                },
                "threshold",
            ),
            (
                MosaicOptions {
                    attention_resolutions: vec![12],
                    ..Default::default()
                },
                "12",
            ),
            (
                MosaicOptions {
                    refine: "x".into(),
                    ..Default::default()
                },
                "refine",
            ),
            (
                MosaicOptions {
                    image_format: "gif".into(),
                    ..Default::default()
                },
                "gif",
            ),
            (
                MosaicOptions {
                    component_policy: "some".into(),
                    ..Default::default()
                },
                "component policy",
            ),
            (
                MosaicOptions {
                    main_frequency: Some("x".into()),
                    ..Default::default()
                },
                "`x`",
            ),
            (
                MosaicOptions {
                    region_size: (60, 64),
                    ..Default::default()
                },
                "multiples of 8",
            ),
            (
                MosaicOptions {
                    regions: vec![3],
                    ..Default::default()
                },
                "1, 2 or 4",
            ),
        ] {
            let e = o.config(String::new()).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }
}
