//! The generated block in the host's `Cargo.toml`: finding it, reading the plugins it
//! lists, and writing it anew; the TOML itself is read and written with `toml_edit`.
//!
//! The block is the lines between [`BLOCK_BEGIN`] and [`BLOCK_END`] (two comments, which
//! TOML itself does not give a place to, so they are found as lines). Each line inside
//! is one dependency, `<package> = { path = "<path>" }`, or the `hotswap-plugin-api`
//! line; anything else there is a hand edit and refused. Everything outside the block
//! is kept byte for byte.

use super::error::StaticLinkError;
use super::markers::{BLOCK_BEGIN, BLOCK_END, PLUGIN_API};
use super::plugin::{ApiDependency, LinkedPlugin};
use std::path::Path;
use toml_edit::{Array, Document, DocumentMut, InlineTable, Item, Value};

/// The generated block's lines (without the markers): one path dependency per plugin,
/// then `api` (with the `static` feature) if given.
pub(crate) fn block(plugins: &[LinkedPlugin], api: Option<&ApiDependency>) -> Vec<String> {
    let mut lines: Vec<String> = plugins
        .iter()
        .map(|p| {
            let mut dep = InlineTable::new();
            dep.insert("path", p.path.as_str().into());
            dependency_line(&p.package, dep)
        })
        .collect();
    if let Some(api) = api {
        let mut dep = InlineTable::new();
        match api {
            ApiDependency::Path(path) => dep.insert("path", path.as_str().into()),
            ApiDependency::Version(req) => dep.insert("version", req.as_str().into()),
        };
        dep.insert("features", Value::Array(Array::from_iter(["static"])));
        lines.push(dependency_line(PLUGIN_API, dep));
    }
    lines
}

/// `<key> = <dep>` as one line of TOML.
fn dependency_line(key: &str, mut dep: InlineTable) -> String {
    dep.fmt();
    let mut doc = DocumentMut::new();
    doc.insert(key, Item::Value(Value::InlineTable(dep)));
    doc.to_string().trim_end().to_owned()
}

/// The plugin path of one line of the block, `None` for the `hotswap-plugin-api` line and
/// blank lines. Fails with `edited()` for anything this command does not write.
fn plugin_path(
    line: &str,
    edited: impl Fn() -> StaticLinkError,
) -> Result<Option<String>, StaticLinkError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with(&format!("{PLUGIN_API} =")) {
        return Ok(None);
    }
    let doc = line.parse::<DocumentMut>().map_err(|_| edited())?;
    let mut entries = doc.iter();
    let (Some((_key, item)), None) = (entries.next(), entries.next()) else {
        return Err(edited());
    };
    let dep = item.as_inline_table().ok_or_else(&edited)?;
    let mut fields = dep.iter();
    match (fields.next(), fields.next()) {
        (Some(("path", value)), None) => match value.as_str() {
            Some(path) => Ok(Some(path.to_owned())),
            None => Err(edited()),
        },
        _ => Err(edited()),
    }
}

/// Where the generated block is, or goes, in the host's `Cargo.toml`.
pub(crate) struct TomlLayout {
    /// Line range of the existing block, markers included.
    block: Option<(usize, usize)>,
    /// Line index after which a new block goes (the `[dependencies]` header), if any.
    dependencies_header: Option<usize>,
    /// Plugin paths listed in the existing block.
    pub(crate) plugin_paths: Vec<String>,
    /// Dependency keys of `[dependencies]` outside the block.
    pub(crate) declared_outside: Vec<String>,
    /// `[dependencies]` declares `hotswap-plugin-api` outside the block.
    pub(crate) user_declares_api: bool,
}

impl TomlLayout {
    /// Reads the layout of `text`, the host's `Cargo.toml` at `path`.
    ///
    /// Fails with [`StaticLinkError::BrokenBlock`] when only one marker is there (or the
    /// end comes first), [`StaticLinkError::EditedBlock`] for a line in the block this
    /// command did not write, and [`StaticLinkError::Toml`] when the text without the
    /// block is not TOML.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<TomlLayout, StaticLinkError> {
        let lines: Vec<&str> = text.lines().collect();
        let begin = lines.iter().position(|l| l.trim_end() == BLOCK_BEGIN);
        let end = lines.iter().position(|l| l.trim_end() == BLOCK_END);
        let block = match (begin, end) {
            (Some(b), Some(e)) if b < e => Some((b, e)),
            (None, None) => None,
            _ => return Err(StaticLinkError::BrokenBlock { path: path.into() }),
        };
        let mut plugin_paths = Vec::new();
        if let Some((b, e)) = block {
            for (i, line) in lines.iter().enumerate().take(e).skip(b + 1) {
                let edited = || StaticLinkError::EditedBlock {
                    path: path.into(),
                    line: i + 1,
                    text: (*line).to_owned(),
                };
                plugin_paths.extend(plugin_path(line, edited)?);
            }
        }
        // The rest, the block's lines blanked (so line numbers stay), as TOML: the keys of
        // [dependencies] (`name = …`, `name.workspace = …`, `[dependencies.name]`) and the
        // line of its header.
        let outside: String = lines
            .iter()
            .enumerate()
            .map(|(i, line)| match block {
                Some((b, e)) if (b..=e).contains(&i) => "\n".to_owned(),
                _ => format!("{line}\n"),
            })
            .collect();
        let doc = Document::parse(outside.as_str()).map_err(|source| StaticLinkError::Toml {
            path: path.into(),
            source,
        })?;
        let dependencies = doc.get("dependencies").and_then(Item::as_table_like);
        let declared_outside: Vec<String> = dependencies
            .map(|t| t.iter().map(|(key, _)| key.to_owned()).collect())
            .unwrap_or_default();
        let dependencies_header = doc
            .get("dependencies")
            .and_then(Item::as_table)
            .filter(|t| !t.is_implicit())
            .and_then(|t| t.span())
            .map(|span| outside[..span.start].matches('\n').count());
        let user_declares_api = declared_outside.iter().any(|k| k == PLUGIN_API);
        Ok(TomlLayout {
            block,
            dependencies_header,
            plugin_paths,
            declared_outside,
            user_declares_api,
        })
    }

    /// `original` with the block (markers around `lines`) in place: where it was, else
    /// right after the `[dependencies]` header, else in a new `[dependencies]` table at
    /// the end.
    pub(crate) fn render(&self, original: &str, lines: &[String]) -> String {
        let mut block = vec![BLOCK_BEGIN.to_owned()];
        block.extend(lines.iter().cloned());
        block.push(BLOCK_END.to_owned());
        let mut out: Vec<String> = original.lines().map(str::to_owned).collect();
        match (self.block, self.dependencies_header) {
            (Some((b, e)), _) => {
                out.splice(b..=e, block);
            }
            (None, Some(h)) => {
                out.splice(h + 1..h + 1, block);
            }
            (None, None) => {
                if out.last().is_some_and(|l| !l.trim().is_empty()) {
                    out.push(String::new());
                }
                out.push("[dependencies]".to_owned());
                out.extend(block);
            }
        }
        let mut text = out.join("\n");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(package: &str, path: &str) -> LinkedPlugin {
        LinkedPlugin {
            package: package.into(),
            version: "0.1.0".into(),
            lib: package.replace('-', "_"),
            path: path.into(),
            live_functions: Vec::new(),
        }
    }

    #[test]
    fn paths_round_trip_through_the_block() {
        for s in [
            "plain/path",
            "with \"quotes\" and \\ back",
            "tab\there",
            "it's",
        ] {
            let lines = block(&[plugin("p", s)], None);
            let text = format!("[dependencies]\n{BLOCK_BEGIN}\n{}\n{BLOCK_END}\n", lines[0]);
            let layout = TomlLayout::parse(&text, Path::new("Cargo.toml")).unwrap();
            assert_eq!(layout.plugin_paths, [s], "{}", lines[0]);
        }
        let api = ApiDependency::Version("0.1".into());
        assert_eq!(
            block(&[], Some(&api)),
            ["hotswap-plugin-api = { version = \"0.1\", features = [\"static\"] }"]
        );
    }

    #[test]
    fn block_is_inserted_after_dependencies_then_rewritten_in_place() {
        let path = Path::new("Cargo.toml");
        let original = "[package]\nname = \"h\"\n\n[dependencies]\nhotswap-host.workspace = true\n\n[features]\n";
        let layout = TomlLayout::parse(original, path).unwrap();
        assert_eq!(layout.declared_outside, ["hotswap-host"]);
        assert!(!layout.user_declares_api);
        let api_dep = ApiDependency::Path("../api".into());
        let api = "hotswap-plugin-api = { path = \"../api\", features = [\"static\"] }";
        let first = layout.render(
            original,
            &block(&[plugin("world", "../world")], Some(&api_dep)),
        );
        assert!(first.contains(&format!(
            "[dependencies]\n{BLOCK_BEGIN}\nworld = {{ path = \"../world\" }}\n{api}\n{BLOCK_END}\nhotswap-host"
        )));
        let layout = TomlLayout::parse(&first, path).unwrap();
        assert_eq!(layout.plugin_paths, ["../world"]);
        let two = [plugin("world", "../world"), plugin("jobs", "../jobs")];
        let second = layout.render(&first, &block(&two, Some(&api_dep)));
        assert_eq!(second.matches(BLOCK_BEGIN).count(), 1);
        assert!(second.contains("jobs = { path = \"../jobs\" }\nhotswap-plugin-api"));
        // Same input, same output: re-running changes nothing.
        let layout = TomlLayout::parse(&second, path).unwrap();
        assert_eq!(layout.render(&second, &block(&two, Some(&api_dep))), second);
    }

    #[test]
    fn a_manifest_without_dependencies_gets_the_table() {
        let original = "[package]\nname = \"h\"\n";
        let layout = TomlLayout::parse(original, Path::new("Cargo.toml")).unwrap();
        let out = layout.render(original, &block(&[plugin("w", "../w")], None));
        assert!(out.ends_with(&format!(
            "\n\n[dependencies]\n{BLOCK_BEGIN}\nw = {{ path = \"../w\" }}\n{BLOCK_END}\n"
        )));
    }

    #[test]
    fn hand_edits_of_the_block_are_refused() {
        for edit in [
            "world = \"1\"",
            "# a comment",
            "w = { path = \"x\", optional = true }",
        ] {
            let text = format!("[dependencies]\n{BLOCK_BEGIN}\n{edit}\n{BLOCK_END}\n");
            let e = TomlLayout::parse(&text, Path::new("Cargo.toml"))
                .err()
                .unwrap();
            assert!(
                matches!(e, StaticLinkError::EditedBlock { line: 3, .. }),
                "{e}"
            );
        }
        let text = format!("[dependencies]\n{BLOCK_BEGIN}\n");
        assert!(matches!(
            TomlLayout::parse(&text, Path::new("Cargo.toml")),
            Err(StaticLinkError::BrokenBlock { .. })
        ));
    }

    #[test]
    fn user_declared_plugin_api_is_noticed() {
        for text in [
            "[dependencies]\nhotswap-plugin-api = \"0.1\"\n",
            "[dependencies.hotswap-plugin-api]\nversion = \"0.1\"\n",
        ] {
            let layout = TomlLayout::parse(text, Path::new("Cargo.toml")).unwrap();
            assert!(layout.user_declares_api, "{text}");
        }
    }
}
