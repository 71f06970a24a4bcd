//! The core of the PaaS vending machine: customer config → validated model → generated files,
//! plus validators for buildspec and appspec files. No AWS SDK and no network here; the only IO
//! is `project`, which reads a project tree into memory.

pub mod ami;
pub mod approval;
pub mod codebuild;
pub mod config;
pub mod diag;
pub mod front_door;
pub mod lock;
pub mod names;
pub mod plan;
pub mod pool;
pub mod project;
pub mod release;
pub mod render;
pub mod secrets;
pub mod source;
pub mod spec;

pub use config::model::Fleet;
pub use diag::{Diagnostic, Severity};
pub use source::SourceFile;
