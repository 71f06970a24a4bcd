//! The settings that layer (platform `[defaults]` < customer `[defaults]` < environment file):
//! instance type, capacity, scaling, health check, deployment. Each value is judged where it was
//! written, so an error points at the layer that set it.

use crate::config::model::*;
use crate::config::raw::*;
use crate::names;

use super::{Checker, File};

/// One layer of layered settings; `prefix` is where the layer sits in its file.
pub(super) struct Layer<'a> {
    pub(super) raw: &'a RawLayer,
    pub(super) file: &'a File<'a>,
    pub(super) prefix: &'static str,
}

/// The most specific layer's value for a setting, and that layer (for error positions).
pub(super) fn pick<'l, T>(layers: &'l [Layer<'l>], get: impl Fn(&RawLayer) -> Option<T>) -> Option<(T, &'l Layer<'l>)> {
    layers.iter().rev().find_map(|layer| get(layer.raw).map(|value| (value, layer)))
}

/// The help for a setting no layer gives.
pub(super) fn missing_help(key: &str) -> String {
    format!("set `{key}` in this file, under [defaults] in customer.toml, or under [defaults] in platform.toml")
}

pub(super) fn instance_type(layers: &[Layer<'_>], env_file: &File<'_>, c: &mut Checker) -> Option<String> {
    match pick(layers, |l| l.instance_type.clone()) {
        Some((value, layer)) => c
            .rule(layer.file, &format!("{}instance_type", layer.prefix), "instance type", &value, names::instance_type)
            .then_some(value),
        None => c.required(env_file, "instance_type", None, &missing_help("instance_type")),
    }
}

/// `deregistration_delay_seconds`: how long the target group drains an instance (0–3600 s,
/// AWS's default 300).
pub(super) fn deregistration_delay(layers: &[Layer<'_>], c: &mut Checker) -> Option<u32> {
    match pick(layers, |l| l.deregistration_delay_seconds) {
        Some((value, layer)) => {
            c.range(layer.file, &format!("{}deregistration_delay_seconds", layer.prefix), value, 0..=3600, " s")
        }
        None => Some(300),
    }
}

/// A capacity value, the path it was read from and the index of its layer.
type Placed = (u32, String, usize);

fn capacity_value(
    layers: &[Layer<'_>],
    env_file: &File<'_>,
    c: &mut Checker,
    key: &str,
    get: fn(&RawCapacity) -> Option<i64>,
    range: std::ops::RangeInclusive<i64>,
    default: Option<i64>,
) -> Option<Placed> {
    match pick(layers, move |l| l.capacity.as_ref().and_then(get)) {
        Some((value, layer)) => {
            let path = format!("{}capacity.{key}", layer.prefix);
            let index = layers.iter().position(|l| std::ptr::eq(l, layer)).unwrap_or(0);
            c.range(layer.file, &path, value, range, "").map(|v| (v, path, index))
        }
        None => match default {
            Some(d) => Some((d as u32, format!("capacity.{key}"), layers.len() - 1)),
            None => c.required(env_file, &format!("capacity.{key}"), None, &missing_help(&format!("capacity.{key}"))),
        },
    }
}

pub(super) fn capacity(
    layers: &[Layer<'_>],
    env_file: &File<'_>,
    production: bool,
    c: &mut Checker,
) -> Option<Capacity> {
    let min = capacity_value(layers, env_file, c, "min", |r| r.min, 0..=1000, None);
    let max = capacity_value(layers, env_file, c, "max", |r| r.max, 1..=1000, None);
    let desired = match (&min, pick(layers, |l| l.capacity.as_ref().and_then(|r| r.desired))) {
        (Some((min, _, _)), None) => Some((*min, String::new(), 0)),
        _ => capacity_value(layers, env_file, c, "desired", |r| r.desired, 0..=1000, None),
    };
    let grace = capacity_value(
        layers,
        env_file,
        c,
        "health_check_grace_period",
        |r| r.health_check_grace_period,
        0..=7200,
        Some(300),
    );
    if let (Some((min, min_path, min_layer)), Some((max, _, _)), Some((desired, desired_path, desired_layer))) =
        (&min, &max, &desired)
    {
        if min > max {
            c.error_help(
                layers[*min_layer].file,
                min_path,
                format!("capacity.min ({min}) is greater than capacity.max ({max})"),
                "Auto Scaling needs min ≤ desired ≤ max",
            );
        } else if desired < min || desired > max {
            let (file, path) = if desired_path.is_empty() {
                (layers[*min_layer].file, min_path)
            } else {
                (layers[*desired_layer].file, desired_path)
            };
            c.error_help(
                file,
                path,
                format!("capacity.desired ({desired}) is outside min..max ({min}..{max})"),
                "Auto Scaling needs min ≤ desired ≤ max",
            );
        }
    }
    if let Some((min, path, layer)) = min.as_ref().filter(|(min, _, _)| production && *min < 2) {
        c.warning(
            layers[*layer].file,
            path,
            format!("production runs with capacity.min = {min}"),
            "one instance means downtime on every deploy and instance failure; consider min = 2",
        );
    }
    let (min, max, desired, grace) = (min?, max?, desired?, grace?);
    Some(Capacity { min: min.0, max: max.0, desired: desired.0, health_check_grace_period: grace.0 })
}

pub(super) fn scaling(layers: &[Layer<'_>], c: &mut Checker) -> Scaling {
    let cpu_target = pick(layers, |l| l.scaling.as_ref().and_then(|s| s.cpu_target));
    if let Some((value, layer)) = &cpu_target {
        if !(1.0..=100.0).contains(value) {
            c.error(
                layer.file,
                &format!("{}scaling.cpu_target", layer.prefix),
                format!("scaling.cpu_target is {value}; a CPU target is a percentage from 1 to 100"),
            );
        }
    }
    let requests = pick(layers, |l| l.scaling.as_ref().and_then(|s| s.requests_per_target));
    if let Some((value, layer)) = &requests {
        if !(*value > 0.0 && value.is_finite()) {
            c.error(layer.file, &format!("{}scaling.requests_per_target", layer.prefix), format!("scaling.requests_per_target is {value}; it must be a positive number of requests per target per minute"));
        }
    }
    Scaling { cpu_target: cpu_target.map(|(v, _)| v), requests_per_target: requests.map(|(v, _)| v) }
}
pub(super) fn health_check(layers: &[Layer<'_>], env_file: &File<'_>, c: &mut Checker) -> Option<HealthCheck> {
    let get = |f: fn(&RawHealthCheck) -> Option<i64>| pick(layers, move |l| l.health_check.as_ref().and_then(f));
    let path_of = |layer: &Layer<'_>, key: &str| format!("{}health_check.{key}", layer.prefix);
    let number = |c: &mut Checker,
                  key: &str,
                  f: fn(&RawHealthCheck) -> Option<i64>,
                  range: std::ops::RangeInclusive<i64>,
                  default: i64|
     -> Option<(u32, Option<(String, usize)>)> {
        match get(f) {
            Some((value, layer)) => {
                let path = path_of(layer, key);
                let index = layers.iter().position(|l| std::ptr::eq(l, layer)).unwrap_or(0);
                c.range(layer.file, &path, value, range, " s").map(|v| (v, Some((path, index))))
            }
            None => Some((default as u32, None)),
        }
    };
    let interval = number(c, "interval", |h| h.interval, 5..=300, 30);
    let timeout = number(c, "timeout", |h| h.timeout, 2..=120, 5);
    let healthy = thresholds(c, layers, "healthy_threshold", |h| h.healthy_threshold, 5);
    let unhealthy = thresholds(c, layers, "unhealthy_threshold", |h| h.unhealthy_threshold, 2);
    if let (Some((interval, interval_at)), Some((timeout, timeout_at))) = (&interval, &timeout) {
        if interval <= timeout {
            let (file, path) = match (interval_at, timeout_at) {
                (Some((path, i)), _) | (None, Some((path, i))) => (layers[*i].file, path.clone()),
                (None, None) => (env_file, "health_check".to_string()),
            };
            c.error_help(
                file,
                &path,
                format!("health_check.interval ({interval} s) must be greater than health_check.timeout ({timeout} s)"),
                "Elastic Load Balancing rejects an interval that is not longer than the timeout",
            );
        }
    }
    let path = match pick(layers, |l| l.health_check.as_ref().and_then(|h| h.path.clone())) {
        Some((path, layer)) => {
            let ok = path.starts_with('/') && path.len() <= 1024 && path.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                c.error(layer.file, &path_of(layer, "path"), format!("health_check.path `{path}` must start with `/`, be at most 1024 characters and contain no spaces"));
            }
            path
        }
        None => "/".into(),
    };
    let port = match pick(layers, |l| l.health_check.as_ref().and_then(|h| h.port.clone())) {
        Some((RawPort::Number(n), layer)) => {
            c.range(layer.file, &path_of(layer, "port"), n, 1..=65535, "").map(|n| n.to_string())
        }
        Some((RawPort::Name(name), layer)) if name != "traffic-port" => {
            c.error(
                layer.file,
                &path_of(layer, "port"),
                format!("health_check.port `{name}` must be a number or \"traffic-port\""),
            );
            None
        }
        _ => Some("traffic-port".into()),
    };
    let protocol = match pick(layers, |l| l.health_check.as_ref().and_then(|h| h.protocol.clone())) {
        Some((p, layer)) => {
            let parsed = p.parse::<HealthCheckProtocol>().ok();
            if parsed.is_none() {
                c.error(
                    layer.file,
                    &path_of(layer, "protocol"),
                    format!("health_check.protocol `{p}` must be \"HTTP\" or \"HTTPS\""),
                );
            }
            parsed
        }
        None => Some(HealthCheckProtocol::Http),
    };
    let matcher = match pick(layers, |l| l.health_check.as_ref().and_then(|h| h.matcher.clone())) {
        Some((m, layer)) => {
            c.rule(layer.file, &path_of(layer, "matcher"), "health_check.matcher", &m, names::http_matcher).then_some(m)
        }
        None => Some("200".into()),
    };
    Some(HealthCheck {
        path,
        port: port?,
        protocol: protocol?,
        interval: interval?.0,
        timeout: timeout?.0,
        healthy_threshold: healthy?,
        unhealthy_threshold: unhealthy?,
        matcher: matcher?,
    })
}

fn thresholds(
    c: &mut Checker,
    layers: &[Layer<'_>],
    key: &str,
    f: fn(&RawHealthCheck) -> Option<i64>,
    default: u32,
) -> Option<u32> {
    match pick(layers, |l| l.health_check.as_ref().and_then(f)) {
        Some((value, layer)) => c.range(layer.file, &format!("{}health_check.{key}", layer.prefix), value, 2..=10, ""),
        None => Some(default),
    }
}

const DEFAULT_DEPLOYMENT_CONFIG: &str = "CodeDeployDefault.OneAtATime";
const DEPLOYMENT_CONFIGS: &[&str] =
    &["CodeDeployDefault.OneAtATime", "CodeDeployDefault.HalfAtATime", "CodeDeployDefault.AllAtOnce"];

/// How long a software deployment is followed by default, and at most: CodeDeploy ends an
/// in-place deployment after 12 hours (CodeDeploy quotas), so following one longer means nothing.
const DEFAULT_DEPLOYMENT_TIMEOUT: u32 = 60;
const DEPLOYMENT_TIMEOUT_MAX: i64 = 720;

pub(super) fn deployment(layers: &[Layer<'_>], production: bool, c: &mut Checker) -> Option<Deployment> {
    let config = pick(layers, |l| l.deployment.as_ref().and_then(|d| d.config.clone()));
    let rollback = pick(layers, |l| l.deployment.as_ref().and_then(|d| d.auto_rollback));
    let timeout = match pick(layers, |l| l.deployment.as_ref().and_then(|d| d.timeout_minutes)) {
        Some((value, layer)) => {
            let path = format!("{}deployment.timeout_minutes", layer.prefix);
            c.range(layer.file, &path, value, 1..=DEPLOYMENT_TIMEOUT_MAX, "")
        }
        None => Some(DEFAULT_DEPLOYMENT_TIMEOUT),
    };
    let mut ok = timeout.is_some();
    if let Some((config, layer)) = &config {
        let path = format!("{}deployment.config", layer.prefix);
        if config.starts_with("CodeDeployDefault.") && !DEPLOYMENT_CONFIGS.contains(&config.as_str()) {
            c.error_help(
                layer.file,
                &path,
                format!("unknown deployment config `{config}`"),
                format!("the predefined EC2 configs are {}", DEPLOYMENT_CONFIGS.join(", ")),
            );
            ok = false;
        } else if !c.rule(layer.file, &path, "deployment config", config, names::codedeploy_name) {
            ok = false;
        } else if production && config != DEFAULT_DEPLOYMENT_CONFIG {
            c.error_help(
                layer.file,
                &path,
                format!("production deploys one instance at a time, not with `{config}`"),
                format!("remove the setting or set it to \"{DEFAULT_DEPLOYMENT_CONFIG}\""),
            );
            ok = false;
        }
    }
    if let Some((false, layer)) = &rollback {
        if production {
            c.error_help(
                layer.file,
                &format!("{}deployment.auto_rollback", layer.prefix),
                "production deploys roll back automatically on failure",
                "remove `auto_rollback = false`",
            );
            ok = false;
        }
    }
    ok.then(|| Deployment {
        config: config.map_or_else(|| DEFAULT_DEPLOYMENT_CONFIG.to_string(), |(c, _)| c),
        auto_rollback: rollback.is_none_or(|(r, _)| r),
        timeout_minutes: timeout.unwrap_or(DEFAULT_DEPLOYMENT_TIMEOUT),
    })
}
