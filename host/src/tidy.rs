//! Tidy tests in the style of rust-analyzer's: plain tests that read the
//! source tree and fail when an architecture rule is broken, so the rules in
//! ARCHITECTURE.md stay true. Test code (`#[cfg(test)] mod tests`, files
//! named `tests.rs`) and comments are not checked.

use std::path::{Path, PathBuf};

/// Strings that spell a path under the data directory; only `store.rs`
/// may hold them.
const DATA_DIR_PATHS: &[&str] = &[
    "files/",
    "inbox/",
    "plugins/",
    "tmp/",
    "cache/compiled",
    "index.sqlite",
];

/// Literals that are exactly the name of a data-directory entry. (`files`
/// and `plugins` are also column headings and table names, so only their
/// path forms above are checked.)
const DATA_DIR_NAMES: &[&str] = &["inbox", "tmp", "cache"];

/// Files allowed to spell a data-directory path, and why.
const PATH_EXCEPTIONS: &[(&str, &str)] = &[
    ("store.rs", "the data directory's layout"),
    ("tidy.rs", "this test's own patterns"),
    (
        "api/routes.rs",
        "URL paths of the HTTP API (`/api/v1/files/{id}`), not data-directory paths",
    ),
    (
        "scaffold.rs",
        "instructions printed for plugin authors name the plugins directory; no path is opened",
    ),
];

#[test]
fn sql_lives_only_in_the_index_module() {
    let offenders: Vec<String> = sources()
        .into_iter()
        .filter(|(path, _)| !path.starts_with("index/") && path != "tidy.rs")
        .filter(|(_, code)| code.contains("rusqlite"))
        .map(|(path, _)| path)
        .collect();
    assert!(
        offenders.is_empty(),
        "rusqlite used outside host/src/index/ (add a function to the index instead): {offenders:?}"
    );
}

#[test]
fn wasmtime_lives_only_in_the_runtime_module() {
    let offenders: Vec<String> = sources()
        .into_iter()
        .filter(|(path, _)| !path.starts_with("runtime/") && path != "tidy.rs")
        .filter(|(_, code)| code.contains("wasmtime"))
        .map(|(path, _)| path)
        .collect();
    assert!(
        offenders.is_empty(),
        "wasmtime used outside host/src/runtime/: {offenders:?}"
    );
}

#[test]
fn data_directory_paths_are_spelled_only_in_store() {
    let mut offenders = Vec::new();
    for (path, code) in sources() {
        if PATH_EXCEPTIONS.iter().any(|(file, _)| *file == path) {
            continue;
        }
        for literal in string_literals(&code) {
            let spelled = DATA_DIR_PATHS.iter().any(|p| literal.contains(p))
                || DATA_DIR_NAMES.contains(&literal.as_str());
            if spelled {
                offenders.push(format!("{path}: {literal:?}"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "data-directory paths spelled outside host/src/store.rs (ask DataDir or store instead):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_tidy_lexer_finds_literals_and_skips_comments_and_tests() {
    let code = strip(
        "let a = \"files/x\"; // \"inbox/\"\nlet b = r#\"tmp/\"#; let c = '\"'; fn f<'a>() {}\nlet d = \"a\\\"b\";\n#[cfg(test)]\nmod tests {\n    const X: &str = \"plugins/\";\n}\n",
    );
    assert_eq!(string_literals(&code), ["files/x", "tmp/", "a\\\"b"]);
}

/// Every `.rs` file under `host/src` as (path relative to it, code without
/// comments and test modules).
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("host/src is readable") {
            let path: PathBuf = entry.expect("host/src is readable").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                let relative = path
                    .strip_prefix(&root)
                    .expect("under host/src")
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = std::fs::read_to_string(&path).expect("sources are UTF-8");
                files.push((relative, strip(&text)));
            }
        }
    }
    files.sort();
    files
}

/// The code without line comments and without an inline `#[cfg(test)] mod
/// tests { ... }` (which ends the file by convention).
fn strip(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed == "#[cfg(test)]" {
            match lines.peek().map(|next| next.trim()) {
                Some(next) if next.starts_with("mod ") && next.ends_with('{') => break,
                _ => continue,
            }
        }
        if trimmed.starts_with("//") {
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// The contents of the string literals in `code` (escapes left as written),
/// skipping what follows `//` outside a literal.
fn string_literals(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut literals = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '\'' => {
                // A char literal ('x', '\n', '"') or a lifetime ('a).
                if chars.get(i + 1) == Some(&'\\') {
                    i += 2;
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                } else if chars.get(i + 2) == Some(&'\'') {
                    i += 3;
                } else {
                    i += 1;
                }
            }
            'r' if matches!(chars.get(i + 1), Some('"' | '#'))
                && (i == 0 || !chars[i - 1].is_alphanumeric()) =>
            {
                let mut hashes = 0;
                let mut j = i + 1;
                while chars.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if chars.get(j) != Some(&'"') {
                    i += 1;
                    continue;
                }
                let start = j + 1;
                let mut end = start;
                while end < chars.len() {
                    if chars[end] == '"' && (1..=hashes).all(|k| chars.get(end + k) == Some(&'#')) {
                        break;
                    }
                    end += 1;
                }
                literals.push(chars[start..end.min(chars.len())].iter().collect());
                i = end + 1 + hashes;
            }
            '"' => {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && chars[end] != '"' {
                    end += if chars[end] == '\\' { 2 } else { 1 };
                }
                literals.push(chars[start..end.min(chars.len())].iter().collect());
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    literals
}
