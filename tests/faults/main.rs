//! Bad inputs and faults, table-driven: experiment and synthesis files,
//! model folders, hub servers, evaluation data, embed / filter / eval
//! inputs, synthesis servers, export targets, and faults during training
//! (signals, SIGKILL, divergence, two processes, damaged checkpoints, a full
//! disk), and pipelines killed in each stage. Every case asserts no panic, no hang, its exit status, an error
//! naming the file, key or line at fault, and that nothing the user had was
//! lost (`harness`).

#[path = "../common/mod.rs"]
mod common;

mod cli_errors;
mod configs;
mod cycle;
mod eval_data;
mod export;
mod harness;
mod hub;
mod inputs;
mod models;
mod pipeline;
mod raw_server;
mod synth;
mod training;
mod world;
