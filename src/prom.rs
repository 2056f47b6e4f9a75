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

/// Writes a gauge family whose one sample is 1, labelled with an error
/// message (`{name}{error="..."} 1`): present only while the error stands.
pub fn error(out: &mut String, name: &str, help: &str, error: &str) {
    family(out, name, "gauge", help);
    let _ = writeln!(out, "{name}{{error=\"{}\"}} 1", label_value(error));
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
        let mut s = String::new();
        error(&mut s, "x_error", "Why.", "no \"x\"");
        assert_eq!(
            s,
            "# HELP x_error Why.\n# TYPE x_error gauge\nx_error{error=\"no \\\"x\\\"\"} 1\n"
        );
    }
}
