//! The `cargo xtask` binary as users run it: on copies of the project in temporary folders.

mod ami;
mod approval;
mod build;
mod codebuild;
mod demo;
mod faults;
mod fleet;
mod front_door;
mod generate;
mod infra;
mod lock;
mod pool;
mod proxy;
mod quick_start;
mod sample_apps;
mod software;
mod validate;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A copy of the project's customers and generated files.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn copy() -> Project {
        let dir = tempfile::tempdir().unwrap();
        for folder in ["customers", "packer", "buildspecs", "appspecs", "schema"] {
            copy_tree(&repo_root().join(folder), &dir.path().join(folder));
        }
        Project { dir }
    }

    /// Adds the sample apps (what `build` clones and builds).
    pub fn with_apps(self) -> Project {
        copy_tree(&repo_root().join("apps"), &self.dir.path().join("apps"));
        self
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn read(&self, relative: &str) -> String {
        fs::read_to_string(self.path(relative)).unwrap()
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    pub fn edit(&self, relative: &str, from: &str, to: &str) {
        let text = self.read(relative);
        assert!(text.contains(from), "{relative} has no {from:?}");
        self.write(relative, &text.replacen(from, to, 1));
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        Run::from(self.command(args, env).output().unwrap())
    }

    /// The command `run_with` runs, for a test that must act while it runs.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        // `--root .` from inside the project: relative roots must work as well as absolute ones.
        command.current_dir(self.dir.path()).arg("--root").arg(".").args(args).env_remove("AWS_ENDPOINT_URL");
        for (name, value) in env {
            command.env(name, value);
        }
        command
    }

    /// Makes the copy a git repository with one commit, as `ami` needs.
    pub fn git_init(&self, message: &str) {
        self.write(".gitignore", "target/\n");
        self.git(&["init", "-q", "-b", "main"]);
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
    }

    pub fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(["-c", "user.name=Zoë O'Brien", "-c", "user.email=zoe@example.com", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Every file of the copy with its contents, to prove a command changed nothing.
    pub fn snapshot(&self) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        snapshot_tree(self.dir.path(), self.dir.path(), &mut out);
        out.sort();
        out
    }
}

/// A command started in the background whose output is read as it comes, so that a test can
/// wait for a line instead of sleeping for a while it hopes is long enough.
pub struct Started {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// One that a failed assertion leaves behind is killed.
impl Drop for Started {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Started {
    pub fn spawn(mut command: Command) -> Started {
        use std::io::BufRead;
        let mut child =
            command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let (send, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = send.send(line.clone());
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut all);
            all
        });
        Started { child, lines, stdout: Some(stdout), stderr: Some(stderr) }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits (two minutes at most) until a line of its standard output contains `text`.
    pub fn wait_for_line(&self, text: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return,
                Ok(_) => {}
                Err(_) => panic!("no line with {text:?} within two minutes"),
            }
        }
    }

    /// Whether it has ended.
    pub fn ended(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    pub fn finish(mut self) -> Run {
        let status = self.child.wait().unwrap();
        let join =
            |output: Option<std::thread::JoinHandle<String>>| output.map(|t| t.join().unwrap()).unwrap_or_default();
        Run { code: status.code().unwrap_or(-1), stdout: join(self.stdout.take()), stderr: join(self.stderr.take()) }
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Packer is needed for the real `packer validate`; under CI its absence is a failure.
pub fn packer_available() -> bool {
    let found = which_packer();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "packer is not installed, and CI is set: install it (apt-get install packer)"
        );
        eprintln!("packer is not installed: skipping this test outside CI");
    }
    found
}

fn which_packer() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join("packer").is_file()))
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn snapshot_tree(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !path.ends_with("target") {
                snapshot_tree(root, &path, out);
            }
        } else {
            out.push((path.strip_prefix(root).unwrap().to_path_buf(), fs::read_to_string(&path).unwrap_or_default()));
        }
    }
}
