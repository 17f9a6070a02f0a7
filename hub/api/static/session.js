// 数据治理页面共用：登录（客户端凭据换取令牌，存于 sessionStorage）与 API 调用（不依赖任何外部资源）。
"use strict";
const $ = (id) => document.getElementById(id);
// The page sets ``panels`` (hidden when signed out) and ``stale`` (the 409 explanation).
const session = {token: sessionStorage.getItem("hub-token"), panels: [], stale: "该记录已被他人处理或已变化，请刷新后再决定："};

async function api(path, options) {
  const response = await fetch(path, {...options, headers: {"Authorization": "Bearer " + session.token,
    "Content-Type": "application/json", ...((options || {}).headers || {})}});
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) { showLogin(); throw new Error("登录已过期，请重新登录"); }
  if (!response.ok) {
    const text = body.issue ? body.issue.map((i) => i.diagnostics).join("；") : (body.detail || response.statusText);
    const error = new Error(response.status === 409 ? session.stale + text : text);
    error.status = response.status;
    throw error;
  }
  return body;
}

function showLogin() {
  session.token = null;
  sessionStorage.removeItem("hub-token");
  $("login-panel").hidden = false;
  for (const id of session.panels) $(id).hidden = true;
}

// Signs in with the entered client credentials, then calls ``start``.
async function login(start) {
  const id = $("client-id").value.trim(), secret = $("client-secret").value;
  const response = await fetch("/auth/token", {method: "POST", body: "grant_type=client_credentials",
    headers: {"Authorization": "Basic " + btoa(id + ":" + secret), "X-Requested-With": "XMLHttpRequest",
              "Content-Type": "application/x-www-form-urlencoded"}});
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    $("login-message").textContent = "登录失败：" + (body.error_description || body.error || response.status);
    return;
  }
  $("login-message").textContent = "";
  session.token = body.access_token;
  sessionStorage.setItem("hub-token", session.token);
  start();
}
