//! 不建 JSON 树地校验向量请求：只定型读出网关要看的几个字段，`input` 用访问者逐项数条数与字节数。
//!
//! 一个 100 条输入的批量请求若解析成 `serde_json::Value`，每条文本都要分配并复制一次；透传只需要知道
//! 条数、总大小与类型是否合法，所以这里借用原始字节里的字符串（没有转义时零拷贝），不分配。

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::INPUT;
use crate::dialects::body::{empty_field, wrong_type};
use crate::error::ApiError;
use crate::streaming::BYTES_PER_TOKEN;

/// token id 的类型说明（错误消息用）。
const TOKEN_ID: &str = "非负整数 token id";
/// 文本输入的类型说明。
const SAME_AS_TEXT: &str = "字符串（与第一条输入相同的类型）";
/// token id 数组输入的类型说明。
const SAME_AS_IDS: &str = "token id 数组（与第一条输入相同的类型）";
/// `input` 本身的类型说明。
const STRING_OR_ARRAY: &str = "字符串或数组";

/// 请求体里网关要看的字段：都只借用原始字节，其余字段不解析（透传时原样到达上游）。
#[derive(Deserialize)]
pub(super) struct Wire<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    /// `input` 在读请求体的同一遍里就校验并量好（不先存成原始 JSON 再读第二遍）。
    #[serde(default)]
    input: Option<Scan>,
    #[serde(borrow, default)]
    encoding_format: Option<&'a RawValue>,
    #[serde(borrow, default)]
    dimensions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user: Option<&'a RawValue>,
}

impl<'a> Wire<'a> {
    /// 除 `input` 外要看的字段组成的小对象（几个短值，交给各方言共用的校验函数）。
    pub(super) fn small_fields(&self) -> Map<String, Value> {
        let fields = [
            ("model", self.model),
            ("encoding_format", self.encoding_format),
            ("dimensions", self.dimensions),
            ("user", self.user),
        ];
        fields
            .into_iter()
            .filter_map(|(name, raw)| {
                let value = serde_json::from_str(raw?.get()).ok()?;
                Some((name.to_string(), value))
            })
            .collect()
    }

    /// `input` 的形状（没有 `input` 时为 `None`）。
    ///
    /// 错误：为空或类型不对时返回 400，`param` 指向出错的元素（如 `input[3]`、`input[1][0]`）。
    pub(super) fn input(self) -> Option<Result<Shape, ApiError>> {
        self.input.map(|scan| scan.0.map_err(Fault::into_error))
    }
}

/// 输入的形状：条数、是否 token id、总字节数（token id 每个按 [`BYTES_PER_TOKEN`] 计）。
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shape {
    pub count: usize,
    pub token_ids: bool,
    pub bytes: usize,
}

/// 第一个不合法的地方：参数名与问题。
struct Fault {
    param: String,
    problem: Problem,
}

/// 不合法的种类。
enum Problem {
    /// 空串或空数组。
    Empty,
    /// 类型不对（期望的类型说明）。
    WrongType(&'static str),
}

impl Fault {
    /// 写成 400 错误。
    fn into_error(self) -> ApiError {
        match self.problem {
            Problem::Empty => empty_field(&self.param),
            Problem::WrongType(expected) => wrong_type(&self.param, expected),
        }
    }
}

/// `input` 的校验结果：非空字符串、非空字符串数组、非空 token id 数组，或非空 token id 数组的数组
/// （JSON 本身合法时总能得到，内容不合法时是 `Err`）。
struct Scan(Result<Shape, Fault>);

impl<'de> Deserialize<'de> for Scan {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(InputVisitor)
    }
}

/// `input` 本身：字符串或数组，其余类型不合法。
struct InputVisitor;

impl<'de> Visitor<'de> for InputVisitor {
    type Value = Scan;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(STRING_OR_ARRAY)
    }

    fn visit_str<E>(self, text: &str) -> Result<Scan, E> {
        if text.is_empty() {
            return Ok(Scan(Err(fault(INPUT.to_string(), Problem::Empty))));
        }
        Ok(Scan(Ok(Shape {
            count: 1,
            token_ids: false,
            bytes: text.len(),
        })))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scan, A::Error> {
        let mut tally = Tally::default();
        while let Some(item) = seq.next_element::<Item>()? {
            tally.push(item);
        }
        Ok(Scan(tally.finish()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scan, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(wrong_input())
    }

    fn visit_bool<E>(self, _: bool) -> Result<Scan, E> {
        Ok(wrong_input())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Scan, E> {
        Ok(wrong_input())
    }

    fn visit_u64<E>(self, _: u64) -> Result<Scan, E> {
        Ok(wrong_input())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Scan, E> {
        Ok(wrong_input())
    }

    fn visit_unit<E>(self) -> Result<Scan, E> {
        Ok(wrong_input())
    }
}

/// `input` 不是字符串也不是数组。
fn wrong_input() -> Scan {
    Scan(Err(fault(
        INPUT.to_string(),
        Problem::WrongType(STRING_OR_ARRAY),
    )))
}

/// 一个不合法的地方。
fn fault(param: String, problem: Problem) -> Fault {
    Fault { param, problem }
}

/// 数组里的一项。
enum Item {
    /// 文本（字节数）。
    Text(usize),
    /// 一个数字（是否合法的 token id）。
    Number(bool),
    /// token id 数组：个数，或第一个不合法的 id 的位置。
    Ids(Result<usize, usize>),
    /// 其他类型。
    Other,
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ItemVisitor)
    }
}

/// 数组里一项的访问者：文本只借用、不复制。
struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("字符串、token id 或 token id 数组")
    }

    fn visit_str<E>(self, text: &str) -> Result<Item, E> {
        Ok(Item::Text(text.len()))
    }

    fn visit_u64<E>(self, id: u64) -> Result<Item, E> {
        Ok(Item::Number(u32::try_from(id).is_ok()))
    }

    fn visit_i64<E>(self, id: i64) -> Result<Item, E> {
        Ok(Item::Number(u32::try_from(id).is_ok()))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Item, E> {
        Ok(Item::Number(false))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Item, E> {
        Ok(Item::Other)
    }

    fn visit_unit<E>(self) -> Result<Item, E> {
        Ok(Item::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Item::Other)
    }

    /// 嵌套的数组：逐个看是不是合法的 token id（数字不分配；不合法的项也要读完）。
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
        let (mut count, mut bad) = (0usize, None);
        while let Some(id) = seq.next_element::<Value>()? {
            let valid = id.as_u64().is_some_and(|n| u32::try_from(n).is_ok());
            if !valid && bad.is_none() {
                bad = Some(count);
            }
            count += 1;
        }
        Ok(Item::Ids(bad.map_or(Ok(count), Err)))
    }
}

/// 数组输入的累计：第一项决定是哪种输入（文本、一串 token id、token id 数组的数组），之后每项都要同类。
#[derive(Default)]
struct Tally {
    index: usize,
    kind: Option<Kind>,
    bytes: usize,
    fault: Option<Fault>,
}

/// 数组输入的种类。
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Texts,
    Ids,
    IdLists,
}

impl Tally {
    /// 记一项；出过错之后只数个数（数组仍要读完）。
    fn push(&mut self, item: Item) {
        let at = self.index;
        self.index += 1;
        if self.fault.is_some() {
            return;
        }
        let kind = *self.kind.get_or_insert(match item {
            Item::Number(_) => Kind::Ids,
            Item::Ids(_) => Kind::IdLists,
            _ => Kind::Texts,
        });
        match self.check(kind, item, at) {
            Ok(bytes) => self.bytes = self.bytes.saturating_add(bytes),
            Err(fault) => self.fault = Some(fault),
        }
    }

    /// 一项是否与这种输入相符；返回它折算的字节数。
    fn check(&self, kind: Kind, item: Item, at: usize) -> Result<usize, Fault> {
        let param = || format!("{INPUT}[{at}]");
        match (kind, item) {
            (Kind::Texts, Item::Text(0)) => Err(fault(param(), Problem::Empty)),
            (Kind::Texts, Item::Text(bytes)) => Ok(bytes),
            (Kind::Texts, _) => Err(fault(param(), Problem::WrongType(SAME_AS_TEXT))),
            (Kind::Ids, Item::Number(true)) => Ok(BYTES_PER_TOKEN),
            (Kind::Ids, _) => Err(fault(param(), Problem::WrongType(TOKEN_ID))),
            (Kind::IdLists, Item::Ids(Ok(0))) => Err(fault(param(), Problem::Empty)),
            (Kind::IdLists, Item::Ids(Ok(count))) => Ok(count.saturating_mul(BYTES_PER_TOKEN)),
            (Kind::IdLists, Item::Ids(Err(bad))) => Err(fault(
                format!("{}[{bad}]", param()),
                Problem::WrongType(TOKEN_ID),
            )),
            (Kind::IdLists, _) => Err(fault(param(), Problem::WrongType(SAME_AS_IDS))),
        }
    }

    /// 数组读完：空数组、出过错或合法的形状（一串 token id 是一条输入）。
    fn finish(self) -> Result<Shape, Fault> {
        if let Some(fault) = self.fault {
            return Err(fault);
        }
        match self.kind {
            None => Err(fault(INPUT.to_string(), Problem::Empty)),
            Some(kind) => Ok(Shape {
                count: if kind == Kind::Ids { 1 } else { self.index },
                token_ids: kind != Kind::Texts,
                bytes: self.bytes,
            }),
        }
    }
}
