//! The sample customers: they validate cleanly, and their generated files are snapshots (the
//! committed files under packer/, buildspecs/, appspecs/). `UPDATE_EXPECT=1 cargo test` rewrites
//! them, like `cargo xtask generate`; review the diff.

use vending::config::model::Routing;
use vending::config::validate::validate_fleet;
use vending::render::render_fleet;

fn sample_fleet() -> vending::Fleet {
    let (fleet, diagnostics) = validate_fleet(&vending::project::fleet_sources(&crate::sample_tree()));
    assert_eq!(crate::diagnostics_text(&diagnostics), "", "the samples must validate without errors or warnings");
    fleet.expect("a fleet")
}

#[test]
fn samples_validate_cleanly() {
    let fleet = sample_fleet();
    let names: Vec<_> = fleet.customers.iter().map(|c| (c.name.as_str(), c.environments.len())).collect();
    assert_eq!(names, [("acme", 2), ("globex", 2)]);
}

#[test]
fn generated_files_match_their_snapshots() {
    let root = crate::root();
    let files = render_fleet(&sample_fleet());
    assert_eq!(files.len(), 12);
    for file in &files {
        expect_test::expect_file![root.join(&file.path)].assert_eq(&file.contents);
    }
    let committed = vending::project::list_generated(&root).unwrap();
    let produced: Vec<_> = files.iter().map(|f| f.path.clone()).collect();
    let mut produced_sorted = produced.clone();
    produced_sorted.sort();
    assert_eq!(committed, produced_sorted, "the generated folders hold files no customer produces");
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(render_fleet(&sample_fleet()), render_fleet(&sample_fleet()));
}

#[test]
fn production_rules_hold() {
    let fleet = sample_fleet();
    let (acme, acme_prod) = fleet.environment("acme", "prod").unwrap();
    assert_eq!(acme_prod.routing, Routing::DedicatedAlb, "production with a custom domain gets its own ALB");
    assert!(!acme.approval_emails.is_empty());
    let db = acme_prod.database.as_ref().unwrap();
    assert!(db.multi_az && db.deletion_protection);
    assert_eq!(acme_prod.deployment.config, "CodeDeployDefault.OneAtATime");
    assert!(acme_prod.deployment.auto_rollback);

    let (_, acme_dev) = fleet.environment("acme", "dev").unwrap();
    assert_eq!(acme_dev.routing, Routing::SharedAlb);
    assert!(!acme_dev.database.as_ref().unwrap().multi_az);

    let (_, globex_prod) = fleet.environment("globex", "prod").unwrap();
    assert_eq!(globex_prod.routing, Routing::SharedAlb, "no custom domain: a rule on the shared ALB");
    assert!(globex_prod.database.is_none());
}

#[test]
fn layers_merge_platform_then_customer_then_environment() {
    let fleet = sample_fleet();
    let (_, acme_prod) = fleet.environment("acme", "prod").unwrap();
    // interval from prod.toml, path from customer.toml, thresholds from platform.toml.
    assert_eq!(acme_prod.health_check.interval, 15);
    assert_eq!(acme_prod.health_check.path, "/health");
    assert_eq!(acme_prod.health_check.healthy_threshold, 3);
    assert_eq!(acme_prod.instance_type, "t3.small");
    let (_, globex_dev) = fleet.environment("globex", "dev").unwrap();
    assert_eq!(globex_dev.instance_type, "t3.micro", "platform default");
    assert_eq!(acme_prod.tags.get("Owner").map(String::as_str), Some("platform-team"));
    assert_eq!(acme_prod.tags.get("CostCenter").map(String::as_str), Some("acme-prod"));
    assert_eq!(acme_prod.tags.get("ManagedBy").map(String::as_str), Some("vending"));
    assert_eq!(acme_prod.build.variables.get("APP_NAME").map(String::as_str), Some("acme-shop"));
    assert_eq!(acme_prod.build.variables.get("APP_ENV").map(String::as_str), Some("production"));
}

/// A build on CodeBuild is not run again for the same inputs: the inputs' hash is stable, and
/// every input that shapes the build's output changes it.
#[test]
fn build_inputs_hash_every_input_that_shapes_the_build() {
    use vending::codebuild::BuildInputs;
    let fleet = sample_fleet();
    let (_, env) = fleet.environment("acme", "prod").unwrap();
    let base = BuildInputs::of("0123abcd", "buildspec", "appspec", env);
    assert_eq!(base.sha256(), BuildInputs::of("0123abcd", "buildspec", "appspec", env).sha256());
    assert!(base.variables.contains(&("SENTRY_DSN".into(), "PARAMETER_STORE".into(), "/acme/prod/sentry-dsn".into())));
    type Change = fn(&mut BuildInputs);
    let changes: [(&str, Change); 7] = [
        ("commit", |i| i.commit.push('0')),
        ("buildspec", |i| i.buildspec.push(' ')),
        ("appspec", |i| i.appspec.push(' ')),
        ("image", |i| i.image.push('1')),
        ("compute type", |i| i.compute_type = "BUILD_GENERAL1_LARGE".into()),
        ("timeout", |i| i.timeout_minutes += 1),
        ("a variable", |i| i.variables[0].2.push('x')),
    ];
    for (what, change) in changes {
        let mut changed = base.clone();
        change(&mut changed);
        assert_ne!(changed.sha256(), base.sha256(), "{what} changes the inputs");
    }
}
