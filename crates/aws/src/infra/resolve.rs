//! Lookups from config to ids: VPC, subnets, security groups, certificates, the CodeDeploy role
//! and the shared listener. An id in the config is used as given; a lookup must find exactly
//! what it describes.

use anyhow::{bail, Context};
use aws_sdk_ec2::types::Filter;
use vending::config::model::{
    Customer, Environment, ListenerRef, Platform, RoleRef, Routing, SecurityGroupsRef, SubnetsRef, Tags, VpcRef,
};
use vending::plan::Resolved;

use super::{certificates, failed, Clients};

pub async fn environment(
    clients: &Clients,
    platform: &Platform,
    customer: &Customer,
    env: &Environment,
    local: bool,
) -> anyhow::Result<Resolved> {
    let mut resolved = platform_ids(clients, platform).await?;
    resolved.database_security_groups = match env.database.as_ref().and_then(|d| d.security_groups.as_ref()) {
        Some(groups) => security_groups(clients, &resolved.vpc_id, groups).await?,
        None => resolved.instance_security_groups.clone(),
    };
    if env.routing == Routing::DedicatedAlb {
        let Some(certificate) = &customer.certificate else {
            bail!("production with a custom domain needs `certificate` in customers/{}/customer.toml", customer.name);
        };
        resolved.certificate_arn = Some(certificates::resolve(clients, certificate, &env.hosts, local).await?);
    }
    Ok(resolved)
}

pub async fn platform(clients: &Clients, platform: &Platform, local: bool) -> anyhow::Result<Resolved> {
    let mut resolved = platform_ids(clients, platform).await?;
    if let (ListenerRef::Lookup { .. }, Some(certificate)) =
        (&platform.shared_alb.listener, &platform.shared_alb.certificate)
    {
        // The hosts behind the shared listener are the customers'; `validate` warns about those
        // its certificate does not cover.
        resolved.certificate_arn = Some(certificates::resolve(clients, certificate, &[], local).await?);
    } else if matches!(platform.shared_alb.listener, ListenerRef::Lookup { .. }) {
        bail!("the shared ALB's HTTPS listener needs a certificate: set shared_alb.certificate in customers/platform.toml");
    }
    Ok(resolved)
}

async fn platform_ids(clients: &Clients, platform: &Platform) -> anyhow::Result<Resolved> {
    let vpc_id = vpc(clients, &platform.vpc).await?;
    let subnet_ids = subnets(clients, &vpc_id, &platform.subnets).await?;
    let default_group = || SecurityGroupsRef::Names(vec!["default".into()]);
    let instance_security_groups =
        security_groups(clients, &vpc_id, platform.instance_security_groups.as_ref().unwrap_or(&default_group()))
            .await?;
    let alb_security_groups =
        security_groups(clients, &vpc_id, platform.shared_alb.security_groups.as_ref().unwrap_or(&default_group()))
            .await?;
    let codedeploy_role_arn = role_arn(clients, &platform.codedeploy_service_role).await?;
    let codebuild_role_arn = match &platform.codebuild_service_role {
        Some(role) => Some(role_arn(clients, role).await?),
        None => None,
    };
    Ok(Resolved {
        vpc_id,
        subnet_ids,
        instance_security_groups,
        alb_security_groups,
        database_security_groups: Vec::new(),
        certificate_arn: None,
        codedeploy_role_arn,
        codebuild_role_arn,
        shared_load_balancer: None,
        shared_members: 1,
    })
}

fn tag_filters(tags: &Tags) -> Vec<Filter> {
    tags.iter().map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build()).collect()
}

async fn vpc(clients: &Clients, vpc: &VpcRef) -> anyhow::Result<String> {
    let (filters, what) = match vpc {
        VpcRef::Id(id) => return Ok(id.clone()),
        VpcRef::Default => {
            (vec![Filter::builder().name("is-default").values("true").build()], "the default VPC".to_string())
        }
        VpcRef::Tags(tags) => (tag_filters(tags), format!("a VPC tagged {tags:?}")),
    };
    let out = clients
        .ec2
        .describe_vpcs()
        .set_filters(Some(filters))
        .send()
        .await
        .map_err(|e| failed("cannot look up the VPC", e))?;
    let ids: Vec<String> = out.vpcs().iter().filter_map(|v| v.vpc_id.clone()).collect();
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("{what} does not exist in this region: set network.vpc in customers/platform.toml"),
        many => bail!("{what} matches {} VPCs ({}): make network.vpc precise", many.len(), many.join(", ")),
    }
}

async fn subnets(clients: &Clients, vpc_id: &str, subnets: &SubnetsRef) -> anyhow::Result<Vec<String>> {
    let mut filters = vec![Filter::builder().name("vpc-id").values(vpc_id).build()];
    match subnets {
        SubnetsRef::Ids(ids) => return Ok(ids.clone()),
        SubnetsRef::DefaultForAz => filters.push(Filter::builder().name("default-for-az").values("true").build()),
        SubnetsRef::Tags(tags) => filters.extend(tag_filters(tags)),
    }
    let out = clients
        .ec2
        .describe_subnets()
        .set_filters(Some(filters))
        .send()
        .await
        .map_err(|e| failed("cannot look up the subnets", e))?;
    let mut ids: Vec<String> = out.subnets().iter().filter_map(|s| s.subnet_id.clone()).collect();
    ids.sort();
    if ids.len() < 2 {
        bail!("network.subnets finds {} subnet(s) in {vpc_id}; a load balancer needs two in different zones: fix network.subnets in customers/platform.toml", ids.len());
    }
    Ok(ids)
}

async fn security_groups(clients: &Clients, vpc_id: &str, groups: &SecurityGroupsRef) -> anyhow::Result<Vec<String>> {
    let mut filters = vec![Filter::builder().name("vpc-id").values(vpc_id).build()];
    let expected = match groups {
        SecurityGroupsRef::Ids(ids) => return Ok(ids.clone()),
        SecurityGroupsRef::Names(names) => {
            filters.push(Filter::builder().name("group-name").set_values(Some(names.clone())).build());
            Some(names.len())
        }
        SecurityGroupsRef::Tags(tags) => {
            filters.extend(tag_filters(tags));
            None
        }
    };
    let out = clients
        .ec2
        .describe_security_groups()
        .set_filters(Some(filters))
        .send()
        .await
        .map_err(|e| failed("cannot look up security groups", e))?;
    let mut ids: Vec<String> = out.security_groups().iter().filter_map(|g| g.group_id.clone()).collect();
    ids.sort();
    if ids.is_empty() || expected.is_some_and(|n| n != ids.len()) {
        bail!("security groups {groups:?} are not all in {vpc_id}: create them or fix the config");
    }
    Ok(ids)
}

async fn role_arn(clients: &Clients, role: &RoleRef) -> anyhow::Result<String> {
    match role {
        RoleRef::Arn(arn) => Ok(arn.clone()),
        RoleRef::Name(name) => {
            let me = crate::identity::caller(&clients.sts).await?;
            let partition = me.arn.split(':').nth(1).filter(|p| !p.is_empty()).unwrap_or("aws");
            Ok(format!("arn:{partition}:iam::{}:role/{name}", me.account))
        }
    }
}

/// The shared listener that host rules go on: as configured, or found on the shared load balancer
/// (`member` of the pool, else the first). It is never created here: `platform deploy` makes it.
pub async fn shared_listener(clients: &Clients, platform: &Platform, member: Option<&str>) -> anyhow::Result<String> {
    let (load_balancer, port) = match &platform.shared_alb.listener {
        ListenerRef::Arn(arn) => return Ok(arn.clone()),
        ListenerRef::Lookup { load_balancer, port } => (member.unwrap_or(load_balancer), *port),
    };
    find_listener(clients, load_balancer, port).await?.with_context(|| {
        format!(
            "the shared load balancer `{load_balancer}` has no listener on port {port}: run `cargo xtask platform deploy{}` first",
            clients.flag()
        )
    })
}

/// The listener on `port` of the load balancer `name`; `None` when either is not there.
pub(crate) async fn find_listener(clients: &Clients, name: &str, port: u16) -> anyhow::Result<Option<String>> {
    let out = match clients.elb.describe_load_balancers().names(name).send().await {
        Ok(out) => out,
        Err(e) if super::code(&e) == Some("LoadBalancerNotFound") => return Ok(None),
        Err(e) => return Err(failed("cannot look up the shared load balancer", e)),
    };
    let Some(arn) = out.load_balancers().first().and_then(|lb| lb.load_balancer_arn.clone()) else { return Ok(None) };
    let listeners = clients
        .elb
        .describe_listeners()
        .load_balancer_arn(&arn)
        .send()
        .await
        .map_err(|e| failed("cannot list the shared load balancer's listeners", e))?;
    Ok(listeners.listeners().iter().find(|l| l.port == Some(i32::from(port))).and_then(|l| l.listener_arn.clone()))
}
