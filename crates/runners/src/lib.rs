//! The software build: a buildspec run with CodeBuild's semantics (`runner`), its artifacts
//! collected (`artifacts`), and the CodeDeploy revision bundled from them and the appspec
//! (`bundle`); and a local CodeDeploy agent that deploys a revision into a sandbox folder
//! (`agent`). Runs processes and touches files, so it is kept out of the core crate.

pub mod agent;
pub mod artifacts;
pub mod bundle;
pub mod runner;
