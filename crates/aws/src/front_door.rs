//! What the local front door reads from the emulator: every load balancer's listeners, a
//! listener's rules and default action (as `vending::front_door` routes them), and a target
//! group's registered instances. Read again for each request, so that a target that CodeDeploy
//! (here the local fleet) takes out of its group gets no more requests.

use anyhow::Context;
use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;
use vending::front_door::{Listener, Rule};

use crate::infra::{failed, Clients};

/// A listener of a load balancer, as the front door binds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Door {
    pub load_balancer: String,
    pub port: u16,
    pub protocol: String,
    pub arn: String,
}

/// Every listener of every load balancer in the emulator.
pub async fn doors(clients: &Clients) -> anyhow::Result<Vec<Door>> {
    let balancers =
        clients.elb.describe_load_balancers().send().await.map_err(|e| failed("cannot list the load balancers", e))?;
    let mut doors = Vec::new();
    for lb in balancers.load_balancers() {
        let (Some(name), Some(arn)) = (lb.load_balancer_name(), lb.load_balancer_arn()) else { continue };
        let listeners = clients
            .elb
            .describe_listeners()
            .load_balancer_arn(arn)
            .send()
            .await
            .map_err(|e| failed(&format!("cannot list the listeners of {name}"), e))?;
        for listener in listeners.listeners() {
            let (Some(port), Some(arn)) = (listener.port, listener.listener_arn()) else { continue };
            doors.push(Door {
                load_balancer: name.to_string(),
                port: u16::try_from(port).with_context(|| format!("{name} has a listener on port {port}"))?,
                protocol: listener.protocol().map(|p| p.as_str().to_string()).unwrap_or_default(),
                arn: arn.to_string(),
            });
        }
    }
    doors.sort_by(|a, b| (&a.load_balancer, a.port).cmp(&(&b.load_balancer, b.port)));
    Ok(doors)
}

/// The listener's rules and default action, now.
pub async fn listener(clients: &Clients, door: &Door) -> anyhow::Result<Listener> {
    let mut rules = Vec::new();
    let mut default_action = None;
    let mut marker = None;
    loop {
        let page = clients
            .elb
            .describe_rules()
            .listener_arn(&door.arn)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| failed(&format!("cannot read the rules of {}:{}", door.load_balancer, door.port), e))?;
        for rule in page.rules() {
            let Some(action) = rule.actions().first().map(crate::infra::elb::action_read) else { continue };
            if rule.is_default == Some(true) {
                default_action = Some(action);
                continue;
            }
            let mut hosts = Vec::new();
            let mut other_conditions = false;
            for condition in rule.conditions() {
                if condition.field() == Some("host-header") {
                    let config = condition.host_header_config().map(|c| c.values().to_vec());
                    hosts.extend(config.unwrap_or_else(|| condition.values().to_vec()));
                } else {
                    other_conditions = true;
                }
            }
            let priority = rule.priority().and_then(|p| p.parse().ok()).unwrap_or(u32::MAX);
            rules.push(Rule { priority, hosts, other_conditions, action });
        }
        marker = page.next_marker;
        if marker.is_none() {
            break;
        }
    }
    Ok(Listener {
        load_balancer: door.load_balancer.clone(),
        port: door.port,
        protocol: door.protocol.clone(),
        rules,
        default_action: default_action
            .with_context(|| format!("{}:{} has no default rule", door.load_balancer, door.port))?,
    })
}

/// The instances registered in the target group (draining ones left out), in id order.
pub async fn targets(clients: &Clients, target_group_arn: &str) -> anyhow::Result<Vec<String>> {
    let health = clients
        .elb
        .describe_target_health()
        .target_group_arn(target_group_arn)
        .send()
        .await
        .map_err(|e| failed("cannot read a target group's targets", e))?;
    let mut ids: Vec<String> = health
        .target_health_descriptions()
        .iter()
        .filter(|d| d.target_health().and_then(|h| h.state()) != Some(&TargetHealthStateEnum::Draining))
        .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}
