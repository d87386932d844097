//! Box arithmetic of the head and the sampler, on the host in the precision the original
//! uses: the box coder of `RCNNHead.apply_deltas` and torchvision's class-aware NMS.

/// An `(x1, y1, x2, y2)` box in pixels.
pub type Xyxy = [f32; 4];

/// The box coder's `(wx, wy, ww, wh)` weights.
const DELTA_WEIGHTS: [f32; 4] = [2.0, 2.0, 1.0, 1.0];

/// `dw` and `dh` are clamped to `ln(100000 / 16)` before `exp`.
fn scale_clamp() -> f32 {
    (100000.0f64 / 16.0).ln() as f32
}

/// `RCNNHead.apply_deltas`: moves each box's centre by `(dx·w, dy·h)` and scales its size by
/// `(exp(dw), exp(dh))`, deltas divided by the weights `(2, 2, 1, 1)`.
///
/// # Shapes
/// `deltas`: `[R·4]` row-major, `boxes`: `R` → `R`
pub fn apply_deltas(deltas: &[f32], boxes: &[Xyxy]) -> Vec<Xyxy> {
    let clamp = scale_clamp();
    boxes
        .iter()
        .zip(deltas.chunks_exact(4))
        .map(|(b, d)| {
            let (w, h) = (b[2] - b[0], b[3] - b[1]);
            let (cx, cy) = (b[0] + 0.5 * w, b[1] + 0.5 * h);
            let dx = d[0] / DELTA_WEIGHTS[0];
            let dy = d[1] / DELTA_WEIGHTS[1];
            let dw = (d[2] / DELTA_WEIGHTS[2]).min(clamp);
            let dh = (d[3] / DELTA_WEIGHTS[3]).min(clamp);
            let (pcx, pcy) = (dx * w + cx, dy * h + cy);
            let (pw, ph) = (dw.exp() * w, dh.exp() * h);
            [
                pcx - 0.5 * pw,
                pcy - 0.5 * ph,
                pcx + 0.5 * pw,
                pcy + 0.5 * ph,
            ]
        })
        .collect()
}

/// `box_ops.batched_nms(boxes, scores, labels, iou)` as torchvision runs it on the CPU: the
/// indices kept, by decreasing score. Up to 1000 boxes it offsets each class by
/// `label · (max coordinate + 1)` and runs one NMS (the offsets round the coordinates in f32,
/// as there); above, one NMS per class.
pub fn batched_nms(boxes: &[Xyxy], scores: &[f32], labels: &[usize], iou: f32) -> Vec<usize> {
    if boxes.is_empty() {
        return Vec::new();
    }
    if boxes.len() * 4 <= 4000 {
        let max = boxes
            .iter()
            .flatten()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        let shifted: Vec<Xyxy> = boxes
            .iter()
            .zip(labels)
            .map(|(b, &l)| {
                let offset = l as f32 * (max + 1.0);
                b.map(|v| v + offset)
            })
            .collect();
        return nms(&shifted, scores, iou);
    }
    let mut keep = Vec::new();
    let mut classes: Vec<usize> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    for class in classes {
        let members: Vec<usize> = (0..boxes.len()).filter(|&i| labels[i] == class).collect();
        let class_boxes: Vec<Xyxy> = members.iter().map(|&i| boxes[i]).collect();
        let class_scores: Vec<f32> = members.iter().map(|&i| scores[i]).collect();
        keep.extend(
            nms(&class_boxes, &class_scores, iou)
                .into_iter()
                .map(|k| members[k]),
        );
    }
    keep.sort_unstable();
    keep.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    keep
}

/// torchvision's CPU `nms`: boxes by decreasing score (stable), each suppressing the later
/// ones it overlaps by IoU `> iou`.
pub fn nms(boxes: &[Xyxy], scores: &[f32], iou: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let area = |b: &Xyxy| (b[2] - b[0]) * (b[3] - b[1]);
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (at, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let bi = &boxes[i];
        let area_i = area(bi);
        for &j in &order[at + 1..] {
            if suppressed[j] {
                continue;
            }
            let bj = &boxes[j];
            let w = (bi[2].min(bj[2]) - bi[0].max(bj[0])).max(0.0);
            let h = (bi[3].min(bj[3]) - bi[1].max(bj[1])).max(0.0);
            let inter = w * h;
            if inter / (area_i + area(bj) - inter) > iou {
                suppressed[j] = true;
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_of_zero_keep_the_box_and_clamp_the_growth() {
        let boxes = [[10.0, 20.0, 30.0, 60.0]];
        assert_eq!(apply_deltas(&[0.0; 4], &boxes), boxes.to_vec());
        let grown = apply_deltas(&[0.0, 0.0, 100.0, 0.0], &boxes);
        let width = grown[0][2] - grown[0][0];
        assert!((width / 20.0 - 100000.0 / 16.0).abs() < 1.0, "{width}");
    }

    #[test]
    fn nms_is_per_class_and_orders_by_score() {
        let boxes = [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 0.0, 11.0, 10.0],
            [1.0, 0.0, 11.0, 10.0],
            [50.0, 50.0, 60.0, 60.0],
        ];
        let scores = [0.5, 0.9, 0.8, 0.7];
        // Box 0 overlaps box 1 (IoU 0.82) in the same class; box 2 is another class.
        assert_eq!(
            batched_nms(&boxes, &scores, &[0, 0, 1, 0], 0.5),
            vec![1, 2, 3]
        );
        assert_eq!(
            batched_nms(&boxes, &scores, &[0, 1, 2, 3], 0.5),
            vec![1, 2, 3, 0]
        );
        // The per-class path above 1000 boxes gives the same as the offset path.
        let many: Vec<Xyxy> = (0..1200)
            .map(|i| boxes[i % 4].map(|v| v + (i / 4) as f32 * 100.0))
            .collect();
        let many_scores: Vec<f32> = (0..1200).map(|i| scores[i % 4] - i as f32 * 1e-5).collect();
        let labels: Vec<usize> = (0..1200).map(|i| [0, 0, 1, 0][i % 4]).collect();
        let keep = batched_nms(&many, &many_scores, &labels, 0.5);
        assert_eq!(keep.len(), 900);
        assert!(
            keep.windows(2)
                .all(|w| many_scores[w[0]] >= many_scores[w[1]])
        );
    }
}
