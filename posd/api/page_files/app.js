// SPDX-License-Identifier: MIT
// The cashier page (DESIGN §11; docs/cashier-page.md). One script, no dependencies, no
// build step. It uses the same API as a register: one long-poll for the sale on screen,
// the lists refreshed when a sale ends (and every 5 s while idle), health every 10 s. The API token
// lives in an HttpOnly cookie (POST /v1/session); the manager's token, asked for when a
// manager's action needs it, lives in this script's memory only.
"use strict";

const WORDS = {
  en: {
    lang: "中文", logout: "Log out", offline: "posd is not answering: reconnecting…",
    login_title: "Log in with the API token", token: "API token (api.token_file)", login: "Log in",
    new_sale: "New sale", amount: "Amount (yuan)", code_optional: "Payment code (or scan it)",
    charge: "Charge", current_sale: "Sale", cancel: "Cancel", next_sale: "Next sale",
    reprint: "Reprint", attention: "Needs attention", today: "Today's sales", time: "Time",
    channel: "Wallet", state: "State", refunded: "Refunded", manager: "Manager",
    refund_title: "Refund", refund_amount: "Amount (yuan; empty: all that is left)",
    reason: "Reason", refund: "Refund", close: "Close", report: "Today's Z-report",
    reconciliation: "Reconciliation", load_manager: "Show manager's view",
    manager_token_ask: "This needs the manager's token (api.manager_token_file):", ok: "OK",
    scan: "Scan the customer's code", reversing_note: "Cancelling: posd is reversing it",
    seconds_left: "s until posd reverses it", returned: "money returned", none_taken: "no money taken",
    unknown_back: "the channel did not say if money was taken", resolve_paid: "Resolved: paid",
    resolve_reversed: "Resolved: reversed", note: "What did you check, and where?",
    bad_amount: "Enter an amount in yuan, like 12.50", wrong_token: "Wrong token",
    not_manager: "That is not the manager's token", queued: "queued for the printer",
    nothing: "nothing yet", all_matched: "all matched", hourly: "paid per hour",
    states: {
      awaiting_code: "Scan the code", paying: "Paying…", confirming: "Customer confirming…",
      reversing: "Reversing…", paid: "PAID", declined: "DECLINED", reversed: "REVERSED",
      cancelled: "CANCELLED", needs_attention: "NEEDS ATTENTION",
      refunding: "Refunding…", refunded: "Refunded", refund_failed: "Refund failed",
    },
    health: { scanner: "scanner", printer: "printer", hq_sync: "HQ sync", reconciliation: "reconciliation" },
  },
  zh: {
    lang: "English", logout: "退出", offline: "posd 无响应，正在重新连接…",
    login_title: "用 API 令牌登录", token: "API 令牌 (api.token_file)", login: "登录",
    new_sale: "新收款", amount: "金额（元）", code_optional: "付款码（或扫码）",
    charge: "收款", current_sale: "当前交易", cancel: "取消", next_sale: "下一笔",
    reprint: "补打小票", attention: "需人工处理", today: "今日交易", time: "时间",
    channel: "钱包", state: "状态", refunded: "已退款", manager: "店长",
    refund_title: "退款", refund_amount: "退款金额（元；留空：全部剩余）",
    reason: "原因", refund: "退款", close: "关闭", report: "今日日结（Z 报表）",
    reconciliation: "对账", load_manager: "显示店长视图",
    manager_token_ask: "此操作需要店长令牌 (api.manager_token_file)：", ok: "确定",
    scan: "请扫描顾客付款码", reversing_note: "取消中：posd 正在撤销",
    seconds_left: "秒后 posd 将撤销", returned: "已退回款项", none_taken: "未扣款",
    unknown_back: "渠道未说明是否扣款", resolve_paid: "处理为：已付款",
    resolve_reversed: "处理为：已撤销", note: "您核对了什么，在哪里核对？",
    bad_amount: "请输入以元为单位的金额，如 12.50", wrong_token: "令牌错误",
    not_manager: "这不是店长令牌", queued: "已加入打印队列",
    nothing: "暂无", all_matched: "全部一致", hourly: "每小时收款",
    states: {
      awaiting_code: "请扫码", paying: "支付中…", confirming: "顾客确认中…",
      reversing: "撤销中…", paid: "已付款", declined: "已拒绝", reversed: "已撤销",
      cancelled: "已取消", needs_attention: "需人工处理",
      refunding: "退款中…", refunded: "已退款", refund_failed: "退款失败",
    },
    health: { scanner: "扫码枪", printer: "打印机", hq_sync: "总部同步", reconciliation: "对账" },
  },
};
const WORKING = new Set(["awaiting_code", "paying", "confirming", "reversing"]);
const CANCELLABLE = new Set(["awaiting_code", "paying", "confirming"]);

let lang = (navigator.language || "zh").toLowerCase().startsWith("zh") ? "zh" : "en";
let managerToken = null; // memory only: never in storage, the URL or a cookie
let current = null; // the sale on screen
let following = 0; // bumps when another sale is put on screen: stale long-polls stop
let role = null;

const $ = (id) => document.getElementById(id);
const t = (key) => WORDS[lang][key] ?? key;
const stateWord = (state) => WORDS[lang].states[state] ?? state;

// --- money: integer fen, never a float ---------------------------------------------------

function parseYuan(text) {
  const m = /^\s*(\d{1,9})(?:\.(\d{1,2}))?\s*$/.exec(text);
  if (!m) return null;
  const fen = Number(m[1]) * 100 + Number((m[2] || "").padEnd(2, "0"));
  return fen > 0 ? fen : null;
}

function yuan(fen) {
  const sign = fen < 0 ? "-" : "";
  const abs = Math.abs(fen);
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
}

// --- the API -------------------------------------------------------------------------------

class Offline extends Error {}
class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(method, path, body, { manager = false, token = null, quiet = false } = {}) {
  const headers = { "X-Posd-Page": "1" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const bearer = token || (manager ? managerToken : null);
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (method === "POST" && path.endsWith("/refunds") || path === "/v1/sales" && method === "POST") {
    headers["Idempotency-Key"] = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new Offline(String(err));
  }
  setOffline(false);
  if (response.status === 401) {
    if (!bearer && !quiet) showLogin();
    throw new ApiError(401, t("wrong_token"));
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (err) { throw new Offline("not JSON"); }
  // 503: posd is stopping (a sale goes on after the restart) or its database is down.
  if (response.status === 503) throw new Offline(data?.detail ?? "503");
  if (!response.ok) throw new ApiError(response.status, data?.detail ?? String(response.status));
  return data;
}

function setOffline(yes) { $("offline").hidden = !yes; }

async function retrying(work) {
  // Keep trying through a daemon restart: 1, 2, 4 ... 10 s between tries.
  let pause = 1000;
  for (;;) {
    try { return await work(); } catch (err) {
      if (!(err instanceof Offline)) throw err;
      setOffline(true);
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(pause * 2, 10000);
    }
  }
}

// --- log in --------------------------------------------------------------------------------

function showLogin() {
  $("login").hidden = false; $("app").hidden = true; $("logout").hidden = true;
}

async function start() {
  try {
    const who = await retrying(() => api("GET", "/v1/session"));
    role = who.role;
  } catch (err) { showLogin(); return; }
  $("login").hidden = true; $("app").hidden = false; $("logout").hidden = false;
  $("role").textContent = role;
  refreshHealth(); refreshToday();
  setInterval(refreshHealth, 10000);
  // Idle (no sale being followed): look for a sale the register started every 5 s.
  setInterval(() => { if (!current || current.final) refreshToday(); }, 5000);
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await api("POST", "/v1/session", { token: $("token").value }, { quiet: true });
    $("token").value = ""; $("login-error").textContent = "";
    start();
  } catch (err) { $("login-error").textContent = err.message; }
});

$("logout").addEventListener("click", async () => {
  await api("DELETE", "/v1/session").catch(() => {});
  managerToken = null; showLogin();
});

// --- a sale --------------------------------------------------------------------------------

$("sale-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const amount = parseYuan($("amount").value);
  if (amount === null) { $("sale-error").textContent = t("bad_amount"); return; }
  const body = { amount };
  const code = $("code").value.trim();
  if (code) body.auth_code = code;
  $("charge").disabled = true;
  try {
    const sale = await api("POST", "/v1/sales", body);
    $("sale-error").textContent = ""; $("code").value = "";
    show(sale); follow(sale);
  } catch (err) { $("sale-error").textContent = err.message; }
  finally { $("charge").disabled = false; }
});

async function follow(sale) {
  const mine = ++following;
  while (!sale.final && mine === following) {
    const seen = sale.state;
    try {
      sale = await retrying(() => api("GET", `/v1/sales/${sale.id}?wait=25&seen_state=${seen}`));
    } catch (err) { $("result-message").textContent = err.message; return; }
    if (mine !== following) return;
    show(sale);
  }
  if (mine === following) { refreshToday(); refreshHealth(); }
}

function show(sale) {
  current = sale;
  $("current").hidden = false;
  const box = $("result");
  box.className = "result " + (WORKING.has(sale.state) ? "working" : sale.state);
  $("result-state").textContent = stateWord(sale.state);
  $("result-amount").textContent = `¥${yuan(sale.amount)}` + (sale.channel ? ` · ${sale.channel}` : "");
  let message = sale.message || "";
  if (sale.state === "awaiting_code") message = t("scan");
  if (sale.state === "reversing") message = `${t("reversing_note")} — ${message}`;
  if (sale.state === "reversed") {
    message += ` (${sale.refunded === true ? t("returned") : sale.refunded === false ? t("none_taken") : t("unknown_back")})`;
  }
  $("result-message").textContent = message;
  const cancel = $("cancel");
  cancel.hidden = sale.final;
  cancel.disabled = !CANCELLABLE.has(sale.state);
  cancel.textContent = sale.state === "reversing" ? stateWord("reversing") : t("cancel");
  $("next").hidden = !sale.final;
  $("receipt").hidden = !sale.final;
  if (sale.final) {
    $("receipt-img").src = `/v1/sales/${sale.id}/receipt.png?at=${encodeURIComponent(sale.updated_at)}`;
    $("reprint-note").textContent = "";
  }
  tick();
}

function tick() {
  const el = $("countdown");
  if (!current || current.final || !current.deadline_at || current.state === "reversing") {
    el.textContent = ""; return;
  }
  const left = Math.max(0, Math.ceil((Date.parse(current.deadline_at) - Date.now()) / 1000));
  el.textContent = `${left} ${t("seconds_left")}`;
}
setInterval(tick, 250);

$("cancel").addEventListener("click", async () => {
  if (!current) return;
  $("cancel").disabled = true;
  try { show(await api("POST", `/v1/sales/${current.id}/cancel`)); }
  catch (err) { $("result-message").textContent = err.message; }
});

$("next").addEventListener("click", () => {
  following++; current = null; $("current").hidden = true; $("amount").value = ""; $("amount").focus();
});

$("reprint").addEventListener("click", async () => {
  try {
    const answer = await api("POST", `/v1/sales/${current.id}/reprint`);
    $("reprint-note").textContent = answer.queued ? t("queued") : answer.detail;
  } catch (err) { $("reprint-note").textContent = err.message; }
});

// --- lists ---------------------------------------------------------------------------------

let todaysSales = [];

async function refreshToday() {
  let listed;
  try { listed = await retrying(() => api("GET", "/v1/sales")); } catch (err) { return; }
  todaysSales = listed.sales;
  const rows = $("sales");
  rows.replaceChildren(...[...todaysSales].reverse().map(saleRow));
  const attention = todaysSales.filter((s) => s.state === "needs_attention");
  $("attention").replaceChildren(...(attention.length ? attention.map(attentionItem)
    : [element("li", {}, t("nothing"))]));
  // A sale the register started (not this page): put it on screen and follow it.
  const working = todaysSales.filter((s) => !s.final);
  if ((!current || current.final) && working.length) {
    const newest = working[working.length - 1];
    if (!current || newest.id !== current.id) { show(newest); follow(newest); }
  }
  drawChart();
}

// Times as the store reads them: the API writes them with the store's own UTC offset
// (store.timezone), which may not be the browser's.
function storeTime(iso) { return iso.slice(11, 19); }

function element(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const child of children) el.append(child);
  return el;
}

function saleRow(sale) {
  const time = storeTime(sale.created_at);
  const actions = element("td", {});
  if (sale.state === "paid" && sale.refunded_amount < sale.amount) {
    const button = element("button", { type: "button", "data-refund": String(sale.id) }, t("refund"));
    button.addEventListener("click", () => openRefund(sale));
    actions.append(button);
  }
  return element("tr", { "data-sale": String(sale.id) },
    element("td", {}, String(sale.id)), element("td", {}, time),
    element("td", { class: "num" }, yuan(sale.amount)), element("td", {}, sale.channel || ""),
    element("td", { "data-state": sale.state }, stateWord(sale.state)),
    element("td", { class: "num" }, sale.refunded_amount ? yuan(sale.refunded_amount) : ""), actions);
}

function attentionItem(sale) {
  const li = element("li", { "data-attention": String(sale.id) },
    `#${sale.id} ¥${yuan(sale.amount)} ${sale.channel || ""} ${sale.out_trade_no} — ${sale.message} `);
  for (const as of ["paid", "reversed"]) {
    const button = element("button", { type: "button" }, t(`resolve_${as}`));
    button.addEventListener("click", () => resolve(sale, as));
    li.append(button);
  }
  return li;
}

// --- health --------------------------------------------------------------------------------

async function refreshHealth() {
  let health;
  try { health = await api("GET", "/v1/health"); } catch (err) { setOffline(true); return; }
  setOffline(false);
  const pills = [];
  for (const [key, value] of Object.entries(health)) {
    const base = key.split(".")[0];
    if (!(base in WORDS.en.health) || typeof value !== "object" || value === null) continue;
    const bad = Boolean(value.degraded);
    const label = WORDS[lang].health[base] + (key.includes(".") ? key.slice(key.indexOf(".")) : "");
    pills.push(element("li", { class: bad ? "bad" : "ok", title: value.degraded || "ok",
      "data-health": key }, label));
  }
  pills.unshift(element("li", { class: health.status === "ok" ? "ok" : "bad",
    title: health.degraded.join("; "), "data-health": "status" }, health.status));
  $("health").replaceChildren(...pills);
}

// --- manager -------------------------------------------------------------------------------

async function askManager() {
  if (managerToken) return true;
  const dialog = $("manager-dialog");
  $("manager-error").textContent = "";
  for (;;) {
    $("manager-token").value = "";
    dialog.showModal();
    const answer = await new Promise((resolve) => dialog.addEventListener("close",
      () => resolve(dialog.returnValue), { once: true }));
    if (answer !== "ok") return false;
    const token = $("manager-token").value.trim();
    try {
      const who = await api("GET", "/v1/session", undefined, { token });
      if (who.role === "manager") { managerToken = token; return true; }
      $("manager-error").textContent = t("not_manager");
    } catch (err) { $("manager-error").textContent = t("wrong_token"); }
  }
}

let refundSale = null;

async function openRefund(sale) {
  if (!(await askManager())) return;
  refundSale = sale;
  $("refund-box").hidden = false;
  $("refund-sale").textContent = `#${sale.id} ¥${yuan(sale.amount)} ${sale.channel} ${sale.out_trade_no}`
    + (sale.refunded_amount ? ` (${t("refunded")} ¥${yuan(sale.refunded_amount)})` : "");
  $("refund-amount").value = ""; $("refund-result").textContent = "";
  $("refund-reason").focus();
}

$("refund-close").addEventListener("click", () => { $("refund-box").hidden = true; });

$("refund-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { reason: $("refund-reason").value };
  if ($("refund-amount").value.trim()) {
    const amount = parseYuan($("refund-amount").value);
    if (amount === null) { $("refund-result").textContent = t("bad_amount"); return; }
    body.amount = amount;
  }
  $("refund-send").disabled = true;
  try {
    let refund = await api("POST", `/v1/sales/${refundSale.id}/refunds`, body, { manager: true });
    $("refund-result").textContent = `${stateWord(refund.state)} ¥${yuan(refund.amount)} ${refund.message}`;
    while (!refund.final) {
      refund = await retrying(() => api("GET", `/v1/refunds/${refund.id}?wait=25`));
      $("refund-result").textContent = `${stateWord(refund.state)} ¥${yuan(refund.amount)} ${refund.message}`;
    }
    $("refund-result").dataset.state = refund.state;
    refreshToday();
  } catch (err) { $("refund-result").textContent = err.message; }
  finally { $("refund-send").disabled = false; }
});

async function resolve(sale, as) {
  if (!(await askManager())) return;
  const note = window.prompt(t("note"));
  if (!note) return;
  try { await api("POST", `/v1/sales/${sale.id}/resolve`, { as, note }, { manager: true }); }
  catch (err) { window.alert(err.message); }
  refreshToday(); refreshHealth();
}

$("load-manager").addEventListener("click", loadManager);

async function loadManager() {
  if (!(await askManager())) return;
  const report = await api("GET", "/v1/reports/daily", undefined, { manager: true });
  const lines = report.channels.map((c) => `${c.channel}: ${c.paid.count} × ¥${yuan(c.paid.amount)} ` +
    `(${stateWord("reversed")} ${c.reversed.count}, ${stateWord("declined")} ${c.declined.count})`);
  lines.push(`net ¥${yuan(report.net)}`);
  $("report").replaceChildren(...lines.map((l) => element("p", {}, l)));
  const rec = await api("GET", "/v1/reconciliations", undefined, { manager: true });
  const items = [element("p", { "data-verdict": rec.verdict }, rec.verdict)];
  for (const r of rec.reconciliations) {
    items.push(element("p", {}, `${r.date} ${r.channel}: ${r.status} — ${r.detail}`));
    for (const d of (r.result?.differences ?? [])) {
      items.push(element("div", { class: d.resolved_at ? "diff resolved" : "diff" },
        `${d.class} ${d.out_trade_no} ${d.bill_amount != null ? "¥" + yuan(d.bill_amount) : ""} — ${d.message}` +
        (d.followup ? ` (${d.followup})` : "") + (d.resolved_note ? ` ✔ ${d.resolved_note}` : "")));
    }
  }
  $("reconciliation").replaceChildren(...items);
  drawChart();
}

function drawChart() {
  // Paid amount per hour of today's sales, as SVG bars: no chart library.
  const hours = new Array(24).fill(0);
  for (const s of todaysSales) if (s.state === "paid") hours[Number(storeTime(s.created_at).slice(0, 2))] += s.amount;
  const top = Math.max(...hours, 1);
  const svg = $("chart");
  const ns = "http://www.w3.org/2000/svg";
  const parts = [];
  hours.forEach((fen, hour) => {
    const h = Math.round((fen / top) * 90);
    const bar = document.createElementNS(ns, "rect");
    bar.setAttribute("x", String(hour * 20 + 2)); bar.setAttribute("y", String(100 - h));
    bar.setAttribute("width", "16"); bar.setAttribute("height", String(h));
    bar.setAttribute("data-hour", String(hour)); bar.setAttribute("data-fen", String(fen));
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", String(hour * 20 + 4)); label.setAttribute("y", "112");
    label.textContent = String(hour);
    parts.push(bar, label);
  });
  svg.replaceChildren(...parts);
  svg.setAttribute("aria-label", t("hourly"));
}

// --- words ---------------------------------------------------------------------------------

function translate() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  if (current) show(current);
}

$("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  translate(); refreshToday(); refreshHealth();
});

translate();
start();
