// 一屏看全区：登录后调用 /dashboards/units 与 /dashboards/indicators，用随平台发布的 ECharts 绘图（不依赖任何外部资源）。
"use strict";
session.panels = ["filters", "board"];
const KINDS = {"all": "全部", "region": "区域", "consortium": "医联体", "zone": "片区", "institution": "机构"};
const kind = (code) => KINDS[code] || code;
const BREAKDOWNS = {"center": "按诊断中心", "reason": "复查原因", "source": "按数据源"};
let units = {};
let charts = [];

function say(text, ok) {
  $("message").textContent = text;
  $("message").className = ok ? "ok" : "error";
}

function element(tag, text, attributes) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  return node;
}

// The figure as shown: rates in percent (two decimals), ratios with two decimals, counts grouped by thousands.
function format(figure, value) {
  if (value === null || value === undefined) return "—";
  if (figure.scoring === "proportion") return (value * 100).toFixed(2) + "%";
  if (figure.scoring === "ratio") return value.toFixed(2);
  if (figure.scoring === "continuous") return value.toFixed(1) + (figure.unit ? " " + figure.unit : "");
  const text = Number.isInteger(value) ? value.toLocaleString("en-US") : value.toFixed(2);
  return figure.unit ? text + " " + figure.unit : text;
}

// The figure a card leads with: the first with a target, else the first rate, else the first.
function headline(indicator) {
  return indicator.figures.find((f) => f.target !== null) ||
    indicator.figures.find((f) => f.scoring === "proportion") || indicator.figures[0];
}

function depth(unit) {
  let level = 0;
  for (let current = unit; current && current.parent; current = units[current.parent]) level += 1;
  return level;
}

async function start() {
  $("login-panel").hidden = true;
  $("filters").hidden = false;
  try {
    const listed = (await api("/dashboards/units")).units;
    units = Object.fromEntries(listed.map((u) => [u.id, u]));
    const select = $("f-unit");
    select.replaceChildren();
    const ordered = [];
    const visit = (parent) => listed.filter((u) => u.parent === parent)
      .sort((a, b) => a.id.localeCompare(b.id)).forEach((u) => { ordered.push(u); visit(u.id); });
    visit(null);
    for (const unit of ordered) {
      select.append(element("option", "　".repeat(depth(unit)) + unit.name + "（" + kind(unit.kind) + "）",
                            {value: unit.id}));
    }
    const today = new Date();
    $("f-year").value = today.getFullYear();
    $("f-month").replaceChildren(...Array.from({length: 12}, (_, i) => element("option", (i + 1) + "月", {value: i + 1})));
    $("f-month").value = today.getMonth() + 1;
    $("f-quarter").value = Math.floor(today.getMonth() / 3) + 1;
    await query();
  } catch (error) { say(error.message, false); }
}

function period() {
  const year = String($("f-year").value).padStart(4, "0");
  const kind = $("f-kind").value;
  if (kind === "quarter") return year + "-Q" + $("f-quarter").value;
  if (kind === "month") return year + "-" + String($("f-month").value).padStart(2, "0");
  return year;
}

async function query() {
  say("正在计算……", true);
  try {
    const params = new URLSearchParams({period: period()});
    if ($("f-unit").value) params.set("unit", $("f-unit").value);
    const data = await api("/dashboards/indicators?" + params.toString());
    render(data);
    say("", true);
  } catch (error) { say(error.message, false); }
}

function drill(unitId) {
  $("f-unit").value = unitId;
  query();
}

function crumbs(unitId) {
  const path = [];
  for (let current = units[unitId]; current; current = units[current.parent]) {
    path.unshift(current);
    if (!current.parent) break;
  }
  const nav = $("crumbs");
  nav.replaceChildren();
  path.forEach((unit, index) => {
    if (index) nav.append(element("span", "›", {class: "sep"}));
    if (index === path.length - 1) nav.append(element("b", unit.name));
    else {
      const link = element("a", unit.name, {"data-unit": unit.id});
      link.addEventListener("click", () => drill(unit.id));
      nav.append(link);
    }
  });
}

function render(data) {
  for (const chart of charts) chart.dispose();
  charts = [];
  $("board").hidden = false;
  const pending = Math.max(...data.indicators.map((i) => i.pending));
  $("scope").textContent = "统计单位：" + data.unit.name + "（" + kind(data.unit.kind) + "）　统计期：" +
    data.period.from + " 至 " + data.period.to + (pending ? "　（数据更新中：尚有 " + pending + " 条新数据未计入）" : "");
  crumbs(data.unit.id);
  const cards = $("cards");
  cards.replaceChildren();
  for (const indicator of data.indicators) cards.append(card(indicator));
  for (const indicator of data.indicators) plot(indicator);
}

function card(indicator) {
  const box = element("section", null, {class: "card", "data-measure": indicator.measure});
  box.append(element("h2", indicator.title));
  const lead = headline(indicator);
  const head = element("div", null, {class: "headline"});
  head.append(element("span", format(lead, lead.value), {class: "value", "data-code": lead.code}),
              element("span", lead.name, {class: "name"}));
  if (lead.target !== null && lead.value !== null) {
    const met = lead.value >= lead.target;
    head.append(element("span", (met ? "达标" : "未达标") + "（目标 " + format(lead, lead.target) + "）",
                        {class: "badge " + (met ? "met" : "unmet")}));
  }
  box.append(head);
  const figures = element("table", null, {class: "figures"});
  for (const figure of indicator.figures) {
    const row = element("tr");
    const detail = figure.denominator !== null ? figure.numerator + " / " + figure.denominator : "";
    row.append(element("th", figure.name), element("td", format(figure, figure.value),
                                                     {class: "num", "data-code": figure.code}),
               element("td", detail, {class: "num detail"}));
    figures.append(row);
  }
  box.append(figures);
  if (indicator.children.length) {
    box.append(element("div", null, {class: "chart", id: "chart-" + indicator.measure}));
    const table = element("table", null, {class: "children"});
    table.append(element("caption", "下级单位（点击下钻）"));
    const header = element("tr");
    header.append(element("th", "单位"), element("th", lead.name, {class: "num"}));
    table.append(header);
    for (const child of indicator.children) {
      const row = element("tr", null, {class: "drill", "data-unit": child.id});
      row.append(element("td", child.name),
                 element("td", format(lead, child.figures[lead.code].value), {class: "num", "data-code": lead.code}));
      row.addEventListener("click", () => drill(child.id));
      table.append(row);
    }
    box.append(table);
  }
  for (const [stratifier, byCode] of Object.entries(indicator.breakdowns)) {
    if (Object.values(byCode).some((rows) => rows.length)) box.append(breakdown(indicator, stratifier, byCode));
  }
  return box;
}

function breakdown(indicator, stratifier, byCode) {
  const codes = indicator.figures.filter((f) => byCode[f.code]);
  const table = element("table", null, {class: "breakdown", "data-stratifier": stratifier});
  table.append(element("caption", BREAKDOWNS[stratifier] || stratifier));
  const header = element("tr");
  header.append(element("th", ""));
  for (const figure of codes) header.append(element("th", figure.name, {class: "num"}));
  table.append(header);
  const names = {};
  for (const figure of codes) for (const stratum of byCode[figure.code]) names[stratum.id] = stratum.name;
  for (const [id, name] of Object.entries(names)) {
    const row = element("tr", null, {"data-key": id});
    row.append(element("td", name));
    for (const figure of codes) {
      const stratum = byCode[figure.code].find((s) => s.id === id);
      row.append(element("td", format(figure, stratum ? stratum.value : null), {class: "num", "data-code": figure.code}));
    }
    table.append(row);
  }
  return table;
}

function plot(indicator) {
  const box = $("chart-" + indicator.measure);
  if (!box || typeof echarts === "undefined") return;
  const lead = headline(indicator);
  const percent = lead.scoring === "proportion";
  const values = indicator.children.map((c) => {
    const value = c.figures[lead.code].value;
    return value === null ? null : (percent ? Math.round(value * 10000) / 100 : value);
  });
  const chart = echarts.init(box, null, {renderer: "canvas"});
  const series = {type: "bar", name: lead.name, data: values, itemStyle: {color: "#1d4e89"},
                  label: {show: true, position: "top", formatter: (p) => p.value === null ? "" : p.value + (percent ? "%" : "")}};
  if (lead.target !== null) {
    series.markLine = {symbol: "none", data: [{yAxis: percent ? lead.target * 100 : lead.target, name: "目标"}],
                       lineStyle: {color: "#b83232", type: "dashed"}, label: {formatter: "目标 {c}" + (percent ? "%" : "")}};
  }
  chart.setOption({
    animation: false, grid: {left: 48, right: 56, top: 24, bottom: 48},
    tooltip: {trigger: "axis"},
    xAxis: {type: "category", data: indicator.children.map((c) => c.name), axisLabel: {interval: 0, rotate: 30, fontSize: 11}},
    yAxis: {type: "value", axisLabel: {formatter: percent ? "{value}%" : "{value}"}},
    series: [series],
  });
  chart.on("click", (params) => { if (params.componentType === "series") drill(indicator.children[params.dataIndex].id); });
  charts.push(chart);
}

$("f-kind").addEventListener("change", () => {
  $("l-quarter").hidden = $("f-kind").value !== "quarter";
  $("l-month").hidden = $("f-kind").value !== "month";
});
$("login").addEventListener("click", () => login(start).catch((e) => { $("login-message").textContent = e.message; }));
$("search").addEventListener("click", query);
window.addEventListener("resize", () => charts.forEach((c) => c.resize()));
if (session.token) start();
