//! EC2 launch templates, Auto Scaling groups on them, and their target-tracking policies.

use anyhow::Context;
use aws_sdk_autoscaling::types::{
    LaunchTemplateSpecification, MetricType, PredefinedMetricSpecification, TargetTrackingConfiguration,
};
use aws_sdk_ec2::types::{
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataOptionsRequest, LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData,
    ResourceType, TagSpecification,
};
use vending::plan::{AutoScalingGroup, Kind, LaunchTemplate, Resource, ScalingPolicy, Tags};

use super::elb::{rule_listener, target_group_text};
use super::{code, failed, live_tags, split_list, Clients, Current, Found, Live, Stack};

fn ec2_tags(tags: &Tags) -> Vec<aws_sdk_ec2::types::Tag> {
    tags.iter().map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build()).collect()
}

pub async fn read_launch_template(clients: &Clients, name: &str) -> anyhow::Result<Option<Found>> {
    let out = match clients.ec2.describe_launch_templates().launch_template_names(name).send().await {
        Ok(out) => out,
        Err(e) if code(&e).is_some_and(|c| c.contains("NotFound")) => return Ok(None),
        Err(e) => return Err(failed("describe", e)),
    };
    let Some(template) = out.launch_templates().first() else { return Ok(None) };
    let id = template.launch_template_id.clone().unwrap_or_default();
    let versions = clients
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(&id)
        .versions("$Default")
        .send()
        .await
        .map_err(|e| failed("describe its default version", e))?;
    let version = versions.launch_template_versions().first().context("it has no default version")?;
    let data = version.launch_template_data.clone().context("its default version has no data")?;
    let profile = data
        .iam_instance_profile
        .as_ref()
        .and_then(|p| p.name.clone().or_else(|| p.arn.as_ref().map(|a| a.rsplit('/').next().unwrap_or(a).to_string())))
        .unwrap_or_default();
    let tags = template.tags().iter().filter_map(|t| Some((t.key.clone()?, t.value.clone()?)));
    let live = LaunchTemplate {
        image_id: data.image_id.clone().unwrap_or_default(),
        instance_type: data.instance_type.as_ref().map(|t| t.as_str().to_string()).unwrap_or_default(),
        instance_profile: profile,
        security_groups: data.security_group_ids().to_vec(),
        metadata_http_tokens: data
            .metadata_options
            .as_ref()
            .and_then(|m| m.http_tokens.as_ref())
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        tags: live_tags(tags),
    };
    let mut found = Found::new(Resource::LaunchTemplate(live), id);
    found.extra.insert("version".to_string(), version.version_number.unwrap_or_default().to_string());
    Ok(Some(found))
}

/// The complete data of a version: every new version carries all of it (the emulator ignores
/// `SourceVersion`, and a full version is clearer to review on AWS as well).
fn template_data(d: &LaunchTemplate) -> RequestLaunchTemplateData {
    let tag_specs = [ResourceType::Instance, ResourceType::Volume]
        .into_iter()
        .map(|kind| {
            LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(kind)
                .set_tags(Some(ec2_tags(&d.tags)))
                .build()
        })
        .collect();
    RequestLaunchTemplateData::builder()
        .image_id(&d.image_id)
        .instance_type(aws_sdk_ec2::types::InstanceType::from(d.instance_type.as_str()))
        .iam_instance_profile(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder().name(&d.instance_profile).build(),
        )
        .set_security_group_ids(Some(d.security_groups.clone()))
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::from(d.metadata_http_tokens.as_str()))
                .http_endpoint(aws_sdk_ec2::types::LaunchTemplateInstanceMetadataEndpointState::Enabled)
                .build(),
        )
        .set_tag_specifications(Some(tag_specs))
        .build()
}

pub(crate) async fn apply_launch_template(
    clients: &Clients,
    name: &str,
    d: &LaunchTemplate,
    current: Option<Current<'_, LaunchTemplate>>,
    changed: &[String],
) -> anyhow::Result<()> {
    let ec2 = &clients.ec2;
    let Some(current) = current else {
        ec2.create_launch_template()
            .launch_template_name(name)
            .launch_template_data(template_data(d))
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::LaunchTemplate)
                    .set_tags(Some(ec2_tags(&d.tags)))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| failed("create", e))?;
        return Ok(());
    };
    if changed.iter().any(|f| f != "tags") {
        let created = ec2
            .create_launch_template_version()
            .launch_template_id(current.id)
            .version_description("cargo xtask deploy")
            .launch_template_data(template_data(d))
            .send()
            .await
            .map_err(|e| failed("create a new version", e))?;
        let version =
            created.launch_template_version.and_then(|v| v.version_number).context("AWS returned no version number")?;
        ec2.modify_launch_template()
            .launch_template_id(current.id)
            .default_version(version.to_string())
            .send()
            .await
            .map_err(|e| failed("make the new version the default", e))?;
    }
    if changed.iter().any(|f| f == "tags") {
        let put = ec2.create_tags().resources(current.id).set_tags(Some(ec2_tags(&d.tags))).send();
        let put = async { put.await.map(|_| ()).map_err(|e| failed("tag", e)) };
        super::retag(&d.tags, &current.live.tags, put, |stale| async {
            let keys = stale.into_keys().map(|k| aws_sdk_ec2::types::Tag::builder().key(k).build()).collect();
            let remove = ec2.delete_tags().resources(current.id).set_tags(Some(keys));
            remove.send().await.map(|_| ()).map_err(|e| failed("remove old tags", e))
        })
        .await?;
    }
    Ok(())
}

/// Rolls a group's instances onto its launch template's new default version. AWS does it with an
/// instance refresh; the emulator has none, which the output says.
pub async fn roll_instances(
    clients: &Clients,
    stack: &Stack,
    group: &str,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    if stack.local {
        notes.push(format!(
            "{}: the emulator has no instance refresh (moto 5.2.5), so {group}'s running instances keep the old launch template version; new instances get the new one. Against AWS an instance refresh replaces them.",
            stack.label
        ));
        return Ok(());
    }
    match clients.asg.start_instance_refresh().auto_scaling_group_name(group).send().await {
        Ok(out) => notes.push(format!(
            "{}: instance refresh {} started on {group}: instances are replaced onto the new launch template version (a release waits for it to end)",
            stack.label,
            out.instance_refresh_id.unwrap_or_default()
        )),
        Err(e) if code(&e) == Some("InstanceRefreshInProgress") => notes.push(format!(
            "{}: an instance refresh is already running on {group}; start another when it ends to pick up this version",
            stack.label
        )),
        Err(e) => return Err(failed(&format!("cannot start an instance refresh on {group}"), e)),
    }
    Ok(())
}

pub async fn read_auto_scaling_group(clients: &Clients, live: &Live, name: &str) -> anyhow::Result<Option<Found>> {
    let out = clients
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .map_err(|e| failed("describe", e))?;
    let Some(group) = out.auto_scaling_groups().first() else { return Ok(None) };
    let launch = match (&group.launch_template, &group.launch_configuration_name) {
        (Some(t), _) => {
            format!("{}:{}", t.launch_template_name.clone().unwrap_or_default(), t.version.clone().unwrap_or_default())
        }
        (None, Some(config)) => format!("launch-configuration:{config}"),
        (None, None) => String::new(),
    };
    let tags = group.tags().iter().filter_map(|t| Some((t.key.clone()?, t.value.clone()?)));
    let found = AutoScalingGroup {
        launch_template: launch,
        min: group.min_size.unwrap_or_default(),
        max: group.max_size.unwrap_or_default(),
        desired: group.desired_capacity.unwrap_or_default(),
        subnets: split_list(group.vpc_zone_identifier.as_deref().unwrap_or_default()),
        target_groups: group.target_group_arns().iter().map(|arn| target_group_text(live, arn)).collect(),
        health_check_type: group.health_check_type.clone().unwrap_or_default(),
        health_check_grace_period: group.health_check_grace_period.unwrap_or_default(),
        tags: live_tags(tags),
    };
    Ok(Some(Found::new(Resource::AutoScalingGroup(found), name.to_string())))
}

fn asg_tags(group: &str, tags: &Tags) -> Vec<aws_sdk_autoscaling::types::Tag> {
    tags.iter()
        .map(|(k, v)| {
            aws_sdk_autoscaling::types::Tag::builder()
                .resource_id(group)
                .resource_type("auto-scaling-group")
                .key(k)
                .value(v)
                .propagate_at_launch(true)
                .build()
        })
        .collect()
}

fn target_group_arns(live: &Live, d: &AutoScalingGroup) -> anyhow::Result<Vec<String>> {
    d.target_groups
        .iter()
        .map(|name| {
            live.id(Kind::TargetGroup, name)
                .map(str::to_string)
                .with_context(|| format!("target group {name} does not exist"))
        })
        .collect()
}

fn launch_template(d: &AutoScalingGroup) -> anyhow::Result<LaunchTemplateSpecification> {
    let (name, version) = d.launch_template.split_once(':').context("launch_template is NAME:VERSION")?;
    Ok(LaunchTemplateSpecification::builder().launch_template_name(name).version(version).build())
}

pub(crate) async fn apply_auto_scaling_group(
    clients: &Clients,
    live: &Live,
    name: &str,
    d: &AutoScalingGroup,
    current: Option<Current<'_, AutoScalingGroup>>,
    changed: &[String],
) -> anyhow::Result<()> {
    let asg = &clients.asg;
    let wanted_groups = target_group_arns(live, d)?;
    let Some(current) = current else {
        asg.create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(launch_template(d)?)
            .min_size(d.min)
            .max_size(d.max)
            .desired_capacity(d.desired)
            .vpc_zone_identifier(d.subnets.join(","))
            .set_target_group_arns(Some(wanted_groups))
            .health_check_type(&d.health_check_type)
            .health_check_grace_period(d.health_check_grace_period)
            .set_tags(Some(asg_tags(name, &d.tags)))
            .send()
            .await
            .map_err(|e| failed("create", e))?;
        return Ok(());
    };
    let is = |f: &str| changed.iter().any(|c| c == f);
    if ["launch_template", "min", "max", "subnets", "health_check_type", "health_check_grace_period"]
        .iter()
        .any(|f| is(f))
    {
        asg.update_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(launch_template(d)?)
            .min_size(d.min)
            .max_size(d.max)
            .vpc_zone_identifier(d.subnets.join(","))
            .health_check_type(&d.health_check_type)
            .health_check_grace_period(d.health_check_grace_period)
            .send()
            .await
            .map_err(|e| failed("update", e))?;
    }
    if is("target_groups") {
        let old_arns: Vec<String> = current
            .live
            .target_groups
            .iter()
            .map(|name| live.id(Kind::TargetGroup, name).map(str::to_string).unwrap_or_else(|| name.clone()))
            .collect();
        let stale: Vec<String> = old_arns.iter().filter(|a| !wanted_groups.contains(a)).cloned().collect();
        asg.attach_load_balancer_target_groups()
            .auto_scaling_group_name(name)
            .set_target_group_arns(Some(wanted_groups.clone()))
            .send()
            .await
            .map_err(|e| failed("attach target groups", e))?;
        if !stale.is_empty() {
            asg.detach_load_balancer_target_groups()
                .auto_scaling_group_name(name)
                .set_target_group_arns(Some(stale))
                .send()
                .await
                .map_err(|e| failed("detach target groups", e))?;
        }
    }
    if is("tags") {
        let put = asg.create_or_update_tags().set_tags(Some(asg_tags(name, &d.tags))).send();
        let put = async { put.await.map(|_| ()).map_err(|e| failed("tag", e)) };
        super::retag(&d.tags, &current.live.tags, put, |stale| async move {
            let remove = asg.delete_tags().set_tags(Some(asg_tags(name, &stale)));
            remove.send().await.map(|_| ()).map_err(|e| failed("remove old tags", e))
        })
        .await?;
    }
    Ok(())
}

pub(crate) async fn read_scaling_policy(
    clients: &Clients,
    name: &str,
    d: &ScalingPolicy,
) -> anyhow::Result<Option<Found>> {
    let out = clients
        .asg
        .describe_policies()
        .auto_scaling_group_name(&d.auto_scaling_group)
        .policy_names(name)
        .send()
        .await
        .map_err(|e| failed("describe", e))?;
    let Some(policy) = out.scaling_policies().first() else { return Ok(None) };
    let tracking = policy.target_tracking_configuration.as_ref();
    let metric = tracking
        .and_then(|t| t.predefined_metric_specification.as_ref())
        .and_then(|m| m.predefined_metric_type.as_ref())
        .map(|t| t.as_str().to_string())
        .unwrap_or_default();
    let target = tracking.and_then(|t| t.target_value).unwrap_or_default();
    // Found by its group and name: those inputs are the desired ones.
    let found = ScalingPolicy { metric, target, ..d.clone() };
    Ok(Some(Found::new(Resource::ScalingPolicy(found), policy.policy_arn.clone().unwrap_or_default())))
}

/// `app/<load balancer>/<id>/targetgroup/<target group>/<id>`: what a request-count policy counts.
fn resource_label(listener_arn: &str, target_group_arn: &str) -> anyhow::Result<String> {
    let balancer = listener_arn
        .split_once(":listener/")
        .and_then(|(_, rest)| rest.rsplit_once('/'))
        .map(|(lb, _)| lb)
        .context("the listener ARN has no load balancer part")?;
    let group = target_group_arn.rsplit(':').next().context("the target group ARN is malformed")?;
    Ok(format!("{balancer}/{group}"))
}

pub(crate) async fn apply_scaling_policy(
    clients: &Clients,
    stack: &Stack,
    live: &Live,
    name: &str,
    d: &ScalingPolicy,
) -> anyhow::Result<()> {
    let metric = MetricType::from(d.metric.as_str());
    let mut specification = PredefinedMetricSpecification::builder().predefined_metric_type(metric.clone());
    if metric == MetricType::AlbRequestCountPerTarget {
        let listener =
            rule_listener(stack, live, &d.listener).context("its load balancer's listener does not exist")?;
        let group = live.id(Kind::TargetGroup, &d.target_group).context("its target group does not exist")?;
        specification = specification.resource_label(resource_label(listener, group)?);
    }
    let tracking = TargetTrackingConfiguration::builder()
        .predefined_metric_specification(specification.build())
        .target_value(d.target)
        .build();
    clients
        .asg
        .put_scaling_policy()
        .auto_scaling_group_name(&d.auto_scaling_group)
        .policy_name(name)
        .policy_type("TargetTrackingScaling")
        .target_tracking_configuration(tracking)
        .send()
        .await
        .map_err(|e| failed("put", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn resource_label_joins_balancer_and_group() {
        let label = super::resource_label(
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/shop/50dc6c495c0c9188/f2f7dc8efc522ab2",
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/shop-tg/943f017f100becff",
        )
        .unwrap();
        assert_eq!(label, "app/shop/50dc6c495c0c9188/targetgroup/shop-tg/943f017f100becff");
    }

    #[test]
    fn bad_arns_are_errors() {
        assert!(super::resource_label("arn:aws:elasticloadbalancing:x", "y").is_err());
    }
}
