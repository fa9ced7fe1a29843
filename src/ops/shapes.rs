//! Compile-time output sizes on stable Rust.
//!
//! `Const<{(H + 2P - K) / S + 1}>` with a generic `H` needs the unstable `generic_const_exprs`;
//! instead the output size is an associated type, implemented by macro for every input size a
//! model can meet (1..=256). A layer applied to an input size with no impl — or a model whose
//! channel counts do not chain — has no `Module` impl, so it does not compile.

use dfdx::shapes::{Const, ConstDim};
use seq_macro::seq;

/// Output size of a convolution (or padded pooling) with kernel `K`, stride `S`, padding `P`
/// applied to an input of size `Self`.
pub trait ConvOut<const K: usize, const S: usize, const P: usize> {
    type Out: ConstDim;
}

/// Output size of a non-overlapping `K`×`K` pooling (stride `K`); implemented only when `K`
/// divides the input size exactly.
pub trait PoolOut<const K: usize> {
    type Out: ConstDim;
}

macro_rules! conv_out {
    ($k:literal, $s:literal, $p:literal, $from:literal) => {
        seq!(N in $from..=256 {
            impl ConvOut<$k, $s, $p> for Const<N> {
                type Out = Const<{ (N + 2 * $p - $k) / $s + 1 }>;
            }
        });
    };
}

// The (kernel, stride, padding) triples of the paper's architectures (docs/reproduction.md §2):
conv_out!(3, 1, 1, 1); // 3×3 convs
conv_out!(3, 2, 1, 1); // strided 3×3 convs, ImageNet 3×3/2 max-pool
conv_out!(1, 1, 0, 1); // 1×1 shortcuts
conv_out!(1, 2, 0, 1); // strided 1×1 shortcuts
conv_out!(7, 2, 3, 1); // ImageNet 7×7/2 stem
conv_out!(2, 2, 0, 2); // 2×2/2 max-pool (VGG)

macro_rules! pool_out {
    ($k:literal, $max:literal) => {
        seq!(M in 1..=$max {
            impl PoolOut<$k> for Const<{ M * $k }> {
                type Out = Const<M>;
            }
        });
    };
}

pool_out!(1, 256);
pool_out!(2, 128);
pool_out!(4, 64);
pool_out!(7, 32);
pool_out!(8, 32);
