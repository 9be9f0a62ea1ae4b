"""用官方 openai Python SDK 的 embeddings.create 端到端验证向量接口：每种上游（兼容服务、OpenAI、Azure 透传，
Gemini 翻译）的浮点与 base64（SDK 的缺省）、单条与批量、dimensions，向量按输入顺序返回；
错误（输入太多、模型种类不对、Gemini 不收 token id、上游限流）抛出正确的 SDK 异常。

由 tests/e2e/run.sh 启动网关（内置模拟器作上游）后运行；网关地址与密钥经环境变量传入。
模拟器对同一文本总给出同一向量，所以不同上游对同一文本的向量必须相同：这验证了翻译没有打乱顺序、没有损失精度。
"""

import os
import struct
import unittest

import openai

BASE_URL = os.environ["CHATNEXUS_BASE_URL"]
API_KEY = os.environ["CHATNEXUS_API_KEY"]
# 客户端可见的向量模型名 → 上游种类（见 run.sh 生成的配置）
MODELS = {"emb-compat": "openai_compatible", "emb-gpt": "openai", "emb-azure": "azure", "emb-gemini": "gemini"}
# 模拟器缺省的向量维度
MOCK_DIMENSIONS = 8
# 网关缺省的每个请求最多输入条数
MAX_INPUTS = 2048
CITIES = ["北京", "上海", "广州"]


def as_f32(values):
    """把每个分量按 f32 取整（浮点 JSON 与 base64 的 f32 才能逐位比较）。"""
    return [struct.unpack("<f", struct.pack("<f", v))[0] for v in values]


class EmbeddingsTest(unittest.TestCase):
    def setUp(self):
        self.client = openai.OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0)

    def vectors(self, model, text_or_list, **kwargs):
        resp = self.client.embeddings.create(model=model, input=text_or_list, **kwargs)
        self.assertEqual([d.index for d in resp.data], list(range(len(resp.data))), "index 依次递增")
        self.assertGreater(resp.usage.prompt_tokens, 0)
        self.assertEqual(resp.usage.total_tokens, resp.usage.prompt_tokens)
        return [as_f32(d.embedding) for d in resp.data]

    def test_缺省_base64_与显式浮点_是同一向量(self):
        for model in MODELS:
            with self.subTest(模型=model):
                packed = self.vectors(model, "你好")
                floats = self.vectors(model, "你好", encoding_format="float")
                self.assertEqual(len(packed[0]), MOCK_DIMENSIONS)
                self.assertEqual(packed, floats)

    def test_批量_按输入顺序返回_与单条一致(self):
        for model in MODELS:
            with self.subTest(模型=model):
                batch = self.vectors(model, CITIES)
                self.assertEqual(len(batch), len(CITIES))
                for i, city in enumerate(CITIES):
                    self.assertEqual(batch[i], self.vectors(model, city)[0], f"第 {i} 条应是“{city}”的向量")
                self.assertNotEqual(batch[0], batch[1])

    def test_dimensions_到达上游(self):
        for model in MODELS:
            with self.subTest(模型=model):
                self.assertEqual(len(self.vectors(model, "维度", dimensions=3)[0]), 3)

    def test_不同上游对同一文本给出同一向量(self):
        results = [self.vectors(model, CITIES, dimensions=5) for model in MODELS]
        for other in results[1:]:
            self.assertEqual(results[0], other)

    def test_token_id_输入_透传的上游接受_gemini_拒绝(self):
        self.assertEqual(len(self.vectors("emb-gpt", [[101, 102], [103]])), 2)
        with self.assertRaises(openai.BadRequestError) as caught:
            self.client.embeddings.create(model="emb-gemini", input=[[101, 102]])
        self.assertIn("token id", caught.exception.message)

    def test_输入太多_抛出_BadRequestError(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            self.client.embeddings.create(model="emb-compat", input=["字"] * (MAX_INPUTS + 1))
        self.assertEqual(caught.exception.code, "too_many_inputs")

    def test_模型种类不对_两个方向都是_BadRequestError(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            self.client.embeddings.create(model="demo", input="你好")
        self.assertEqual(caught.exception.code, "wrong_model_kind")
        with self.assertRaises(openai.BadRequestError) as caught:
            self.client.chat.completions.create(model="emb-gpt", messages=[{"role": "user", "content": "你好"}])
        self.assertEqual(caught.exception.code, "wrong_model_kind")

    def test_上游限流_抛出_RateLimitError(self):
        with self.assertRaises(openai.RateLimitError):
            self.client.embeddings.create(model="emb-ratelimited", input="你好")


if __name__ == "__main__":
    unittest.main(verbosity=2)
