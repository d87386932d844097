//! Swin's `SwinTransformerBlock`: (shifted) window attention and an MLP, each residual, with
//! the window gathers and the shifted windows' attention mask.

use burn::module::Module;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::WindowAttention;
use crate::error::Result;
use crate::nn::{LayerNorm, Linear, gelu, linear};
use crate::weights::VarBuilder;

/// `fc1` (`dim → 4·dim`), exact GELU, `fc2` (`4·dim → dim`).
#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Mlp {
    pub fn load(vb: &VarBuilder, dim: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            fc1: linear(&vb.pp("fc1"), dim, hidden, true)?,
            fc2: linear(&vb.pp("fc2"), hidden, dim, true)?,
        })
    }

    /// # Shapes
    /// `[..., dim]` → `[..., dim]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.fc2.forward(gelu(self.fc1.forward(x)))
    }
}

/// `x = x + attn(norm1(x))` over windows of `window × window` tokens, cyclically shifted up
/// and left by `shift` first (and back after) when `shift > 0`; then `x = x + mlp(norm2(x))`.
/// The normalised features are zero-padded on the right/bottom to multiples of the window
/// (padded tokens take part in their window's attention, as in the original) and cropped back
/// (see [`Windows`]). Drop path is the identity at inference.
#[derive(Module, Debug)]
pub struct SwinBlock {
    pub norm1: LayerNorm,
    pub attn: WindowAttention,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
    #[module(skip)]
    window: usize,
    #[module(skip)]
    shift: usize,
}

impl SwinBlock {
    /// Reads `norm1`, `attn`, `norm2` and `mlp` (ratio 4) for `dim` channels.
    pub fn load(
        vb: &VarBuilder,
        dim: usize,
        heads: usize,
        window: usize,
        shift: usize,
    ) -> Result<Self> {
        Ok(Self {
            norm1: LayerNorm::load(&vb.pp("norm1"), dim, 1e-5)?,
            attn: WindowAttention::load(&vb.pp("attn"), dim, heads, window)?,
            norm2: LayerNorm::load(&vb.pp("norm2"), dim, 1e-5)?,
            mlp: Mlp::load(&vb.pp("mlp"), dim, 4 * dim)?,
            window,
            shift,
        })
    }

    /// The cyclic shift of this block (0 or `window / 2`).
    pub fn shift(&self) -> usize {
        self.shift
    }

    /// `windows` is the stage's [`Windows`] for this block's window and shift.
    ///
    /// # Shapes
    /// `x`: `[B, H, W, C]` → `[B, H, W, C]`
    pub fn forward(&self, x: Tensor<4>, windows: &Windows) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        let (nw, n) = (windows.count, self.window * self.window);
        let tokens: Tensor<3> = self.norm1.forward(x.clone()).reshape([b, h * w, c]);
        let tokens = tokens.pad([(0, 1), (0, 0)], PadMode::Constant(0.0));
        let parts = tokens
            .select(1, windows.index.clone())
            .reshape([b * nw, n, c]);
        let parts = self.attn.forward(parts, windows.mask.clone());
        let y = parts
            .reshape([b, nw * n, c])
            .select(1, windows.inverse.clone())
            .reshape([b, h, w, c]);
        let x = x + y;
        x.clone() + self.mlp.forward(self.norm2.forward(x))
    }
}

/// How a stage's blocks cut `H × W` features into windows. The original pads them with zeros
/// on the right/bottom to `Hp × Wp` (multiples of the window), rolls them up and left by
/// `shift`, and partitions them into windows (row-major, each flattened row-major); after the
/// attention it undoes all three. Here each direction is one gather over the tokens
/// (row-major), with a zero token appended at index `H·W` for the padding.
#[derive(Debug, Clone)]
pub struct Windows {
    /// For each window token in turn, the token it holds (`H·W`: padding). `[nW·N]`
    pub index: Tensor<1, Int>,
    /// For each token, its place among the window tokens. `[H·W]`
    pub inverse: Tensor<1, Int>,
    /// [`shifted_window_mask`] when `shift > 0`. `[nW, N, N]`
    pub mask: Option<Tensor<3>>,
    /// Windows per image, `nW = (Hp/window)·(Wp/window)`.
    pub count: usize,
}

impl Windows {
    /// The gathers (and mask) for `h × w` features, windows of `window`, shift `shift`.
    pub fn new(h: usize, w: usize, window: usize, shift: usize, device: &Device) -> Self {
        let (hp, wp) = (h.div_ceil(window) * window, w.div_ceil(window) * window);
        let (nh, nw, n) = (hp / window, wp / window, window * window);
        let mut index = Vec::with_capacity(nh * nw * n);
        for wy in 0..nh {
            for wx in 0..nw {
                for t in 0..n {
                    // The rolled map's (y, x) is the padded map's (y + shift, x + shift).
                    let y = (wy * window + t / window + shift) % hp;
                    let x = (wx * window + t % window + shift) % wp;
                    index.push(if y < h && x < w { y * w + x } else { h * w } as i64);
                }
            }
        }
        let mut inverse = Vec::with_capacity(h * w);
        for y in 0..h {
            for x in 0..w {
                let (sy, sx) = ((y + hp - shift) % hp, (x + wp - shift) % wp);
                let win = (sy / window) * nw + sx / window;
                inverse.push((win * n + (sy % window) * window + sx % window) as i64);
            }
        }
        let ints = |v: Vec<i64>| {
            let len = v.len();
            Tensor::<1, Int>::from_data(TensorData::new(v, [len]), device)
        };
        Self {
            index: ints(index),
            inverse: ints(inverse),
            mask: (shift > 0).then(|| shifted_window_mask(hp, wp, window, shift, device)),
            count: nh * nw,
        }
    }
}

/// The original's `attn_mask` for shifted windows over padded features of `hp × wp`: the
/// shifted image is cut into 3 × 3 regions at `[0, hp − window)`, `[hp − window, hp − shift)`,
/// `[hp − shift, hp)` (the same across), and a token may only attend to tokens of its own
/// region: 0 there, −100 elsewhere.
///
/// # Shapes
/// → `[nW, window², window²]`, `nW = (hp/window)·(wp/window)`
pub fn shifted_window_mask(
    hp: usize,
    wp: usize,
    window: usize,
    shift: usize,
    device: &Device,
) -> Tensor<3> {
    let region = |i: usize, len: usize| {
        if i + window < len {
            0
        } else if i + shift < len {
            1
        } else {
            2
        }
    };
    let (nh, nw, n) = (hp / window, wp / window, window * window);
    let mut mask = Vec::with_capacity(nh * nw * n * n);
    for wy in 0..nh {
        for wx in 0..nw {
            let labels: Vec<usize> = (0..n)
                .map(|t| {
                    let (y, x) = (wy * window + t / window, wx * window + t % window);
                    region(y, hp) * 3 + region(x, wp)
                })
                .collect();
            for &li in &labels {
                mask.extend(
                    labels
                        .iter()
                        .map(|&lj| if li == lj { 0.0f32 } else { -100.0 }),
                );
            }
        }
    }
    Tensor::from_data(TensorData::new(mask, [nh * nw, n, n]), device)
}
