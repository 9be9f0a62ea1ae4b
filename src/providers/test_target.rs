//! 测试共用：构造一个 OpenAI 兼容上游的目标。

use std::sync::Arc;

use crate::config::{BaseUrl, Provider, ProviderKind, Target, Timeouts};

/// 测试目标的上游地址。
const TEST_URL: &str = "http://127.0.0.1:9/v1";

/// 地址为 `url` 的 OpenAI 兼容上游（没有密钥，缺省超时）。
pub(crate) fn 提供方(url: &str) -> Provider {
    Provider {
        name: "测试上游".into(),
        kind: ProviderKind::OpenAiCompatible,
        base_url: BaseUrl::try_from(url.to_string()).expect("URL 合法"),
        api_key: None,
        timeouts: Timeouts::default(),
        enabled: true,
        api_version: None,
        health_check: None,
        concurrency: None,
        responses: false,
    }
}

/// 一个发往 OpenAI 兼容上游的目标：上游模型名 `model`，输出上限 `cap`。
pub(crate) fn 目标(model: &str, cap: Option<u64>) -> Target {
    Target {
        provider: Arc::new(提供方(TEST_URL)),
        model: model.into(),
        model_header: None,
        max_tokens: None,
        max_output_tokens: cap,
        deployment: model.into(),
        weight: 1,
        priority: 0,
        key: format!("测试上游/{model}").into(),
    }
}
