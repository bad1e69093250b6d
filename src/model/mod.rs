//! The sentence encoder: architecture, weights, pooling, checkpoint loading.

pub mod autocast;
pub mod bert;
pub mod card;
pub mod config;
pub mod cpu_kernels;
pub mod cpu_layer;
pub mod cpu_train;
pub mod cross_encoder;
pub mod encoder;
pub mod export;
pub mod hub;
pub mod lazy;
pub mod load;
pub mod pooling;
