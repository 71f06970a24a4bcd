//! Property: free text from config comes out of every renderer as data, never as syntax. Random
//! strings full of quotes, backslashes, `${`, `%{`, `{{`, newlines, YAML indicators and unicode
//! go into every free-text field; the HCL and YAML produced parse back to the same values, and
//! every YAML string is double-quoted (so YAML 1.1 parsers, AWS's, read it the same way).

use hcl::eval::{Context, Evaluate};
use hcl::Expression;
use proptest::prelude::*;
use saphyr::{LoadableYamlNode, Yaml};
use vending::config::validate::validate_fleet;
use vending::render::{appspec, buildspec, packer};
use vending::spec::yaml as marked;
use vending::SourceFile;

fn nasty() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("${x}".to_string()),
        Just("$${".to_string()),
        Just("%{ if }".to_string()),
        Just("{{ .Name }}".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just("\t".to_string()),
        Just(": ".to_string()),
        Just("- ".to_string()),
        Just("# ".to_string()),
        Just("'".to_string()),
        Just("yes".to_string()),
        Just("0644".to_string()),
        Just("~".to_string()),
        Just("&a *a !tag".to_string()),
        Just("---".to_string()),
        Just("é日本🚀".to_string()),
        "\\PC{0,4}",
    ];
    prop::collection::vec(pieces, 1..8).prop_map(|v| v.concat())
}

fn hcl_string(expr: &Expression) -> String {
    match expr.evaluate(&Context::new()).expect("evaluates without variables") {
        hcl::Value::String(s) => s,
        other => panic!("not a string: {other:?}"),
    }
}

fn hcl_attr<'a>(body: &'a hcl::Body, block: &str, attr: &str) -> &'a Expression {
    let block = body.blocks().find(|b| b.identifier() == block).expect("block");
    block.body().attributes().find(|a| a.key() == attr).map(|a| a.expr()).expect("attribute")
}

fn hcl_object_value(expr: &Expression, key: &str) -> String {
    let Expression::Object(object) = expr else { panic!("not an object") };
    let (_, value) = object.iter().find(|(k, _)| k.to_string().trim_matches('"') == key).expect("key");
    hcl_string(value)
}

fn yaml_at<'a>(doc: &'a Yaml<'a>, path: &[&str]) -> &'a Yaml<'a> {
    path.iter().fold(doc, |node, key| match key.parse::<usize>() {
        Ok(i) => &node[i],
        Err(_) => &node[*key],
    })
}

/// Every string scalar in the document is double-quoted.
fn all_strings_quoted(text: &str) -> bool {
    fn walk(node: &marked::Node<'_>) -> bool {
        if let Some(entries) = marked::entries(node) {
            return entries.iter().all(|(_, _, v)| walk(v));
        }
        if let Some(items) = marked::sequence(node) {
            return items.iter().all(walk);
        }
        match (marked::value(node), marked::raw_scalar(node)) {
            (Some(marked::Value::Str(_)), Some((_, style))) => style == saphyr::ScalarStyle::DoubleQuoted,
            _ => true,
        }
    }
    let source = SourceFile::new("x.yaml", text);
    let root = marked::parse(&source).expect("parses").expect("a document");
    walk(&root)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn free_text_round_trips(text in nasty(), other in nasty()) {
        let (fleet, _) = validate_fleet(&vending::project::fleet_sources(&crate::sample_tree()));
        let fleet = fleet.unwrap();
        let platform = fleet.platform.clone();
        let mut customer = fleet.customers[0].clone();
        let mut env = customer.environments[1].clone();
        customer.display_name = text.clone();
        customer.provision = vec![text.clone(), other.clone()];
        env.tags.insert("Note".into(), other.clone());
        env.build.phases[2].commands = vec![text.clone()];
        env.build.variables.insert("X".into(), other.clone());
        env.build.artifacts.base_directory = Some(text.clone());
        customer.deploy.destination = text.clone();
        customer.deploy.hooks[0].1[0].location = other.clone();
        customer.deploy.permissions[0].object = other.clone();

        let hcl_text = packer::render(&platform, &customer, &env);
        let body = hcl::parse(&hcl_text).expect("the template parses");
        let tags = hcl_attr(&body, "source", "tags");
        prop_assert_eq!(hcl_object_value(tags, "CustomerName"), text.clone());
        prop_assert_eq!(hcl_object_value(tags, "Note"), other.clone());
        let build = body.blocks().find(|b| b.identifier() == "build").unwrap();
        let provisioner = build.body().blocks().find(|b| b.identifier() == "provisioner").unwrap();
        let inline = provisioner.body().attributes().find(|a| a.key() == "inline").unwrap();
        let Expression::Array(items) = inline.expr() else { panic!("inline is not a list") };
        prop_assert_eq!(hcl_string(&items[0]), text.clone());
        prop_assert_eq!(hcl_string(&items[1]), other.clone());

        let buildspec_text = buildspec::render(&customer, &env);
        let doc = &Yaml::load_from_str(&buildspec_text).expect("the buildspec parses")[0];
        prop_assert_eq!(yaml_at(doc, &["phases", "build", "commands", "0"]).as_str(), Some(text.as_str()));
        prop_assert_eq!(yaml_at(doc, &["env", "variables", "X"]).as_str(), Some(other.as_str()));
        prop_assert_eq!(yaml_at(doc, &["artifacts", "base-directory"]).as_str(), Some(text.as_str()));
        prop_assert!(all_strings_quoted(&buildspec_text));

        let appspec_text = appspec::render(&customer, &env);
        let doc = &Yaml::load_from_str(&appspec_text).expect("the appspec parses")[0];
        prop_assert_eq!(yaml_at(doc, &["files", "0", "destination"]).as_str(), Some(text.as_str()));
        prop_assert_eq!(yaml_at(doc, &["hooks", "ApplicationStop", "0", "location"]).as_str(), Some(other.as_str()));
        prop_assert_eq!(yaml_at(doc, &["permissions", "0", "object"]).as_str(), Some(other.as_str()));
        prop_assert!(all_strings_quoted(&appspec_text));
    }
}
