//! Text2Mask: a text-to-image model fine-tuned on colour maps draws a mask, which is read back
//! by nearest colour ([`decode`](super::decode)) and split into instances by the edge colour.

use super::{ColorMap, DecodeOptions, Decoded, Instances, LabelMap, Palette, decode, instances};
use crate::Result;
use crate::pipelines::{StableDiffusion, Txt2ImgParams, read_rgb8};
use crate::readback::Readback;

/// A colour map and what it decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrawnMask {
    /// The drawing as it came out of the model.
    pub color: ColorMap,
    pub decoded: Decoded,
    pub instances: Instances,
}

impl DrawnMask {
    /// Reads `color` with `palette`: nearest colours, then instances.
    pub fn read(palette: &Palette, color: ColorMap, options: &DecodeOptions) -> Result<Self> {
        let decoded = decode(palette, &color, options)?;
        let instances = instances(&decoded);
        Ok(Self {
            color,
            decoded,
            instances,
        })
    }

    /// The class of every pixel, edges given to their nearest instance (as
    /// `maskforge palette decode` writes it).
    pub fn labels(&self) -> LabelMap {
        self.instances.semantic()
    }
}

/// Draws a colour map for `params.prompt` with `sd` (a Text2Mask checkpoint) and reads it with
/// `palette`; the image is read back as `how` says. `on_step(i, n)` after each step.
pub async fn text2mask(
    sd: &StableDiffusion,
    params: &Txt2ImgParams,
    palette: &Palette,
    options: &DecodeOptions,
    how: Readback,
    on_step: impl FnMut(usize, usize),
) -> Result<DrawnMask> {
    let out = sd.txt2img(params, on_step)?;
    let rgb = read_rgb8(out.image, how).await?;
    let color = ColorMap::new(params.width, params.height, rgb)?;
    DrawnMask::read(palette, color, options)
}
