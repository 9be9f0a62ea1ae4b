// ChatNexus 管理页面：令牌只存在本标签页的 sessionStorage 里，每个请求带 Authorization: Bearer。
"use strict";

const TOKEN_KEY = "chatnexus-admin-token";
const $ = (selector) => document.querySelector(selector);

// 调用管理接口；失败时抛出带中文消息的错误
async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await resp.json();
  if (!resp.ok) throw new Error(data.error ? data.error.message : "请求失败（" + resp.status + "）");
  return data;
}

// UTC 日期 YYYY-MM-DD
function day(date) {
  return date.toISOString().slice(0, 10);
}

// 金额显示为美元（没有时为短横）
function usd(value) {
  return value === undefined || value === null ? "—" : "$" + Number(value).toFixed(4);
}

// 建一个表格单元
function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

// 建一个操作按钮
function button(td, text, action) {
  const b = document.createElement("button");
  b.textContent = text;
  b.addEventListener("click", () => action().catch(show));
  td.appendChild(b);
}

// 显示错误
function show(error) {
  $("#error").textContent = error.message;
}

// 一个名字在用量报表里的花费
function spent(rows, name) {
  const row = rows.find((r) => r.name === name);
  return row ? row.cost_usd : 0;
}

// 一个名字在用量报表里最后使用的时刻（UTC，到秒；这段时间没用过时为短横）
function lastUsed(rows, name) {
  const row = rows.find((r) => r.name === name);
  if (!row || !row.last_used_unix) return "—";
  return new Date(row.last_used_unix * 1000).toISOString().slice(0, 19).replace("T", " ");
}

// 重画密钥表
function renderKeys(keys, today, month) {
  const body = $("#keys tbody");
  body.replaceChildren();
  for (const key of keys) {
    const row = document.createElement("tr");
    row.dataset.name = key.name;
    if (key.disabled) row.className = "disabled";
    cell(row, key.name);
    cell(row, key.team || "—");
    cell(row, key.models ? key.models.join(", ") : "不限");
    cell(row, key.disabled ? "已停用" : "启用");
    cell(row, usd(spent(today.keys, key.name)));
    cell(row, usd(spent(month.keys, key.name)));
    cell(row, usd(key.budgets && key.budgets.daily_usd));
    cell(row, usd(key.budgets && key.budgets.monthly_usd));
    cell(row, lastUsed(month.keys, key.name));
    const ops = cell(row, "");
    const path = "/admin/keys/" + encodeURIComponent(key.name);
    button(ops, key.disabled ? "启用" : "停用", () => api("PATCH", path, { disabled: !key.disabled }).then(refresh));
    button(ops, "轮换", async () => revealSecret(await api("POST", path + "/rotate")));
    body.appendChild(row);
  }
}

// 重画团队表
function renderTeams(teams, today, month) {
  const body = $("#teams tbody");
  body.replaceChildren();
  for (const team of teams) {
    const row = document.createElement("tr");
    cell(row, team.name);
    cell(row, team.models ? team.models.join(", ") : "不限");
    cell(row, usd(spent(today.teams, team.name)));
    cell(row, usd(spent(month.teams, team.name)));
    cell(row, usd(team.budgets && team.budgets.daily_usd));
    cell(row, usd(team.budgets && team.budgets.monthly_usd));
    body.appendChild(row);
  }
}

// 重画上游目标表（与指标端口的 /health/details 相同的数据）
function renderHealth(health) {
  $("#health-status").textContent = health.status === "ok" ? "（全部正常）" : "（有模型没有可用目标）";
  const body = $("#targets tbody");
  body.replaceChildren();
  for (const target of health.targets) {
    const row = document.createElement("tr");
    cell(row, target.key);
    cell(row, target.state);
    cell(row, String(target.latency_ms));
    cell(row, String(target.inflight));
    body.appendChild(row);
  }
}

// 显示只出现一次的密钥明文，并刷新列表
async function revealSecret(created) {
  const box = $("#secret");
  box.textContent = "新密钥（只显示这一次，请立即保存）：" + created.key;
  box.hidden = false;
  await refresh();
}

// 读全部数据并重画
async function refresh() {
  const now = new Date();
  const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const [keys, teams, today, month, health] = await Promise.all([
    api("GET", "/admin/keys"),
    api("GET", "/admin/teams"),
    api("GET", "/admin/usage?from=" + day(now) + "&to=" + day(now)),
    api("GET", "/admin/usage?from=" + day(first) + "&to=" + day(now)),
    api("GET", "/admin/health"),
  ]);
  renderKeys(keys.data, today, month);
  renderTeams(teams.data, today, month);
  renderHealth(health);
  $("#console").hidden = false;
  $("#error").textContent = "";
}

// 创建表单 → 请求体
function newKey() {
  const value = (id) => $(id).value.trim();
  const body = { name: value("#new-name") };
  if (value("#new-team")) body.team = value("#new-team");
  if (value("#new-models")) body.models = value("#new-models").split(",").map((m) => m.trim()).filter(Boolean);
  const budgets = {};
  if (value("#new-daily")) budgets.daily_usd = Number(value("#new-daily"));
  if (value("#new-monthly")) budgets.monthly_usd = Number(value("#new-monthly"));
  if (Object.keys(budgets).length) body.budgets = budgets;
  return body;
}

$("#login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("#token").value);
  refresh().catch(show);
});

$("#create").addEventListener("submit", (event) => {
  event.preventDefault();
  api("POST", "/admin/keys", newKey())
    .then((created) => {
      $("#create").reset();
      return revealSecret(created);
    })
    .catch(show);
});

if (sessionStorage.getItem(TOKEN_KEY)) refresh().catch(show);
