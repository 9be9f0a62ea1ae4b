//! 各方言共用的请求体校验：解析为 JSON 对象（拒绝重复的顶层键）、模型名、消息列表与可选字段的类型。

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::map::Entry;
use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorCode};

/// 模型名的最大长度（字节）：与配置中模型名的上限一致，更长的名字不可能匹配任何模型。
pub(crate) const MAX_MODEL_LEN: usize = 256;

/// 错误消息里最多显示的重复键名字符数。
const MAX_KEY_SHOWN: usize = 64;

/// 一个请求最多允许的消息条数。
///
/// 翻译与校验的耗时都随消息数线性增长；一万条已远超任何模型的上下文窗口，更多的消息只会白白占用
/// 工作线程的 CPU 与内存，所以在解析时直接拒绝。
pub const MAX_MESSAGES: usize = 10_000;

/// 期望的 JSON 类型，用于可选字段的类型表。
#[derive(Clone, Copy)]
pub(crate) enum Expect {
    /// 布尔值。
    Bool,
    /// 任意数字。
    Number,
    /// 正整数。
    PositiveInt,
    /// 对象。
    Object,
    /// 数组。
    Array,
    /// 字符串。
    String,
}

/// 把请求体解析为 JSON 对象，并拒绝重复的顶层键。
///
/// 错误：不是合法 JSON、顶层不是对象、顶层键重复时返回 400。
pub(crate) fn parse_object(raw: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let top: TopLevel = serde_json::from_slice(raw).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::InvalidJson,
            format!("请求体不是合法的 JSON：{e}"),
        )
    })?;
    match top {
        TopLevel::Object(body) => Ok(body),
        TopLevel::Duplicate(key) => Err(duplicate_key(&key)),
        TopLevel::Other => Err(ApiError::bad_request(
            ErrorCode::InvalidType,
            "请求体必须是 JSON 对象",
        )),
    }
}

/// 取出并校验顶层的 `model`（必填字符串）。
///
/// 错误：缺少、不是字符串、为空、过长或含控制字符时返回 400，`param` 为 `model`。
pub(crate) fn model_of(body: &Map<String, Value>) -> Result<String, ApiError> {
    match body.get("model") {
        Some(Value::String(m)) => validate_model(m),
        Some(_) => Err(wrong_type("model", "字符串")),
        None => Err(missing_field("model")),
    }
}

/// 取出并校验顶层的 `messages`：必须是非空数组，条数不超过 [`MAX_MESSAGES`]。
///
/// 错误：缺少、不是数组、为空或过多时返回 400，`param` 为 `messages`。
pub(crate) fn messages_of(body: &Map<String, Value>) -> Result<&[Value], ApiError> {
    let list = match body.get("messages") {
        Some(Value::Array(list)) => list,
        Some(_) => return Err(wrong_type("messages", "数组")),
        None => return Err(missing_field("messages")),
    };
    if list.is_empty() {
        return Err(empty_field("messages"));
    }
    if list.len() > MAX_MESSAGES {
        return Err(ApiError::bad_request(
            ErrorCode::TooManyMessages,
            format!(
                "`messages` 共有 {} 条消息，超过上限 {MAX_MESSAGES} 条，请删减对话历史后重试",
                list.len()
            ),
        )
        .with_param("messages"));
    }
    Ok(list)
}

/// 逐个检查请求里出现的字段：只遍历客户端实际给出的几个字段，而不是对类型表里的每个名字都查一次
/// 哈希表（剖析显示那十几次查找曾是解析请求的一半开销）。
pub(crate) fn check_types(
    body: &Map<String, Value>,
    table: &[(&str, Expect)],
) -> Result<(), ApiError> {
    for (name, value) in body {
        if value.is_null() {
            continue;
        }
        let Some((_, expect)) = table.iter().find(|(known, _)| known == name) else {
            continue;
        };
        let (ok, label) = match expect {
            Expect::Bool => (value.is_boolean(), "布尔值"),
            Expect::Number => (value.is_number(), "数字"),
            Expect::PositiveInt => (value.as_u64().is_some_and(|n| n > 0), "正整数"),
            Expect::Object => (value.is_object(), "对象"),
            Expect::Array => (value.is_array(), "数组"),
            Expect::String => (value.is_string(), "字符串"),
        };
        if !ok {
            return Err(wrong_type(name, label));
        }
    }
    Ok(())
}

/// 请求体顶层：对象（没有重复键）、第一个重复的键，或不是对象。
///
/// 校验只看到 serde 保留的最后一个同名值，而模型名不变时原样转发的原始字节里两个值都在；取第一个值的
/// 上游会用到允许列表从未批准的模型。所以解析时一遍就查出重复的顶层键，整个请求拒绝。
enum TopLevel {
    Object(Map<String, Value>),
    Duplicate(String),
    Other,
}

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopLevelVisitor)
    }
}

/// 逐个读顶层键值对并检查重复；非对象的顶层值读完后记为 [`TopLevel::Other`]。
struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON 对象")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<TopLevel, A::Error> {
        let mut body = Map::new();
        let mut duplicate = None;
        while let Some(key) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            // 后面的值照常读完（JSON 语法错误仍按语法错误报），只记下第一个重复的键名
            match body.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(slot) => {
                    duplicate = duplicate.or_else(|| Some(slot.key().clone()));
                }
            }
        }
        Ok(duplicate.map_or(TopLevel::Object(body), TopLevel::Duplicate))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<TopLevel, A::Error> {
        while access.next_element::<IgnoredAny>()?.is_some() {}
        Ok(TopLevel::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }
}

/// 模型名不能为空、不超过 [`MAX_MODEL_LEN`] 字节、不含控制字符：它会进访问日志与错误消息，
/// 含换行的模型名能在日志里伪造一整行。
fn validate_model(model: &str) -> Result<String, ApiError> {
    if model.is_empty() {
        return Err(empty_field("model"));
    }
    if model.len() > MAX_MODEL_LEN || model.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidValue,
            format!("字段 `model` 不能超过 {MAX_MODEL_LEN} 字节，也不能含控制字符（如换行）"),
        )
        .with_param("model"));
    }
    Ok(model.to_string())
}

/// 重复键的错误：键名去掉控制字符、最多保留 [`MAX_KEY_SHOWN`] 个字符（键名来自客户端，可能很长）。
fn duplicate_key(key: &str) -> ApiError {
    let shown: String = key
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_KEY_SHOWN)
        .collect();
    ApiError::bad_request(
        ErrorCode::DuplicateKey,
        format!("请求体的顶层字段 `{shown}` 出现了不止一次，请只保留一个"),
    )
    .with_param(shown)
}

pub(crate) fn missing_field(param: &str) -> ApiError {
    ApiError::bad_request(
        ErrorCode::MissingRequiredParameter,
        format!("缺少必填字段 `{param}`"),
    )
    .with_param(param)
}

pub(crate) fn empty_field(param: &str) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidValue, format!("字段 `{param}` 不能为空"))
        .with_param(param)
}

pub(crate) fn wrong_type(param: &str, expected: &str) -> ApiError {
    ApiError::bad_request(
        ErrorCode::InvalidType,
        format!("字段 `{param}` 的类型应为{expected}"),
    )
    .with_param(param)
}
