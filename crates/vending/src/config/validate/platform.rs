//! `customers/platform.toml`: naming, region, network, the shared ALB, the state bucket, the base
//! AMI, IAM and the platform's tags.

use crate::config::model::*;
use crate::config::raw::*;
use crate::names;

use super::refs::{certificate, id_list, security_groups, tag_lookup, user_tags};
use super::{Checker, File};

pub(super) fn validate_platform(raw: &RawPlatform, file: &File<'_>, c: &mut Checker) -> Option<Platform> {
    let prefix = c.required(
        file,
        "naming.prefix",
        raw.naming.as_ref().and_then(|n| n.prefix.clone()),
        "set `[naming] prefix`, a short lowercase name of your organisation; it makes S3 bucket names globally unique",
    );
    if let Some(prefix) = &prefix {
        c.rule(file, "naming.prefix", "prefix", prefix, names::customer_or_env_name);
    }
    let region = c.required(
        file,
        "aws.region",
        raw.aws.as_ref().and_then(|a| a.region.clone()),
        "set `[aws] region`, e.g. \"eu-west-1\"",
    );
    if let Some(region) = &region {
        c.rule(file, "aws.region", "region", region, names::region);
    }
    let (vpc, subnets, instance_security_groups) = network(raw.network.as_ref(), file, c);
    let shared_alb = shared_alb(raw.shared_alb.as_ref(), file, c);
    let state_bucket = c.required(
        file,
        "state.bucket",
        raw.state.as_ref().and_then(|s| s.bucket.clone()),
        "name the S3 bucket that holds AMI records and deploy state",
    );
    if let Some(bucket) = &state_bucket {
        c.rule(file, "state.bucket", "bucket name", bucket, names::bucket_name);
    }
    let ami = ami(raw.ami.as_ref(), file, c);
    let (role, instance_profile) = iam(raw.iam.as_ref(), file, c);
    let codebuild_role = match raw.iam.as_ref().and_then(|i| i.codebuild_service_role.as_ref()) {
        None => Some(None),
        Some(RawRole::Arn(arn)) => c
            .rule(file, "iam.codebuild_service_role", "role ARN", arn, |v| names::arn(v, "iam"))
            .then(|| Some(RoleRef::Arn(arn.clone()))),
        Some(RawRole::Lookup(l)) => Some(Some(RoleRef::Name(l.name.clone()))),
    };
    let tags = user_tags(c, file, "tags", raw.tags.as_ref());
    let approval_emails = raw.approval_emails.clone().unwrap_or_default();
    for (i, email) in approval_emails.iter().enumerate() {
        c.rule(file, &format!("approval_emails[{i}]"), "e-mail", email, names::email);
    }
    let timeout_minutes = match raw.approval.as_ref().and_then(|a| a.timeout_minutes) {
        Some(value) => {
            c.range(file, "approval.timeout_minutes", value, super::environment::APPROVAL_TIMEOUT_RANGE, " minutes")
        }
        None => Some(crate::approval::DEFAULT_TIMEOUT_MINUTES),
    };
    if raw.approval.is_some() && approval_emails.is_empty() {
        c.error_help(
            file,
            "approval",
            "`[approval]` without `approval_emails`: `platform deploy` is gated only when approvers are named",
            "add approval_emails = [\"platform@example.com\"], or remove `[approval]`",
        );
    }
    let approval_topic = prefix.as_deref().map(|p| names::approval_topic(p, "_platform"));
    Some(Platform {
        prefix: prefix?,
        region: region?,
        vpc: vpc?,
        subnets: subnets?,
        instance_security_groups: instance_security_groups.flatten(),
        shared_alb: shared_alb?,
        state_bucket: state_bucket?,
        ami: ami?,
        codedeploy_service_role: role?,
        codebuild_service_role: codebuild_role?,
        instance_profile: instance_profile?,
        approval: Approval { required: !approval_emails.is_empty(), timeout_minutes: timeout_minutes? },
        approval_topic: approval_topic?,
        approval_emails,
        tags,
    })
}

type Network = (Option<VpcRef>, Option<SubnetsRef>, Option<Option<SecurityGroupsRef>>);

fn network(network: Option<&RawNetwork>, file: &File<'_>, c: &mut Checker) -> Network {
    let vpc = match network.and_then(|n| n.vpc.as_ref()) {
        None => Some(VpcRef::Default),
        Some(RawVpc::Id(id)) => {
            c.rule(file, "network.vpc", "VPC id", id, |v| names::resource_id(v, "vpc")).then(|| VpcRef::Id(id.clone()))
        }
        Some(RawVpc::Lookup(lookup)) => {
            tag_lookup(c, file, "network.vpc", lookup).map(|t| t.map_or(VpcRef::Default, VpcRef::Tags))
        }
    };
    let subnets = match network.and_then(|n| n.subnets.as_ref()) {
        None => Some(SubnetsRef::DefaultForAz),
        Some(RawSubnets::Ids(ids)) => id_list(c, file, "network.subnets", "subnet", ids).map(SubnetsRef::Ids),
        Some(RawSubnets::Lookup(lookup)) => {
            tag_lookup(c, file, "network.subnets", lookup).map(|t| t.map_or(SubnetsRef::DefaultForAz, SubnetsRef::Tags))
        }
    };
    let security_groups = network
        .and_then(|n| n.security_groups.as_ref())
        .map(|g| security_groups(c, file, "network.security_groups", g));
    (vpc, subnets, security_groups)
}

fn shared_alb(alb: Option<&RawSharedAlb>, file: &File<'_>, c: &mut Checker) -> Option<SharedAlb> {
    let name = c.required(
        file,
        "shared_alb.name",
        alb.and_then(|a| a.name.clone()),
        "name the shared ALB that carries the host rules of customers without a dedicated one",
    );
    if let Some(name) = &name {
        c.rule(file, "shared_alb.name", "load balancer name", name, names::load_balancer_name);
    }
    let listener = match alb.and_then(|a| a.listener.as_ref()) {
        None => name.clone().map(|name| ListenerRef::Lookup { load_balancer: name, port: 443 }),
        Some(RawListener::Arn(arn)) => c
            .rule(file, "shared_alb.listener", "listener ARN", arn, |v| names::arn(v, "elasticloadbalancing"))
            .then(|| ListenerRef::Arn(arn.clone())),
        Some(RawListener::Lookup(l)) => c
            .range(file, "shared_alb.listener.port", l.port, 1..=65535, "")
            .map(|port| ListenerRef::Lookup { load_balancer: l.load_balancer.clone(), port: port as u16 }),
    };
    let certificate =
        alb.and_then(|a| a.certificate.as_ref()).and_then(|cert| certificate(c, file, "shared_alb.certificate", cert));
    let security_groups =
        alb.and_then(|a| a.security_groups.as_ref()).map(|g| security_groups(c, file, "shared_alb.security_groups", g));
    let rules_per_alb = match alb.and_then(|a| a.rules_per_alb) {
        None => Some(crate::pool::DEFAULT_RULES_PER_ALB),
        Some(rules) => c.range(file, "shared_alb.rules_per_alb", rules, 1..=10_000, " rules"),
    };
    Some(SharedAlb {
        name: name?,
        listener: listener?,
        rules_per_alb: rules_per_alb?,
        certificate,
        security_groups: security_groups.flatten(),
    })
}

fn ami(ami: Option<&RawPlatformAmi>, file: &File<'_>, c: &mut Checker) -> Option<PlatformAmi> {
    let base = match ami.and_then(|a| a.base.as_ref()) {
        None => {
            c.error_help(
                file,
                "ami.base",
                "missing `ami.base`",
                "give an AMI id or { name = \"al2023-ami-2023.*-x86_64\", owners = [\"amazon\"] }",
            );
            None
        }
        Some(RawAmi::Id(id)) => {
            c.rule(file, "ami.base", "AMI id", id, |v| names::resource_id(v, "ami")).then(|| AmiRef::Id(id.clone()))
        }
        Some(RawAmi::Lookup(l)) => {
            if l.owners.is_empty() {
                c.error_help(
                    file,
                    "ami.base.owners",
                    "`ami.base.owners` is empty",
                    "Packer requires an owner for an AMI filter, e.g. [\"amazon\"]",
                );
            }
            Some(AmiRef::Filter { name: l.name.clone(), owners: l.owners.clone() })
        }
    };
    let local_base_name = c.required(file, "ami.local_base_name", ami.and_then(|a| a.local_base_name.clone()), "give the exact name of a base AMI that the local emulator ships, e.g. \"al2023-ami-2023.12.20260930.0-kernel-6.1-x86_64\"");
    let ssh_username = ami.and_then(|a| a.ssh_username.clone()).unwrap_or_else(|| "ec2-user".into());
    c.rule(file, "ami.ssh_username", "ssh user", &ssh_username, names::unix_user);
    let builder_instance_type = ami.and_then(|a| a.builder_instance_type.clone()).unwrap_or_else(|| "t3.small".into());
    c.rule(file, "ami.builder_instance_type", "instance type", &builder_instance_type, names::instance_type);
    let volume_size_gb =
        c.range(file, "ami.volume_size_gb", ami.and_then(|a| a.volume_size_gb).unwrap_or(8), 1..=16384, " GiB");
    Some(PlatformAmi {
        base: base?,
        local_base_name: local_base_name?,
        ssh_username,
        builder_instance_type,
        volume_size_gb: volume_size_gb?,
    })
}

fn iam(iam: Option<&RawIam>, file: &File<'_>, c: &mut Checker) -> (Option<RoleRef>, Option<String>) {
    let role = match iam.and_then(|i| i.codedeploy_service_role.as_ref()) {
        None => {
            c.error_help(
                file,
                "iam.codedeploy_service_role",
                "missing `iam.codedeploy_service_role`",
                "give the ARN of CodeDeploy's service role, or { name = \"...\" }",
            );
            None
        }
        Some(RawRole::Arn(arn)) => c
            .rule(file, "iam.codedeploy_service_role", "role ARN", arn, |v| names::arn(v, "iam"))
            .then(|| RoleRef::Arn(arn.clone())),
        Some(RawRole::Lookup(l)) => Some(RoleRef::Name(l.name.clone())),
    };
    let instance_profile = c.required(
        file,
        "iam.instance_profile",
        iam.and_then(|i| i.instance_profile.clone()),
        "name the instance profile of the application instances",
    );
    if let Some(profile) = instance_profile.as_deref().filter(|p| p.starts_with("arn:")) {
        c.rule(file, "iam.instance_profile", "instance profile ARN", profile, |v| names::arn(v, "iam"));
    }
    (role, instance_profile)
}
