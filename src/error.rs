//! The crate's error type: invalid hyperparameters, non-finite values, device errors.

use thiserror::Error;

/// Everything that can go wrong at run time in the crate (shape errors are compile errors).
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// A hyperparameter outside its valid range, e.g. a fixed PSSiLU β ≥ 1.
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        name: &'static str,
        value: f64,
        reason: &'static str,
    },
    /// A parameter name the activation does not have (e.g. `"beta"` for PReLU).
    #[error("{activation} has no parameter `{name}`")]
    UnknownParameter {
        name: String,
        activation: &'static str,
    },
    /// An activation of one concrete type asked to be another (only `AnyActivation` changes kind).
    #[error("the activation is {found}, not {expected} (only AnyActivation can change kind)")]
    WrongActivation {
        expected: &'static str,
        found: &'static str,
    },
    /// A NaN or infinity where finite values are required (parameters, losses, inputs).
    #[error("non-finite value in {what}")]
    NonFinite { what: String },
    /// An error of the dfdx device (allocation, ...).
    #[error("device error: {0}")]
    Device(String),
    /// Long work stopped at the user's request (see `progress::Progress::cancelled`); what it saved
    /// lets a later call resume.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// Writing a plot or a result file failed.
    #[error("i/o error: {0}")]
    Io(String),
    /// The ranks of a data-parallel run could not exchange what a step needs (a rank stopped or
    /// was killed, the transport broke).
    #[error("data-parallel run: {0}")]
    Collective(String),
}

impl From<dfdx::tensor::CpuError> for Error {
    fn from(e: dfdx::tensor::CpuError) -> Self {
        Error::Device(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
