//! CodeDeploy: the customer's application and each environment's deployment group (in place,
//! with traffic control through the target group, rollback on failure and on stop).

use anyhow::{bail, Context};
use aws_sdk_codedeploy::types::{
    AutoRollbackConfiguration, AutoRollbackEvent, ComputePlatform, DeploymentOption, DeploymentStyle, DeploymentType,
    LoadBalancerInfo, TargetGroupInfo,
};
use vending::plan::{self, AutoRollback, CodeDeployApplication, DeploymentGroup, Kind, Resource, Word};

use super::{code, failed, Clients, Found, Live, Stack};

pub async fn read_application(clients: &Clients, name: &str) -> anyhow::Result<Option<Found>> {
    let out = match clients.codedeploy.get_application().application_name(name).send().await {
        Ok(out) => out,
        Err(e) if code(&e) == Some("ApplicationDoesNotExistException") => return Ok(None),
        Err(e) => return Err(failed("get", e)),
    };
    let Some(app) = out.application else { return Ok(None) };
    let live = CodeDeployApplication {
        compute_platform: app.compute_platform.map(|p| p.as_str().to_string()).unwrap_or_default(),
    };
    Ok(Some(Found::new(Resource::CodeDeployApplication(live), app.application_id.unwrap_or_default())))
}

pub(crate) async fn apply_application(clients: &Clients, name: &str, d: &CodeDeployApplication) -> anyhow::Result<()> {
    match clients
        .codedeploy
        .create_application()
        .application_name(name)
        .compute_platform(ComputePlatform::from(d.compute_platform.as_str()))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        // The customer's other environments share the application: a deploy of one of them may
        // have made it meanwhile. Then it only has to be the right kind.
        Err(e) if code(&e) == Some("ApplicationAlreadyExistsException") => {
            match read_application(clients, name).await?.map(|f| f.resource) {
                Some(Resource::CodeDeployApplication(live)) if live == *d => Ok(()),
                _ => bail!("application {name} exists with another compute platform: change it by hand, or rename"),
            }
        }
        Err(e) => Err(failed("create", e)),
    }
}

fn parts(name: &str) -> anyhow::Result<(&str, &str)> {
    name.split_once('/').context("a deployment group is named APPLICATION/GROUP")
}

/// The deployment group, or none when it (or its application) does not exist.
pub(crate) async fn get_group(
    clients: &Clients,
    app: &str,
    group: &str,
) -> anyhow::Result<Option<aws_sdk_codedeploy::types::DeploymentGroupInfo>> {
    let out = clients.codedeploy.get_deployment_group().application_name(app).deployment_group_name(group).send().await;
    match out {
        Ok(out) => Ok(out.deployment_group_info),
        Err(e)
            if matches!(
                code(&e),
                Some("DeploymentGroupDoesNotExistException" | "ApplicationDoesNotExistException")
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(failed("read the deployment group", e)),
    }
}

pub async fn read_deployment_group(clients: &Clients, name: &str) -> anyhow::Result<Option<Found>> {
    let (app, group) = parts(name)?;
    let Some(info) = get_group(clients, app, group).await? else { return Ok(None) };
    let style = info.deployment_style.as_ref();
    let style = plan::DeploymentStyle {
        deployment_type: Word::parse(style.and_then(|s| s.deployment_type.as_ref()).map_or("", |t| t.as_str())),
        option: Word::parse(style.and_then(|s| s.deployment_option.as_ref()).map_or("", |o| o.as_str())),
    };
    let rollback = match &info.auto_rollback_configuration {
        Some(r) if r.enabled => AutoRollback::On(r.events().iter().map(|e| Word::parse(e.as_str())).collect()),
        _ => AutoRollback::Off,
    };
    let target_groups = info
        .load_balancer_info
        .as_ref()
        .map(|l| l.target_group_info_list().iter().filter_map(|t| t.name.clone()).collect())
        .unwrap_or_default();
    let live = DeploymentGroup {
        service_role: info.service_role_arn.clone().unwrap_or_default(),
        auto_scaling_groups: info.auto_scaling_groups().iter().filter_map(|g| g.name.clone()).collect(),
        target_groups,
        deployment_style: style,
        deployment_config: info.deployment_config_name.clone().unwrap_or_default(),
        auto_rollback: rollback,
    };
    Ok(Some(Found::new(Resource::DeploymentGroup(live), info.deployment_group_id.unwrap_or_default())))
}

fn auto_rollback(d: &DeploymentGroup) -> AutoRollbackConfiguration {
    match &d.auto_rollback {
        AutoRollback::Off => AutoRollbackConfiguration::builder().enabled(false).build(),
        AutoRollback::On(events) => AutoRollbackConfiguration::builder()
            .enabled(true)
            .set_events(Some(events.iter().map(|e| AutoRollbackEvent::from(e.as_str())).collect()))
            .build(),
    }
}

fn deployment_style(d: &DeploymentGroup) -> DeploymentStyle {
    DeploymentStyle::builder()
        .deployment_type(DeploymentType::from(d.deployment_style.deployment_type.as_str()))
        .deployment_option(DeploymentOption::from(d.deployment_style.option.as_str()))
        .build()
}

fn load_balancer_info(d: &DeploymentGroup) -> LoadBalancerInfo {
    let target_groups = d.target_groups.iter().map(|n| TargetGroupInfo::builder().name(n).build()).collect();
    LoadBalancerInfo::builder().set_target_group_info_list(Some(target_groups)).build()
}

/// A deployment group's settings, on a create or an update request alike (the two requests are
/// different types with the same setters).
macro_rules! group_settings {
    ($request:expr, $d:expr) => {
        $request
            .service_role_arn(&$d.service_role)
            .set_auto_scaling_groups(Some($d.auto_scaling_groups.clone()))
            .load_balancer_info(load_balancer_info($d))
            .deployment_style(deployment_style($d))
            .deployment_config_name(&$d.deployment_config)
            .auto_rollback_configuration(auto_rollback($d))
    };
}

pub(crate) async fn apply_deployment_group(
    clients: &Clients,
    stack: &Stack,
    live: &Live,
    name: &str,
    d: &DeploymentGroup,
    exists: bool,
) -> anyhow::Result<()> {
    let (app, group) = parts(name)?;
    // The emulator does not check these; AWS does, with a less helpful message.
    for name in &d.auto_scaling_groups {
        live.id(Kind::AutoScalingGroup, name).with_context(|| format!("Auto Scaling group {name} does not exist"))?;
    }
    for name in &d.target_groups {
        live.id(Kind::TargetGroup, name).with_context(|| format!("target group {name} does not exist"))?;
    }
    let codedeploy = &clients.codedeploy;
    if !exists {
        let request = codedeploy.create_deployment_group().application_name(app).deployment_group_name(group);
        group_settings!(request, d).send().await.map_err(|e| failed("create", e))?;
        return Ok(());
    }
    if stack.local {
        bail!("the emulator cannot update a deployment group (UpdateDeploymentGroup is missing in moto 5.2.5); against AWS the tool updates it in place");
    }
    let request = codedeploy.update_deployment_group().application_name(app).current_deployment_group_name(group);
    group_settings!(request, d).send().await.map_err(|e| failed("update", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The update path cannot run against the emulator (no UpdateDeploymentGroup): the two
    /// requests are compared as built.
    #[test]
    fn create_and_update_carry_the_same_settings() -> anyhow::Result<()> {
        let config = aws_sdk_codedeploy::Config::builder()
            .behavior_version(aws_sdk_codedeploy::config::BehaviorVersion::latest())
            .build();
        let client = aws_sdk_codedeploy::Client::from_conf(config);
        let d = DeploymentGroup {
            service_role: "arn:aws:iam::123456789012:role/vend-codedeploy".into(),
            auto_scaling_groups: vec!["acme-prod".into()],
            target_groups: vec!["acme-prod-tg".into()],
            deployment_style: plan::DeploymentStyle {
                deployment_type: Word::Known(plan::DeploymentType::InPlace),
                option: Word::Known(plan::DeploymentOption::WithTrafficControl),
            },
            deployment_config: "CodeDeployDefault.OneAtATime".into(),
            auto_rollback: AutoRollback::On(
                [plan::RollbackEvent::DeploymentFailure, plan::RollbackEvent::DeploymentStopOnRequest]
                    .into_iter()
                    .map(Word::Known)
                    .collect(),
            ),
        };
        let create = group_settings!(client.create_deployment_group(), &d);
        let update = group_settings!(client.update_deployment_group(), &d);
        let (c, u) = (create.as_input(), update.as_input());
        assert_eq!(c.get_service_role_arn().as_deref(), Some(d.service_role.as_str()));
        assert_eq!(c.get_service_role_arn(), u.get_service_role_arn());
        assert_eq!(c.get_auto_scaling_groups().as_deref(), Some(&["acme-prod".to_string()][..]));
        assert_eq!(c.get_auto_scaling_groups(), u.get_auto_scaling_groups());
        assert_eq!(c.get_load_balancer_info(), u.get_load_balancer_info());
        let style = c.get_deployment_style().clone().unwrap();
        assert_eq!(style.deployment_type, Some(DeploymentType::InPlace));
        assert_eq!(style.deployment_option, Some(DeploymentOption::WithTrafficControl));
        assert_eq!(c.get_deployment_style(), u.get_deployment_style());
        assert_eq!(c.get_deployment_config_name(), u.get_deployment_config_name());
        let rollback = c.get_auto_rollback_configuration().clone().unwrap();
        assert!(rollback.enabled);
        assert_eq!(
            rollback.events(),
            [AutoRollbackEvent::DeploymentFailure, AutoRollbackEvent::DeploymentStopOnRequest]
        );
        assert_eq!(c.get_auto_rollback_configuration(), u.get_auto_rollback_configuration());
        Ok(())
    }
}
