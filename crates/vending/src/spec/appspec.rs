//! A validator for CodeDeploy AppSpec files for EC2/on-premises (`version: 0.0`, Linux or
//! Windows), following what the CodeDeploy agent itself checks.

use crate::config::model::FileExistsBehavior;
use crate::diag::{Diagnostic, Severity};
use crate::source::SourceFile;
use crate::spec::hooks;
use crate::spec::yaml::Checker;
use crate::spec::yaml::{self, as_str, check_keys, entries, node_diag, raw_scalar, scalar_text, value, Node, Value};
use saphyr::ScalarStyle;

pub use crate::spec::hooks::{leaves_revision, HOOK_EVENTS, RESERVED_EVENTS};

const TOP: &[&str] = &["version", "os", "files", "permissions", "file_exists_behavior", "hooks"];
const PERMISSION: &[&str] = &["object", "pattern", "except", "owner", "group", "mode", "acls", "context", "type"];

pub fn validate(source: &SourceFile, root: &Node<'_>, out: &mut Vec<Diagnostic>) {
    yaml_as_the_agent_reads_it(source, out);
    let mut v = Checker { source, out };
    let Some(top) = entries(root) else {
        v.error(root, "", "an AppSpec file is a YAML mapping with `version: 0.0` and `os`");
        return;
    };
    if top.iter().any(|(k, _, _)| k == "Resources") {
        v.error(
            root,
            "Resources",
            "this is an ECS or Lambda AppSpec; only EC2/on-premises AppSpec files are checked here",
        );
        return;
    }
    check_keys(source, root, "", TOP, v.out);
    let get = |key: &str| top.iter().find(|(k, _, _)| k == key).map(|(_, _, n)| *n);
    match get("version") {
        None => v.error(root, "version", "missing `version`; use `version: 0.0`"),
        Some(node) => {
            let numeric_zero =
                matches!(value(node), Some(Value::Float(f)) if f == 0.0) || matches!(value(node), Some(Value::Int(0)));
            match raw_scalar(node) {
                Some(("0.0", ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted)) => v.out.push(
                    node_diag(Severity::Error, source, node, "version", "`version` is the string \"0.0\"; the CodeDeploy agent compares it with the number 0.0 and rejects a string")
                        .with_help("write it unquoted: version: 0.0"),
                ),
                _ if numeric_zero => {}
                _ => v.error(node, "version", "`version` must be 0.0 (unquoted), the only AppSpec version for EC2/on-premises"),
            }
        }
    }
    let os = match get("os") {
        None => {
            v.error(root, "os", "missing `os`; use `os: linux` or `os: windows`");
            None
        }
        Some(node) => match as_str(node).as_deref() {
            Some("linux") => Some(false),
            Some("windows") => Some(true),
            _ => {
                v.error(node, "os", "`os` must be linux or windows");
                None
            }
        },
    };
    let windows = os == Some(true);
    if let Some(files) = get("files") {
        v.files(files, windows);
    }
    if let Some(permissions) = get("permissions") {
        if windows {
            v.error(
                permissions,
                "permissions",
                "`permissions` is for Linux only; on Windows any entry fails the deployment",
            );
        } else {
            v.permissions(permissions);
        }
    }
    if let Some(node) = get("file_exists_behavior") {
        if as_str(node).and_then(|b| b.parse::<FileExistsBehavior>().ok()).is_none() {
            v.error(node, "file_exists_behavior", "`file_exists_behavior` must be DISALLOW, OVERWRITE or RETAIN");
        }
    }
    if let Some(hooks) = get("hooks") {
        v.hooks(hooks, windows);
    }
}

/// What the agent's YAML loader (Ruby's Psych) makes of the file, beyond what the tree shows.
fn yaml_as_the_agent_reads_it(source: &SourceFile, out: &mut Vec<Diagnostic>) {
    // Psych takes a byte-order mark directly before the first key as part of a scalar and stops
    // after the first line, so the agent finds no `os`. Before a comment or blank line it is harmless.
    if let Some(rest) = source.text.strip_prefix('\u{feff}') {
        let first = rest.lines().next().unwrap_or_default().trim();
        if !(first.is_empty() || first.starts_with('#') || first.starts_with("---") || first.starts_with('%')) {
            out.push(
                yaml::at_marker(Severity::Error, source, 1, 0, "the file starts with a UTF-8 byte-order mark directly before its first key: the CodeDeploy agent's YAML loader then reads only the first line, and the deployment fails (\"unsupported operating system\")")
                    .with_help("save the file as UTF-8 without a byte-order mark (\"UTF-8\", not \"UTF-8 with BOM\")"),
            );
        }
    }
    for (line, col) in yaml::aliases(source) {
        out.push(
            yaml::at_marker(Severity::Warning, source, line, col, "YAML alias: CodeDeploy agents on Ruby 3.1 or later (Psych 4) refuse aliases, and merge keys (`<<: *name`) with them, so the deployment fails there; agents on older Ruby accept them")
                .with_help("write the values out in full instead of `&anchor` and `*alias`"),
        );
    }
}

impl Checker<'_, '_> {
    fn files(&mut self, files: &Node<'_>, windows: bool) {
        for (i, entry) in self.list(files, "files").iter().enumerate() {
            let path = format!("files[{i}]");
            yaml::ignored_keys(
                self.source,
                entry,
                &path,
                &["source", "destination"],
                "the CodeDeploy agent reads only `source` and `destination` of a `files` entry",
                "to replace existing files use the top-level `file_exists_behavior: OVERWRITE`; modes and owners go in `permissions`",
                self.out,
            );
            let fields = entries(entry).unwrap_or_default();
            let get = |key: &str| fields.iter().find(|(k, _, _)| k == key).map(|(_, _, n)| *n);
            match get("source").and_then(|n| scalar_text(n)) {
                None => self.error(entry, &format!("{path}.source"), format!("`{path}` has no `source`")),
                Some(s) if s.is_empty() => self.error(entry, &format!("{path}.source"), "empty `source`"),
                Some(_) => {}
            }
            match get("destination") {
                None => self.error(entry, &format!("{path}.destination"), format!("`{path}` has no `destination`")),
                Some(node) => {
                    let destination = scalar_text(node).unwrap_or_default();
                    let absolute = if windows {
                        destination.len() > 2
                            && destination.as_bytes()[1] == b':'
                            && destination.as_bytes()[0].is_ascii_alphabetic()
                    } else {
                        destination.starts_with('/')
                    };
                    if !absolute {
                        self.error(
                            node,
                            &format!("{path}.destination"),
                            format!("destination `{destination}` must be a fully qualified path"),
                        );
                    } else if !windows {
                        self.dot_dot(node, &format!("{path}.destination"), "destination", &destination);
                    }
                }
            }
        }
    }

    fn permissions(&mut self, permissions: &Node<'_>) {
        for (i, entry) in self.list(permissions, "permissions").iter().enumerate() {
            let path = format!("permissions[{i}]");
            check_keys(self.source, entry, &path, PERMISSION, self.out);
            let fields = entries(entry).unwrap_or_default();
            match fields.iter().find(|(k, _, _)| k == "object") {
                None => self.error(entry, &format!("{path}.object"), format!("`{path}` has no `object`")),
                Some((_, _, node)) => {
                    let object = scalar_text(node).unwrap_or_default();
                    self.dot_dot(node, &format!("{path}.object"), "object", &object);
                }
            }
            for (key, _, node) in fields {
                let key_path = format!("{path}.{key}");
                match key.as_ref() {
                    "mode" => self.mode(node, &key_path),
                    "type" => {
                        for (j, item) in self.list(node, &key_path).iter().enumerate() {
                            if !matches!(as_str(item).as_deref(), Some("file" | "directory")) {
                                self.error(
                                    item,
                                    &format!("{key_path}[{j}]"),
                                    "permission `type` entries must be file or directory",
                                );
                            }
                        }
                    }
                    "acls" => {
                        for (j, item) in self.list(node, &key_path).iter().enumerate() {
                            let acl = scalar_text(item).unwrap_or_default();
                            let parts: Vec<&str> = acl.split(':').collect();
                            if parts.len() < 3 || parts[1].is_empty() {
                                self.error(item, &format!("{key_path}[{j}]"), format!("ACL `{acl}` must name a user or group (u:mary:rw); use `mode` for unnamed entries"));
                            }
                        }
                    }
                    "context" => check_keys(self.source, node, &key_path, &["user", "type", "range"], self.out),
                    "except" => {
                        self.list(node, &key_path);
                    }
                    _ => {}
                }
            }
        }
    }

    /// A `..` in a path on the instance is legal: the agent expands it, which may not be where the
    /// author meant.
    fn dot_dot(&mut self, node: &Node<'_>, key: &str, what: &str, path: &str) {
        if path.split('/').any(|part| part == "..") {
            let expanded = expand_instance_path(path);
            self.out.push(
                node_diag(
                    Severity::Warning,
                    self.source,
                    node,
                    key,
                    format!("{what} `{path}` has `..`: the agent expands it to `{expanded}`"),
                )
                .with_help(format!("write `{expanded}` if that is what you mean")),
            );
        }
    }

    /// `mode` as the agent reads it: up to 4 octal digits. An unquoted leading zero is octal to
    /// YAML 1.1 (the agent's Ruby parser): `0644` arrives as 420.
    fn mode(&mut self, node: &Node<'_>, key: &str) {
        let Some((text, style)) = raw_scalar(node) else {
            self.error(node, key, "`mode` must be a number such as 644");
            return;
        };
        if !(1..=4).contains(&text.len()) || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            self.error(
                node,
                key,
                format!("mode `{text}` must be up to 4 octal digits, e.g. 644 (symbolic modes are not supported)"),
            );
            return;
        }
        if style == ScalarStyle::Plain && text.len() > 1 && text.starts_with('0') {
            self.out.push(
                node_diag(Severity::Warning, self.source, node, key, format!("mode {text} is unquoted with a leading zero: the agent's YAML 1.1 parser reads it as the octal number {}, so the file gets mode {}", i64::from_str_radix(text, 8).unwrap_or(0), i64::from_str_radix(text, 8).unwrap_or(0)))
                    .with_help(format!("write mode: {} or mode: \"{text}\"", text.trim_start_matches('0'))),
            );
        }
    }

    fn hooks(&mut self, hooks: &Node<'_>, windows: bool) {
        let Some(events) = entries(hooks) else {
            if !yaml::is_null(hooks) {
                self.error(hooks, "hooks", "`hooks` must be a mapping of lifecycle event to scripts");
            }
            return;
        };
        for (event, event_node, scripts) in events {
            let path = format!("hooks.{event}");
            if let Some(finding) = hooks::event(&event) {
                self.finding(event_node, &path, finding);
                continue;
            }
            if yaml::is_null(scripts) {
                self.note(event_node, &path, format!("`{event}` has no scripts; the CodeDeploy agent skips it"));
            }
            let mut timeouts = Vec::new();
            for (i, script) in self.list(scripts, &path).iter().enumerate() {
                let script_path = format!("{path}[{i}]");
                check_keys(self.source, script, &script_path, &["location", "timeout", "runas"], self.out);
                let fields = entries(script).unwrap_or_default();
                let get = |key: &str| fields.iter().find(|(k, _, _)| k == key).map(|(_, _, n)| *n);
                let location = get("location").and_then(|n| scalar_text(n));
                if let Some(finding) = hooks::location(&script_path, location.as_deref()) {
                    let at = get("location").filter(|_| location.as_deref().is_some_and(|l| !l.is_empty()));
                    self.finding(at.unwrap_or(script), &format!("{script_path}.location"), finding);
                }
                // Only written timeouts count: AWS's own samples leave most out.
                if let Some(node) = get("timeout") {
                    let seconds = match value(node) {
                        Some(Value::Int(t)) => Some(t),
                        _ => None,
                    };
                    match hooks::timeout(seconds) {
                        Ok(seconds) => timeouts.push(seconds),
                        Err(finding) => self.finding(node, &format!("{script_path}.timeout"), finding),
                    }
                }
                if let Some(node) = get("runas") {
                    if let Some(finding) = hooks::runas(as_str(node).as_deref(), windows) {
                        self.finding(node, &format!("{script_path}.runas"), finding);
                    }
                }
            }
            if let Some(finding) = hooks::event_total(&event, timeouts) {
                self.finding(event_node, &path, finding);
            }
        }
    }

    fn finding(&mut self, node: &Node<'_>, key: &str, finding: hooks::Finding) {
        let d = node_diag(finding.severity, self.source, node, key, finding.message);
        self.out.push(match finding.help {
            Some(help) => d.with_help(help),
            None => d,
        });
    }
}

/// A path on the instance as the agent expands it (Ruby's `File.expand_path`): `.` and `..`
/// resolved, and `..` never climbs above `/`, so `/opt/app/../../etc` is `/etc`.
pub fn expand_instance_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// An AppSpec file as the local agent runs it.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// `(source, destination)` pairs in file order.
    pub files: Vec<(String, String)>,
    /// `DISALLOW` when the file gives none.
    pub file_exists_behavior: FileExistsBehavior,
    pub permissions: Vec<crate::config::model::Permission>,
    /// Events with their scripts, in file order (the agent's order is `HOOK_EVENTS`).
    pub hooks: Vec<(String, Vec<crate::config::model::Hook>)>,
}

use crate::spec::yaml::child;

fn text(node: Option<&Node<'_>>) -> Option<String> {
    node.and_then(|n| scalar_text(n).map(|s| s.into_owned()))
}

fn texts(node: Option<&Node<'_>>) -> Vec<String> {
    match node {
        Some(n) => match yaml::sequence(n) {
            Some(items) => items.iter().filter_map(|i| scalar_text(i).map(|s| s.into_owned())).collect(),
            None => text(Some(n)).into_iter().collect(),
        },
        None => Vec::new(),
    }
}

/// Reads an AppSpec file after validating it; any error comes back as diagnostics. Only Linux
/// AppSpecs are read (the local agent runs Linux scripts).
pub fn read(source: &SourceFile) -> Result<AppSpec, Vec<Diagnostic>> {
    use crate::config::model::{Hook, Permission};
    let root = crate::spec::parse_valid(source, crate::spec::SpecKind::Appspec)?;
    if text(child(&root, "os").as_ref()).as_deref() != Some("linux") {
        return Err(vec![Diagnostic::file(
            Severity::Error,
            source.path.clone(),
            "the local agent runs Linux AppSpecs only (`os: linux`)",
        )]);
    }
    let files = child(&root, "files")
        .as_ref()
        .and_then(yaml::sequence)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| Some((text(child(f, "source").as_ref())?, text(child(f, "destination").as_ref())?)))
        .collect();
    let permissions = child(&root, "permissions")
        .as_ref()
        .and_then(yaml::sequence)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            Some(Permission {
                object: text(child(p, "object").as_ref())?,
                pattern: text(child(p, "pattern").as_ref()),
                except: texts(child(p, "except").as_ref()),
                owner: text(child(p, "owner").as_ref()),
                group: text(child(p, "group").as_ref()),
                mode: text(child(p, "mode").as_ref()),
                kinds: texts(child(p, "type").as_ref()).iter().filter_map(|k| k.parse().ok()).collect(),
            })
        })
        .collect();
    let hooks = child(&root, "hooks")
        .as_ref()
        .and_then(|h| entries(h))
        .unwrap_or_default()
        .into_iter()
        .map(|(event, _, scripts)| {
            let scripts = yaml::sequence(scripts)
                .unwrap_or_default()
                .iter()
                .filter_map(|s| {
                    Some(Hook {
                        location: text(child(s, "location").as_ref())?,
                        timeout: text(child(s, "timeout").as_ref())
                            .and_then(|t| t.parse().ok())
                            .unwrap_or(hooks::EVENT_SECONDS),
                        runas: text(child(s, "runas").as_ref()),
                    })
                })
                .collect();
            (event.into_owned(), scripts)
        })
        .collect();
    Ok(AppSpec {
        files,
        file_exists_behavior: text(child(&root, "file_exists_behavior").as_ref())
            .and_then(|b| b.parse().ok())
            .unwrap_or_default(),
        permissions,
        hooks,
    })
}
