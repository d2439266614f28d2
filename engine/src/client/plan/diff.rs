//! The field-by-field differences of an update ([`diff_values`]) and the human form of a
//! [`Plan`].

use super::*;

/// The human form: one line per change (`+` create, `~` change, `-` delete), each changed
/// field indented under its change, and a summary line.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".to_owned());
        for change in &self.changes {
            match change {
                Change::CreateJob { name, .. } => writeln!(f, "+ job {name:?}")?,
                Change::UpdateJob {
                    id, name, diffs, ..
                } => {
                    writeln!(f, "~ job {name:?} ({id})")?;
                    for d in diffs {
                        writeln!(
                            f,
                            "    {}: {} -> {}",
                            d.field,
                            show(&d.before),
                            show(&d.after)
                        )?;
                    }
                }
                Change::DeleteJob { id, name } => writeln!(f, "- job {name:?} ({id})")?,
                Change::CreateWorkflow { name, .. } => writeln!(f, "+ workflow {name:?}")?,
                Change::UpdateWorkflow {
                    id, name, diffs, ..
                } => {
                    writeln!(f, "~ workflow {name:?} ({id})")?;
                    for d in diffs {
                        writeln!(
                            f,
                            "    {}: {} -> {}",
                            d.field,
                            show(&d.before),
                            show(&d.after)
                        )?;
                    }
                }
                Change::DeleteWorkflow { id, name } => writeln!(f, "- workflow {name:?} ({id})")?,
                Change::CreateCalendar { name, .. } => writeln!(f, "+ calendar {name:?}")?,
                Change::UpdateCalendar { name, diffs, .. } => {
                    writeln!(f, "~ calendar {name:?}")?;
                    for d in diffs {
                        writeln!(
                            f,
                            "    {}: {} -> {}",
                            d.field,
                            show(&d.before),
                            show(&d.after)
                        )?;
                    }
                }
                Change::DeleteCalendar { name } => writeln!(f, "- calendar {name:?}")?,
            }
        }
        let (create, change, delete) = self.counts();
        write!(
            f,
            "{create} to create, {change} to change, {delete} to delete, {} unchanged",
            self.unchanged
        )
    }
}

/// The field-by-field differences between `before` (the server's) and `after` (the file's):
/// objects are compared key by key, arrays of the same length element by element, anything
/// else as a whole.
pub fn diff_values(before: &Value, after: &Value) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    diff_into(String::new(), Some(before), Some(after), &mut out);
    out
}

fn diff_into(
    path: String,
    before: Option<&Value>,
    after: Option<&Value>,
    out: &mut Vec<FieldDiff>,
) {
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_into(p, b.get(k), a.get(k), out);
            }
        }
        (Some(Value::Array(b)), Some(Value::Array(a))) if a.len() == b.len() => {
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                diff_into(format!("{path}[{i}]"), Some(bv), Some(av), out);
            }
        }
        (b, a) if b == a => {}
        // A missing field and a null one mean the same (an absent option).
        (None, Some(Value::Null)) | (Some(Value::Null), None) => {}
        (b, a) => out.push(FieldDiff {
            field: path,
            before: b.map(Value::to_string),
            after: a.map(Value::to_string),
        }),
    }
}
