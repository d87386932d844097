//! MosaicFusion's multi-region denoising and attention capture against a diffusers reference
//! run (`tests/fixtures/mosaic_ref.py`): 4 regions on the tiny SD1.5 fixture, PNDM 5 steps,
//! guidance 7.5; final latents, decoded image, per-resolution attention maps, the 8-bit
//! aggregated maps (Pillow bicubic) and Otsu thresholds (OpenCV).

use burn::tensor::Device;
use maskforge_core::mosaic::attention_mask::{Threshold, attention_mask};
use maskforge_core::mosaic::denoise::MosaicParams;
use maskforge_core::mosaic::layout::{Layout, LayoutDraws, RegionBox};
use maskforge_core::mosaic::plan::{RegionPlan, SamplePlan, attention_token_index};
use maskforge_tests::{Expected, assert_close, check, load_pipeline};

const CATEGORIES: [(&str, &str); 4] = [
    ("cat", "a photo of a single cat, a small domesticated feline"),
    ("bow_(weapon)", "a photo of a single bow (weapon), a weapon for shooting arrows"),
    ("dog", "a photo of a single dog"),
    ("teapot", "a photo of a single teapot, pot for brewing tea"),
];
/// OpenCV's Otsu thresholds of the reference run.
const THRESHOLDS: [u8; 4] = [228, 240, 232, 233];
const BOXES: [[usize; 4]; 4] = [[0, 64, 0, 72], [0, 64, 56, 128], [48, 128, 0, 72], [48, 128, 56, 128]];

#[test]
fn mosaic_matches_diffusers_reference() {
    let device = Device::flex();
    let sd = load_pipeline("tiny-sd15", &device);
    let exp = Expected::load("mosaic");
    let regions: Vec<RegionPlan> = CATEGORIES
        .iter()
        .zip(BOXES)
        .enumerate()
        .map(|(i, ((name, prompt), [y1, y2, x1, x2]))| RegionPlan {
            category_id: i as u64 + 1,
            category_name: name.to_string(),
            prompt: prompt.to_string(),
            token_index: attention_token_index(&sd.tokenizer, prompt, name).unwrap(),
            bbox: RegionBox { y1, y2, x1, x2 },
        })
        .collect();
    assert_eq!(
        regions.iter().map(|r| r.token_index).collect::<Vec<_>>(),
        vec![6, 8, 6, 6],
        "token positions as MosaicFusion's tokenizer.encode(name)[-2]"
    );
    let plan = SamplePlan {
        index: 0,
        seed: 7,
        main_category_id: 1,
        draws: LayoutDraws::Four { ratio_x: 1.1, ratio_y: 0.9 },
        layout: Layout {
            canvas_height: 128,
            canvas_width: 128,
            regions: regions.iter().map(|r| r.bbox).collect(),
        },
        regions,
    };
    let params = MosaicParams {
        steps: 5,
        guidance: 7.5,
        ..MosaicParams::default()
    };
    // No noise given: the plan's seed draws torch's `randn` bit for bit.
    let out = sd.mosaic(&plan, &params, None, |_, _| {}).unwrap();
    check(&exp, "latents", out.latents.clone(), 1e-3);
    check(&exp, "image", out.image.clone(), 1e-3);

    for (r, maps) in out.attention.iter().enumerate() {
        assert_eq!(
            maps.iter().map(|m| m.denominator).collect::<Vec<_>>(),
            vec![8, 16],
            "the tiny UNet has cross-attention at 1/8 and 1/16 of a region"
        );
        for m in maps {
            let (shape, expected) = exp.host(&format!("region{r}.res{}", m.denominator));
            assert_eq!(shape, vec![m.height, m.width]);
            let scale = expected.iter().fold(0f32, |a, &b| a.max(b.abs()));
            // Probabilities ~1e-2: compare relative to the map's maximum.
            let got: Vec<f32> = m.values.iter().map(|v| v / scale).collect();
            let want: Vec<f32> = expected.iter().map(|v| v / scale).collect();
            assert_close(&format!("region {r} attention 1/{}", m.denominator), &got, &want, 1e-3);
        }
        let [y1, y2, x1, x2] = BOXES[r];
        let mask = attention_mask(maps, &[32, 16, 8], y2 - y1, x2 - x1, Threshold::Otsu).unwrap();
        let (_, want_map) = exp.host(&format!("region{r}.map"));
        let (_, want_mask) = exp.host(&format!("region{r}.mask"));
        // 8-bit truncations may flip where float rounding straddles an integer.
        let off = mask
            .map
            .iter()
            .zip(&want_map)
            .filter(|(a, b)| (**a as f32 - **b).abs() > 0.0)
            .count();
        let worst = mask
            .map
            .iter()
            .zip(&want_map)
            .fold(0f32, |w, (a, b)| w.max((*a as f32 - b).abs()));
        println!("region {r}: {off} of {} map pixels differ, by at most {worst}", want_map.len());
        // Measured: pixel-exact (Pillow's fixed-point bicubic, the same 8-bit truncations).
        assert_eq!(off, 0, "region {r}: {off} map pixels off by up to {worst}");
        assert_eq!(mask.threshold, THRESHOLDS[r], "region {r}: OpenCV's Otsu threshold");
        let mask_off = mask
            .mask
            .iter()
            .zip(&want_mask)
            .filter(|(a, b)| **a != (**b > 0.5))
            .count();
        assert_eq!(mask_off, 0, "region {r}: {mask_off} mask pixels differ");
    }
}
