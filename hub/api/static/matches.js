// 患者匹配审核页面：登录后调用 /governance/matches API（不依赖任何外部资源）。
"use strict";
const STATUSES = {"open": "待审核", "linked": "已关联", "not-linked": "非同一人", "obsolete": "已失效"};
const FIELDS = [["name", "姓名", "name"], ["sex", "性别", "sex"], ["birth_date", "出生日期", "birth_date"],
  ["id_number", "身份证号", "id_number"], ["phone", "电话", "phones"], ["address", "地址", "address"]];
const LEVELS = {"exact": "完全一致", "same": "一致", "homophone": "同音", "fuzzy-pinyin": "近音", "one-character": "一字之差",
  "similar": "相似", "transposed": "数字颠倒/相近", "same-year": "同年", "different": "不一致"};
const AGREE = new Set(["exact", "same"]);
const PAGE = 20;
session.panels = ["matches", "detail"];
session.stale = "该匹配已被他人处理或已变化，请刷新后再决定：";
let offset = 0;
let current = null;

function say(text, ok) {
  const box = $("message");
  box.textContent = text;
  box.className = ok ? "ok" : "error";
}

function cell(tag, text, className) {
  const element = document.createElement(tag);
  element.textContent = text;
  if (className) element.className = className;
  return element;
}

async function start() {
  $("login-panel").hidden = true;
  $("matches").hidden = false;
  await load();
}

let thresholds = {};

async function load() {
  try {
    const status = await api("/empi/status");
    thresholds = status.thresholds;
    $("queue").textContent = `待匹配队列 ${status.queue} 条，待审核 ${status.open_reviews} 条`;
    const body = await api(`/governance/matches?status=${$("f-status").value}&offset=${offset}&count=${PAGE}`);
    const rows = $("rows");
    rows.replaceChildren();
    for (const item of body.items) {
      const row = document.createElement("tr");
      row.dataset.id = item.id;
      row.append(cell("td", String(item.id)), cell("td", item.score.toFixed(1)),
        cell("td", item.record.name || "", ""), cell("td", item.record.institution || ""),
        cell("td", item.candidate.regional_id || item.candidate.person),
        cell("td", String(item.candidate.sources.length)), cell("td", item.comparison.held_back || ""),
        cell("td", STATUSES[item.status] || item.status));
      row.children[2].dataset.testid = "name";
      row.children[1].dataset.testid = "score";
      row.children[7].dataset.testid = "status";
      row.addEventListener("click", () => show(item, row));
      rows.append(row);
    }
    $("total").textContent = `共 ${body.total} 条`;
    $("prev").disabled = offset === 0;
    $("next").disabled = offset + PAGE >= body.total;
    say("", true);
  } catch (error) { say(error.message, false); }
}

function levelOf(item, field) {
  const found = item.comparison.fields.find((f) => f.field === field);
  return found ? found.level : null;
}

function show(item, row) {
  current = item;
  for (const other of $("rows").children) other.classList.remove("selected");
  row.classList.add("selected");
  $("detail").hidden = false;
  $("d-title").textContent = `匹配 #${item.id}：${item.record.name || ""} ↔ 区域主索引号 ${item.candidate.regional_id || ""}`;
  $("d-score").textContent = item.score.toFixed(1);
  $("d-auto").textContent = thresholds.auto_link;
  $("d-review").textContent = thresholds.review;
  $("d-held").textContent = item.comparison.held_back ? `（未自动关联：${item.comparison.held_back}）` : "";
  const head = document.createElement("tr");
  head.append(cell("th", "项目"), cell("th", "待匹配记录"), cell("th", "比对结果"));
  for (const source of item.candidate.sources) head.append(cell("th", `候选来源（${source.summary.institution || ""}）`));
  $("compare-head").replaceChildren(head);
  const body = $("compare-body");
  body.replaceChildren();
  const value = (summary, key) => Array.isArray(summary[key]) ? summary[key].join("、") : (summary[key] || "");
  for (const [field, label, key] of FIELDS) {
    const level = levelOf(item, field);
    const className = level === null ? "missing" : AGREE.has(level) ? "agree" : level === "different" ? "disagree" : "partial";
    const row = document.createElement("tr");
    row.dataset.field = field;
    row.append(cell("th", label), cell("td", value(item.record, key) || "（无）", className),
      cell("td", level === null ? "缺失" : LEVELS[level] || level, "level " + className));
    row.children[2].dataset.testid = "level";
    for (const source of item.candidate.sources) row.append(cell("td", value(source.summary, key) || "（无）", className));
    body.append(row);
  }
  const institutions = document.createElement("tr");
  institutions.append(cell("th", "机构/病历号"), cell("td", `${item.record.institution || ""} ${item.record.record_numbers.join("、")}`), cell("td", ""));
  for (const source of item.candidate.sources) institutions.append(cell("td", `${source.summary.institution || ""} ${(source.summary.record_numbers || []).join("、")}`));
  body.append(institutions);
  const open = item.status === "open";
  $("link").disabled = !open;
  $("not-link").disabled = !open;
}

async function decide(decision) {
  if (!current) return;
  const reason = $("reason").value.trim();
  if (!reason) { say("请填写理由", false); return; }
  try {
    await api(`/governance/matches/${current.id}/$decide`, {method: "POST",
      body: JSON.stringify({decision, reason, version: current.version})});
    say(decision === "link" ? `已关联（#${current.id}）` : `已标记为不是同一人（#${current.id}）`, true);
    $("detail").hidden = true;
    $("reason").value = "";
    const message = $("message").textContent;
    await load();
    say(message, true);
  } catch (error) { say(error.message, false); }
}

$("login").addEventListener("click", () => login(start).catch((e) => { $("login-message").textContent = e.message; }));
$("search").addEventListener("click", () => { offset = 0; load(); });
$("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
$("next").addEventListener("click", () => { offset += PAGE; load(); });
$("link").addEventListener("click", () => decide("link"));
$("not-link").addEventListener("click", () => decide("not-link"));
if (session.token) start();
