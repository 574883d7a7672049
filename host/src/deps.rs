//! Dependencies between plugins: their order (providers before their dependents),
//! checked for unknown dependencies, cycles, and Go's rule that a non-reloadable plugin
//! may not import a reloadable one (it would keep calling code that a reload replaces);
//! and the binding of a dependent's imports to its providers' exports.

use crate::error::{LoadError, LoadErrorKind, Step};
use crate::generation::check_layout;
use crate::version::Version;
use hotswap_abi::vtable::ImportEntry;
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
                return Err(v
                    .load_error(
                        Step::Import,
                        LoadErrorKind::NotReloadableImport {
                            plugin: v.name().to_owned(),
                            provider: provider.name().to_owned(),
                        },
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

/// A dependent's providers and the import entries its `on_load` receives.
pub(crate) type Bound = (Vec<Arc<Version>>, Vec<ImportEntry>);

/// Binds `v`'s imports to the providers among `set`: checks each provider's crate
/// version against the requirement and its export's type against the declared one
/// (abi_stable's layout checker). Returns the providers and the entries for `on_load`,
/// both in declaration order.
pub(crate) fn resolve(v: &Version, set: &[Arc<Version>]) -> Result<Bound, Box<LoadError>> {
    let mut providers = Vec::with_capacity(v.imports.len());
    let mut entries = Vec::with_capacity(v.imports.len());
    for dep in &v.imports {
        let provider = set.iter().find(|p| p.name() == dep.plugin).ok_or_else(|| {
            v.load_error(
                Step::Import,
                LoadErrorKind::UnknownDependency {
                    plugin: v.name().to_owned(),
                    missing: dep.plugin.clone(),
                },
            )
        })?;
        if !dep.version_req.trim().is_empty() {
            let bad = |cause: String| {
                v.load_error(
                    Step::Import,
                    LoadErrorKind::BadVersionRequirement {
                        plugin: v.name().to_owned(),
                        provider: dep.plugin.clone(),
                        required: dep.version_req.clone(),
                        cause,
                    },
                )
            };
            let req =
                semver::VersionReq::parse(&dep.version_req).map_err(|e| bad(e.to_string()))?;
            let found = semver::Version::parse(provider.version()).map_err(|e| {
                bad(format!(
                    "the provider's version {:?} is not semver: {e}",
                    provider.version()
                ))
            })?;
            if !req.matches(&found) {
                return Err(v
                    .load_error(
                        Step::Import,
                        LoadErrorKind::DependencyVersion {
                            plugin: v.name().to_owned(),
                            provider: dep.plugin.clone(),
                            required: dep.version_req.clone(),
                            found: provider.version().to_owned(),
                        },
                    )
                    .into());
            }
        }
        if let Some(declared) = dep.layout {
            let mismatch = |detail: String| {
                v.load_error(
                    Step::Import,
                    LoadErrorKind::ExportType {
                        plugin: v.name().to_owned(),
                        provider: dep.plugin.clone(),
                        detail,
                    },
                )
            };
            let exported = provider
                .export
                .layout
                .ok_or_else(|| mismatch(format!("{} exports nothing", dep.plugin)))?;
            check_layout(declared, exported).map_err(mismatch)?;
        }
        let pvt = provider.vtable();
        entries.push(ImportEntry {
            plugin: pvt.name,
            version: pvt.version,
            export: provider.export.ptr.cast_const(),
            declared: dep.layout,
        });
        providers.push(provider.clone());
    }
    Ok((providers, entries))
}
