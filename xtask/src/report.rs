//! What one environment's command tells the fleet run that started it (`fleet`): when
//! `VENDING_REPORT` names a file, facts (the AMI built, the revision released, an approval
//! request) are appended to it as JSON lines. Without it, nothing is written.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The variable that names the file.
pub const VARIABLE: &str = "VENDING_REPORT";

#[derive(serde::Serialize, serde::Deserialize)]
struct Fact {
    key: String,
    value: String,
}

/// Appends `key = value` to the report, when there is one. A report that cannot be written is
/// said on stderr and costs the command nothing else: it is the summary's, not the change's.
pub fn note(key: &str, value: &str) {
    let Some(path) = std::env::var_os(VARIABLE) else { return };
    let line = serde_json::to_string(&Fact { key: key.to_string(), value: value.to_string() }).unwrap_or_default();
    let written =
        std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut file| writeln!(file, "{line}"));
    if let Err(e) = written {
        eprintln!("warning: cannot write the fleet report {}: {e}", Path::new(&path).display());
    }
}

/// The facts of a report (the last value of each key).
pub fn read(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|line| serde_json::from_str::<Fact>(line).ok()).map(|f| (f.key, f.value)).collect()
}
