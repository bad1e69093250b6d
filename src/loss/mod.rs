//! Contrastive losses: pure functions of embeddings, generic over the backend.

pub mod infonce;
