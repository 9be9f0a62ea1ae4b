//! 请求翻译的测试。

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::request::{
    append, append_tool_result, request_body, Turn, DEFAULT_MAX_TOKENS, IMAGE_TYPES,
    MAX_TEMPERATURE, PDF_MIME, ROLE_USER,
};
use super::test_support::*;
use super::{AnthropicFilter, API_VERSION};
use crate::dialects::ChatRequest;
use crate::providers::ProviderFilter;

/// 以 URL 来源发送的图片地址。
const IMAGE_URL: &str = "https://例子.cn/猫.png";
/// 不支持的图片地址协议。
const FTP_URL: &str = "ftp://x/a.png";

#[test]
fn 请求_黄金用例_逐字节一致() {
    let body = json!({
        "model": MODEL, "stream": true, "temperature": 0.3, "stop": "完毕", "user": "用户-42", "seed": 7,
        "max_completion_tokens": 300, "tool_choice": "required", "parallel_tool_calls": false,
        "tools": [
            { "type": "function", "function": { "name": "get_weather", "description": "查询天气",
                "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } },
            { "type": "function", "function": { "name": "now" } },
        ],
        "messages": [
            { "role": "system", "content": "你是助手。" },
            { "role": "user", "content": "巴黎天气如何？" },
            { "role": "assistant", "content": null, "tool_calls": [ { "id": "toolu_01", "type": "function",
                "function": { "name": "get_weather", "arguments": "{\"city\":\"巴黎\"}" } } ] },
            { "role": "tool", "tool_call_id": "toolu_01", "content": "18°C" },
        ],
    });
    let expected = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 300,
        "system": [ { "type": "text", "text": "你是助手。" } ],
        "messages": [
            { "role": "user", "content": [ { "type": "text", "text": "巴黎天气如何？" } ] },
            { "role": "assistant", "content": [ { "type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": { "city": "巴黎" } } ] },
            { "role": "user", "content": [ { "type": "tool_result", "tool_use_id": "toolu_01", "content": "18°C" } ] },
        ],
        "temperature": 0.3, "stop_sequences": ["完毕"],
        "tools": [
            { "name": "get_weather", "description": "查询天气",
              "input_schema": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } },
            { "name": "now", "input_schema": { "type": "object", "properties": {} } },
        ],
        "tool_choice": { "type": "any", "disable_parallel_tool_use": true },
        "metadata": { "user_id": "用户-42" }, "stream": true,
    });
    let up = AnthropicFilter
        .build_request(&请求(body), &目标(Some(1024)))
        .expect("应当翻译成功");
    assert_eq!(
        std::str::from_utf8(&up.body).expect("UTF-8"),
        expected.to_string(),
        "字段、取值与顺序都必须一致；seed 必须被丢弃"
    );
}

#[test]
fn 请求头_密钥版本与路径() {
    let req =
        请求(json!({ "model": MODEL, "messages": [ { "role": "user", "content": "你好" } ] }));
    let up = AnthropicFilter
        .build_request(&req, &目标(None))
        .expect("应当成功");
    assert_eq!(up.path, "/proxy/v1/messages", "路径前缀来自 base_url");
    let header = |name: &str| {
        up.headers
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("缺少请求头 {name}"))
    };
    assert_eq!(header("x-api-key").to_str().ok(), Some(KEY));
    assert!(header("x-api-key").is_sensitive(), "密钥头必须标记为敏感");
    assert_eq!(header("anthropic-version").to_str().ok(), Some(API_VERSION));
    assert_eq!(
        header("content-type").to_str().ok(),
        Some("application/json")
    );
    assert!(
        up.headers.iter().all(|(k, _)| k != "authorization"),
        "不得发送 Bearer 头"
    );
    let body: Value = serde_json::from_slice(&up.body).expect("JSON");
    assert_eq!(
        body["max_tokens"], DEFAULT_MAX_TOKENS,
        "客户端与目标都没给上限时用缺省值"
    );
    assert!(body.get("stream").is_none(), "客户端没给 stream 时不发送");
}

#[test]
fn 助手消息内容为空串或空白时不发送空文本块() {
    for content in [
        json!(""),
        Value::Null,
        json!("  \n"),
        json!([ { "type": "text", "text": "" } ]),
    ] {
        let messages = 对话(json!([
            { "role": "user", "content": "查天气" },
            { "role": "assistant", "content": content, "tool_calls": [ { "id": "toolu_1", "type": "function", "function": { "name": "天气", "arguments": "{}" } } ] },
            { "role": "tool", "tool_call_id": "toolu_1", "content": "晴" },
        ]));
        assert_eq!(
            messages[1]["content"],
            json!([ { "type": "tool_use", "id": "toolu_1", "name": "天气", "input": {} } ]),
            "内容 {content} 不应产生文本块"
        );
    }
}

#[test]
fn 三条工具消息后接用户消息_合并为一条用户消息且工具结果在前() {
    let call = |id: &str| json!({ "id": id, "type": "function", "function": { "name": "查", "arguments": "" } });
    let messages = 对话(json!([
        { "role": "user", "content": "查三个城市" },
        { "role": "assistant", "content": "好的", "tool_calls": [ call("t1"), call("t2"), call("t3") ] },
        { "role": "tool", "tool_call_id": "t1", "content": "晴" },
        { "role": "tool", "tool_call_id": "t2", "content": [ { "type": "text", "text": "雨" } ] },
        { "role": "tool", "tool_call_id": "t3", "content": "" },
        { "role": "user", "content": "总结一下" },
    ]));
    assert_eq!(
        messages.as_array().map(Vec::len),
        Some(3),
        "工具结果与用户消息必须合并：{messages}"
    );
    assert_eq!(
        messages[2],
        json!({ "role": "user", "content": [
            { "type": "tool_result", "tool_use_id": "t1", "content": "晴" },
            { "type": "tool_result", "tool_use_id": "t2", "content": [ { "type": "text", "text": "雨" } ] },
            { "type": "tool_result", "tool_use_id": "t3" },
            { "type": "text", "text": "总结一下" },
        ] })
    );
}

#[test]
fn 工具结果插在已有用户内容之前() {
    let mut turns = Vec::new();
    append(
        &mut turns,
        ROLE_USER,
        vec![json!({ "type": "text", "text": "先说的话" })],
    );
    append_tool_result(
        &mut turns,
        json!({ "type": "tool_result", "tool_use_id": "t1" }),
    );
    assert_eq!(turns.len(), 1);
    let message = turns.pop().map(Turn::into_json).expect("应有一条消息");
    assert_eq!(
        message["content"][0]["type"], "tool_result",
        "用户消息必须以工具结果开头"
    );
}

/// 大规模测试中每隔多少条工具结果插入一条用户文本。
const TEXT_EVERY: usize = 1_000;
/// 大规模测试的工具结果条数（超过网关的消息上限，所以直接构造请求、不经校验）。
const MANY_TOOL_RESULTS: usize = 20_000;

/// 一条用户提问、一条带 `MANY_TOOL_RESULTS` 个工具调用的助手消息，再接同样多条 tool 消息，
/// 每隔 `TEXT_EVERY` 条夹一条用户文本。
fn 大量工具结果的请求() -> ChatRequest {
    let calls: Vec<Value> = (0..MANY_TOOL_RESULTS)
        .map(|k| json!({ "id": format!("t{k}"), "type": "function", "function": { "name": "查", "arguments": "{}" } }))
        .collect();
    let mut messages = vec![
        json!({ "role": "user", "content": "查两万个城市" }),
        json!({ "role": "assistant", "content": null, "tool_calls": calls }),
    ];
    for k in 0..MANY_TOOL_RESULTS {
        messages.push(json!({ "role": "tool", "tool_call_id": format!("t{k}"), "content": format!("结果{k}") }));
        if k % TEXT_EVERY == 0 {
            messages.push(json!({ "role": "user", "content": format!("备注{k}") }));
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(MODEL));
    body.insert("messages".into(), Value::Array(messages));
    ChatRequest {
        model: MODEL.into(),
        stream: false,
        body,
        raw: Bytes::new(),
    }
}

#[test]
fn 两万条工具结果_合并为一条用户消息_工具结果按原顺序在前_用户文本在后() {
    let translated = request_body(&大量工具结果的请求(), &目标(None)).expect("应当翻译成功");
    let turns = translated["messages"].as_array().expect("messages 是数组");
    assert_eq!(turns.len(), 3, "工具结果与用户文本必须合并成一条用户消息");
    let blocks = turns[2]["content"].as_array().expect("内容是块数组");
    let texts = MANY_TOOL_RESULTS / TEXT_EVERY;
    assert_eq!(blocks.len(), MANY_TOOL_RESULTS + texts, "不得丢失或重复块");
    for (k, block) in blocks[..MANY_TOOL_RESULTS].iter().enumerate() {
        let expected = json!({ "type": "tool_result", "tool_use_id": format!("t{k}"), "content": format!("结果{k}") });
        assert_eq!(block, &expected, "第 {k} 个工具结果错位");
    }
    let expected_texts: Vec<String> = (0..texts)
        .map(|n| format!("备注{}", n * TEXT_EVERY))
        .collect();
    let actual_texts: Vec<&str> = blocks[MANY_TOOL_RESULTS..]
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect();
    assert_eq!(
        actual_texts, expected_texts,
        "用户文本按原顺序排在工具结果之后"
    );
}

#[test]
fn 两条系统消息与开发者消息及对话中间的系统消息_全部按顺序进入_system() {
    let body = 翻译(json!({ "model": MODEL, "messages": [
        { "role": "system", "content": "规则一" },
        { "role": "system", "content": [ { "type": "text", "text": "规则" }, { "type": "text", "text": "二" } ] },
        { "role": "developer", "content": "开发者指令" },
        { "role": "user", "content": "你好" },
        { "role": "system", "content": "中途追加" },
        { "role": "system", "content": "" },
        { "role": "assistant", "content": "你好！" },
    ] }));
    let texts: Vec<&str> = body["system"]
        .as_array()
        .expect("system 必须是块数组")
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        vec!["规则一", "规则二", "开发者指令", "中途追加"],
        "空系统消息跳过，其余按顺序"
    );
    let roles: Vec<&str> = body["messages"]
        .as_array()
        .expect("数组")
        .iter()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert_eq!(roles, vec!["user", "assistant"], "系统消息不得留在对话中");
}

#[test]
fn 历史中的工具参数_空串为空对象_非法时返回_400_并指明参数() {
    let history = |arguments: &str| {
        json!({ "model": MODEL, "messages": [
        { "role": "user", "content": "查" },
        { "role": "assistant", "tool_calls": [ { "id": "t1", "type": "function", "function": { "name": "查", "arguments": arguments } } ] },
        { "role": "tool", "tool_call_id": "t1", "content": "好" },
    ] })
    };
    assert_eq!(
        翻译(history(""))["messages"][1]["content"][0]["input"],
        json!({})
    );
    for bad in ["{\"a\":", "[1]", "\"文本\""] {
        let e = 翻译失败(history(bad));
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("messages[1].tool_calls[0].function.arguments")),
            "参数 {bad} 应返回 400"
        );
    }
}

#[test]
fn 采样冲突_温度截断_同时给出时丢弃_top_p_缺省输出上限() {
    let base = |extra: Value| {
        let mut body =
            json!({ "model": MODEL, "messages": [ { "role": "user", "content": "你好" } ] });
        body.as_object_mut()
            .expect("对象")
            .extend(extra.as_object().cloned().unwrap_or_default());
        body
    };
    let hot = 翻译(base(json!({ "temperature": 1.5 })));
    assert_eq!(
        hot["temperature"],
        json!(MAX_TEMPERATURE),
        "超过 1 的温度截断为 1"
    );
    let both = 翻译(base(json!({ "temperature": 0.5, "top_p": 0.9 })));
    assert_eq!(
        (both["temperature"].clone(), both.get("top_p")),
        (json!(0.5), None)
    );
    assert_eq!(
        翻译(base(json!({ "top_p": 0.9 })))["top_p"],
        json!(0.9),
        "单独的 top_p 保留"
    );
    assert_eq!(
        翻译(base(json!({})))["max_tokens"],
        1024,
        "目标的 max_tokens 作为缺省"
    );
    assert_eq!(翻译(base(json!({ "max_tokens": 77 })))["max_tokens"], 77);
    let both_limits = json!({ "max_tokens": 77, "max_completion_tokens": 88 });
    assert_eq!(
        翻译(base(both_limits))["max_tokens"],
        88,
        "max_completion_tokens 优先"
    );
    let stops = 翻译(base(json!({ "stop": ["甲", "乙"] })));
    assert_eq!(stops["stop_sequences"], json!(["甲", "乙"]));
}

#[test]
fn 图片输入_data_url_转_base64_https_转_url_不支持的类型返回_400() {
    let image = |url: &str| {
        json!([ { "type": "text", "text": "" }, { "type": "text", "text": "看图" },
        { "type": "image_url", "image_url": { "url": url, "detail": "high" } } ])
    };
    for mime in IMAGE_TYPES {
        let messages = 对话(
            json!([ { "role": "user", "content": image(&format!("data:{mime};base64,AAAA")) } ]),
        );
        assert_eq!(
            messages[0]["content"],
            json!([ { "type": "text", "text": "看图" }, { "type": "image", "source": { "type": "base64", "media_type": mime, "data": "AAAA" } } ]),
            "空文本部分必须跳过，{mime} 必须成为 base64 来源"
        );
    }
    let url = 对话(json!([ { "role": "user", "content": image(IMAGE_URL) } ]));
    assert_eq!(
        url[0]["content"][1]["source"],
        json!({ "type": "url", "url": IMAGE_URL })
    );
    for (url, param) in [
        (
            "data:image/bmp;base64,AAAA",
            "messages[0].content[2].image_url.url",
        ),
        (FTP_URL, "messages[0].content[2].image_url.url"),
    ] {
        let e = 翻译失败(
            json!({ "model": MODEL, "messages": [ { "role": "user", "content": image(url) } ] }),
        );
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some(param)),
            "{url} 应被拒绝"
        );
    }
}

#[test]
fn 文件与音频输入_pdf_转文档_其他文件与音频返回_400() {
    let file = |data: &str| json!({ "model": MODEL, "messages": [ { "role": "user", "content": [ { "type": "file", "file": { "file_data": data } } ] } ] });
    let pdf = 翻译(file("data:application/pdf;base64,JVBE"))["messages"][0]["content"][0].clone();
    assert_eq!(
        pdf,
        json!({ "type": "document", "source": { "type": "base64", "media_type": PDF_MIME, "data": "JVBE" } })
    );
    let e = 翻译失败(file("data:text/csv;base64,YSxi"));
    assert_eq!(
        (e.status, e.param.as_deref()),
        (400, Some("messages[0].content[0].file.file_data"))
    );
    let audio =
        json!([ { "type": "input_audio", "input_audio": { "data": "AAAA", "format": "wav" } } ]);
    let e = 翻译失败(
        json!({ "model": MODEL, "messages": [ { "role": "user", "content": audio } ] }),
    );
    assert_eq!(
        (e.status, e.param.as_deref()),
        (400, Some("messages[0].content[0]"))
    );
}

#[test]
fn 对话中的_anthropic_格式块_明确拒绝而不是丢弃() {
    let user = json!([ { "type": "tool_result", "tool_use_id": "t1", "content": "晴" } ]);
    let e = 翻译失败(
        json!({ "model": MODEL, "messages": [ { "role": "user", "content": user } ] }),
    );
    assert_eq!(
        (e.status, e.param.as_deref()),
        (400, Some("messages[0].content[0]"))
    );
    let assistant = json!([ { "type": "text", "text": "好" }, { "type": "tool_use", "id": "t1", "name": "查", "input": {} } ]);
    let e = 翻译失败(
        json!({ "model": MODEL, "messages": [ { "role": "user", "content": "查" }, { "role": "assistant", "content": assistant } ] }),
    );
    assert_eq!(
        (e.status, e.param.as_deref()),
        (400, Some("messages[1].content[1]"))
    );
}

#[test]
fn 以助手开头原样转发_以助手结尾去掉末尾空白_没有非系统消息返回_400() {
    let messages = 对话(json!([
        { "role": "assistant", "content": "我是助手。" },
        { "role": "user", "content": "继续" },
        { "role": "assistant", "content": "好的，答案是 " },
    ]));
    assert_eq!(messages[0]["role"], "assistant", "开头的助手消息原样转发");
    assert_eq!(
        messages[2]["content"][0]["text"], "好的，答案是",
        "预填充去掉末尾空白"
    );
    let e = 翻译失败(
        json!({ "model": MODEL, "messages": [ { "role": "system", "content": "只有系统" } ] }),
    );
    assert_eq!((e.status, e.param.as_deref()), (400, Some("messages")));
}

#[test]
fn 相邻同角色消息合并() {
    let messages = 对话(json!([
        { "role": "user", "content": "第一句" },
        { "role": "user", "content": [ { "type": "text", "text": "第二句" } ] },
        { "role": "assistant", "content": "回答" },
    ]));
    assert_eq!(messages[0]["content"].as_array().map(Vec::len), Some(2));
    assert_eq!(messages.as_array().map(Vec::len), Some(2));
}

#[test]
fn 多个候选与函数角色与缺少工具调用_id_返回_400() {
    let user = json!([ { "role": "user", "content": "你好" } ]);
    let e = 翻译失败(json!({ "model": MODEL, "n": 2, "messages": user }));
    assert_eq!((e.status, e.param.as_deref()), (400, Some("n")));
    let function = json!([ { "role": "function", "name": "查", "content": "晴" } ]);
    let e = 翻译失败(json!({ "model": MODEL, "messages": function }));
    assert_eq!(e.param.as_deref(), Some("messages[0].role"));
    let tool = json!([ { "role": "tool", "content": "晴" } ]);
    let e = 翻译失败(json!({ "model": MODEL, "messages": tool }));
    assert_eq!(e.param.as_deref(), Some("messages[0].tool_call_id"));
}

#[test]
fn 工具选择_四种写法与禁止并行() {
    let tools = json!([ { "type": "function", "function": { "name": "查天气", "parameters": { "type": "object" } } } ]);
    let choice = |tool_choice: Value, parallel: Value| {
        翻译(json!({ "model": MODEL, "messages": [ { "role": "user", "content": "查" } ], "tools": tools,
            "tool_choice": tool_choice, "parallel_tool_calls": parallel }))["tool_choice"].clone()
    };
    assert_eq!(
        choice(json!("auto"), Value::Null),
        json!({ "type": "auto" })
    );
    assert_eq!(
        choice(json!("none"), json!(false)),
        json!({ "type": "none" }),
        "none 不接受禁止并行"
    );
    assert_eq!(
        choice(json!("required"), json!(true)),
        json!({ "type": "any" })
    );
    let named = json!({ "type": "function", "function": { "name": "查天气" } });
    assert_eq!(
        choice(named, Value::Null),
        json!({ "type": "tool", "name": "查天气" })
    );
    assert_eq!(
        choice(Value::Null, json!(false)),
        json!({ "type": "auto", "disable_parallel_tool_use": true })
    );
    let e = 翻译失败(
        json!({ "model": MODEL, "messages": [ { "role": "user", "content": "查" } ], "tools": tools, "tool_choice": "总是" }),
    );
    assert_eq!(e.param.as_deref(), Some("tool_choice"));
    let no_tools = 翻译(
        json!({ "model": MODEL, "messages": [ { "role": "user", "content": "查" } ], "tool_choice": "auto" }),
    );
    assert!(
        no_tools.get("tool_choice").is_none(),
        "没有工具时不发送 tool_choice"
    );
}
