//! Whether a model's weights are all finite numbers: a checkpoint of NaN or
//! infinite weights could never be resumed, so none is written.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Bool, ElementConversion, Tensor};

/// Gathers, over every float parameter, whether any value is NaN or
/// infinite.
struct AnyNotFinite<B: AutodiffBackend> {
    found: Option<Tensor<B::InnerBackend, 1, Bool>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for AnyNotFinite<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val().inner();
        let bad = value.clone().is_nan().any().bool_or(value.is_inf().any());
        self.found = Some(match self.found.take() {
            Some(found) => found.bool_or(bad),
            None => bad,
        });
    }
}

/// Whether every weight of `model` is a finite number.
pub fn weights_finite<B: AutodiffBackend, M: AutodiffModule<B>>(model: &M) -> bool {
    let mut visitor = AnyNotFinite::<B> { found: None };
    model.visit(&mut visitor);
    visitor
        .found
        .is_none_or(|t| t.int().into_scalar().elem::<i64>() == 0)
}
