"""管理页面的浏览器测试：无头 chromium 登录、用表单创建密钥、看到它今天的花费、停用它，并截图。"""

import json
import os
import time
import unittest
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

ADMIN_URL = os.environ["ADMIN_URL"]
GATEWAY_URL = os.environ["GATEWAY_URL"]
ADMIN_TOKEN = os.environ["ADMIN_TOKEN"]
SCREENSHOT = os.environ["SCREENSHOT"]
# 等页面与密钥生效的上限（秒）：只防挂起
HANG_GUARD = 30
# 新密钥在网关里生效之前的重试间隔（秒）
RETRY_INTERVAL = 0.1
KEY_NAME = "页面测试"


def chat_status(key):
    """用密钥发一个聊天请求，返回状态码。"""
    body = json.dumps({"model": "demo", "messages": [{"role": "user", "content": "你好"}]}).encode()
    request = urllib.request.Request(
        GATEWAY_URL + "/v1/chat/completions",
        data=body,
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as error:
        return error.code


def until_status(key, status):
    """重试直到聊天请求得到期望的状态码。"""
    deadline = time.monotonic() + HANG_GUARD
    while chat_status(key) != status:
        if time.monotonic() > deadline:
            raise AssertionError(f"等不到状态码 {status}")
        time.sleep(RETRY_INTERVAL)


class 管理页面(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        options = Options()
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
            options.add_argument(flag)
        options.binary_location = "/usr/bin/chromium"
        cls.driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        # 表格每次刷新都整体重画：等待时忽略指向旧行的引用
        cls.wait = WebDriverWait(cls.driver, HANG_GUARD, ignored_exceptions=[StaleElementReferenceException])

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()

    def row(self):
        """新密钥在密钥表里的那一行。"""
        selector = f'#keys tbody tr[data-name="{KEY_NAME}"]'
        return self.wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, selector)))

    def cells(self):
        """那一行的各个单元格文本。"""
        return [td.text for td in self.row().find_elements(By.TAG_NAME, "td")]

    def test_登录_创建密钥_看到花费_停用(self):
        driver = self.driver
        driver.get(ADMIN_URL + "/admin")
        self.assertEqual(driver.title, "ChatNexus 管理")
        driver.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        self.wait.until(ec.visibility_of_element_located((By.ID, "console")))
        target = self.wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#targets tbody tr")))
        self.assertIn("mock", target.text, "上游表列出模拟器目标")
        driver.find_element(By.ID, "new-name").send_keys(KEY_NAME)
        driver.find_element(By.ID, "new-daily").send_keys("5")
        driver.find_element(By.CSS_SELECTOR, "#create button").click()
        secret_box = self.wait.until(ec.visibility_of_element_located((By.ID, "secret")))
        secret = secret_box.text.split("：", 1)[1].strip()
        self.assertTrue(secret.startswith("sk-cnx-"), secret_box.text)
        self.assertEqual(self.cells()[6], "$5.0000", "每日预算显示在表里")
        until_status(secret, 200)
        driver.refresh()
        self.wait.until(lambda d: self.cells()[4] != "$0.0000")
        self.assertTrue(self.cells()[4].startswith("$"), "今天的花费显示在表里")
        self.assertRegex(self.cells()[8], r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$", "最后使用的时刻显示在表里")
        self.row().find_element(By.XPATH, ".//button[text()='停用']").click()
        self.wait.until(lambda d: self.cells()[3] == "已停用")
        driver.save_screenshot(SCREENSHOT)
        until_status(secret, 401)


if __name__ == "__main__":
    unittest.main()
