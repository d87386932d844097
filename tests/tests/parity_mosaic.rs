//! MosaicFusion's multi-region denoising and attention capture against a diffusers reference
//! run (`tests/fixtures/mosaic_ref.py`): 4 regions on the tiny SD1.5 fixture, PNDM 5 steps,
//! guidance 7.5; final latents, decoded image, per-resolution attention maps, the 8-bit
//! aggregated maps (Pillow bicubic) and Otsu thresholds (OpenCV).

use burn::tensor::Device;
use maskforge_core::mosaic::attention_mask::{Threshold, attention_mask};
use maskforge_core::mosaic::denoise::{MosaicParams, mosaic};
use maskforge_tests::{
    BOXES, Expected, assert_attention_close, check, load_pipeline, mosaic_reference_plan,
};

/// OpenCV's Otsu thresholds of the reference run.
const THRESHOLDS: [u8; 4] = [228, 240, 232, 233];

#[test]
fn mosaic_matches_diffusers_reference() {
    let device = Device::flex();
    let sd = load_pipeline("tiny-sd15", &device);
    let exp = Expected::load("mosaic");
    let plan = mosaic_reference_plan(&sd);
    let params = MosaicParams {
        steps: 5,
        guidance: 7.5,
        ..MosaicParams::default()
    };
    // No noise given: the plan's seed draws torch's `randn` bit for bit.
    let out = mosaic(&sd, &plan, &params, None, |_, _| {}).unwrap();
    check(&exp, "latents", out.latents.clone(), 1e-3);
    check(&exp, "image", out.image.clone(), 1e-3);

    for (r, maps) in out.attention.iter().enumerate() {
        assert_eq!(
            maps.iter().map(|m| m.denominator).collect::<Vec<_>>(),
            vec![8, 16],
            "the tiny UNet has cross-attention at 1/8 and 1/16 of a region"
        );
        // Probabilities ~1e-2: compared relative to each map's maximum.
        assert_attention_close(&exp, r, maps, 1e-3);
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
        println!(
            "region {r}: {off} of {} map pixels differ, by at most {worst}",
            want_map.len()
        );
        // Measured: pixel-exact (Pillow's fixed-point bicubic, the same 8-bit truncations).
        assert_eq!(off, 0, "region {r}: {off} map pixels off by up to {worst}");
        assert_eq!(
            mask.threshold, THRESHOLDS[r],
            "region {r}: OpenCV's Otsu threshold"
        );
        let mask_off = mask
            .mask
            .iter()
            .zip(&want_mask)
            .filter(|(a, b)| **a != (**b > 0.5))
            .count();
        assert_eq!(mask_off, 0, "region {r}: {mask_off} mask pixels differ");
    }
}
