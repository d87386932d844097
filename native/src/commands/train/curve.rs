//! `logs/loss.png`: the loss per step (grey) and its moving average (blue), on a log scale.

use std::path::Path;

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};

const WIDTH: u32 = 800;
const HEIGHT: u32 = 400;
const MARGIN: u32 = 20;

/// Draws the `loss` column of `csv` into `png`; nothing when there is no row yet.
pub fn write_loss_curve(csv: &Path, png: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(csv).with_context(|| format!("{}: cannot read", csv.display()))?;
    let losses: Vec<f64> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1)?.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    if losses.is_empty() {
        return Ok(());
    }
    let window = (losses.len() / 50).max(1);
    let smooth: Vec<f64> = (0..losses.len())
        .map(|i| {
            let lo = i.saturating_sub(window - 1);
            losses[lo..=i].iter().sum::<f64>() / (i + 1 - lo) as f64
        })
        .collect();
    let (lo, hi) = losses.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| {
        (a.min(v.ln()), b.max(v.ln()))
    });
    let span = (hi - lo).max(1e-9);
    let plot_w = (WIDTH - 2 * MARGIN) as f64;
    let plot_h = (HEIGHT - 2 * MARGIN) as f64;
    let point = |i: usize, v: f64| {
        let x = MARGIN as f64 + plot_w * i as f64 / (losses.len().max(2) - 1) as f64;
        let y = MARGIN as f64 + plot_h * (1.0 - (v.ln() - lo) / span);
        (x, y)
    };
    let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([255, 255, 255]));
    // Frame and a grid line per decade.
    for x in MARGIN..=WIDTH - MARGIN {
        img.put_pixel(x, HEIGHT - MARGIN, Rgb([0, 0, 0]));
    }
    for y in MARGIN..=HEIGHT - MARGIN {
        img.put_pixel(MARGIN, y, Rgb([0, 0, 0]));
    }
    let mut decade = (lo / std::f64::consts::LN_10).ceil();
    while decade * std::f64::consts::LN_10 <= hi {
        let (_, y) = point(0, (decade * std::f64::consts::LN_10).exp());
        for x in (MARGIN..WIDTH - MARGIN).step_by(4) {
            img.put_pixel(x, y.round() as u32, Rgb([200, 200, 200]));
        }
        decade += 1.0;
    }
    for (series, colour) in [
        (&losses, Rgb([170, 170, 170])),
        (&smooth, Rgb([30, 90, 200])),
    ] {
        for i in 1..series.len() {
            line(
                &mut img,
                point(i - 1, series[i - 1]),
                point(i, series[i]),
                colour,
            );
        }
    }
    crate::write_atomically(png, |tmp| {
        img.save_with_format(tmp, image::ImageFormat::Png)
            .with_context(|| format!("{}: cannot write", png.display()))
    })
}

fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), colour: Rgb<u8>) {
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as usize;
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
        if x >= 0.0 && y >= 0.0 && (x as u32) < img.width() && (y as u32) < img.height() {
            img.put_pixel(x as u32, y as u32, colour);
        }
    }
}
