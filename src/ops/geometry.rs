//! Run-time geometry of a convolution or pooling window (checked at compile time by the typed
//! wrappers; carried at run time into the kernels).

/// Sizes of one 2-D convolution in NHWC layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    pub c_in: usize,
    pub ho: usize,
    pub wo: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeometry {
    /// Output size of a convolution along one axis: `(n + 2p - k) / s + 1` (PyTorch's floor rule).
    pub const fn out_size(n: usize, k: usize, s: usize, p: usize) -> usize {
        (n + 2 * p - k) / s + 1
    }
    /// Rows of the im2col matrix (one per output pixel).
    pub fn rows(&self) -> usize {
        self.batch * self.ho * self.wo
    }
    /// Columns of the im2col matrix: `k * k * c_in`.
    pub fn patch(&self) -> usize {
        self.k * self.k * self.c_in
    }
    /// True for the 1×1, stride-1, unpadded case, where the input is its own im2col matrix.
    pub fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
}

/// Sizes of one 2-D pooling in NHWC layout (`k`×`kw` window, padding counted as absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub ho: usize,
    pub wo: usize,
    /// Window height.
    pub k: usize,
    /// Window width.
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}
