//! 请求翻译的测试。

use serde_json::{json, Value};

use super::test_support::*;
use super::{GeminiFilter, API_KEY_HEADER};
use crate::providers::ProviderFilter;

#[test]
fn 请求_黄金样例_完整映射() {
    let input: Value = serde_json::from_str(黄金请求).expect("黄金请求是 JSON");
    let expected: Value = serde_json::from_str(黄金上游请求).expect("黄金上游请求是 JSON");
    assert_eq!(翻译(&input), expected);
}

#[test]
fn 请求_路径按是否流式选择方法_密钥只放在请求头() {
    let mut body = 消息(json!([ { "role": "user", "content": "你好" } ]));
    let upstream = 构造(&body).expect("应能翻译");
    assert_eq!(
        upstream.path,
        "/proxy/v1beta/models/gemini-2.5-flash:generateContent"
    );
    body["stream"] = json!(true);
    let upstream = 构造(&body).expect("应能翻译");
    assert_eq!(
        upstream.path,
        "/proxy/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert!(!upstream.path.contains("key="), "密钥不得进入查询串");
    let key = upstream
        .headers
        .iter()
        .find(|(name, _)| name == API_KEY_HEADER)
        .map(|(_, value)| value)
        .expect("必须有 x-goog-api-key 头");
    assert_eq!(key.as_bytes(), "sk-gemini-测试".as_bytes());
    assert!(key.is_sensitive(), "密钥头必须标记为敏感");
    assert!(upstream
        .headers
        .iter()
        .any(|(name, _)| name == "content-type"));
}

#[test]
fn 三条连续工具消息后接用户消息_合成一个用户内容() {
    let calls: Vec<Value> = ["甲", "乙", "丙"]
        .iter()
        .map(|n| json!({ "id": format!("call_{n}"), "type": "function", "function": { "name": format!("工具{n}"), "arguments": "{}" } }))
        .collect();
    let mut messages = vec![
        json!({ "role": "user", "content": "并行调用三个工具" }),
        json!({ "role": "assistant", "content": null, "tool_calls": calls }),
    ];
    for n in ["甲", "乙", "丙"] {
        messages.push(json!({ "role": "tool", "tool_call_id": format!("call_{n}"), "content": format!("结果{n}") }));
    }
    messages.push(json!({ "role": "user", "content": "总结一下" }));
    let contents = 翻译(&消息(json!(messages)))["contents"].clone();
    assert_eq!(
        contents.as_array().map(Vec::len),
        Some(3),
        "应为 user、model、user 三个内容"
    );
    let parts = &contents[2]["parts"];
    for (k, n) in ["甲", "乙", "丙"].iter().enumerate() {
        assert_eq!(parts[k]["functionResponse"]["name"], format!("工具{n}"));
        assert_eq!(
            parts[k]["functionResponse"]["response"]["output"],
            format!("结果{n}")
        );
    }
    assert_eq!(parts[3], json!({ "text": "总结一下" }));
    assert_eq!(contents[1]["parts"].as_array().map(Vec::len), Some(3));
}

#[test]
fn 助手空内容加工具调用_不发送空文本部分() {
    for content in [
        json!(""),
        Value::Null,
        json!([ { "type": "text", "text": "" } ]),
    ] {
        let messages = json!([
            { "role": "user", "content": "查天气" },
            { "role": "assistant", "content": content, "tool_calls": [ { "id": "call_1", "type": "function", "function": { "name": "查天气", "arguments": "" } } ] },
            { "role": "tool", "tool_call_id": "call_1", "content": "晴" },
        ]);
        let contents = 翻译(&消息(messages))["contents"].clone();
        assert_eq!(
            contents[1]["parts"],
            json!([ { "functionCall": { "name": "查天气", "args": {} } } ]),
            "空内容 {content} 不应产生文本部分，空参数应为空对象"
        );
    }
    let empty_user = 翻译(&消息(
        json!([ { "role": "user", "content": [ { "type": "text", "text": "" }, { "type": "text", "text": "你好" } ] } ]),
    ));
    assert_eq!(
        empty_user["contents"][0]["parts"],
        json!([ { "text": "你好" } ])
    );
}

#[test]
fn 函数响应名称_按工具调用_id_找回_未知_id_返回_400() {
    let messages = json!([
        { "role": "user", "content": "查天气" },
        { "role": "assistant", "tool_calls": [ { "id": "call_天气", "type": "function", "function": { "name": "查天气", "arguments": "{}" } } ] },
        { "role": "tool", "tool_call_id": "call_天气", "content": [ { "type": "text", "text": "晴" } ] },
    ]);
    let contents = 翻译(&消息(messages.clone()))["contents"].clone();
    assert_eq!(
        contents[2]["parts"][0]["functionResponse"]["name"],
        "查天气"
    );
    assert_eq!(
        contents[2]["parts"][0]["functionResponse"]["response"],
        json!({ "output": "晴" })
    );
    let mut unknown = messages;
    unknown[2]["tool_call_id"] = json!("call_不存在");
    let e = 翻译错误(&消息(unknown));
    assert_eq!(
        (e.status, e.param.as_deref()),
        (400, Some("messages[2].tool_call_id"))
    );
    assert!(
        e.message.contains("call_不存在"),
        "错误信息应指出 id：{}",
        e.message
    );
}

#[test]
fn 两条系统消息_开发者消息与对话中途的系统消息_全部按顺序进入系统指令() {
    let messages = json!([
        { "role": "system", "content": "第一条系统" },
        { "role": "system", "content": [ { "type": "text", "text": "第二条" }, { "type": "text", "text": "系统" } ] },
        { "role": "developer", "content": "开发者" },
        { "role": "user", "content": "你好" },
        { "role": "system", "content": "中途的系统" },
        { "role": "assistant", "content": "你好！" },
    ]);
    let body = 翻译(&消息(messages));
    assert_eq!(
        body["systemInstruction"],
        json!({ "parts": [ { "text": "第一条系统" }, { "text": "第二条系统" }, { "text": "开发者" }, { "text": "中途的系统" } ] })
    );
    assert_eq!(body["contents"][0]["role"], "user");
    assert_eq!(
        body["contents"][1],
        json!({ "role": "model", "parts": [ { "text": "你好！" } ] })
    );
}

#[test]
fn 历史中格式错误的参数_返回_400_并指明字段() {
    for bad in ["{\"a\":", "[1]", "\"字符串\""] {
        let messages = json!([
            { "role": "user", "content": "你好" },
            { "role": "assistant", "tool_calls": [ { "id": "call_1", "type": "function", "function": { "name": "甲", "arguments": bad } } ] },
        ]);
        let e = 翻译错误(&消息(messages));
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("messages[1].tool_calls[0].function.arguments")),
            "参数 {bad} 应被拒绝"
        );
    }
    let no_name = json!([ { "role": "assistant", "tool_calls": [ { "id": "call_1", "type": "function", "function": { "arguments": "{}" } } ] } ]);
    let e = 翻译错误(&消息(no_name));
    assert_eq!(
        e.param.as_deref(),
        Some("messages[0].tool_calls[0].function.name")
    );
}

#[test]
fn 图片输入_data_url_与网址_不支持的类型返回_400() {
    let image = |url: &str| {
        消息(
            json!([ { "role": "user", "content": [ { "type": "image_url", "image_url": { "url": url } } ] } ]),
        )
    };
    for mime in ["image/png", "image/jpeg", "image/webp", "image/gif"] {
        let part =
            翻译(&image(&format!("data:{mime};base64,AAAA")))["contents"][0]["parts"][0].clone();
        assert_eq!(
            part,
            json!({ "inlineData": { "mimeType": mime, "data": "AAAA" } })
        );
    }
    let cases = [
        ("https://例子.com/猫.PNG?大小=1#片段", "image/png"),
        ("https://example.com/a.webp", "image/webp"),
        ("http://example.com/photo", "image/jpeg"),
    ];
    for (url, mime) in cases {
        let part = 翻译(&image(url))["contents"][0]["parts"][0].clone();
        assert_eq!(
            part,
            json!({ "fileData": { "mimeType": mime, "fileUri": url } }),
            "地址 {url}"
        );
    }
    for bad in [
        "data:text/plain;base64,AAAA",
        "ftp://example.com/a.png",
        "data:image/png,未编码",
    ] {
        let e = 翻译错误(&image(bad));
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("messages[0].content[0].image_url.url")),
            "地址 {bad}"
        );
    }
}

#[test]
fn 音频输入_转为_inline_data_缺字段返回_400() {
    let audio = |input: Value| {
        消息(
            json!([ { "role": "user", "content": [ { "type": "input_audio", "input_audio": input } ] } ]),
        )
    };
    let part = 翻译(&audio(json!({ "data": "UklGRg==", "format": "wav" })))["contents"][0]["parts"]
        [0]
    .clone();
    assert_eq!(
        part,
        json!({ "inlineData": { "mimeType": "audio/wav", "data": "UklGRg==" } })
    );
    let e = 翻译错误(&audio(json!({ "data": "UklGRg==" })));
    assert_eq!(
        e.param.as_deref(),
        Some("messages[0].content[0].input_audio")
    );
    let unknown =
        消息(json!([ { "role": "user", "content": [ { "type": "file", "file": {} } ] } ]));
    assert_eq!(
        翻译错误(&unknown).param.as_deref(),
        Some("messages[0].content[0].type")
    );
    let function = 消息(json!([ { "role": "function", "name": "甲", "content": "旧格式" } ]));
    assert_eq!(
        翻译错误(&function).param.as_deref(),
        Some("messages[0].role")
    );
}

#[test]
fn 工具选择_四种写法与非法值() {
    let cases = [
        (json!("auto"), json!({ "mode": "AUTO" })),
        (json!("none"), json!({ "mode": "NONE" })),
        (json!("required"), json!({ "mode": "ANY" })),
        (
            json!({ "type": "function", "function": { "name": "查天气" } }),
            json!({ "mode": "ANY", "allowedFunctionNames": ["查天气"] }),
        ),
    ];
    for (choice, expected) in cases {
        let mut body = 消息(json!([ { "role": "user", "content": "你好" } ]));
        body["tool_choice"] = choice;
        assert_eq!(
            翻译(&body)["toolConfig"],
            json!({ "functionCallingConfig": expected })
        );
    }
    let mut bad = 消息(json!([ { "role": "user", "content": "你好" } ]));
    bad["tool_choice"] = json!("随便");
    assert_eq!(翻译错误(&bad).param.as_deref(), Some("tool_choice"));
    bad["tool_choice"] = Value::Null;
    bad["tools"] = json!([ { "type": "code_interpreter" } ]);
    assert_eq!(翻译错误(&bad).param.as_deref(), Some("tools[0].type"));
}

#[test]
fn 生成参数_json_object_目标上限与丢弃的参数() {
    let mut body = 消息(json!([ { "role": "user", "content": "你好" } ]));
    body["response_format"] = json!({ "type": "json_object" });
    body["n"] = json!(2);
    body["stop"] = json!(["甲", "乙"]);
    for dropped in ["user", "logit_bias", "metadata", "parallel_tool_calls"] {
        body[dropped] = json!({});
    }
    body["user"] = json!("用户甲");
    let upstream = GeminiFilter
        .build_request(&请求(&body), &目标("有上限"))
        .expect("应能翻译");
    let sent: Value = serde_json::from_slice(&upstream.body).expect("JSON");
    assert_eq!(
        sent["generationConfig"],
        json!({ "maxOutputTokens": 512, "candidateCount": 2, "stopSequences": ["甲", "乙"], "responseMimeType": "application/json" })
    );
    let keys: Vec<&String> = sent.as_object().expect("对象").keys().collect();
    assert_eq!(
        keys,
        ["contents", "generationConfig"],
        "不支持的参数不得出现"
    );
    body["max_completion_tokens"] = json!(64);
    body["max_tokens"] = json!(128);
    assert_eq!(翻译(&body)["generationConfig"]["maxOutputTokens"], 64);
    body["response_format"] = json!({ "type": "xml" });
    assert_eq!(
        翻译错误(&body).param.as_deref(),
        Some("response_format.type")
    );
}

#[test]
fn 相同角色的相邻消息合并为一个内容() {
    let messages = json!([
        { "role": "user", "content": "第一句" },
        { "role": "user", "content": "第二句" },
        { "role": "assistant", "content": "回答" },
        { "role": "assistant", "content": "补充" },
    ]);
    assert_eq!(
        翻译(&消息(messages))["contents"],
        json!([
            { "role": "user", "parts": [ { "text": "第一句" }, { "text": "第二句" } ] },
            { "role": "model", "parts": [ { "text": "回答" }, { "text": "补充" } ] },
        ])
    );
}

#[test]
fn 推理力度_映射为思考预算_未知档位用模型缺省() {
    let 请求体 = |effort: &str| json!({ "model": "演示", "reasoning_effort": effort, "messages": [ { "role": "user", "content": "想一想" } ] });
    for (effort, budget) in [("low", 1024), ("medium", 8192), ("high", 24_576)] {
        let upstream = 构造(&请求体(effort)).expect("应能翻译");
        let body: Value = serde_json::from_slice(&upstream.body).expect("JSON");
        assert_eq!(
            body["generationConfig"]["thinkingConfig"]["thinkingBudget"], budget,
            "{effort}"
        );
    }
    let upstream = 构造(&请求体("minimal")).expect("应能翻译");
    let body: Value = serde_json::from_slice(&upstream.body).expect("JSON");
    assert!(
        body["generationConfig"].get("thinkingConfig").is_none(),
        "{body}"
    );
}
