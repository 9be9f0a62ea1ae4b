//! 翻译时的工具名对应：枢纽（Chat Completions）只有函数工具，Responses 的命名空间工具被展平为
//! `命名空间__名字`，自由格式的 `custom` 工具被包成只有一个字符串参数 `input` 的函数；回复时按这里的记录还原。

use std::collections::HashMap;

/// `custom` 工具包成函数时唯一的字符串参数名。
pub const CUSTOM_INPUT_FIELD: &str = "input";
/// 命名空间与工具名之间的分隔符（展平后的函数名）。
pub const NAMESPACE_SEPARATOR: &str = "__";

/// Responses 里的工具种类。
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    /// 函数工具：回复是 `function_call`，参数是 JSON 字符串。
    Function,
    /// 自由格式工具（如 Codex 的 `apply_patch`）：回复是 `custom_tool_call`，输入是原样文本。
    Custom,
}

/// 一个枢纽函数名在客户端那边的样子。
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolRef<'a> {
    /// 工具种类。
    pub kind: ToolKind,
    /// 客户端定义的工具名（命名空间里的工具不含命名空间）。
    pub name: &'a str,
    /// 所属的命名空间。
    pub namespace: Option<&'a str>,
}

/// 客户端工具 ⇄ 枢纽函数名的对应表（每个请求一份，请求翻译时建立，回复渲染时查询）。
///
/// 用途：把上游的函数调用还原成客户端定义的工具（`custom_tool_call` 或带命名空间的 `function_call`）。
///
/// ```
/// use chatnexus::dialects::responses::tools::{ToolKind, ToolMap}; // 对应表与工具种类
/// let mut map = ToolMap::default(); // 空表
/// map.insert("apply_patch", ToolKind::Custom, "apply_patch", None); // 自由格式工具
/// assert_eq!(map.resolve("apply_patch").kind, ToolKind::Custom); // 还原为自由格式工具
/// assert_eq!(map.resolve("未登记").kind, ToolKind::Function); // 未登记的按函数处理
/// ```
#[derive(Debug, Clone, Default)]
pub struct ToolMap {
    entries: HashMap<String, Entry>,
}

/// 对应表的一项。
#[derive(Debug, Clone)]
struct Entry {
    kind: ToolKind,
    name: String,
    namespace: Option<String>,
}

impl ToolMap {
    /// 登记一个枢纽函数名对应的客户端工具。
    pub fn insert(&mut self, hub_name: &str, kind: ToolKind, name: &str, namespace: Option<&str>) {
        let entry = Entry {
            kind,
            name: name.to_string(),
            namespace: namespace.map(str::to_string),
        };
        self.entries.insert(hub_name.to_string(), entry);
    }

    /// 枢纽函数名对应的客户端工具；没有登记的名字原样作为函数工具。
    pub fn resolve<'a>(&'a self, hub_name: &'a str) -> ToolRef<'a> {
        match self.entries.get(hub_name) {
            Some(entry) => ToolRef {
                kind: entry.kind,
                name: &entry.name,
                namespace: entry.namespace.as_deref(),
            },
            None => ToolRef {
                kind: ToolKind::Function,
                name: hub_name,
                namespace: None,
            },
        }
    }

    /// 客户端工具名对应的枢纽函数名（命名空间里的工具带前缀）；没有登记时为 `None`。
    pub fn hub_name_for(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(_, entry)| entry.name == name)
            .map(|(hub, _)| hub.as_str())
    }

    /// 是否没有任何需要还原的工具。
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 对应表_命名空间工具还原名字与命名空间() {
        let mut map = ToolMap::default();
        map.insert("浏览器__打开", ToolKind::Function, "打开", Some("浏览器"));
        assert_eq!(
            map.resolve("浏览器__打开"),
            ToolRef {
                kind: ToolKind::Function,
                name: "打开",
                namespace: Some("浏览器")
            }
        );
        assert!(!map.is_empty());
    }
}
