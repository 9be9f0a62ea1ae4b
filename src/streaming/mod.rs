//! SSE（Server-Sent Events）：增量解析上游字节流、按 OpenAI 格式写出事件与流式块。

mod chunk;
mod id;
mod sse;

pub(crate) use chunk::OpenAiUsage;
pub use chunk::{estimate_tokens, ChunkWriter, FinishReason, Usage, BYTES_PER_TOKEN};
pub use id::random_id;
pub use sse::{
    simple_data_event, write_data, write_data_with, write_done, write_event, write_event_with,
    write_json_str, SseEvent, SseParser, DONE_SENTINEL,
};
