//! Contrastive losses: pure functions of embeddings, generic over the
//! backend, and [`BatchLoss`], the shape in which a training objective hands
//! its loss to the step (plain or GradCache).

pub mod distill;
pub mod gaussian_decay;
pub mod infonce;
pub mod pairs;
pub mod rank;
pub mod rankgen;

use std::collections::BTreeMap;
use std::fmt::Debug;

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};

/// A batch's loss as a pure function of its embeddings and constants. The
/// step computes it on the embeddings of one forward pass, or GradCache on
/// cached ones, so every loss gets GradCache for free.
pub trait BatchLoss: Clone + Debug + Send + Sync + 'static {
    /// What a batch carries besides its token rows: values the loss reads
    /// and never differentiates (teacher scores, frozen-model logits).
    type Constants<B: Backend>: Clone + Send;

    /// The loss of `z` (`[rows, d]`, in the layout of the batch the
    /// objective made) given its `constants`.
    fn loss<B: Backend>(&self, z: Tensor<B, 2>, constants: &Self::Constants<B>) -> LossOutput<B>;
}

/// A loss and what it lets its objective report.
pub struct LossOutput<B: Backend> {
    /// The scalar to minimise, `[1]`.
    pub loss: Tensor<B, 1>,
    /// Named values, detached: per row (`[n]`, e.g. decay weights) or per
    /// row and column, flattened row-major.
    pub readings: Vec<(&'static str, Tensor<B, 1>)>,
}

/// Per-row values of one step, read back to the host, by name.
pub type Readings = BTreeMap<&'static str, Vec<f64>>;

impl<B: Backend> LossOutput<B> {
    /// The loss value and the readings, read back to the host.
    pub fn read(self) -> (f64, Readings) {
        let readings = self
            .readings
            .into_iter()
            .map(|(name, t)| {
                let values = t
                    .into_data()
                    .convert::<f64>()
                    .to_vec::<f64>()
                    .expect("f64 values");
                (name, values)
            })
            .collect();
        (self.loss.into_scalar().elem(), readings)
    }
}
