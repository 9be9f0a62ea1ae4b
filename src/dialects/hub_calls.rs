//! 枢纽流中工具调用的跟踪，供各方言的流式渲染器共用（渲染器只负责写自己方言的事件）。
//!
//! 并行工具调用的约定：同一时刻只有一个工具调用“直播”（它的块或输出项打开着，参数片段即到即写）。
//! 其他工具调用的片段先缓存；只有当直播中的工具参数已经是完整的 JSON（之后不可能再合法地追加内容）、
//! 或打开的块不是工具时，缓存的调用才接着直播（先把已缓存的参数作为一个片段写出）。直到结束时仍未直播的
//! 调用，在结束原因或 `[DONE]` 到来时按首次出现的顺序整块写出（开始、一个完整参数片段、结束）。
//! 这样交错到达的并行调用、共用一个枢纽 `index` 但 id 不同的调用都能得到完整正确的参数；
//! 代价是被缓存的调用不能逐字显示。块已关闭的调用又收到非空白片段时（上游不合规范）丢弃并记警告。
//!
//! 这里只管“片段属于哪个调用、调用处于哪个阶段、参数是否完整”；何时开始直播、写什么事件由渲染器决定。

use std::collections::HashMap;
use std::ops::{Index, IndexMut};

use serde::de::IgnoredAny;
use serde_json::Value;

use crate::streaming::random_id;

/// 一个工具调用所处的阶段。
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallState {
    /// 还没有块（输出项）：片段先缓存。
    Pending,
    /// 它的块（输出项）正打开着：片段即到即写。
    Live,
    /// 块（输出项）已写出并关闭。
    Closed,
}

/// 流中的一个工具调用（按首次出现的顺序保存）。
///
/// 类型参数 `E` 为方言自己要记的额外数据（没有时为 `()`）。
#[derive(Debug)]
pub(crate) struct HubCall<E> {
    /// 上游的工具调用 id（上游没给时由网关合成）。
    pub id: String,
    /// id 是网关合成的（上游首个增量没给 id）：之后同一枢纽序号带来的 id 视为同一个调用。
    minted_id: bool,
    /// 枢纽函数名（第一次给出的非空名字）。
    pub name: String,
    /// 至今收到的全部参数片段。
    pub arguments: String,
    /// 调用所处的阶段。
    pub state: CallState,
    /// 上次检查参数完整性时的参数长度与结果（避免交错片段反复解析同一段参数）。
    checked: Option<(usize, bool)>,
    /// 方言自己的额外数据。
    pub extra: E,
}

impl<E> HubCall<E> {
    /// 参数是否已是一个完整的 JSON 值（之后再追加非空白内容就不再是合法 JSON）。
    fn is_complete(&mut self) -> bool {
        let len = self.arguments.len();
        match self.checked {
            Some((checked_len, complete)) if checked_len == len => complete,
            _ => {
                let complete = serde_json::from_str::<IgnoredAny>(&self.arguments).is_ok();
                self.checked = Some((len, complete));
                complete
            }
        }
    }

    /// 把调用记为直播中（渲染器打开它的块或输出项时调用）；上游没给函数名时记警告。
    pub fn go_live(&mut self) {
        if self.name.is_empty() {
            log::warn!("上游的工具调用 {} 没有给出函数名", self.id);
        }
        self.state = CallState::Live;
    }
}

/// 一个工具调用增量处理之后，渲染器接着要做的事所需的信息。
#[derive(Debug)]
pub(crate) struct CallDelta {
    /// 片段所属调用的位置（[`HubCalls`] 中的下标）。
    pub position: usize,
    /// 这次的参数片段（可能为空）。
    pub fragment: String,
    /// 调用处理片段时所处的阶段：`Live` 时渲染器即写片段，`Pending` 时考虑开始直播，`Closed` 时片段已丢弃。
    pub state: CallState,
}

/// 流中全部工具调用，及枢纽工具序号到当前调用的对应。
#[derive(Debug)]
pub(crate) struct HubCalls<E> {
    /// 按首次出现的顺序排列的调用。
    calls: Vec<HubCall<E>>,
    /// 枢纽工具序号 → 该序号当前的调用在 `calls` 中的位置。
    current: HashMap<u64, usize>,
    /// 上游没给 id 时合成 id 的前缀。
    id_prefix: &'static str,
}

impl<E: Default> HubCalls<E> {
    /// 创建空的调用表；`id_prefix` 为合成调用 id 的前缀（方言的工具调用 id 形状）。
    pub fn new(id_prefix: &'static str) -> Self {
        HubCalls {
            calls: Vec::new(),
            current: HashMap::new(),
            id_prefix,
        }
    }

    /// 处理一个枢纽工具调用增量（`delta.tool_calls` 的一项）：找到（或新建）它所属的调用，
    /// 第一次给出的函数名记下；调用已关闭时非空白片段丢弃并记警告，否则把片段追加到参数。
    ///
    /// 返回：所属调用的位置、片段与调用的阶段，渲染器据此写事件或开始直播。
    pub fn on_delta(&mut self, call: &Value) -> CallDelta {
        let hub_index = call["index"].as_u64().unwrap_or(0);
        let position = self.call_for(hub_index, call["id"].as_str());
        let function = &call["function"];
        let fragment = arguments_text(&function["arguments"]);
        let entry = &mut self.calls[position];
        if entry.name.is_empty() {
            entry.name = function["name"].as_str().unwrap_or_default().to_owned();
        }
        if entry.state == CallState::Closed {
            if !fragment.trim().is_empty() {
                log::warn!("上游在工具调用 {} 关闭后又发来参数片段，已丢弃", entry.id);
            }
        } else {
            entry.arguments.push_str(&fragment);
        }
        CallDelta {
            position,
            fragment,
            state: entry.state,
        }
    }

    /// 缓存中的调用能否开始直播：它已有名称，且正在直播的调用（`live`，没有时为 `None`）参数已完整。
    pub fn can_go_live(&mut self, position: usize, live: Option<usize>) -> bool {
        if self.calls[position].name.is_empty() {
            return false;
        }
        live.is_none_or(|live| self.calls[live].is_complete())
    }

    /// 找到枢纽序号 `hub_index` 上 id 为 `id` 的调用；没有时新建一个（同一序号出现新的 id 就是新的调用）。
    ///
    /// 返回：调用在 `calls` 中的位置。
    fn call_for(&mut self, hub_index: u64, id: Option<&str>) -> usize {
        let id = id.filter(|id| !id.is_empty());
        if let Some(&position) = self.current.get(&hub_index) {
            let existing = &mut self.calls[position];
            match id {
                None => return position,
                Some(id) if existing.id == id => return position,
                // 首个增量没带 id 时合成过 id：迟到的真实 id 属于同一个调用，还没写出时采用它
                Some(id) if existing.minted_id => {
                    if existing.state == CallState::Pending {
                        existing.id = id.to_owned();
                    }
                    existing.minted_id = false;
                    return position;
                }
                Some(_) => {}
            }
        }
        // 带着已知 id 的增量属于先前的那个调用（共用序号的调用交错到达时会切回去）
        if let Some(position) = id.and_then(|id| self.calls.iter().position(|c| c.id == id)) {
            self.current.insert(hub_index, position);
            return position;
        }
        self.calls.push(HubCall {
            id: id.map_or_else(|| random_id(self.id_prefix), str::to_owned),
            minted_id: id.is_none(),
            name: String::new(),
            arguments: String::new(),
            state: CallState::Pending,
            checked: None,
            extra: E::default(),
        });
        let position = self.calls.len() - 1;
        self.current.insert(hub_index, position);
        position
    }
}

impl<E> HubCalls<E> {
    /// 调用的个数。
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// 是否还没有任何调用。
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

impl<E> Index<usize> for HubCalls<E> {
    type Output = HubCall<E>;

    fn index(&self, position: usize) -> &HubCall<E> {
        &self.calls[position]
    }
}

impl<E> IndexMut<usize> for HubCalls<E> {
    fn index_mut(&mut self, position: usize) -> &mut HubCall<E> {
        &mut self.calls[position]
    }
}

/// 工具参数片段：规范是字符串；个别上游直接给对象时取其 JSON 文本。
pub(crate) fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
