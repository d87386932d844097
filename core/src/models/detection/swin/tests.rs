//! The Swin + FPN backbone against `tests/fixtures/diffinst_swin_ref.py` (a PyTorch
//! re-implementation of the original's `swintransformer.py`, checked equal to it bit for bit;
//! random weights in `tests/fixtures/diffusioninst/tiny-swin-backbone.safetensors`).

use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Int, Tensor};
use safetensors::SafeTensors;

use super::{Windows, relative_position_index, shifted_window_mask};
use crate::models::detection::BottomUp;
use crate::models::detection::tests::{
    Expected, backbone_outputs, check_outputs, fixture, load_backbone, values,
};

/// Max error relative to the tensor's scale (`max |want|`, at least 1): f32 matrix products,
/// LayerNorms and softmaxes summed in another order than PyTorch's. Measured: at most 8.8e-7
/// (p4; max abs 6.2e-6 on p3's values up to 8.2); the window gathers are exact.
const FEATURE_TOL: f32 = 1e-5;

/// Patch embedding, swin0…swin3 and p2…p6 of the tiny Swin on the fixture batch, each within
/// `tol` of PyTorch's.
pub(crate) fn check_swin(device: &Device, tol: f32) {
    let expected = Expected::open("diffinst_swin");
    let backbone = load_backbone("swin", device);
    let x = expected.tensor("batch_a", device);
    let BottomUp::Swin(swin) = &backbone.bottom_up else {
        panic!("not a Swin")
    };
    let mut got = vec![(
        "patch_embed".to_string(),
        swin.patch_embed.forward(x.clone()).permute([0, 3, 1, 2]),
    )];
    got.extend(backbone_outputs(&backbone, x));
    assert_eq!(got.len(), 10);
    check_outputs(&expected, "", got, tol);
}

#[test]
fn swin_fpn_equals_pytorch() {
    check_swin(&Device::flex(), FEATURE_TOL);
}

#[test]
fn batch_of_two_equals_two_batches_of_one() {
    let device = Device::flex();
    let backbone = load_backbone("swin", &device);
    let x = Expected::open("diffinst_swin").tensor("batch_a", &device);
    let one = backbone.forward(x.clone());
    let two = backbone.forward(Tensor::cat(vec![x.clone(), x], 0));
    for (a, b) in one.into_iter().zip(two) {
        let (_, a) = values(a);
        let (_, b) = values(b);
        assert_eq!([a.clone(), a].concat(), b);
    }
}

/// The recomputed index equals every `relative_position_index` buffer of the checkpoint.
#[test]
fn relative_position_index_equals_the_checkpoints_buffers() {
    let bytes = fixture("diffusioninst/tiny-swin-backbone.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let want = relative_position_index(7);
    assert_eq!(want.len(), 49 * 49);
    let mut buffers = 0;
    for (name, t) in st.tensors() {
        if name.ends_with("relative_position_index") {
            assert_eq!(t.shape(), [49, 49], "{name}");
            let got: Vec<i64> = t
                .data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            assert_eq!(got, want, "{name}");
            buffers += 1;
        }
    }
    assert_eq!(buffers, 8);
}

/// The original's `window_partition` after `F.pad` and `torch.roll`, as tensor operations.
fn partition_as_the_original(x: Tensor<4>, window: usize, shift: usize) -> Tensor<3> {
    let [b, h, w, c] = x.dims();
    let (pad_b, pad_r) = (
        (window - h % window) % window,
        (window - w % window) % window,
    );
    let x = x.pad([(0, pad_b), (0, pad_r), (0, 0)], PadMode::Constant(0.0));
    let s = shift as i64;
    let x = x.roll(&[-s, -s], &[1, 2]);
    let (hp, wp) = (h + pad_b, w + pad_r);
    let x: Tensor<6> = x.reshape([b, hp / window, window, wp / window, window, c]);
    x.permute([0, 1, 3, 2, 4, 5])
        .reshape([b * (hp / window) * (wp / window), window * window, c])
}

/// The gathers equal padding, rolling and partitioning, and the inverse gather gets every
/// token back, for sizes that need padding on both sides, with and without the shift.
#[test]
fn window_gathers_equal_pad_roll_and_partition() {
    let device = Device::flex();
    let (b, h, w, c) = (2, 9, 11, 3);
    let x = Tensor::<1, Int>::arange(1..(b * h * w * c) as i64 + 1, &device)
        .float()
        .reshape([b, h, w, c]);
    for shift in [0, 3] {
        let windows = Windows::new(h, w, 7, shift, &device);
        assert_eq!(windows.count, 4);
        assert_eq!(windows.mask.is_some(), shift > 0);
        let tokens: Tensor<3> = x.clone().reshape([b, h * w, c]);
        let parts = tokens
            .pad([(0, 1), (0, 0)], PadMode::Constant(0.0))
            .select(1, windows.index.clone());
        let want = partition_as_the_original(x.clone(), 7, shift);
        assert_eq!(
            values(parts.clone().reshape([b * 4, 49, c]).unsqueeze()),
            values(want.unsqueeze()),
            "shift {shift}"
        );
        let back: Tensor<4> = parts.select(1, windows.inverse).reshape([b, h, w, c]);
        assert_eq!(values(back), values(x.clone()), "shift {shift}");
    }
}

/// The mask of the original's `BasicLayer` for a 14×7 padded map, window 7, shift 3: the top
/// window is one region; the bottom window has rows 0–3 and 4–6 in different regions.
#[test]
fn shifted_window_mask_separates_the_wrapped_regions() {
    let device = Device::flex();
    let (shape, mask) = values(shifted_window_mask(14, 7, 7, 3, &device).unsqueeze());
    assert_eq!(shape, [1, 2, 49, 49]);
    // Region of token t of window w: rows then columns (the column split is at 4 too).
    let region = |w: usize, t: usize| {
        let (y, x) = (t / 7, t % 7);
        let ry = if w == 0 {
            0
        } else if y < 4 {
            1
        } else {
            2
        };
        let rx = if x < 4 { 1 } else { 2 };
        ry * 3 + rx
    };
    for w in 0..2 {
        for i in 0..49 {
            for j in 0..49 {
                let want = if region(w, i) == region(w, j) {
                    0.0
                } else {
                    -100.0
                };
                assert_eq!(mask[(w * 49 + i) * 49 + j], want, "w{w} i{i} j{j}");
            }
        }
    }
}
