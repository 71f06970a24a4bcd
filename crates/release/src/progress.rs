//! Progress on long waits (a deployment, an instance refresh, a lock, an approval, a Packer
//! build, a demo step). On a terminal: a spinner on stderr with the elapsed time and the latest
//! state, the lines above it as they come (indicatif). Not on a terminal, or with `CI` set:
//! plain lines, each with the time and how long the wait has lasted. `NO_COLOR` turns colour off.

use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    prefix: String,
    started: Instant,
}

/// Whether progress is drawn (a spinner) rather than printed as plain lines: both outputs on a
/// terminal (a piped stdout gets every line), and no `CI`.
pub fn animated() -> bool {
    std::io::stdout().is_terminal() && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

impl Progress {
    /// A wait of `prefix` (`acme/prod`) that is about `message`.
    pub fn start(prefix: &str, message: &str) -> Progress {
        let bar = animated().then(|| {
            let spinner = if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
                "{spinner}"
            } else {
                "{spinner:.cyan}"
            };
            let template = format!("{spinner} {{prefix}} | {{msg}} ({{elapsed}})");
            let style = ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_spinner());
            let bar = ProgressBar::new_spinner().with_style(style).with_prefix(prefix.to_string());
            bar.set_message(message.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { bar, prefix: prefix.to_string(), started: Instant::now() }
    }

    /// A line of the wait's output: printed above the spinner (which then shows it), or as a
    /// plain line with the time.
    pub fn line(&self, line: &str) {
        match &self.bar {
            Some(bar) => {
                bar.println(format!("{} | {line}", self.prefix));
                bar.set_message(line.to_string());
            }
            None => println!("{} | {line}{}", self.prefix, self.stamp()),
        }
    }

    /// Another program's output line (Packer's): printed as it is, above the spinner, which
    /// then shows it.
    pub fn output(&self, line: &str) {
        match &self.bar {
            Some(bar) => {
                bar.println(format!("{} | {line}", self.prefix));
                bar.set_message(line.to_string());
            }
            None => println!("{} | {line}", self.prefix),
        }
    }

    /// A line printed as it is (above the spinner on a terminal).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }

    /// ` [12:03:55 UTC, 14 s]`: when, and how long into the wait.
    fn stamp(&self) -> String {
        let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let clock = now.get(11..19).unwrap_or(&now).to_string();
        format!(" [{clock} UTC, {} s]", self.started.elapsed().as_secs())
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
