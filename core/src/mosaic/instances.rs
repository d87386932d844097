//! From region masks to instances: 4-connected components, size filters and the component
//! policy; a sample whose region yields no usable component is dropped with the reason.

use serde::Serialize;

use super::layout::RegionBox;
use crate::error::{Error, Result};
use crate::masks::connected_components;

/// What to do with a region whose mask has several components that pass the filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentPolicy {
    /// MosaicFusion's rule: the whole sample is dropped.
    Strict,
    /// Keep the largest component (ties: the first in raster order).
    Largest,
    /// One instance per component.
    All,
}

impl ComponentPolicy {
    pub fn from_name(s: &str) -> Result<Self> {
        match s {
            "strict" => Ok(Self::Strict),
            "largest" => Ok(Self::Largest),
            "all" => Ok(Self::All),
            _ => Err(Error::Invalid(format!(
                "unknown component policy `{s}`: use strict, largest or all"
            ))),
        }
    }
}

/// Component filters, relative to the region (defaults: area 5 %–95 %, as MosaicFusion's
/// 9830–186778 pixels of a 384×512 region).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct InstanceFilter {
    pub min_area_frac: f64,
    pub max_area_frac: f64,
    /// Smallest box width and height in pixels.
    pub min_width: u32,
    pub min_height: u32,
}

impl Default for InstanceFilter {
    fn default() -> Self {
        Self {
            min_area_frac: 0.05,
            max_area_frac: 0.95,
            min_width: 1,
            min_height: 1,
        }
    }
}

impl InstanceFilter {
    pub fn validate(&self) -> Result<()> {
        let (lo, hi) = (self.min_area_frac, self.max_area_frac);
        if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
            return Err(Error::Invalid(format!(
                "area fractions must satisfy 0 <= min <= max <= 1, got {lo} and {hi}"
            )));
        }
        Ok(())
    }
}

/// One instance: a region's component, as a mask on the whole canvas.
#[derive(Debug, Clone)]
pub struct Instance {
    pub region: usize,
    /// Row-major canvas mask.
    pub mask: Vec<bool>,
    pub area: u64,
}

/// What happened to one region.
#[derive(Debug, Clone, Serialize)]
pub struct RegionOutcome {
    /// Components in the mask before filtering.
    pub components: usize,
    /// Components that passed the filters.
    pub passed: usize,
    /// Instances kept from this region.
    pub kept: usize,
}

/// Instances of all regions, or why the sample is dropped.
#[derive(Debug, Clone)]
pub struct Instances {
    pub instances: Vec<Instance>,
    pub regions: Vec<RegionOutcome>,
    /// `Some(reason)` when the sample is dropped.
    pub dropped: Option<String>,
}

/// Splits each region's mask (region-local, row-major) into instances on a
/// `canvas_height × canvas_width` canvas. Masks are pasted at the region's full box, overlap
/// included, as the original.
pub fn extract_instances(
    masks: &[Vec<bool>],
    boxes: &[RegionBox],
    canvas_height: usize,
    canvas_width: usize,
    filter: &InstanceFilter,
    policy: ComponentPolicy,
) -> Result<Instances> {
    let mut instances = Vec::new();
    let mut regions = Vec::new();
    let mut dropped = None;
    for (r, (mask, b)) in masks.iter().zip(boxes).enumerate() {
        let (h, w) = (b.height(), b.width());
        let (labels, components) = connected_components(mask, h, w)?;
        let region_area = (h * w) as f64;
        let passed: Vec<_> = components
            .iter()
            .filter(|c| {
                let frac = c.area as f64 / region_area;
                frac >= filter.min_area_frac
                    && frac <= filter.max_area_frac
                    && c.bbox[2] >= filter.min_width
                    && c.bbox[3] >= filter.min_height
            })
            .collect();
        let keep: Vec<_> = match (policy, passed.len()) {
            (_, 0) => {
                dropped.get_or_insert_with(|| {
                    format!(
                        "region {r}: no component passes the filters ({} components)",
                        components.len()
                    )
                });
                vec![]
            }
            (ComponentPolicy::Strict, n) if n > 1 => {
                dropped.get_or_insert_with(|| format!("region {r}: {n} components (strict)"));
                vec![]
            }
            (ComponentPolicy::Largest, _) => {
                let best = passed
                    .iter()
                    .max_by(|a, b| a.area.cmp(&b.area).then(b.label.cmp(&a.label)));
                best.into_iter().copied().collect()
            }
            _ => passed.clone(),
        };
        regions.push(RegionOutcome {
            components: components.len(),
            passed: passed.len(),
            kept: keep.len(),
        });
        for c in keep {
            let mut canvas = vec![false; canvas_height * canvas_width];
            for y in 0..h {
                for x in 0..w {
                    if labels[y * w + x] == c.label {
                        canvas[(b.y1 + y) * canvas_width + b.x1 + x] = true;
                    }
                }
            }
            instances.push(Instance {
                region: r,
                mask: canvas,
                area: c.area,
            });
        }
    }
    if dropped.is_some() {
        instances.clear();
    }
    Ok(Instances {
        instances,
        regions,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(rows: &[&str]) -> Vec<bool> {
        rows.iter()
            .flat_map(|r| r.chars().map(|c| c == '#'))
            .collect()
    }

    #[test]
    fn policies_and_drops() {
        let two = region(&["##..", "##..", "....", "..#."]);
        let one = region(&["....", ".##.", ".##.", "...."]);
        let boxes = [
            RegionBox {
                y1: 0,
                y2: 4,
                x1: 0,
                x2: 4,
            },
            RegionBox {
                y1: 0,
                y2: 4,
                x1: 2,
                x2: 6,
            },
        ];
        let f = InstanceFilter {
            min_area_frac: 0.0,
            ..Default::default()
        };
        let masks = vec![two.clone(), one.clone()];
        let strict = extract_instances(&masks, &boxes, 4, 6, &f, ComponentPolicy::Strict).unwrap();
        assert!(strict.dropped.unwrap().contains("region 0: 2 components"));
        assert!(strict.instances.is_empty());
        let largest =
            extract_instances(&masks, &boxes, 4, 6, &f, ComponentPolicy::Largest).unwrap();
        assert!(largest.dropped.is_none());
        assert_eq!(
            largest.instances.iter().map(|i| i.area).collect::<Vec<_>>(),
            vec![4, 4]
        );
        // The second region's square is pasted at x offset 2.
        assert!(largest.instances[1].mask[6 + 3] && largest.instances[1].mask[6 + 4]);
        let all = extract_instances(&masks, &boxes, 4, 6, &f, ComponentPolicy::All).unwrap();
        assert_eq!(all.instances.len(), 3);
        // A 1-pixel component is 6.25 % of a 16-pixel region, below a 10 % minimum.
        let tenth = InstanceFilter {
            min_area_frac: 0.1,
            ..Default::default()
        };
        let filtered =
            extract_instances(&masks, &boxes, 4, 6, &tenth, ComponentPolicy::Strict).unwrap();
        assert!(filtered.dropped.is_none(), "{:?}", filtered.dropped);
        let empty = vec![vec![false; 16], one];
        let none = extract_instances(&empty, &boxes, 4, 6, &f, ComponentPolicy::All).unwrap();
        assert!(none.dropped.unwrap().contains("region 0: no component"));
    }
}
