//! Mixed precision: the encoder's matrix products in a half type over f32
//! weights, as PyTorch's `autocast` does for `linear` and `bmm`.
//!
//! Inside [`with_products_in`]`(Some(dtype), f)` every product the encoder
//! makes through [`product`] or [`linear`] casts both operands to `dtype`,
//! multiplies there, and casts the result back to its input's type (f32):
//! the weights, their gradients, AdamW's state and the checkpoints stay f32,
//! and so do the layer norms, softmax, activations and the loss. Under
//! autodiff the casts are ops of the graph (Burn's cast differentiates to a
//! cast of the gradient back), so the products' backward runs in `dtype`
//! too, on the operands saved in `dtype`. Outside the scope, and with
//! `None`, products run in their operands' own type.
//!
//! Burn 0.21 promotes nothing: an op on an f16 and an f32 tensor is an
//! error, so every boundary is one of these explicit casts.

use std::cell::Cell;

use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};

thread_local! {
    /// The type of the products on this thread, while [`with_products_in`] runs.
    static PRODUCTS: Cell<Option<FloatDType>> = const { Cell::new(None) };
}

/// Runs `f` with the encoder's products on this thread in `dtype` (`None`:
/// in the operands' own type), restoring the previous setting after.
pub fn with_products_in<R>(dtype: Option<FloatDType>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<FloatDType>);
    impl Drop for Restore {
        fn drop(&mut self) {
            PRODUCTS.set(self.0);
        }
    }
    let _restore = Restore(PRODUCTS.replace(dtype));
    f()
}

/// The type products take on this thread now, if not their operands'.
pub fn products_dtype() -> Option<FloatDType> {
    PRODUCTS.get()
}

/// `lhs.matmul(rhs)`, in the scope's product type; the result in `lhs`'s
/// type.
pub fn product<B: Backend, const D: usize>(lhs: Tensor<B, D>, rhs: Tensor<B, D>) -> Tensor<B, D> {
    match PRODUCTS.get() {
        Some(dtype) => {
            let back = FloatDType::from(lhs.dtype());
            lhs.cast(dtype).matmul(rhs.cast(dtype)).cast(back)
        }
        None => lhs.matmul(rhs),
    }
}

/// `linear.forward(x)` for `x` `[rows, d_in]` → `[rows, d_out]`: the
/// product in the scope's type, the bias added in `x`'s.
pub fn linear<B: Backend>(linear: &Linear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    if PRODUCTS.get().is_none() {
        return linear.forward(x);
    }
    let y = product(x, linear.weight.val());
    match &linear.bias {
        Some(bias) => y + bias.val().unsqueeze(),
        None => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_sets_and_restores_the_product_type() {
        assert_eq!(products_dtype(), None);
        with_products_in(Some(FloatDType::F16), || {
            assert_eq!(products_dtype(), Some(FloatDType::F16));
            with_products_in(None, || assert_eq!(products_dtype(), None));
            assert_eq!(products_dtype(), Some(FloatDType::F16));
        });
        assert_eq!(products_dtype(), None);
    }
}
