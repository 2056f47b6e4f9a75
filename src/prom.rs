//! The Prometheus text exposition format, as every module that keeps stats
//! writes it: family headers and samples. Imports nothing of ours, so any
//! module can render its own families onto the `/metrics` page.

use std::fmt::Write as _;

/// Writes the `# HELP` and `# TYPE` lines of a metric family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes a family with one unlabelled sample.
pub fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A label value with `\`, `"` and newlines escaped.
pub fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_escapes() {
        let mut s = String::new();
        single(&mut s, "x_total", "counter", "Xs.", 3);
        assert_eq!(s, "# HELP x_total Xs.\n# TYPE x_total counter\nx_total 3\n");
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c d");
    }
}
