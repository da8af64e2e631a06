//! Source hygiene that review keeps forgetting: every file says what it holds, and none grows past
//! a size a reader can hold in mind (ARCHITECTURE.md's code map depends on both).

use std::path::{Path, PathBuf};

/// Lines of a source file before its `#[cfg(test)]` block; tests beside the code do not count.
const MAX_CODE_LINES: usize = 450;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 20, "found only {} source files", files.len());
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

#[test]
fn every_source_file_starts_with_a_line_saying_what_it_holds() {
    let missing: Vec<_> = sources()
        .into_iter()
        .filter(|(_, text)| !text.starts_with("//! "))
        .map(|(p, _)| p)
        .collect();
    assert!(missing.is_empty(), "no `//!` first line: {missing:?}");
}

#[test]
fn no_source_file_is_longer_than_a_reader_can_hold() {
    let long: Vec<_> = sources()
        .into_iter()
        .map(|(p, text)| {
            let code = text
                .lines()
                .take_while(|l| !l.starts_with("#[cfg(test)]"))
                .count();
            (p, code)
        })
        .filter(|(_, code)| *code > MAX_CODE_LINES)
        .collect();
    assert!(long.is_empty(), "over {MAX_CODE_LINES} lines: {long:?}");
}
