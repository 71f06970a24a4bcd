//! A validator for CodeBuild buildspec files (version 0.2, and 0.1 with a warning). It accepts
//! everything CodeBuild documents (Windows shells, `finally`, `on-failure` with RETRY forms,
//! `parameter-store`/`secrets-manager`, `reports`, `cache`, batch builds) and reports every
//! problem with its line.

use crate::config::model::OnFailure;
use crate::diag::{Diagnostic, Severity};
use crate::source::SourceFile;
use crate::spec::yaml::Checker;
use crate::spec::yaml::{
    self, as_str, check_keys, entries, node_diag, raw_scalar, scalar_text, sequence, value, Node, Value,
};

const TOP: &[&str] = &["version", "run-as", "env", "proxy", "batch", "phases", "reports", "artifacts", "cache"];
const ENV: &[&str] =
    &["shell", "variables", "parameter-store", "secrets-manager", "exported-variables", "git-credential-helper"];
const PHASES: &[&str] = &["install", "pre_build", "build", "post_build"];
const PHASE: &[&str] = &["run-as", "on-failure", "runtime-versions", "commands", "finally"];
const ARTIFACTS: &[&str] = &[
    "files",
    "name",
    "discard-paths",
    "base-directory",
    "exclude-paths",
    "enable-symlinks",
    "s3-prefix",
    "secondary-artifacts",
];
const REPORT: &[&str] = &["files", "base-directory", "discard-paths", "file-format"];
const REPORT_FORMATS: &[&str] = &[
    "JUNITXML",
    "CUCUMBERJSON",
    "TESTNGXML",
    "VISUALSTUDIOTRX",
    "NUNITXML",
    "NUNIT3XML",
    "COBERTURAXML",
    "CLOVERXML",
    "JACOCOXML",
    "SIMPLECOV",
];
const CACHE: &[&str] = &["paths", "key", "fallback-keys", "action"];
const BATCH: &[&str] = &["fast-fail", "build-list", "build-matrix", "build-graph", "build-fanout"];
const SHELLS: &[&str] = &["bash", "/bin/sh", "sh", "powershell.exe", "cmd.exe", "pwsh"];

pub fn validate(source: &SourceFile, root: &Node<'_>, out: &mut Vec<Diagnostic>) {
    let mut v = Checker { source, out };
    let Some(top) = entries(root) else {
        v.error(root, "", "a buildspec is a YAML mapping with `version` and `phases`");
        return;
    };
    check_keys(source, root, "", TOP, v.out);
    let get = |key: &str| top.iter().find(|(k, _, _)| k == key).map(|(_, _, n)| *n);
    match get("version") {
        None => v.error(root, "version", "missing `version`; use `version: 0.2`"),
        Some(node) => match scalar_text(node).as_deref() {
            Some("0.2") => {}
            Some("0.1") => v.warning(
                node,
                "version",
                "version 0.1 runs each command in its own shell, so `cd` and variables do not carry over; use 0.2",
            ),
            _ => v.error(node, "version", "`version` must be 0.2 (or the older 0.1)"),
        },
    }
    if let Some(run_as) = get("run-as") {
        v.string(run_as, "run-as");
    }
    if let Some(env) = get("env") {
        v.env(env);
    }
    if let Some(proxy) = get("proxy") {
        check_keys(source, proxy, "proxy", &["upload-artifacts", "logs"], v.out);
        for (key, _, node) in entries(proxy).unwrap_or_default() {
            v.yes_no(node, &format!("proxy.{key}"));
        }
    }
    if let Some(batch) = get("batch") {
        v.batch(batch);
    }
    match get("phases") {
        None if get("batch").is_none() => v.error(
            root,
            "phases",
            "missing `phases`; a buildspec needs at least one of install, pre_build, build, post_build",
        ),
        None => {}
        Some(phases) => v.phases(phases),
    }
    if let Some(artifacts) = get("artifacts") {
        v.artifacts(artifacts, "artifacts", true);
    }
    if let Some(reports) = get("reports") {
        v.reports(reports);
    }
    if let Some(cache) = get("cache") {
        v.cache(cache);
    }
}

impl Checker<'_, '_> {
    fn string(&mut self, node: &Node<'_>, key: &str) -> Option<String> {
        match as_str(node) {
            Some(s) => Some(s.into_owned()),
            None => {
                self.error(node, key, format!("`{key}` must be a string"));
                None
            }
        }
    }

    fn mapping<'n, 'a>(&mut self, node: &'n Node<'a>, key: &str) -> Vec<(String, &'n Node<'a>, &'n Node<'a>)> {
        match entries(node) {
            Some(e) => e.into_iter().map(|(k, kn, v)| (k.into_owned(), kn, v)).collect(),
            None => {
                if yaml::is_null(node) {
                    return Vec::new();
                }
                let mut d = node_diag(Severity::Error, self.source, node, key, format!("`{key}` must be a mapping"));
                // Plain text running over several lines is what a key without its `:` makes.
                if matches!(raw_scalar(node), Some((_, saphyr::ScalarStyle::Plain)))
                    && node.span.end.line() > node.span.start.line()
                {
                    let first = self.source.line_text(node.span.start.line()).trim();
                    d = d.with_help(format!(
                        "`{first}` has no `:`, so YAML reads it and the lines below as one text; write `{first}:`"
                    ));
                }
                self.out.push(d);
                Vec::new()
            }
        }
    }

    /// A list of strings (commands, paths). A command with an unquoted `: ` becomes a mapping,
    /// which CodeBuild rejects with "Expected Commands[N] to be of string type".
    fn string_list(&mut self, node: &Node<'_>, key: &str) -> Vec<String> {
        let Some(items) = sequence(node) else {
            if let Some(s) = as_str(node) {
                return vec![s.into_owned()];
            }
            self.error(node, key, format!("`{key}` must be a list of strings"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match scalar_text(item) {
                Some(s) => out.push(s.into_owned()),
                None if entries(item).is_some() => self.out.push(
                    node_diag(Severity::Error, self.source, item, &format!("{key}[{i}]"), format!("`{key}[{i}]` is a mapping, not a string: an unquoted `: ` inside a command starts a YAML key"))
                        .with_help("quote the whole command: - \"echo a: b\""),
                ),
                None => self.error(item, &format!("{key}[{i}]"), format!("`{key}[{i}]` must be a string")),
            }
        }
        out
    }

    fn yes_no(&mut self, node: &Node<'_>, key: &str) {
        let ok = match value(node) {
            Some(Value::Bool(_)) => true,
            Some(Value::Str(s)) => yaml::yaml11_bool(&s).is_some(),
            _ => false,
        };
        if !ok {
            self.error(node, key, format!("`{key}` must be yes or no"));
        }
    }

    fn env(&mut self, env: &Node<'_>) {
        check_keys(self.source, env, "env", ENV, self.out);
        for (key, _, node) in self.mapping(env, "env") {
            let path = format!("env.{key}");
            match key.as_str() {
                "shell" => {
                    if let Some(shell) = self.string(node, &path) {
                        if !SHELLS.contains(&shell.as_str()) {
                            self.error(node, &path, format!("shell `{shell}` is not one CodeBuild offers (bash, /bin/sh; powershell.exe, cmd.exe on Windows)"));
                        }
                    }
                }
                "variables" | "parameter-store" | "secrets-manager" => {
                    for (name, name_node, value_node) in self.mapping(node, &path) {
                        if name.starts_with("CODEBUILD_") {
                            self.error(
                                name_node,
                                &format!("{path}.{name}"),
                                format!("`{name}` starts with CODEBUILD_, which CodeBuild reserves"),
                            );
                        }
                        if scalar_text(value_node).is_none() {
                            self.error(
                                value_node,
                                &format!("{path}.{name}"),
                                format!("`{path}.{name}` must be a scalar value"),
                            );
                        }
                        if key == "secrets-manager" {
                            if let Some(reference) = scalar_text(value_node) {
                                secrets_manager_reference(self, value_node, &format!("{path}.{name}"), &reference);
                            }
                        }
                    }
                }
                "exported-variables" => {
                    for name in self.string_list(node, &path) {
                        if name.starts_with("AWS_") {
                            self.error(
                                node,
                                &path,
                                format!("`{name}` cannot be exported: AWS_ names are not exportable"),
                            );
                        }
                    }
                }
                "git-credential-helper" => self.yes_no(node, &path),
                _ => {}
            }
        }
    }

    fn batch(&mut self, batch: &Node<'_>) {
        check_keys(self.source, batch, "batch", BATCH, self.out);
        let entries = self.mapping(batch, "batch");
        let kinds: Vec<&str> = entries.iter().map(|(k, _, _)| k.as_str()).filter(|k| k.starts_with("build-")).collect();
        if kinds.len() > 1 {
            self.error(
                batch,
                "batch",
                format!(
                    "a batch takes one of build-list, build-matrix, build-graph or build-fanout, not {}",
                    kinds.join(" and ")
                ),
            );
        }
        for (key, _, node) in entries {
            if key == "fast-fail" && !matches!(value(node), Some(Value::Bool(_))) {
                self.error(node, "batch.fast-fail", "`batch.fast-fail` must be true or false");
            }
        }
    }

    fn phases(&mut self, phases: &Node<'_>) {
        check_keys(self.source, phases, "phases", PHASES, self.out);
        let entries = self.mapping(phases, "phases");
        if entries.is_empty() {
            self.error(phases, "phases", "`phases` is empty");
        }
        for (name, _, phase) in entries {
            let path = format!("phases.{name}");
            if yaml::is_null(phase) {
                self.error(phase, &path, format!("phase `{name}` is empty; give it `commands` or remove it"));
                continue;
            }
            check_keys(self.source, phase, &path, PHASE, self.out);
            let keys = self.mapping(phase, &path);
            let has_commands = keys.iter().any(|(k, _, _)| k == "commands");
            if !has_commands && name != "install" && PHASES.contains(&name.as_str()) {
                self.error(
                    phase,
                    &path,
                    format!("phase `{name}` has no `commands`; CodeBuild requires them in every phase but install"),
                );
            }
            for (key, _, node) in keys {
                let key_path = format!("{path}.{key}");
                match key.as_str() {
                    "commands" | "finally" => {
                        let commands = self.string_list(node, &key_path);
                        if commands.is_empty() && key == "commands" && sequence(node).is_some_and(|s| s.is_empty()) {
                            self.error(node, &key_path, format!("`{key_path}` is empty"));
                        }
                    }
                    "on-failure" => {
                        if let Some(text) = self.string(node, &key_path) {
                            if let Err(why) = text.parse::<OnFailure>() {
                                self.error(node, &key_path, format!("on-failure `{text}` {why}"));
                            }
                        }
                    }
                    "run-as" => {
                        self.string(node, &key_path);
                    }
                    "runtime-versions" => {
                        if name != "install" {
                            self.error(node, &key_path, "`runtime-versions` is only allowed in the install phase");
                        }
                        let runtimes = self.mapping(node, &key_path);
                        if runtimes.is_empty() {
                            self.error(node, &key_path, "`runtime-versions` must name at least one runtime");
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn artifacts(&mut self, node: &Node<'_>, path: &str, allow_secondary: bool) {
        let allowed: Vec<&str> =
            ARTIFACTS.iter().copied().filter(|k| allow_secondary || *k != "secondary-artifacts").collect();
        check_keys(self.source, node, path, &allowed, self.out);
        let keys = self.mapping(node, path);
        let has_files = keys.iter().any(|(k, _, _)| k == "files");
        if !has_files {
            self.error(node, path, format!("`{path}` needs `files` (e.g. - '**/*')"));
        }
        for (key, _, value_node) in keys {
            let key_path = format!("{path}.{key}");
            match key.as_str() {
                "files" | "exclude-paths" => {
                    let files = self.string_list(value_node, &key_path);
                    if files.is_empty() && key == "files" {
                        self.error(value_node, &key_path, format!("`{key_path}` is empty"));
                    }
                }
                "discard-paths" | "enable-symlinks" => self.yes_no(value_node, &key_path),
                "name" | "base-directory" | "s3-prefix" if scalar_text(value_node).is_none() => {
                    self.error(value_node, &key_path, format!("`{key_path}` must be a string"));
                }
                "secondary-artifacts" => {
                    for (id, _, artifact) in self.mapping(value_node, &key_path) {
                        self.artifacts(artifact, &format!("{key_path}.{id}"), false);
                    }
                }
                _ => {}
            }
        }
    }

    fn reports(&mut self, reports: &Node<'_>) {
        let groups = self.mapping(reports, "reports");
        if groups.len() > 5 {
            self.error(reports, "reports", format!("{} report groups; CodeBuild allows 5 per project", groups.len()));
        }
        for (name, _, group) in groups {
            let path = format!("reports.{name}");
            check_keys(self.source, group, &path, REPORT, self.out);
            let keys = self.mapping(group, &path);
            if !keys.iter().any(|(k, _, _)| k == "files") {
                self.error(group, &path, format!("report group `{name}` needs `files`"));
            }
            for (key, _, node) in keys {
                let key_path = format!("{path}.{key}");
                match key.as_str() {
                    "files" => {
                        self.string_list(node, &key_path);
                    }
                    "discard-paths" => self.yes_no(node, &key_path),
                    "file-format" => {
                        if let Some(format) = self.string(node, &key_path) {
                            // The buildspec reference: "This value is not case sensitive."
                            if !REPORT_FORMATS.contains(&format.to_ascii_uppercase().as_str()) {
                                self.error(
                                    node,
                                    &key_path,
                                    format!(
                                        "report file-format `{format}` is not one of {}",
                                        REPORT_FORMATS.join(", ")
                                    ),
                                );
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn cache(&mut self, cache: &Node<'_>) {
        check_keys(self.source, cache, "cache", CACHE, self.out);
        let keys = self.mapping(cache, "cache");
        if !keys.iter().any(|(k, _, _)| k == "paths") {
            self.error(cache, "cache", "`cache` needs `paths`");
        }
        let has_key = keys.iter().any(|(k, _, _)| k == "key");
        for (key, _, node) in keys {
            let key_path = format!("cache.{key}");
            match key.as_str() {
                "paths" => {
                    self.string_list(node, &key_path);
                }
                "fallback-keys" => {
                    let n = self.string_list(node, &key_path).len();
                    if n > 5 {
                        self.error(node, &key_path, format!("{n} fallback keys; CodeBuild uses at most 5"));
                    }
                    if !has_key {
                        self.warning(node, &key_path, "`fallback-keys` is ignored without `key`");
                    }
                }
                "action" => {
                    if let Some(action) = self.string(node, &key_path) {
                        if action != "restore" && action != "save" {
                            self.error(node, &key_path, format!("cache action `{action}` must be restore or save"));
                        }
                    }
                }
                "key" => {
                    self.string(node, &key_path);
                }
                _ => {}
            }
        }
    }
}

/// `secret-id:json-key:version-stage:version-id`; `secret-id` may itself be an ARN with colons.
fn secrets_manager_reference(v: &mut Checker<'_, '_>, node: &Node<'_>, key: &str, reference: &str) {
    let rest = if reference.starts_with("arn:") {
        // arn:partition:secretsmanager:region:account:secret:name → 7 parts, then ours.
        reference.splitn(8, ':').nth(7).unwrap_or("")
    } else {
        reference.split_once(':').map_or("", |(_, rest)| rest)
    };
    let parts: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split(':').collect() };
    if parts.len() > 3 {
        v.error(
            node,
            key,
            format!("`{reference}` has too many parts; the form is secret-id:json-key:version-stage:version-id"),
        );
    } else if parts.len() == 3 && !parts[1].is_empty() && !parts[2].is_empty() {
        v.error(node, key, format!("`{reference}` gives both a version stage and a version id; give one"));
    }
    if raw_scalar(node).is_some_and(|(t, _)| t.is_empty()) {
        v.error(node, key, "empty secret reference");
    }
}

use crate::spec::yaml::child;

/// Reads a buildspec into the model the runner takes, after validating it: any error comes back
/// as diagnostics and nothing is read. Version 0.1 is refused (its one shell per command is not
/// what the runner does).
pub fn read(source: &SourceFile) -> Result<crate::config::model::Build, Vec<Diagnostic>> {
    use crate::config::model::{Artifacts, Build, Phase};
    let root = crate::spec::parse_valid(source, crate::spec::SpecKind::Buildspec)?;
    let top = entries(&root).unwrap_or_default();
    let text = |node: Option<Node<'_>>| node.as_ref().and_then(|n| scalar_text(n).map(|s| s.into_owned()));
    let list = |node: Option<Node<'_>>| -> Vec<String> {
        match node {
            Some(n) => match sequence(&n) {
                Some(items) => items.iter().filter_map(|i| scalar_text(i).map(|s| s.into_owned())).collect(),
                None => scalar_text(&n).map(|s| vec![s.into_owned()]).unwrap_or_default(),
            },
            None => Vec::new(),
        }
    };
    let map = |node: Option<Node<'_>>| -> std::collections::BTreeMap<String, String> {
        node.as_ref()
            .and_then(|n| entries(n))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, _, v)| Some((k.into_owned(), scalar_text(v)?.into_owned())))
            .collect()
    };
    let version = top.iter().find(|(k, _, _)| k == "version").and_then(|(_, _, n)| scalar_text(n));
    if version.as_deref() == Some("0.1") {
        return Err(vec![Diagnostic::file(
            Severity::Error,
            source.path.clone(),
            "version 0.1 runs each command in its own shell; the runner implements 0.2: use version 0.2",
        )]);
    }
    let env = child(&root, "env");
    let phases_node = child(&root, "phases");
    let mut phases = Vec::new();
    let mut runtime_versions = std::collections::BTreeMap::new();
    for name in PHASES {
        let Some(phase) = phases_node.as_ref().and_then(|p| child(p, name)) else { continue };
        if *name == "install" {
            runtime_versions = map(child(&phase, "runtime-versions"));
        }
        phases.push(Phase {
            name,
            commands: list(child(&phase, "commands")),
            finally: list(child(&phase, "finally")),
            on_failure: text(child(&phase, "on-failure")).and_then(|t| t.parse().ok()),
            run_as: text(child(&phase, "run-as")),
        });
    }
    let artifacts = child(&root, "artifacts");
    let flag = |node: Option<Node<'_>>| {
        node.as_ref().and_then(|n| match value(n) {
            Some(Value::Bool(b)) => Some(b),
            Some(Value::Str(s)) => yaml::yaml11_bool(&s),
            _ => None,
        })
    };
    let artifacts = Artifacts {
        files: list(artifacts.as_ref().and_then(|a| child(a, "files"))),
        base_directory: text(artifacts.as_ref().and_then(|a| child(a, "base-directory"))),
        discard_paths: flag(artifacts.as_ref().and_then(|a| child(a, "discard-paths"))).unwrap_or(false),
        exclude_paths: list(artifacts.as_ref().and_then(|a| child(a, "exclude-paths"))),
        name: text(artifacts.as_ref().and_then(|a| child(a, "name"))),
    };
    Ok(Build {
        shell: text(env.as_ref().and_then(|e| child(e, "shell"))),
        runtime_versions,
        variables: map(env.as_ref().and_then(|e| child(e, "variables"))),
        parameter_store: map(env.as_ref().and_then(|e| child(e, "parameter-store"))),
        secrets_manager: map(env.as_ref().and_then(|e| child(e, "secrets-manager"))),
        phases,
        artifacts,
        cache_paths: list(child(&root, "cache").as_ref().and_then(|c| child(c, "paths"))),
        timeout_minutes: crate::config::model::DEFAULT_BUILD_TIMEOUT,
        project: crate::config::model::BuildProject::default(),
    })
}
