//! 分层检查：`src/` 的每个顶层模块只能引用比自己低的层（`use crate::…` 与行内的 `crate::…` 路径）。
//!
//! 层次表与 docs/architecture.md 的“分层”一节一致；新增顶层模块必须先放进表里，否则本测试失败。

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// 从上到下的层；每层的模块只能引用后面（更低）各层的模块，同层之间也不能互相引用。
const LAYERS: &[&[&str]] = &[
    &["server"],
    &["proxy", "admin"],
    &["exchange"],
    &["providers"],
    &["dialects"],
    &[
        "downstream",
        "limits",
        "upstream",
        "reload",
        "drain",
        "response_store",
        "cache",
        "virtual_keys",
        "budgets",
    ],
    &["config"],
    &["security"],
    &["metrics", "mock"],
    &["redis_link", "streaming", "logging", "runtime_dir"],
    &["error", "clock"],
];
/// 库的根文件（声明全部顶层模块）。
const LIB_ROOT: &str = "src/lib.rs";
/// 路径里引用本 crate 顶层模块的前缀。
const CRATE_PREFIX: &str = "crate::";

/// 模块所在的层号（越小越高）；不在表里时为 `None`。
fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// `src/lib.rs` 声明的顶层模块名。
fn library_modules(root: &Path) -> Vec<String> {
    let text = fs::read_to_string(root.join(LIB_ROOT)).expect("读取 src/lib.rs");
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches(';').trim().to_string())
        .collect()
}

/// 一个顶层模块的全部源文件（`src/名.rs` 或 `src/名/` 下的全部 `.rs`）。
fn module_files(root: &Path, module: &str) -> Vec<PathBuf> {
    let file = root.join("src").join(format!("{module}.rs"));
    if file.is_file() {
        return vec![file];
    }
    let mut files = Vec::new();
    let mut dirs = vec![root.join("src").join(module)];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("读取模块目录").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// 源码里引用到的本 crate 顶层模块（跳过注释行）。
fn referenced_modules(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for (at, _) in code.match_indices(CRATE_PREFIX) {
            let rest = &code[at + CRATE_PREFIX.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
    found
}

/// 一个模块中指向同层或更高层的引用，写成 `文件: 模块 → 目标`。
fn upward_references(root: &Path, module: &str, own: usize) -> Vec<String> {
    let mut found = Vec::new();
    for file in module_files(root, module) {
        let text = fs::read_to_string(&file).expect("读取源文件");
        for target in referenced_modules(&text) {
            if target == module {
                continue;
            }
            match layer_of(&target) {
                Some(layer) if layer > own => {}
                _ => found.push(format!("{}: {module} → {target}", file.display())),
            }
        }
    }
    found
}

#[test]
fn 分层_每个顶层模块都在层次表里() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let missing: Vec<String> = library_modules(root)
        .into_iter()
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "这些顶层模块不在 tests/layers.rs 的层次表里（同时更新 docs/architecture.md）：{missing:?}"
    );
}

#[test]
fn 分层_模块只引用更低的层() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut violations = Vec::new();
    for module in library_modules(root) {
        if let Some(own) = layer_of(&module) {
            violations.extend(upward_references(root, &module, own));
        }
    }
    assert!(
        violations.is_empty(),
        "下面的引用指向同层或更高的层（见 docs/architecture.md 的分层规则）：\n{}",
        violations.join("\n")
    );
}

#[test]
fn 分层_能识别行内路径与分组引用() {
    let text = "use crate::config::{Config, Model};\n// crate::proxy 只在注释里\nlet x = crate::error::ApiError::internal(\"内部\");";
    let found = referenced_modules(text);
    assert_eq!(
        found,
        BTreeSet::from(["config".to_string(), "error".to_string()]),
        "注释里的路径不算引用"
    );
}
