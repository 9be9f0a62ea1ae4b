use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde_json::Value;

use super::*;

/// 测试用的上限：8 条、64 字节。
const CAPS: EmbeddingCaps = EmbeddingCaps {
    max_inputs: 8,
    max_input_bytes: 64,
};

fn 解析(raw: &str) -> Result<EmbeddingsRequest, ApiError> {
    EmbeddingsRequest::parse(Bytes::from(raw.to_string()), CAPS)
}

fn 错误(raw: &str) -> ApiError {
    解析(raw).expect_err("应当拒绝")
}

#[test]
fn 四种输入形状_都能解析并量出条数与大小() {
    let one = 解析(r#"{"model":"向量","input":"你好"}"#).expect("单个字符串");
    assert_eq!((one.inputs, one.token_ids, one.input_bytes), (1, false, 6));
    assert_eq!(one.texts(), Some(vec!["你好"]));
    let many = 解析(r#"{"model":"向量","input":["甲","乙乙"]}"#).expect("字符串数组");
    assert_eq!((many.inputs, many.input_bytes), (2, 9));
    assert_eq!(many.texts(), Some(vec!["甲", "乙乙"]));
    let ids = 解析(r#"{"model":"向量","input":[1,2,3]}"#).expect("token id 数组");
    assert_eq!((ids.inputs, ids.token_ids, ids.input_bytes), (1, true, 12));
    assert_eq!(ids.texts(), None, "token id 没有文本");
    let nested = 解析(r#"{"model":"向量","input":[[1],[2,3]]}"#).expect("token id 数组的数组");
    assert_eq!((nested.inputs, nested.token_ids), (2, true));
}

#[test]
fn 编码与维度_缺省浮点_非法值拒绝() {
    let plain = 解析(r#"{"model":"向量","input":"x"}"#).expect("缺省");
    assert_eq!((plain.encoding, plain.dimensions), (Encoding::Float, None));
    let b64 = 解析(r#"{"model":"向量","input":"x","encoding_format":"base64","dimensions":3}"#)
        .expect("base64");
    assert_eq!((b64.encoding, b64.dimensions), (Encoding::Base64, Some(3)));
    let bad = 错误(r#"{"model":"向量","input":"x","encoding_format":"int8"}"#);
    assert_eq!(
        (bad.status, bad.param.as_deref()),
        (400, Some("encoding_format"))
    );
    assert!(bad.message.contains("int8"), "{}", bad.message);
    let zero = 错误(r#"{"model":"向量","input":"x","dimensions":0}"#);
    assert_eq!(zero.param.as_deref(), Some("dimensions"));
}

#[test]
fn 输入不合法_指出出错的元素() {
    assert_eq!(错误(r#"{"model":"向量"}"#).param.as_deref(), Some("input"));
    assert_eq!(
        错误(r#"{"model":"向量","input":""}"#).param.as_deref(),
        Some("input")
    );
    assert_eq!(
        错误(r#"{"model":"向量","input":[]}"#).param.as_deref(),
        Some("input")
    );
    assert_eq!(
        错误(r#"{"model":"向量","input":["好",""]}"#)
            .param
            .as_deref(),
        Some("input[1]")
    );
    assert_eq!(
        错误(r#"{"model":"向量","input":["好",3]}"#)
            .param
            .as_deref(),
        Some("input[1]")
    );
    assert_eq!(
        错误(r#"{"model":"向量","input":[1,-2]}"#).param.as_deref(),
        Some("input[1]")
    );
    assert_eq!(
        错误(r#"{"model":"向量","input":[[1],[]]}"#)
            .param
            .as_deref(),
        Some("input[1]")
    );
    assert_eq!(错误(r#"{"model":"向量","input":{}}"#).status, 400);
}

#[test]
fn 条数与总大小_超过上限时_400并写明上限() {
    let many = 错误(r#"{"model":"向量","input":["1","2","3","4","5","6","7","8","9"]}"#);
    assert_eq!(many.code, ErrorCode::TooManyInputs);
    assert!(many.message.contains('8'), "应写明上限：{}", many.message);
    let long = format!(r#"{{"model":"向量","input":"{}"}}"#, "长".repeat(30));
    let large = 错误(&long);
    assert_eq!(large.code, ErrorCode::InputTooLarge);
    assert!(
        large.message.contains("64"),
        "应写明上限：{}",
        large.message
    );
    let ids = format!(
        r#"{{"model":"向量","input":[{}]}}"#,
        vec!["7"; 17].join(",")
    );
    assert_eq!(
        错误(&ids).code,
        ErrorCode::InputTooLarge,
        "17 个 id 折算 68 字节"
    );
}

#[test]
fn base64_与_openai_相同_小端f32() {
    let encoded = encode_base64(&[1.0, -2.5, 0.0]);
    let bytes = STANDARD.decode(&encoded).expect("合法 base64");
    let back: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(back, vec![1.0, -2.5, 0.0]);
    assert_eq!(encode_base64(&[1.0]), "AACAPw==");
    assert_eq!(encode_base64(&[]), "");
}

#[test]
fn 写出列表_保持顺序_浮点与base64两种编码() {
    let list = EmbeddingList {
        model: "向量",
        vectors: vec![vec![0.5, 1.0], vec![2.0]],
        prompt_tokens: 7,
    };
    let floats: Value = serde_json::from_slice(&write_list(&list, Encoding::Float)).expect("JSON");
    assert_eq!(floats["object"], "list");
    assert_eq!(floats["model"], "向量");
    assert_eq!(floats["data"][1]["index"], 1);
    assert_eq!(
        floats["data"][0]["embedding"],
        serde_json::json!([0.5, 1.0])
    );
    assert_eq!(
        floats["usage"],
        serde_json::json!({"prompt_tokens":7,"total_tokens":7})
    );
    let b64: Value = serde_json::from_slice(&write_list(&list, Encoding::Base64)).expect("JSON");
    assert_eq!(b64["data"][1]["embedding"], encode_base64(&[2.0]));
}

#[test]
fn 上游给了浮点数组_改写成base64_已是base64时零拷贝() {
    let floats = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding" : [1.0, -2.5]}],"usage":{"prompt_tokens":1}}"#;
    let rewritten = floats_to_base64(floats).expect("合法").expect("应改写");
    let v: Value = serde_json::from_slice(&rewritten).expect("JSON");
    assert_eq!(v["data"][0]["embedding"], encode_base64(&[1.0, -2.5]));
    assert_eq!(v["usage"]["prompt_tokens"], 1, "其余字段不变");
    let already = br#"{"data":[{"embedding":"AACAPw=="}],"note":"\"embedding\": [1]"}"#;
    assert!(floats_to_base64(already).expect("合法").is_none());
}

#[test]
fn 不建树的校验_嵌套错误位置_类型与重复键() {
    assert_eq!(
        错误(r#"{"model":"向量","input":[[1,2],[3,"x"]]}"#)
            .param
            .as_deref(),
        Some("input[1][1]")
    );
    assert_eq!(
        错误(r#"{"model":"向量","input":[[1],"文本"]}"#)
            .param
            .as_deref(),
        Some("input[1]")
    );
    for bad in ["3", "true", "null", r#"{"a":1}"#] {
        let raw = format!(r#"{{"model":"向量","input":{bad}}}"#);
        assert_eq!(错误(&raw).param.as_deref(), Some("input"), "{bad}");
    }
    assert_eq!(错误("不是 JSON").code, ErrorCode::InvalidJson);
    assert_eq!(错误("[1]").code, ErrorCode::InvalidType);
    let twice = 错误(r#"{"model":"甲","model":"乙","input":"x"}"#);
    assert_eq!(twice.code, ErrorCode::DuplicateKey, "{}", twice.message);
    assert_eq!(
        错误(r#"{"model":3,"input":"x"}"#).param.as_deref(),
        Some("model")
    );
}

#[test]
fn 转义的文本_按解码后的字节数_完整对象按需解析且与原文一致() {
    let req =
        解析(r#"{"model":"向量","input":["\u4f60\n"],"user":"u","extra":[1]}"#).expect("合法");
    assert_eq!(req.input_bytes, 4, "“你”3 字节加换行 1 字节");
    assert_eq!(req.texts(), Some(vec!["你\n"]));
    assert_eq!(
        req.body()["extra"],
        serde_json::json!([1]),
        "其余字段原样保留"
    );
}
