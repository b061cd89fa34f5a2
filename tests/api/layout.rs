//! The README's layout table is the map newcomers read first: every path it names exists, and
//! every module in `src/` and every top-level folder is on it.

use std::collections::BTreeSet;
use std::path::Path;

/// The backticked paths in the first column of the README's `## Layout` table.
fn layout_paths() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let table = readme
        .split("## Layout")
        .nth(1)
        .expect("the README has a Layout section");
    table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_string))
        .collect::<Vec<_>>()
}

#[test]
fn every_path_in_the_readme_layout_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let paths = layout_paths();
    assert!(paths.len() > 10, "the table was found: {paths:?}");
    for path in paths {
        assert!(
            root.join(&path).exists(),
            "README layout names {path}, which is not in the tree"
        );
    }
}

#[test]
fn every_module_and_top_level_folder_is_in_the_readme_layout() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let listed: BTreeSet<String> = layout_paths().into_iter().collect();
    let covered = |path: &str| {
        listed
            .iter()
            .any(|l| l == path || (l.ends_with('/') && path.starts_with(l.as_str())))
    };
    let entries = |dir: &Path| {
        std::fs::read_dir(dir)
            .expect("readable folder")
            .map(|e| e.expect("entry"))
            .collect::<Vec<_>>()
    };
    for entry in entries(&root.join("src")) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if entry.path().is_dir() {
            format!("src/{name}/")
        } else {
            format!("src/{name}")
        };
        assert!(
            covered(&path),
            "{path} is missing from the README's layout table"
        );
    }
    for entry in entries(root) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().is_dir() || name.starts_with('.') || name == "target" {
            continue;
        }
        let folder = format!("{name}/");
        assert!(
            listed.iter().any(|l| l.starts_with(&folder)),
            "the folder {folder} is missing from the README's layout table"
        );
    }
}
