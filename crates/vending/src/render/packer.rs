//! Model → Packer HCL2 template (amazon-ebs), built as an HCL tree with hcl-rs and formatted by
//! it, so every string is escaped by the library (`${` → `$${`, quotes, newlines).
//!
//! Commit metadata enters as variables at build time: the committed template does not change
//! per commit, and no commit text is ever parsed as HCL. Two named builds share one source:
//! `amazon-ebs.aws` (SSH, provisioners) and `amazon-ebs.local` (the local emulator: no SSH,
//! provisioners skipped, the EC2 endpoint from `var.ec2_endpoint`, which Packer 1.6 needs because
//! it ignores `AWS_ENDPOINT_URL`).

use std::fmt::Write as _;

use hcl::expr::{Expression, FuncCall, Object, ObjectKey, TemplateExpr, Traversal, Variable};
use hcl::{Block, Body};

use crate::config::model::{AmiRef, Customer, Environment, Platform};

/// Variables `cargo xtask ami` sets; the defaults describe a build outside the tool.
pub const COMMIT_VARIABLES: &[&str] = &["commit_id", "commit_time", "commit_author", "commit_message"];
/// The AMI description limit of EC2.
pub const DESCRIPTION_LIMIT: usize = 255;
pub const AWS_BUILD: &str = "amazon-ebs.aws";
pub const LOCAL_BUILD: &str = "amazon-ebs.local";

pub fn manifest_file(customer: &str, env: &str) -> String {
    format!("manifest-{customer}-{env}.json")
}

fn var(name: &str) -> Expression {
    Traversal::builder(Variable::unchecked("var")).attr(name).build().into()
}

fn ident(name: &str) -> Expression {
    Variable::unchecked(name).into()
}

fn string_variable(name: &str, default: &str, description: &str) -> Block {
    Block::builder("variable")
        .add_label(name)
        .add_attribute(("type", ident("string")))
        .add_attribute(("default", default))
        .add_attribute(("description", description))
        .build()
}

/// A string literal of free text. hcl-rs 0.20 escapes template markers wrongly once a string has
/// had one (`${x}$${` comes out as `"$${x}$${"`, which HCL reads as `${x}${`; the round-trip
/// property test found it), so text is escaped here by the HCL spec and given to hcl-rs as a
/// finished quoted template: quotes, backslashes and control characters as escapes, then every
/// `${` as `$${` and every `%{` as `%%{`.
pub fn text(s: &str) -> Expression {
    let mut quoted = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04X}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    let quoted = quoted.replace("${", "$${").replace("%{", "%%{");
    Expression::TemplateExpr(Box::new(TemplateExpr::QuotedString(quoted)))
}

fn object(entries: impl IntoIterator<Item = (String, Expression)>) -> Expression {
    let object: Object<ObjectKey, Expression> =
        entries.into_iter().map(|(k, v)| (ObjectKey::Expression(text(&k)), v)).collect();
    Expression::Object(object)
}

pub fn render(platform: &Platform, customer: &Customer, env: &Environment) -> String {
    let body = variables(platform).add_block(source(platform, customer, env)).add_block(build(customer, env)).build();

    // hcl-rs formats any tree it can represent; a failure here is a bug in this function.
    let text = hcl::format::to_string(&body).unwrap_or_else(|e| format!("# rendering failed: {e}\n"));
    let mut out = super::comment("#", &super::header(&customer.name, &env.name));
    out.push('\n');
    out.push_str(&text);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The template's variables: the commit's (set by `cargo xtask ami`), `dirty`, the emulator's
/// endpoint and the base image.
fn variables(platform: &Platform) -> hcl::BodyBuilder {
    let mut body = Body::builder();
    for name in COMMIT_VARIABLES {
        body = body.add_block(string_variable(name, "unknown", "Set by `cargo xtask ami` from git."));
    }
    body = body
        .add_block(string_variable(
            "dirty",
            "false",
            "\"true\" when the AMI was built from a working tree with uncommitted changes.",
        ))
        .add_block(string_variable(
            "ec2_endpoint",
            "",
            "EC2 endpoint of the local emulator, for the amazon-ebs.local build only.",
        ));
    body = body.add_block(match &platform.ami.base {
        AmiRef::Filter { name, .. } => {
            string_variable("source_ami_name", name, "Name filter of the base AMI; the local build pins an exact name.")
        }
        AmiRef::Id(id) => {
            string_variable("source_ami", id, "The base AMI; the local build gives the emulator's image instead.")
        }
    });

    body
}

/// The amazon-ebs source both builds share: the image's name, description and tags, the base
/// image, the root volume.
fn source(platform: &Platform, customer: &Customer, env: &Environment) -> Block {
    let names = &env.names;
    let mut tags: Vec<(String, Expression)> = env.tags.iter().map(|(k, v)| (k.clone(), text(v))).collect();
    tags.push(("CustomerName".into(), text(&customer.display_name)));
    tags.push(("Commit".into(), var("commit_id")));
    tags.push(("Dirty".into(), var("dirty")));
    tags.sort_by(|a, b| a.0.cmp(&b.0));

    let description = FuncCall::builder("substr")
        .arg(
            FuncCall::builder("format")
                .arg("commit id: %s / time stamp: %s / commit by: %s / message: %s")
                .arg(var("commit_id"))
                .arg(var("commit_time"))
                .arg(var("commit_author"))
                .arg(var("commit_message"))
                .build(),
        )
        .arg(0)
        .arg(DESCRIPTION_LIMIT as u64)
        .build();
    let ami_name = FuncCall::builder("format")
        .arg("%s-%s")
        .arg(names.ami_name_prefix.as_str())
        .arg(FuncCall::builder("formatdate").arg("YYYYMMDDhhmmss").arg(FuncCall::new("timestamp")).build())
        .build();

    let mut source = Block::builder("source")
        .add_label("amazon-ebs")
        .add_label("image")
        .add_attribute(("region", platform.region.as_str()))
        .add_attribute(("instance_type", platform.ami.builder_instance_type.as_str()))
        .add_attribute(("ami_name", ami_name))
        .add_attribute(("ami_description", description))
        .add_attribute(("ssh_username", platform.ami.ssh_username.as_str()));
    source = match &platform.ami.base {
        AmiRef::Id(_) => source.add_attribute(("source_ami", var("source_ami"))),
        AmiRef::Filter { owners, .. } => source.add_block(
            Block::builder("source_ami_filter")
                .add_attribute(("filters", object([("name".to_string(), var("source_ami_name"))])))
                .add_attribute((
                    "owners",
                    Expression::Array(owners.iter().map(|o| Expression::String(o.clone())).collect()),
                ))
                .add_attribute(("most_recent", true))
                .build(),
        ),
    };
    source
        .add_block(
            Block::builder("launch_block_device_mappings")
                .add_attribute(("device_name", "/dev/xvda"))
                .add_attribute(("volume_size", u64::from(platform.ami.volume_size_gb)))
                .add_attribute(("volume_type", "gp3"))
                // gp3's baseline; Packer 1.6 requires both to be given for gp3.
                .add_attribute(("iops", 3000))
                .add_attribute(("throughput", 125))
                .add_attribute(("delete_on_termination", true))
                .build(),
        )
        .add_attribute(("tags", object(tags.clone())))
        .add_attribute(("snapshot_tags", object(tags.clone())))
        .add_attribute(("run_tags", object(tags)))
        .build()
}

/// The two builds (on AWS over SSH with the provisioners, locally with no communicator) and the
/// manifest post-processor.
fn build(customer: &Customer, env: &Environment) -> Block {
    let mut build = Block::builder("build")
        .add_block(
            Block::builder("source")
                .add_label("source.amazon-ebs.image")
                .add_attribute(("name", "aws"))
                .add_attribute(("communicator", "ssh"))
                .build(),
        )
        .add_block(
            Block::builder("source")
                .add_label("source.amazon-ebs.image")
                .add_attribute(("name", "local"))
                .add_attribute(("communicator", "none"))
                .add_attribute(("custom_endpoint_ec2", var("ec2_endpoint")))
                .build(),
        );
    if !customer.provision.is_empty() {
        build = build.add_block(
            Block::builder("provisioner")
                .add_label("shell")
                .add_attribute(("only", Expression::Array(vec![Expression::String(AWS_BUILD.into())])))
                .add_attribute(("inline", Expression::Array(customer.provision.iter().map(|c| text(c)).collect())))
                .build(),
        );
    }
    build
        .add_block(
            Block::builder("post-processor")
                .add_label("manifest")
                .add_attribute(("output", manifest_file(&customer.name, &env.name)))
                .add_attribute(("strip_path", true))
                .add_attribute((
                    "custom_data",
                    object([
                        ("customer".to_string(), Expression::String(customer.name.clone())),
                        ("environment".to_string(), Expression::String(env.name.clone())),
                        ("commit".to_string(), var("commit_id")),
                    ]),
                ))
                .build(),
        )
        .build()
}
