//! Mask processing against OpenCV and a numpy/scipy bilateral solver
//! (`tests/fixtures/masks_ref.py` → `tests/data/masks_ref.json`).

use std::time::Instant;

use maskforge_core::masks::{
    BilateralGrid, BilateralSolverParams, bilateral_solve, connected_components, otsu_threshold,
    refine_mask, rgb_to_yuv, threshold,
};
use serde_json::Value;

fn reference() -> Value {
    serde_json::from_str(include_str!("data/masks_ref.json")).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap().as_bytes();
    s.chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    bytes(v)
        .chunks(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn bools(v: &Value) -> Vec<bool> {
    bytes(v).into_iter().map(|b| b != 0).collect()
}

fn usize_of(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

fn params_of(v: &Value) -> BilateralSolverParams {
    let f = |k: &str| v[k].as_f64().unwrap();
    BilateralSolverParams {
        sigma_spatial: f("sigma_spatial"),
        sigma_luma: f("sigma_luma"),
        sigma_chroma: f("sigma_chroma"),
        lambda: f("lambda"),
        confidence: f("confidence"),
        bistochastize_iters: usize_of(&v["bistochastize_iters"]),
        cg_max_iter: usize_of(&v["cg_max_iter"]),
        cg_tol: f("cg_tol"),
        a_diag_min: f("a_diag_min"),
    }
}

#[test]
fn otsu_matches_opencv() {
    let r = reference();
    for case in r["otsu"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let pixels = bytes(&case["pixels"]);
        let t = otsu_threshold(&pixels);
        assert_eq!(t as u64, case["threshold"].as_u64().unwrap(), "{name}");
        assert_eq!(threshold(&pixels, t), bools(&case["binary"]), "{name}");
    }
}

#[test]
fn yuv_rounding_matches_numpy() {
    let r = reference();
    let rgb = bytes(&r["yuv_boundary"]["rgb"]);
    let yuv = f64s(&r["yuv_boundary"]["yuv_f64"]);
    for (px, want) in rgb.chunks(3).zip(yuv.chunks(3)) {
        let got = rgb_to_yuv([px[0], px[1], px[2]]);
        assert_eq!(
            got.map(f64::to_bits),
            [0, 1, 2].map(|c| want[c].to_bits()),
            "{px:?}"
        );
    }
}

#[test]
fn bilateral_solver_matches_scipy() {
    let r = reference();
    let b = &r["bilateral"];
    let (h, w) = (usize_of(&b["height"]), usize_of(&b["width"]));
    let rgb = bytes(&b["rgb"]);
    let mask = bools(&b["target_mask"]);
    let target: Vec<f64> = mask.iter().map(|&m| if m { 255.0 } else { 0.0 }).collect();
    for case in b["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let params = params_of(&case["params"]);
        let grid = BilateralGrid::new(&rgb, h, w, &params).unwrap();
        assert_eq!(grid.num_vertices(), usize_of(&case["nvertices"]), "{name}");

        let want = f64s(&case["solve_f64"]);
        let got = bilateral_solve(&rgb, h, w, &target, &params).unwrap();
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .fold(0.0f64, |m, (g, w)| m.max((g - w).abs()));
        println!("bilateral {name}: max abs error {err:.3e} (max |ref| {scale:.3})");
        assert!(err <= 1e-10 * scale, "{name}: max abs error {err:e}");

        let times = usize_of(&case["refined_times"]);
        let thr = case["refined_threshold"].as_f64().unwrap();
        let refined = refine_mask(&rgb, h, w, &mask, &params, times, thr).unwrap();
        assert_eq!(refined, bools(&case["refined"]), "{name}");
    }
}

#[test]
fn components_match_opencv() {
    let r = reference();
    let c = &r["components"];
    let (h, w) = (usize_of(&c["height"]), usize_of(&c["width"]));
    let (labels, comps) = connected_components(&bools(&c["mask"]), h, w).unwrap();
    let want_labels: Vec<u32> = bytes(&c["labels_i32"])
        .chunks(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect();
    assert_eq!(labels, want_labels);
    assert_eq!(comps.len(), usize_of(&c["count"]));
    for (k, (comp, stat)) in comps.iter().zip(c["stats"].as_array().unwrap()).enumerate() {
        let s: Vec<u64> = stat
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(comp.label as usize, k + 1);
        assert_eq!(
            comp.bbox.map(u64::from),
            [s[0], s[1], s[2], s[3]],
            "component {}",
            k + 1
        );
        assert_eq!(comp.area, s[4], "component {}", k + 1);
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let p = BilateralSolverParams::default();
    let rgb = vec![0u8; 4 * 6 * 3];
    assert!(BilateralGrid::new(&rgb, 4, 5, &p).is_err());
    assert!(bilateral_solve(&rgb, 4, 6, &[0.0; 23], &p).is_err());
    assert!(refine_mask(&rgb, 4, 6, &[false; 25], &p, 2, 0.5).is_err());
    assert!(connected_components(&[true; 3], 2, 2).is_err());
    assert!(connected_components(&[true; 3], usize::MAX, 2).is_err());
}

/// A 408×544 region (MosaicFusion's mask size for a 2×2 mosaic cell): reports the solve time.
#[test]
fn region_408x544_solves() {
    let (h, w) = (408, 544);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 13) as f64 - 6.0
    };
    let mut rgb = Vec::with_capacity(h * w * 3);
    let mut mask = Vec::with_capacity(h * w);
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = ((x as f64 - 290.0) / 150.0, (y as f64 - 200.0) / 130.0);
            let inside = dx * dx + dy * dy < 1.0;
            let base = if inside {
                [210.0, 70.0, 40.0]
            } else {
                [
                    60.0 + x as f64 / 4.0,
                    90.0 + y as f64 / 8.0,
                    150.0 - x as f64 / 6.0,
                ]
            };
            rgb.extend(base.map(|v| (v + noise()).clamp(0.0, 255.0) as u8));
            // Coarse 16-px blocks, like an upsampled attention map.
            let (bx, by) = ((x / 16 * 16) as f64 + 8.0, (y / 16 * 16) as f64 + 8.0);
            let (cx, cy) = ((bx - 290.0) / 160.0, (by - 200.0) / 140.0);
            mask.push(cx * cx + cy * cy < 1.0);
        }
    }
    let p = BilateralSolverParams::default();
    let start = Instant::now();
    let grid = BilateralGrid::new(&rgb, h, w, &p).unwrap();
    let built = start.elapsed();
    let target: Vec<f64> = mask.iter().map(|&m| if m { 255.0 } else { 0.0 }).collect();
    let out = grid.solve(&target, &p).unwrap();
    let solved = start.elapsed();
    let refined = refine_mask(&rgb, h, w, &mask, &p, 2, 0.5).unwrap();
    let total = start.elapsed();
    println!(
        "408x544: {} vertices; grid {:.1} ms, grid+solve {:.1} ms, refine_mask(times=2) {:.1} ms",
        grid.num_vertices(),
        built.as_secs_f64() * 1e3,
        solved.as_secs_f64() * 1e3,
        (total - solved).as_secs_f64() * 1e3,
    );
    assert!(out.iter().all(|v| v.is_finite()));
    let (inside, outside) = (refined[200 * w + 290], refined[5 * w + 5]);
    assert!(inside && !outside);
}
