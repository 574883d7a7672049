//! Dependency order: providers before their dependents, checked for unknown
//! dependencies, cycles, and Go's rule that a non-reloadable plugin may not import a
//! reloadable one (it would keep calling code that a reload replaces).

use crate::error::{LoadError, LoadErrorKind, Step};
use crate::version::Version;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Sorts `versions` so that every plugin comes after the plugins it imports; ties are
/// broken by name, so the order is stable from one reload to the next.
pub(crate) fn order(versions: Vec<Arc<Version>>) -> Result<Vec<Arc<Version>>, Box<LoadError>> {
    let by_name: BTreeMap<String, Arc<Version>> = versions
        .into_iter()
        .map(|v| (v.name().to_owned(), v))
        .collect();
    for v in by_name.values() {
        for dep in &v.imports {
            let Some(provider) = by_name.get(&dep.plugin) else {
                return Err(v
                    .load_error(
                        Step::Import,
                        LoadErrorKind::UnknownDependency {
                            plugin: v.name().to_owned(),
                            missing: dep.plugin.clone(),
                        },
                    )
                    .into());
            };
            if !v.reloadable && provider.reloadable {
                return Err(v.load_error(
                    Step::Import,
                    LoadErrorKind::Hook(format!(
                        "non-reloadable plugin {} imports reloadable plugin {}: a reload would leave it calling replaced code",
                        v.name(),
                        provider.name()
                    )),
                )
                .into());
            }
        }
    }
    // Depth-first topological sort; `path` is the chain being visited, to print cycles.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    let names: Vec<&String> = by_name.keys().collect();
    let mut marks: BTreeMap<&str, Mark> = names.iter().map(|n| (n.as_str(), Mark::New)).collect();
    let mut out: Vec<Arc<Version>> = Vec::with_capacity(by_name.len());
    fn visit<'a>(
        name: &'a str,
        by_name: &'a BTreeMap<String, Arc<Version>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
        out: &mut Vec<Arc<Version>>,
    ) -> Result<(), Box<LoadError>> {
        match marks[name] {
            Mark::Done => return Ok(()),
            Mark::Visiting => {
                let start = path.iter().position(|p| *p == name).unwrap_or(0);
                let mut cycle: Vec<&str> = path[start..].to_vec();
                cycle.push(name);
                let v = &by_name[name];
                return Err(v
                    .load_error(Step::Import, LoadErrorKind::Cycle(cycle.join(" -> ")))
                    .into());
            }
            Mark::New => {}
        }
        marks.insert(name, Mark::Visiting);
        path.push(name);
        let v = &by_name[name];
        let mut deps: Vec<&str> = v.imports.iter().map(|d| d.plugin.as_str()).collect();
        deps.sort();
        for d in deps {
            let (key, _) = by_name.get_key_value(d).expect("checked above");
            visit(key.as_str(), by_name, marks, path, out)?;
        }
        path.pop();
        marks.insert(name, Mark::Done);
        out.push(v.clone());
        Ok(())
    }
    for name in names {
        visit(
            name.as_str(),
            &by_name,
            &mut marks,
            &mut Vec::new(),
            &mut out,
        )?;
    }
    Ok(out)
}
