//! Contrastive losses: pure functions of embeddings, generic over the backend.

pub mod gaussian_decay;
pub mod infonce;
