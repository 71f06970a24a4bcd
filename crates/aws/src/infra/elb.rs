//! Elastic Load Balancing: target groups, load balancers, their listeners, and host rules.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, FixedResponseActionConfig, HostHeaderConditionConfig, LoadBalancerSchemeEnum,
    LoadBalancerTypeEnum, Matcher, ProtocolEnum, RedirectActionConfig, RedirectActionStatusCodeEnum, RuleCondition,
    Tag, TargetGroupAttribute, TargetTypeEnum,
};
use aws_sdk_elasticloadbalancingv2::Client;
use vending::plan::{
    allocate_priority, HealthCheck, Kind, Listener, ListenerAction, ListenerRule, LoadBalancer, Resource, Tags,
    TargetGroup,
};

use super::{code, failed, live_tags, Clients, Current, Found, Live, Stack};

async fn tags_of(elb: &Client, arns: &[String]) -> anyhow::Result<BTreeMap<String, Vec<(String, String)>>> {
    let mut out = BTreeMap::new();
    // DescribeTags takes at most 20 resources per call.
    for chunk in arns.chunks(20) {
        let described = elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| failed("cannot read tags", e))?;
        for description in described.tag_descriptions() {
            let tags = description.tags().iter().filter_map(|t| Some((t.key.clone()?, t.value.clone()?))).collect();
            out.insert(description.resource_arn.clone().unwrap_or_default(), tags);
        }
    }
    Ok(out)
}

fn to_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

async fn retag(elb: &Client, arn: &str, wanted: &Tags, old: &Tags) -> anyhow::Result<()> {
    let put = elb.add_tags().resource_arns(arn).set_tags(Some(to_tags(wanted))).send();
    super::retag(wanted, old, async { put.await.map(|_| ()).map_err(|e| failed("cannot tag", e)) }, |stale| async {
        let remove = elb.remove_tags().resource_arns(arn).set_tag_keys(Some(stale.into_keys().collect()));
        remove.send().await.map(|_| ()).map_err(|e| failed("cannot remove old tags", e))
    })
    .await
}

pub async fn read_target_group(clients: &Clients, name: &str) -> anyhow::Result<Option<Found>> {
    let out = match clients.elb.describe_target_groups().names(name).send().await {
        Ok(out) => out,
        Err(e) if code(&e) == Some("TargetGroupNotFound") => return Ok(None),
        Err(e) => return Err(failed("describe", e)),
    };
    let Some(tg) = out.target_groups().first() else { return Ok(None) };
    let arn = tg.target_group_arn.clone().unwrap_or_default();
    let tags = tags_of(&clients.elb, std::slice::from_ref(&arn)).await?.remove(&arn).unwrap_or_default();
    let text = |v: Option<&str>| v.unwrap_or_default().to_string();
    let live = TargetGroup {
        protocol: text(tg.protocol.as_ref().map(|p| p.as_str())),
        port: tg.port.unwrap_or_default(),
        vpc: text(tg.vpc_id.as_deref()),
        target_type: text(tg.target_type.as_ref().map(|t| t.as_str())),
        health_check: HealthCheck {
            path: text(tg.health_check_path.as_deref()),
            port: text(tg.health_check_port.as_deref()),
            protocol: text(tg.health_check_protocol.as_ref().map(|p| p.as_str())),
            interval: tg.health_check_interval_seconds.unwrap_or_default(),
            timeout: tg.health_check_timeout_seconds.unwrap_or_default(),
            healthy_threshold: tg.healthy_threshold_count.unwrap_or_default(),
            unhealthy_threshold: tg.unhealthy_threshold_count.unwrap_or_default(),
            matcher: text(tg.matcher.as_ref().and_then(|m| m.http_code.as_deref())),
        },
        deregistration_delay: deregistration_delay(&clients.elb, &arn).await?,
        tags: live_tags(tags),
    };
    Ok(Some(Found::new(Resource::TargetGroup(live), arn)))
}

/// The health-check settings, on a create or a modify request alike.
macro_rules! health_check {
    ($request:expr, $hc:expr) => {
        $request
            .health_check_path(&$hc.path)
            .health_check_port(&$hc.port)
            .health_check_protocol(ProtocolEnum::from($hc.protocol.as_str()))
            .health_check_interval_seconds($hc.interval)
            .health_check_timeout_seconds($hc.timeout)
            .healthy_threshold_count($hc.healthy_threshold)
            .unhealthy_threshold_count($hc.unhealthy_threshold)
            .matcher(Matcher::builder().http_code(&$hc.matcher).build())
    };
}

pub(crate) async fn apply_target_group(
    clients: &Clients,
    name: &str,
    d: &TargetGroup,
    current: Option<Current<'_, TargetGroup>>,
    changed: &[String],
) -> anyhow::Result<()> {
    let elb = &clients.elb;
    let Some(current) = current else {
        let request = elb
            .create_target_group()
            .name(name)
            .protocol(ProtocolEnum::from(d.protocol.as_str()))
            .port(d.port)
            .vpc_id(&d.vpc)
            .target_type(TargetTypeEnum::from(d.target_type.as_str()))
            .health_check_enabled(true);
        let created = health_check!(request, d.health_check)
            .set_tags(Some(to_tags(&d.tags)))
            .send()
            .await
            .map_err(|e| failed("create", e))?;
        let arn = created.target_groups().first().and_then(|t| t.target_group_arn.as_deref());
        // Attributes are not part of CreateTargetGroup.
        return set_deregistration_delay(elb, arn.context("AWS returned no target group ARN")?, d).await;
    };
    if changed.iter().any(|f| f.starts_with("health_check.")) {
        let request = elb.modify_target_group().target_group_arn(current.id);
        health_check!(request, d.health_check).send().await.map_err(|e| failed("modify", e))?;
    }
    if changed.iter().any(|f| f == "deregistration_delay") {
        set_deregistration_delay(elb, current.id, d).await?;
    }
    if changed.iter().any(|f| f == "tags") {
        retag(elb, current.id, &d.tags, &current.live.tags).await?;
    }
    Ok(())
}

const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";

async fn set_deregistration_delay(elb: &Client, arn: &str, d: &TargetGroup) -> anyhow::Result<()> {
    let attribute =
        TargetGroupAttribute::builder().key(DEREGISTRATION_DELAY).value(d.deregistration_delay.to_string()).build();
    elb.modify_target_group_attributes()
        .target_group_arn(arn)
        .attributes(attribute)
        .send()
        .await
        .map_err(|e| failed("set the deregistration delay", e))?;
    Ok(())
}

async fn deregistration_delay(elb: &Client, arn: &str) -> anyhow::Result<i32> {
    let out = elb
        .describe_target_group_attributes()
        .target_group_arn(arn)
        .send()
        .await
        .map_err(|e| failed("describe attributes", e))?;
    let value = out.attributes().iter().find(|a| a.key.as_deref() == Some(DEREGISTRATION_DELAY));
    let value =
        value.and_then(|a| a.value.as_deref()).with_context(|| format!("no {DEREGISTRATION_DELAY} attribute"))?;
    value.parse().with_context(|| format!("{DEREGISTRATION_DELAY} is `{value}`, not a number"))
}

pub async fn delete_target_group(clients: &Clients, arn: &str) -> anyhow::Result<()> {
    clients
        .elb
        .delete_target_group()
        .target_group_arn(arn)
        .send()
        .await
        .map_err(|e| failed("cannot delete the old target group (still in use by a rule or group?)", e))?;
    Ok(())
}

pub async fn read_load_balancer(clients: &Clients, name: &str) -> anyhow::Result<Option<Found>> {
    let out = match clients.elb.describe_load_balancers().names(name).send().await {
        Ok(out) => out,
        Err(e) if code(&e) == Some("LoadBalancerNotFound") => return Ok(None),
        Err(e) => return Err(failed("describe", e)),
    };
    let balancers = out.load_balancers();
    if balancers.len() > 1 {
        bail!("{} load balancers are named `{}`; delete the extra ones, then deploy again", balancers.len(), name);
    }
    let Some(lb) = balancers.first() else { return Ok(None) };
    let arn = lb.load_balancer_arn.clone().unwrap_or_default();
    let tags = tags_of(&clients.elb, std::slice::from_ref(&arn)).await?.remove(&arn).unwrap_or_default();
    let live = LoadBalancer {
        balancer_type: lb.r#type.as_ref().map(|t| t.as_str().to_string()).unwrap_or_default(),
        scheme: lb.scheme.as_ref().map(|s| s.as_str().to_string()).unwrap_or_default(),
        subnets: lb.availability_zones().iter().filter_map(|z| z.subnet_id.clone()).collect(),
        security_groups: lb.security_groups().to_vec(),
        tags: live_tags(tags),
    };
    Ok(Some(Found::new(Resource::LoadBalancer(live), arn)))
}

pub(crate) async fn apply_load_balancer(
    clients: &Clients,
    name: &str,
    d: &LoadBalancer,
    current: Option<Current<'_, LoadBalancer>>,
    changed: &[String],
) -> anyhow::Result<()> {
    let elb = &clients.elb;
    let subnets = d.subnets.clone();
    let groups = d.security_groups.clone();
    let Some(current) = current else {
        elb.create_load_balancer()
            .name(name)
            .set_subnets(Some(subnets))
            .set_security_groups(Some(groups))
            .scheme(LoadBalancerSchemeEnum::from(d.scheme.as_str()))
            .r#type(LoadBalancerTypeEnum::from(d.balancer_type.as_str()))
            .set_tags(Some(to_tags(&d.tags)))
            .send()
            .await
            .map_err(|e| failed("create", e))?;
        return Ok(());
    };
    if changed.iter().any(|f| f == "subnets") {
        elb.set_subnets()
            .load_balancer_arn(current.id)
            .set_subnets(Some(subnets))
            .send()
            .await
            .map_err(|e| failed("set subnets", e))?;
    }
    if changed.iter().any(|f| f == "security_groups") {
        elb.set_security_groups()
            .load_balancer_arn(current.id)
            .set_security_groups(Some(groups))
            .send()
            .await
            .map_err(|e| failed("set security groups", e))?;
    }
    if changed.iter().any(|f| f == "tags") {
        retag(elb, current.id, &d.tags, &current.live.tags).await?;
    }
    Ok(())
}

pub async fn delete_load_balancer(clients: &Clients, arn: &str) -> anyhow::Result<()> {
    clients
        .elb
        .delete_load_balancer()
        .load_balancer_arn(arn)
        .send()
        .await
        .map_err(|e| failed("cannot delete the old load balancer", e))?;
    Ok(())
}

/// A listener's default action, as the core types it.
pub(crate) fn action_read(action: &Action) -> ListenerAction {
    match action.r#type.as_ref() {
        Some(ActionTypeEnum::Redirect) => {
            let r = action.redirect_config.as_ref();
            ListenerAction::Redirect {
                protocol: r.and_then(|r| r.protocol.clone()).unwrap_or_default(),
                port: r.and_then(|r| r.port.clone()).unwrap_or_default(),
                permanent: r.and_then(|r| r.status_code.as_ref()) == Some(&RedirectActionStatusCodeEnum::Http301),
            }
        }
        Some(ActionTypeEnum::FixedResponse) => {
            let f = action.fixed_response_config.as_ref();
            ListenerAction::FixedResponse {
                status: f.and_then(|f| f.status_code.clone()).unwrap_or_default(),
                content_type: f.and_then(|f| f.content_type.clone()).unwrap_or_default(),
                body: f.and_then(|f| f.message_body.clone()).unwrap_or_default(),
            }
        }
        Some(ActionTypeEnum::Forward) => ListenerAction::Forward(action.target_group_arn.clone().unwrap_or_default()),
        other => ListenerAction::Other(other.map_or("none", |t| t.as_str()).to_string()),
    }
}

/// The SDK's action for a default action the tool makes (a redirect keeps host, path and query).
fn action_of(action: &ListenerAction) -> anyhow::Result<Action> {
    Ok(match action {
        ListenerAction::FixedResponse { status, content_type, body } => {
            let config = FixedResponseActionConfig::builder()
                .status_code(status)
                .content_type(content_type)
                .message_body(body)
                .build();
            Action::builder().r#type(ActionTypeEnum::FixedResponse).fixed_response_config(config).build()
        }
        ListenerAction::Redirect { protocol, port, permanent } => {
            let status =
                if *permanent { RedirectActionStatusCodeEnum::Http301 } else { RedirectActionStatusCodeEnum::Http302 };
            let config = RedirectActionConfig::builder()
                .protocol(protocol)
                .port(port)
                .host("#{host}")
                .path("/#{path}")
                .query("#{query}")
                .status_code(status)
                .build();
            Action::builder().r#type(ActionTypeEnum::Redirect).redirect_config(config).build()
        }
        ListenerAction::Forward(arn) => Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(arn).build(),
        ListenerAction::Other(kind) => bail!("the tool does not make listeners with a `{kind}` default action"),
    })
}

fn listener_parts(name: &str) -> anyhow::Result<(&str, i32)> {
    let (lb, port) = name.rsplit_once(':').context("a listener is named LOAD_BALANCER:PORT")?;
    Ok((lb, port.parse().context("a listener's port is a number")?))
}

/// The listener named `name`, as `wrap` makes it a resource (HTTP or HTTPS).
pub(crate) async fn read_listener(
    clients: &Clients,
    live: &Live,
    name: &str,
    d: &Listener,
    wrap: fn(Listener) -> Resource,
) -> anyhow::Result<Option<Found>> {
    let (lb, port) = listener_parts(name)?;
    let Some(lb_arn) = live.id(Kind::LoadBalancer, lb) else { return Ok(None) };
    let out = clients
        .elb
        .describe_listeners()
        .load_balancer_arn(lb_arn)
        .send()
        .await
        .map_err(|e| failed("describe listeners", e))?;
    let on_port: Vec<_> = out.listeners().iter().filter(|l| l.port == Some(port)).collect();
    if on_port.len() > 1 {
        bail!("{} has {} listeners on port {port}; delete the extra ones, then deploy again", lb, on_port.len());
    }
    let Some(listener) = on_port.first() else { return Ok(None) };
    // Only an HTTPS listener has a certificate to compare.
    let certificate = d.certificate.as_ref().map(|_| {
        let default = listener.certificates().iter().find(|c| c.is_default != Some(false));
        default.and_then(|c| c.certificate_arn.clone()).unwrap_or_default()
    });
    let found = Listener {
        protocol: listener.protocol.as_ref().map(|p| p.as_str().to_string()).unwrap_or_default(),
        default_actions: listener.default_actions().iter().map(action_read).collect(),
        certificate,
    };
    Ok(Some(Found::new(wrap(found), listener.listener_arn.clone().unwrap_or_default())))
}

pub(crate) async fn apply_listener(
    clients: &Clients,
    live: &Live,
    name: &str,
    d: &Listener,
    current: Option<Current<'_, Listener>>,
) -> anyhow::Result<()> {
    let (lb, port) = listener_parts(name)?;
    let actions = d.default_actions.iter().map(action_of).collect::<anyhow::Result<Vec<_>>>()?;
    let certificate = d.certificate.as_ref().map(|arn| Certificate::builder().certificate_arn(arn).build());
    if d.protocol == "HTTPS" && certificate.as_ref().is_none_or(|c| c.certificate_arn().unwrap_or("").is_empty()) {
        bail!("an HTTPS listener needs an ISSUED certificate");
    }
    let protocol = ProtocolEnum::from(d.protocol.as_str());
    match current {
        None => {
            let lb_arn = live.id(Kind::LoadBalancer, lb).context("its load balancer does not exist")?;
            clients
                .elb
                .create_listener()
                .load_balancer_arn(lb_arn)
                .protocol(protocol)
                .port(port)
                .set_certificates(certificate.map(|c| vec![c]))
                .set_default_actions(Some(actions.clone()))
                .send()
                .await
                .map_err(|e| failed("create", e))?;
        }
        Some(current) => {
            clients
                .elb
                .modify_listener()
                .listener_arn(current.id)
                .protocol(protocol)
                .port(port)
                .set_certificates(certificate.map(|c| vec![c]))
                .set_default_actions(Some(actions.clone()))
                .send()
                .await
                .map_err(|e| failed("modify", e))?;
        }
    }
    Ok(())
}

/// The listener a rule goes on (`listener` as plans name it): the shared one, or the stack's own
/// HTTPS listener.
pub fn rule_listener<'a>(stack: &'a Stack, live: &'a Live, listener: &str) -> Option<&'a str> {
    match &stack.shared_listener_arn {
        Some(arn) => Some(arn.as_str()),
        None => live.id(Kind::HttpsListener, listener),
    }
}

struct ListenerRules {
    /// Priorities in use (the default rule has none).
    taken: BTreeSet<u32>,
    /// The rule this customer environment owns, found by its tags.
    ours: Option<aws_sdk_elasticloadbalancingv2::types::Rule>,
}

/// A listener's rules (the default rule aside) and each one's tags, by ARN.
async fn rules_and_tags(
    clients: &Clients,
    listener: &str,
) -> anyhow::Result<(Vec<aws_sdk_elasticloadbalancingv2::types::Rule>, BTreeMap<String, Vec<(String, String)>>)> {
    let mut rules = Vec::new();
    let mut marker = None;
    loop {
        let page = clients
            .elb
            .describe_rules()
            .listener_arn(listener)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| failed("describe rules", e))?;
        rules.extend(page.rules().iter().filter(|r| r.is_default != Some(true)).cloned());
        marker = page.next_marker;
        if marker.is_none() {
            break;
        }
    }
    let arns: Vec<String> = rules.iter().filter_map(|r| r.rule_arn.clone()).collect();
    let tags = tags_of(&clients.elb, &arns).await?;
    Ok((rules, tags))
}

async fn listener_rules(
    clients: &Clients,
    listener: &str,
    name: &str,
    d: &ListenerRule,
) -> anyhow::Result<ListenerRules> {
    let (rules, tags) = rules_and_tags(clients, listener).await?;
    let owner = owner_tags(d);
    let mut ours: Vec<_> = rules
        .iter()
        .filter(|r| {
            let tags: BTreeMap<String, String> =
                tags.get(r.rule_arn.as_deref().unwrap_or_default()).cloned().unwrap_or_default().into_iter().collect();
            owner.iter().all(|(k, v)| tags.get(k) == Some(v))
        })
        .cloned()
        .collect();
    if ours.len() > 1 {
        bail!("{} rules on the listener are tagged as {}'s; delete all but one, then deploy again", ours.len(), name);
    }
    let taken = rules.iter().filter_map(|r| r.priority.as_deref()?.parse().ok()).collect();
    Ok(ListenerRules { taken, ours: ours.pop() })
}

/// The environments (`customer/env`) whose rules this tool made on the listener (by their tags).
pub(crate) async fn managed_rules(clients: &Clients, listener: &str) -> anyhow::Result<Vec<String>> {
    let (_, tags) = rules_and_tags(clients, listener).await?;
    Ok(tags
        .values()
        .filter_map(|tags| {
            let tag = |key: &str| tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
            if tag("ManagedBy") != Some(vending::names::MANAGED_BY) {
                return None;
            }
            Some(format!("{}/{}", tag("Customer")?, tag("Environment")?))
        })
        .collect())
}

/// The tags that mark a rule as a customer environment's: how later runs find it.
fn owner_tags(d: &ListenerRule) -> Tags {
    [
        ("Customer", d.customer.as_str()),
        ("Environment", d.environment.as_str()),
        ("ManagedBy", vending::names::MANAGED_BY),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

async fn target_group_arn(clients: &Clients, live: &Live, name: &str) -> anyhow::Result<String> {
    if let Some(arn) = live.id(Kind::TargetGroup, name) {
        return Ok(arn.to_string());
    }
    let out = clients.elb.describe_target_groups().names(name).send().await.map_err(|e| failed("target group", e))?;
    out.target_groups()
        .first()
        .and_then(|t| t.target_group_arn.clone())
        .with_context(|| format!("target group {name} does not exist"))
}

/// A target group ARN as plans print it: the name when it is the stack's own group.
pub fn target_group_text(live: &Live, arn: &str) -> String {
    live.found
        .iter()
        .find(|((kind, _), found)| *kind == Kind::TargetGroup && found.id == arn)
        .map(|((_, name), _)| name.clone())
        .unwrap_or_else(|| arn.to_string())
}

pub(crate) async fn read_rule(
    clients: &Clients,
    stack: &Stack,
    live: &Live,
    name: &str,
    d: &ListenerRule,
) -> anyhow::Result<Option<Found>> {
    let Some(listener) = rule_listener(stack, live, &d.listener) else { return Ok(None) };
    let Some(rule) = listener_rules(clients, listener, name, d).await?.ours else { return Ok(None) };
    let hosts = rule.conditions().iter().filter(|c| c.field.as_deref() == Some("host-header")).flat_map(|c| {
        match &c.host_header_config {
            Some(config) => config.values().to_vec(),
            None => c.values().to_vec(),
        }
    });
    let forward = rule
        .actions()
        .iter()
        .find(|a| a.r#type == Some(ActionTypeEnum::Forward))
        .and_then(|a| a.target_group_arn.clone())
        .map(|arn| target_group_text(live, &arn))
        .unwrap_or_default();
    // Found by its owner's tags on this listener: the inputs are the desired ones.
    let found = ListenerRule { host_header: hosts.collect(), forward, ..d.clone() };
    let mut found = Found::new(Resource::ListenerRule(found), rule.rule_arn.clone().unwrap_or_default());
    found.extra.insert("priority".to_string(), rule.priority.clone().unwrap_or_default());
    Ok(Some(found))
}

/// How often a new rule retries when another deploy took the priority it chose.
const PRIORITY_ATTEMPTS: usize = 10;

pub(crate) async fn apply_rule(
    clients: &Clients,
    stack: &Stack,
    live: &Live,
    name: &str,
    d: &ListenerRule,
    current: Option<Current<'_, ListenerRule>>,
) -> anyhow::Result<()> {
    let listener = rule_listener(stack, live, &d.listener).context("its listener does not exist")?.to_string();
    let target_group = target_group_arn(clients, live, &d.forward).await?;
    let condition = RuleCondition::builder()
        .field("host-header")
        .host_header_config(HostHeaderConditionConfig::builder().set_values(Some(d.host_header.clone())).build())
        .build();
    let action = Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&target_group).build();
    if let Some(current) = current {
        // The priority stays: only conditions and actions change.
        clients
            .elb
            .modify_rule()
            .rule_arn(current.id)
            .conditions(condition)
            .actions(action)
            .send()
            .await
            .map_err(|e| failed("modify", e))?;
        return Ok(());
    }
    for _ in 0..PRIORITY_ATTEMPTS {
        let rules = listener_rules(clients, &listener, name, d).await?;
        if rules.ours.is_some() {
            // Another run of this deploy made it meanwhile.
            return Ok(());
        }
        let priority = allocate_priority(&rules.taken).context("the listener has no free rule priority left")?;
        let created = clients
            .elb
            .create_rule()
            .listener_arn(&listener)
            .priority(priority as i32)
            .conditions(condition.clone())
            .actions(action.clone())
            .set_tags(Some(to_tags(&owner_tags(d))))
            .send()
            .await;
        match created {
            Ok(_) => return Ok(()),
            Err(e) if code(&e) == Some("PriorityInUse") => continue,
            Err(e) => return Err(failed("create", e)),
        }
    }
    bail!("another deploy kept taking the free priority on the listener; run the deploy again")
}
