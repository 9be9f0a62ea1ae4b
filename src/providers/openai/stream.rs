//! 流式翻译：OpenAI 事件本来就是 OpenAI 格式，逐个转发，只记下用量并识别结束标记。

use bytes::BytesMut;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::model::ModelName;
use super::parse_openai_error;
use crate::error::ApiError;
use crate::providers::{
    done_marker, done_or_truncated, may_carry_usage, stream_error, StreamStatus, StreamTranslator,
    TranslateCtx,
};
use crate::streaming::{write_data, write_data_with, OpenAiUsage, SseEvent, Usage};

/// 截断错误里的上游类型名。
const OPENAI_LABEL: &str = "上游";
/// OpenAI 流中错误块的开头。
const ERROR_CHUNK_PREFIX: &[u8] = b"{\"error\"";
/// 正常的块是 JSON 对象，以它开头。
const OBJECT_OPEN: u8 = b'{';
/// JSON 数组的开头。
const ARRAY_OPEN: char = '[';
/// JSON 数组的结尾。
const ARRAY_CLOSE: char = ']';

/// 这个块是不是上游的流中错误（`{"error":…}`）：只比一次前缀（有前导空白时先去掉）。
fn is_error_chunk(data: &[u8]) -> bool {
    data.trim_ascii_start().starts_with(ERROR_CHUNK_PREFIX)
}

/// OpenAI 流：事件本来就是 OpenAI 格式，逐个转发并识别 `[DONE]`。
pub(super) struct OpenAiStream {
    /// 客户端请求的模型名（每个块的 `model` 换成它）。
    model: String,
    /// 上一块里 `"model"` 键的位置（下一块先看这里）。
    model_at: usize,
    /// 客户端是否要求用量块。
    include_usage: bool,
    /// 上游报告的用量。
    usage: Option<Usage>,
    /// 是否已收到结束标记。
    done: bool,
}

impl OpenAiStream {
    /// 为一次流式响应创建转发器（客户端的模型名、是否要求用量块取自 `ctx`）。
    pub(super) fn new(ctx: TranslateCtx) -> Self {
        OpenAiStream {
            model: ctx.model,
            model_at: 0,
            include_usage: ctx.include_usage,
            usage: None,
            done: false,
        }
    }

    /// 一个要转发的块：`model` 本来就是客户端的名字时什么也不写（[`StreamStatus::Forward`]，上游的字节原样转发），
    /// 否则写出换了名字的块。
    fn forward(&mut self, data: &[u8], out: &mut BytesMut) -> StreamStatus {
        let model = ModelName::with_hint(&self.model, self.model_at);
        let (key, span) = model.locate(data);
        if let Some(at) = key {
            self.model_at = at;
        }
        let Some(span) = span else {
            return StreamStatus::Forward;
        };
        write_data_with(out, model.len_hint(data), |out| {
            model.replace(data, span, out)
        });
        StreamStatus::Continue
    }
}

/// 可能带用量的块里网关要看的两个字段：用量定型解析，`choices` 只借用原始文本，其余字段跳过，不建 JSON 树。
///
/// 每个流只有一个这样的块，但按完整对象解析它（`Map<String, Value>`）曾占每个流固定开销的一成多。
/// `usage` 不是对象或 null、同名的键重复出现时整块解析失败，按解析不了的块原样转发、不计用量
/// （与 `usage` 为 null 时的结果相同）；细分字段的形状不合规范时照常计量（见 [`OpenAiUsage`]）。
#[derive(Deserialize)]
struct UsageChunk<'a> {
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    #[serde(borrow, default)]
    choices: Option<&'a RawValue>,
}

impl UsageChunk<'_> {
    /// 记下块里的用量（`usage` 是对象时）；返回这个块是否只携带用量：有用量，且 `choices`
    /// 缺省、为 null、不是数组或是空数组。
    fn take_usage(self, usage: &mut Option<Usage>) -> bool {
        let Some(found) = self.usage else {
            return false;
        };
        *usage = Some(Usage::from(found));
        !self.choices.is_some_and(|raw| is_nonempty_array(raw.get()))
    }
}

/// 一个 JSON 值的原始文本是不是非空数组（原始文本从值的第一个字节开始）。
fn is_nonempty_array(raw: &str) -> bool {
    raw.strip_prefix(ARRAY_OPEN)
        .is_some_and(|rest| !rest.trim_start().starts_with(ARRAY_CLOSE))
}

impl StreamTranslator for OpenAiStream {
    fn on_event(&mut self, event: &SseEvent, out: &mut BytesMut) -> Result<StreamStatus, ApiError> {
        match self.relay_event(event, out)? {
            StreamStatus::Forward => {
                write_data(out, event.data.as_bytes());
                Ok(StreamStatus::Continue)
            }
            status => Ok(status),
        }
    }

    /// 块的 `model` 本来就是客户端的名字时什么也不写（[`StreamStatus::Forward`]），上游的字节原样转发。
    fn relay_event(
        &mut self,
        event: &SseEvent,
        out: &mut BytesMut,
    ) -> Result<StreamStatus, ApiError> {
        if done_marker(&mut self.done, event, out) {
            return Ok(StreamStatus::Done);
        }
        // 上游在流中报告的错误（`{"error":…}`）结束这个流：只看开头，正常的块不多花解析
        if is_error_chunk(event.data.as_bytes()) {
            return Err(stream_error(parse_openai_error(event.data.as_bytes())));
        }
        // 只有可能带用量的块才解析，其余原样转发，保持透传的零解析开销
        if may_carry_usage(event.data.as_bytes()) {
            let usage_only = serde_json::from_str::<UsageChunk>(&event.data)
                .is_ok_and(|chunk| chunk.take_usage(&mut self.usage));
            if usage_only && !self.include_usage {
                return Ok(StreamStatus::Continue);
            }
        }
        Ok(self.forward(event.data.as_bytes(), out))
    }

    /// 普通的内容块（不是结束标记、流中错误或用量块）直接在原始字节上处理；其余交给解析后的路径。
    fn relay_data(
        &mut self,
        data: &[u8],
        out: &mut BytesMut,
    ) -> Option<Result<StreamStatus, ApiError>> {
        let ordinary = !self.done
            && data.first() == Some(&OBJECT_OPEN)
            && !is_error_chunk(data)
            && !may_carry_usage(data);
        ordinary.then(|| Ok(self.forward(data, out)))
    }

    fn on_eof(&mut self, _out: &mut BytesMut) -> Result<(), ApiError> {
        done_or_truncated(self.done, OPENAI_LABEL)
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}
