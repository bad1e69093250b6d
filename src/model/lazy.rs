//! Burn creates a module's random parameters lazily, on first use: their
//! values come from the backend's random stream at that moment, and a clone
//! made before then draws its own, different values. [`materialise`] draws
//! them now.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Initialises every parameter of `module` that is still pending, in
/// visiting order, from the backend's random stream as it stands.
pub fn materialise<B: Backend, M: Module<B>>(module: &M) {
    module.visit(&mut Touch);
}

struct Touch;

impl<B: Backend> ModuleVisitor<B> for Touch {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        param.val();
    }
}
