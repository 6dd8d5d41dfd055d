//! biolearn: train neural networks with backpropagation and with the biologically plausible
//! learning rules of the literature, and compare them on the same networks, data and protocol.

pub mod bench;
pub mod config;
pub mod data;
pub mod env;
pub mod error;
pub mod hash;
pub mod limits;
pub mod linalg;
pub mod memory;
pub mod nn;
pub mod nonfinite;
pub mod optim;
pub mod picture;
pub mod protocol;
pub mod report;
pub mod rng;
pub mod rules;
pub mod safetensors;
pub mod train;

pub use error::{Error, Result};
