//! README.md's quick start, run exactly as written: the shell lines of its step-by-step block, each
//! with `cargo xtask` standing for this binary on a copy of the project (a shell function), the
//! exit code its comment gives (`(exit N)`, else 0) checked, and the text after `#` checked
//! where it quotes the output. The README and the tool cannot drift apart.

use std::process::Command;

use crate::{packer_available, repo_root, Project};

/// The lines of the quick start's code block, and the exit code each must give.
fn quick_start() -> Vec<(String, i32, String)> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = &readme[readme.find("### Step by step").expect("a step-by-step quick start")..];
    let block = &section[section.find("```sh\n").expect("a code block") + 6..];
    let block = &block[..block.find("```").unwrap()];
    block
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|line| {
            let (command, comment) = line.split_once(" #").unwrap_or((line, ""));
            let comment = comment.trim();
            let (code, said) = match comment.strip_prefix("(exit ") {
                Some(rest) => {
                    let (n, said) = rest.split_once(')').unwrap();
                    (n.parse().unwrap(), said.trim())
                }
                None => (0, comment),
            };
            (command.trim().to_string(), code, said.to_string())
        })
        .collect()
}

/// Stops the emulator a failed run leaves behind.
struct Down<'a>(&'a Project);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["local", "down"]);
    }
}

/// The quick start opens with the demo and the test command, which is what CI runs.
#[test]
fn the_readme_quick_start_opens_with_the_demo_and_the_ci_test_command() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = &readme[readme.find("## Quick start").unwrap()..];
    let block = &section[section.find("```sh\n").unwrap() + 6..];
    let commands: Vec<&str> =
        block[..block.find("```").unwrap()].lines().map(|l| l.split(" #").next().unwrap().trim()).collect();
    assert_eq!(commands, ["cargo xtask demo", "cargo test --workspace --locked"]);
    let ci = std::fs::read_to_string(repo_root().join(".ci/run")).unwrap();
    assert!(ci.lines().any(|l| l.trim() == commands[1]), ".ci/run runs README's test command");
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    if !packer_available() {
        return;
    }
    let lines = quick_start();
    assert!(lines.len() >= 10, "{lines:?}");
    let project = Project::copy().with_apps();
    project.git_init("Initial");
    let _down = Down(&project);
    let bin = env!("CARGO_BIN_EXE_xtask");
    let root = project.dir.path().display().to_string();
    for (command, code, said) in lines {
        let script = format!("cargo() {{ shift; \"{bin}\" --root \"{root}\" \"$@\"; }}\n{command}");
        let output = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(project.dir.path())
            .env_remove("AWS_ENDPOINT_URL")
            // The git identity README asks for.
            .env("GIT_AUTHOR_NAME", "Quick Start")
            .env("GIT_AUTHOR_EMAIL", "quick@example.com")
            .env("GIT_COMMITTER_NAME", "Quick Start")
            .env("GIT_COMMITTER_EMAIL", "quick@example.com")
            .output()
            .unwrap();
        let run = crate::Run::from(output);
        assert_eq!(run.code, code, "`{command}`: {run:?}");
        // A comment that quotes the output (it has numbers, `:` or paths) is checked piece by
        // piece: the pieces between ellipses, each up to a placeholder (`PORT`).
        let pieces: Vec<&str> = said.split('…').map(|p| p.split("PORT").next().unwrap_or_default().trim()).collect();
        let quotes = pieces.iter().any(|p| p.contains(|c: char| c.is_ascii_digit() || c == ':' || c == '/'));
        if quotes {
            let all = format!("{}{}", run.stdout, run.stderr);
            for piece in pieces.iter().filter(|p| !p.is_empty()) {
                assert!(all.contains(piece), "`{command}` does not say `{piece}`: {run:?}");
            }
        }
    }
}
