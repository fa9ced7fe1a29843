//! Evaluation (docs/reproduction.md §4): clean accuracy, PGD and AutoAttack robust accuracy
//! ([`evaluate`] → [`EvalReport`], with a RobustBench-style `model_info` record), AutoAttack's
//! protocol ([`autoattack`]) and the shape-ablation metrics ([`shape_metrics`]).

pub mod autoattack;
pub mod report;
pub mod shape_metrics;

pub use autoattack::{
    run_autoattack, AaVersion, AttackTiming, AutoAttackConfig, AutoAttackReport, AutoAttackState,
};
pub use report::{evaluate, Epsilon, EvalConfig, EvalReport};
pub use shape_metrics::{average_radius, empirical_lipschitz, square_success_rate, RadiusConfig};
