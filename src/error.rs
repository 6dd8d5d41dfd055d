//! The library's error type at its entry points: what went wrong, by kind, with the message a
//! user needs (the file, the setting, the value). Lower layers report `String`s or `DataError`;
//! the entry points (`TrainConfig::load`, `train::run*`, `train::load_data`, saved models,
//! `Plan::load`, `protocol::run_plan`) say which kind of failure it was.

/// A failure of one of biolearn's entry points.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration (file, flags, a rule's settings) that cannot work.
    #[error("{0}")]
    Config(String),
    /// A data set that cannot be loaded.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// A saved model or checkpoint that cannot be read or does not fit the run.
    #[error("{0}")]
    Model(String),
    /// A comparison plan that cannot work.
    #[error("{0}")]
    Plan(String),
    /// A run or sweep that failed (a rule that cannot run on its network, a file not written).
    #[error("{0}")]
    Run(String),
}

pub type Result<T> = std::result::Result<T, Error>;
