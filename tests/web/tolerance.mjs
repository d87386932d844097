/** Browser vs native PNGs, per 8-bit channel. Native CPU and native wgpu (lavapipe) differ by at most 1. */
export const TOLERANCE = { max: 2, mean: 0.05 };
