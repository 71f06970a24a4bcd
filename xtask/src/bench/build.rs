//! `cargo xtask bench build`: `xtask build globex dev` beside the same work done directly (git
//! clone and checkout, then the buildspec's commands in one bash), in one run; and the time to
//! collect and bundle a 100 MiB artifact tree.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{ensure, Context};
use clap::Args;
use vending::config::model::Artifacts;

#[derive(Args)]
pub struct BenchBuild {
    /// Timed runs of each kind.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Size of the artifact tree to bundle, in MiB.
    #[arg(long, default_value_t = 100)]
    bundle_mib: usize,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

impl BenchBuild {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        ensure!(self.runs > 0 && self.bundle_mib > 0, "--runs and --bundle-mib must be at least 1");
        let project = crate::bench::git_copy(root, "target/bench-build")?;
        let exe = std::env::current_exe()?;
        let buildspec = std::fs::read_to_string(project.join("buildspecs/globex/dev/buildspec.yaml"))?;
        let build = vending::spec::buildspec::read(&vending::SourceFile::new("buildspec.yaml", buildspec))
            .map_err(|d| anyhow::anyhow!("the sample buildspec does not read: {:?}", d.first()))?;
        let commands: Vec<String> = build.phases.iter().flat_map(|p| p.commands.clone()).collect();
        let script = format!("set -e\n{}\n", commands.join("\n"));
        let direct_dir = project.join("target/direct");

        let (mut tool, mut direct) = (Vec::new(), Vec::new());
        for i in 0..=self.runs {
            let started = Instant::now();
            let out = Command::new(&exe).arg("--root").arg(&project).args(["build", "globex", "dev"]).output()?;
            let tool_ms = started.elapsed().as_secs_f64() * 1000.0;
            ensure!(out.status.success(), "xtask build failed: {}", String::from_utf8_lossy(&out.stderr));

            let started = Instant::now();
            if direct_dir.exists() {
                std::fs::remove_dir_all(&direct_dir)?;
            }
            let clone = Command::new("git")
                .args(["clone", "--quiet", "--no-checkout"])
                .arg(&project)
                .arg(&direct_dir)
                .status()?;
            ensure!(clone.success(), "git clone failed");
            let checkout = Command::new("git")
                .args(["checkout", "--quiet", "--detach", "main"])
                .current_dir(&direct_dir)
                .status()?;
            ensure!(checkout.success(), "git checkout failed");
            let out = Command::new("bash").arg("-c").arg(&script).current_dir(&direct_dir).output()?;
            let direct_ms = started.elapsed().as_secs_f64() * 1000.0;
            ensure!(out.status.success(), "the commands failed directly: {}", String::from_utf8_lossy(&out.stderr));
            if i > 0 {
                tool.push(tool_ms);
                direct.push(direct_ms);
            }
        }
        let (tool, direct) = (median(tool), median(direct));
        println!(
            "`xtask build globex dev` (clone, buildspec, artifacts, bundle): median {tool:.0} ms over {} runs",
            self.runs
        );
        println!(
            "the same clone and commands in one bash, no bundle:         median {direct:.0} ms over {} runs",
            self.runs
        );
        println!("the tool's own overhead: {:.0} ms", tool - direct);

        // A tree of incompressible files: the bundle's cost is reading, deflating and hashing.
        let tree = root.join("target/bench-bundle");
        if tree.exists() {
            std::fs::remove_dir_all(&tree)?;
        }
        let files = self.bundle_mib * 4;
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for n in 0..files {
            let dir = tree.join(format!("d{:02}", n % 50));
            std::fs::create_dir_all(&dir)?;
            let mut bytes = vec![0u8; 256 * 1024];
            for chunk in bytes.chunks_mut(8) {
                // xorshift: cheap bytes that do not compress.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
            }
            std::fs::write(dir.join(format!("f{n:05}.bin")), bytes)?;
        }
        let artifacts = Artifacts {
            files: vec!["**/*".into()],
            base_directory: None,
            discard_paths: false,
            exclude_paths: Vec::new(),
            name: None,
        };
        let mut times = Vec::new();
        let mut size = 0;
        for i in 0..=self.runs {
            let started = Instant::now();
            let collected = vending_runners::artifacts::collect(&tree, &artifacts)?;
            let bundle = vending_runners::bundle::bundle("version: 0.0\nos: linux\n", &collected).context("bundle")?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            size = bundle.bytes.len();
            if i > 0 {
                times.push(ms);
            }
        }
        let ms = median(times);
        println!(
            "bundle of {} MiB in {files} files (collect, deflate, SHA-256): median {ms:.0} ms over {} runs ({:.0} MiB/s), zip {:.1} MiB",
            self.bundle_mib,
            self.runs,
            self.bundle_mib as f64 / (ms / 1000.0),
            size as f64 / 1_048_576.0
        );
        Ok(ExitCode::SUCCESS)
    }
}
