// 映射冲突审核页面：登录后调用 /governance API（不依赖任何外部资源）。
"use strict";
const KINDS = {"unmapped": "未映射", "ambiguous": "一码多映射", "inconsistent": "跨机构不一致",
  "invalid-target": "目标代码无效", "unit": "单位无法换算", "display-drift": "名称变化"};
const STATUSES = {"open": "待审核", "approved": "已批准", "rejected": "已驳回", "not-applicable": "不适用",
  "resolved": "已自动解决"};
const ACTIONS = {"approve": "批准", "reject": "驳回", "not-applicable": "不适用"};
const PAGE = 50;
const TARGETS = {"diagnosis": "urn:oid:2.16.156.10011.2.3.3.11", "lab-item": "http://loinc.org",
  "lab-panel": "http://loinc.org", "marital-status": "urn:oid:2.16.156.10011.2.3.3.5",
  "ethnicity": "urn:oid:2.16.156.10011.2.3.3.3"};
session.panels = ["review", "detail"];
session.stale = "该冲突已被他人处理或已变化，请刷新后再决定：";
let offset = 0;
let current = null;

function say(text, ok) {
  const box = $("message");
  box.textContent = text;
  box.className = ok ? "ok" : "error";
}

function named(ids, names) {
  return ids.map((id) => names && names[id] ? `${names[id]}（${id}）` : id).join("、");
}

function when(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : ""; }

function start() {
  $("login-panel").hidden = true;
  $("review").hidden = false;
  load().catch((e) => say(e.message));
}

function cell(row, text, testid) {
  const td = document.createElement("td");
  td.textContent = text;
  if (testid) td.dataset.testid = testid;
  row.appendChild(td);
  return td;
}

function filters() {
  const params = new URLSearchParams();
  for (const [name, id] of [["kind", "f-kind"], ["source", "f-source"], ["institution", "f-institution"],
                            ["q", "f-q"], ["sort", "f-sort"]]) {
    if ($(id).value.trim()) params.set(name, $(id).value.trim());
  }
  params.set("status", $("f-status").value);
  return params;
}

async function load() {
  const params = filters();
  params.set("offset", offset);
  params.set("count", PAGE);
  const page = await api("/governance/conflicts?" + params);
  const tbody = $("rows");
  tbody.replaceChildren();
  for (const item of page.items) {
    const tr = document.createElement("tr");
    tr.dataset.id = item.id;
    cell(tr, item.id);
    const kind = cell(tr, "", "kind");
    const tag = document.createElement("span");
    tag.className = "tag k-" + item.kind;
    tag.textContent = KINDS[item.kind] || item.kind;
    kind.appendChild(tag);
    cell(tr, item.code, "code");
    cell(tr, item.display, "display");
    cell(tr, item.occurrences, "occurrences");
    cell(tr, when(item.first_seen));
    cell(tr, when(item.last_seen));
    cell(tr, named(item.sources, page.names), "sources");
    cell(tr, named(item.institutions, page.names), "institutions");
    cell(tr, STATUSES[item.status] || item.status, "status");
    tr.addEventListener("click", () => open(item.id).catch((e) => say(e.message)));
    tbody.appendChild(tr);
  }
  $("total").textContent = `共 ${page.total} 条，第 ${page.total ? offset + 1 : 0}–${offset + page.items.length} 条 `;
  $("prev").disabled = offset === 0;
  $("next").disabled = offset + page.items.length >= page.total;
}

async function open(id) {
  const c = await api("/governance/conflicts/" + id);
  current = c;
  for (const tr of $("rows").children) tr.classList.toggle("selected", tr.dataset.id === String(id));
  $("detail").hidden = false;
  $("d-title").textContent = `冲突 #${c.id}：${KINDS[c.kind] || c.kind}`;
  $("d-kind").textContent = KINDS[c.kind] || c.kind;
  $("d-system").textContent = c.system;
  $("d-code").textContent = c.code;
  $("d-display").textContent = c.display;
  $("d-detail").textContent = detailText(c);
  $("d-occurrences").textContent = c.occurrences;
  $("d-seen").textContent = when(c.first_seen) + " / " + when(c.last_seen);
  $("d-samples").textContent = c.samples.join("；");
  $("d-sources").textContent = named(c.sources, c.names);
  $("d-institutions").textContent = named(c.institutions, c.names);
  $("d-status").textContent = STATUSES[c.status] || c.status;
  $("t-system").value = TARGETS[c.element] || "";
  $("t-code").value = "";
  $("t-display").value = "";
  const tbody = $("suggestions");
  tbody.replaceChildren();
  for (const s of c.suggestions) {
    const tr = document.createElement("tr");
    cell(tr, s.code, "s-code");
    cell(tr, s.display, "s-display");
    cell(tr, s.score.toFixed(2));
    cell(tr, s.reason);
    const td = cell(tr, "");
    const button = document.createElement("button");
    button.textContent = "批准";
    button.dataset.testid = "approve-suggestion";
    button.addEventListener("click", () => decideOn("approve", {system: s.system, code: s.code, display: s.display}));
    td.appendChild(button);
    tbody.appendChild(tr);
  }
  if (!c.suggestions.length) {
    const tr = document.createElement("tr");
    cell(tr, "暂无建议，请手工指定目标").colSpan = 5;
    tbody.appendChild(tr);
  }
  const mappings = $("mappings");
  mappings.replaceChildren();
  for (const m of c.mappings) {
    const tr = document.createElement("tr");
    cell(tr, m.scope);
    cell(tr, m.target_code ? `${m.target_code} ${m.target_display}` : "（无标准代码）");
    cell(tr, m.status);
    cell(tr, m.comment);
    mappings.appendChild(tr);
  }
  const decisions = $("decisions");
  decisions.replaceChildren();
  for (const d of c.decisions) {
    const tr = document.createElement("tr");
    cell(tr, when(d.decided_at));
    cell(tr, d.reviewer);
    cell(tr, ACTIONS[d.action] || d.action);
    cell(tr, d.reason);
    cell(tr, renormalizedText(d.result));
    decisions.appendChild(tr);
  }
}

function detailText(c) {
  if (c.kind === "ambiguous") return "多个目标：" + (c.info.targets || []).join("，");
  if (c.kind === "inconsistent") return (c.info.mappings || []).map((m) => `${m.scope}:${m.code}→${m.target}`).join("；");
  if (c.kind === "invalid-target") return (c.info.problem || "") + "（" + c.detail + "）";
  if (c.kind === "unit") return "无法换算的单位：" + c.detail;
  if (c.kind === "display-drift") return "名称已变为：" + c.display;
  return "";
}

function renormalizedText(result) {
  const tables = (result && result.tables) || [];
  return tables.map((t) => t.renormalized ? `${t.scope} 第${t.version}版：更新 ${t.renormalized.updated} 条` :
    `${t.scope} 第${t.version}版`).join("；");
}

async function decideOn(action, target) {
  const reason = $("reason").value.trim();
  if (!reason) { say("请填写理由"); return; }
  const body = {action, version: current.version, reason};
  if (target) body.target = target;
  try {
    const result = await api(`/governance/conflicts/${current.id}/$decide`, {method: "POST", body: JSON.stringify(body)});
    const updated = result.tables.map((t) => t.renormalized ? t.renormalized.updated : 0).reduce((a, b) => a + b, 0);
    say(`已${ACTIONS[action]}冲突 #${current.id}；已重新标准化 ${updated} 条资源`, true);
    await load();
    await open(current.id);
  } catch (e) {
    say(e.message);
  }
}

async function bulkApprove() {
  const reason = $("bulk-reason").value.trim();
  if (!reason) { say("请填写批量批准理由"); return; }
  const params = filters();
  const body = {reason};
  for (const name of ["kind", "source", "institution", "q"]) if (params.get(name)) body[name] = params.get(name);
  try {
    const result = await api("/governance/conflicts/$bulk-approve", {method: "POST", body: JSON.stringify(body)});
    say(`批量批准 ${result.approved.length} 条，跳过 ${result.skipped.length} 条`, true);
    await load();
  } catch (e) {
    say(e.message);
  }
}

$("login").addEventListener("click", () => login(start).catch((e) => { $("login-message").textContent = e.message; }));
$("search").addEventListener("click", () => { offset = 0; load().catch((e) => say(e.message)); });
$("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load().catch((e) => say(e.message)); });
$("next").addEventListener("click", () => { offset += PAGE; load().catch((e) => say(e.message)); });
$("bulk").addEventListener("click", bulkApprove);
$("reject").addEventListener("click", () => decideOn("reject"));
$("not-applicable").addEventListener("click", () => decideOn("not-applicable"));
$("approve-manual").addEventListener("click", () => {
  const code = $("t-code").value.trim();
  if (!code) { say("请填写目标代码"); return; }
  decideOn("approve", {system: $("t-system").value.trim(), code, display: $("t-display").value.trim() || undefined});
});
if (session.token) start();
