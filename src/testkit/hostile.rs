//! Hostile JSON for the property tests: extreme or wrongly typed values,
//! and every place in a document where one can go.

use serde_json::{json, Value};

/// Values an exchange, an operator's typo or an attacker could put in any
/// field: nulls, zero and signs, extremes of range and precision, empty and
/// long and control-laden strings, wrong types, empty containers.
pub fn values() -> Vec<Value> {
    vec![
        json!(null),
        json!(0),
        json!(-1),
        json!(1),
        json!(0.5),
        json!(1e-300),
        json!(1e300),
        json!(-1e300),
        json!(4294967296u64),
        json!(u64::MAX),
        json!(""),
        json!("x".repeat(2000)),
        json!("\u{0}\"</script>"),
        json!(true),
        json!([]),
        json!([""]),
        json!({}),
    ]
}

/// One step of a path into a document: a member or an element.
#[derive(Debug, Clone)]
pub enum Step {
    /// Object member.
    Key(String),
    /// Array element.
    Ix(usize),
}

/// Every place in `v` whose value can be replaced (the root left out).
pub fn places(v: &Value) -> Vec<Vec<Step>> {
    fn walk(v: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        let mut go = |step: Step, x: &Value| {
            at.push(step);
            out.push(at.clone());
            walk(x, at, out);
            at.pop();
        };
        match v {
            Value::Object(m) => m.iter().for_each(|(k, x)| go(Step::Key(k.clone()), x)),
            Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| go(Step::Ix(i), x)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// The value at `path` in `v`, if the path is there.
pub fn slot<'v>(v: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    path.iter().try_fold(v, |v, s| match s {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Ix(i) => v.get_mut(*i),
    })
}
