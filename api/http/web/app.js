// suanli web page: grantee balances, auditor checks, bureau pools.
// Hand-written, no dependencies, nothing loaded from elsewhere. Talks to the JSON API of the
// same origin with the token kept in sessionStorage (sent as "Authorization: Bearer ...").
"use strict";

const TOKEN_KEY = "suanli.token";
const SVG_NS = "http://www.w3.org/2000/svg";

// --- small DOM helpers ------------------------------------------------------------------

function $(sel, root) { return (root || document).querySelector(sel); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) if (c) node.append(c);
  return node;
}

// "中文 English": the English part in a muted span, as in the static HTML.
function bi(zh, en) { return [zh + " ", el("span", { class: "en", text: en })]; }

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

// Replace a node's content with parts (nested arrays of nodes and text; null/false skipped).
function fill(node, ...parts) {
  clear(node).append(...parts.flat(Infinity).filter((p) => p !== null && p !== undefined && p !== false));
  return node;
}

// --- money and time ---------------------------------------------------------------------

// Amounts are integer fen (分); show 元 with two decimals, without going through floats.
function yuan(fen) {
  if (fen === null || fen === undefined || fen === "") return "—";
  let n = BigInt(fen);
  const neg = n < 0n;
  if (neg) n = -n;
  const whole = (n / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const cents = (n % 100n).toString().padStart(2, "0");
  return (neg ? "-" : "") + "¥" + whole + "." + cents;
}

function num(v) { const n = Number(v); return Number.isFinite(n) ? n : 0; }

// RFC 3339 UTC -> Beijing time text (the policy's dates are Asia/Shanghai).
function beijing(at) {
  if (!at) return "—";
  const d = new Date(at);
  if (Number.isNaN(d.getTime())) return String(at);
  const s = new Date(d.getTime() + 8 * 3600 * 1000).toISOString();
  return s.slice(0, 10) + " " + s.slice(11, 16);
}

function monthOf(at) {
  const d = new Date(at);
  if (Number.isNaN(d.getTime())) return null;
  return new Date(d.getTime() + 8 * 3600 * 1000).toISOString().slice(0, 7);
}

// First present field among names (the JSON API is read leniently).
function pick(obj, ...names) {
  for (const n of names) if (obj && obj[n] !== undefined && obj[n] !== null) return obj[n];
  return undefined;
}

// --- the API ------------------------------------------------------------------------------

function token() { return sessionStorage.getItem(TOKEN_KEY); }

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || "HTTP " + status);
    this.status = status;
    this.problem = problem || {};
  }
  // The route itself is missing on this server (not a ledger NotFound, which has a reason).
  get unavailable() {
    return (this.status === 404 && !this.problem.reason) || this.status === 405 || this.status === 501;
  }
}

// GET (or POST with options.body as JSON) on the same origin, with the bearer token.
async function api(path, options) {
  const opts = options || {};
  const headers = { Accept: "application/json" };
  const t = token();
  if (t && !opts.anonymous) headers.Authorization = "Bearer " + t;
  const init = { headers, cache: "no-store" };
  if (opts.body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  const response = await fetch(path, init);
  const type = response.headers.get("content-type") || "";
  if (!response.ok) {
    let problem = null;
    if (type.includes("json")) { try { problem = await response.json(); } catch (e) { problem = null; } }
    throw new ApiError(response.status, problem);
  }
  if (opts.text) return response.text();
  return response.json();
}

// A file the API serves to a bearer token only: fetched, then handed over as a blob.
async function download(path, fallbackName) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  if (!response.ok) throw new ApiError(response.status, null);
  const named = /filename="([^"]+)"/.exec(response.headers.get("content-disposition") || "");
  const a = el("a", { href: URL.createObjectURL(await response.blob()), download: named ? named[1] : fallbackName });
  document.body.append(a);
  a.click();
  a.remove();
  return a.download;
}

function downloadButton(path, label, name) {
  const button = el("button", { type: "button", class: "secondary small", "data-href": path }, label);
  button.addEventListener("click", () => {
    download(path, name).then((saved) => { button.dataset.saved = saved; },
      (error) => { button.dataset.saved = ""; alert("下载失败 download failed: " + error.message); });
  });
  return button;
}

function showNotice(node, kind, parts) {
  node.className = "notice " + kind;
  fill(node, ...parts.flat(Infinity));
  node.hidden = false;
}

// A token the server does not know (mistyped, revoked, expired): forget it, say so.
function tokenRefused(node) {
  sessionStorage.removeItem(TOKEN_KEY);
  updateSignin();
  showNotice(node, "error", [el("strong", {}, bi("令牌无效或已撤销。", "This token is invalid or has been revoked.")), el("br"),
    bi("请向主管部门索取新令牌后重新登录。", "Ask the bureau for a new token and sign in again.")]);
  node.dataset.state = "token-refused";
}

function explain(node, error, what) {
  node.dataset.state = "error";
  if (error instanceof ApiError && error.unavailable) {
    showNotice(node, "info", [el("strong", {}, bi("尚未开放", "Not available yet")), el("br"),
      what + " — ", bi("此服务器还没有提供该接口。", "this server does not offer this endpoint yet.")]);
  } else if (error instanceof ApiError && error.status === 401) {
    if (token()) tokenRefused(node);
    else showNotice(node, "warn", bi("请先用令牌登录。", "Please sign in with a token."));
  } else if (error instanceof ApiError && error.status === 403) {
    showNotice(node, "warn", [bi("此令牌无权查看：", "This token may not see this: "), error.message]);
  } else {
    showNotice(node, "error", [bi("出错了：", "Something went wrong: "), error.message]);
  }
}

// --- enums: Chinese first, English beside it ------------------------------------------------

const LABELS = {
  kind: { claim: ["补贴", "claim"], capture: ["补贴(预授权)", "capture"], "claim.reverse": ["冲正", "reversal"],
    clawback: ["追回", "clawback"], "grant.pay": ["一次性奖补", "grant"] },
  status: { active: ["有效", "active"], suspended: ["暂停", "suspended"], revoked: ["已撤销", "revoked"],
    expired: ["已过期", "expired"], submitted: ["待初审", "submitted"], reviewed: ["已初审", "reviewed"],
    approved: ["已批准", "approved"], rejected: ["未通过", "rejected"], closed: ["已出具", "closed"], open: ["未完成", "open"] },
  cap: { voucher: ["券面额", "voucher"], period: ["期间上限", "period"], entity_programme: ["单位项目上限", "entity × programme"],
    entity_round: ["单位年度上限", "entity × round"], programme_pool: ["项目资金池", "programme pool"],
    voucher_pool: ["算力券资金池", "voucher pool"], scheme_entity: ["单位跨轮次年度上限", "entity × scheme × year"],
    scheme_pool: ["跨轮次年度资金池", "scheme pool"], rate: ["补贴比例", "rate"] },
  scope: { voucher: ["券", "voucher"], period: ["期间", "period"], programme: ["项目", "programme"],
    entity: ["单位", "entity"], pool: ["资金池", "pool"] },
  centre: { "nscc-cd": ["国家超算成都中心", "nscc-cd"], "cd-icc": ["成都智算中心", "cd-icc"] },
  opinion: { approve: ["同意", "approve"], reject: ["不同意", "reject"] },
  budget: { programme: ["项目", "programme"], pool: ["资金池", "pool"] },
  role: { log: ["日志签名", "log"], registry: ["密钥登记", "registry"], issuer: ["发券", "issuer"],
    service: ["服务", "service"], centre: ["计算中心", "centre"] },
};

// "中文 English" for an enum value; an unknown value is shown as it is.
function label(group, value) {
  if (value === null || value === undefined || value === "") return "";
  const found = (LABELS[group] || {})[value];
  return found ? bi(found[0], found[1]) : [String(value)];
}

function labelText(group, value) {
  const found = (LABELS[group] || {})[value];
  return found ? `${found[0]} ${found[1]}` : String(value || "");
}

// Programme labels as the notice numbers them, from /v1/apply/programmes.
const programmeNames = new Map();

async function loadProgrammeNames() {
  if (programmeNames.size) return;
  try {
    const found = await api("/v1/apply/programmes");
    for (const p of found.programmes) programmeNames.set(p.id, `(${p.number}) ${p.title}`);
  } catch (e) { /* the ids are shown instead */ }
}

function programmeLabel(id) { return id ? [programmeNames.get(id) || "", " ", el("span", { class: "en", text: id })] : ""; }

function localDate(at) { return at ? beijing(at).slice(0, 10) : "—"; }

// --- charts (SVG) ---------------------------------------------------------------------------

// Horizontal bars: [{label, sub, used, limit, held, highlight}] amounts in fen.
function bars(container, rows, emptyText) {
  clear(container);
  if (!rows.length) { container.append(el("p", { class: "muted" }, emptyText)); return; }
  for (const r of rows) {
    const limit = num(r.limit), used = num(r.used), held = num(r.held);
    const share = limit > 0 ? Math.min(1, used / limit) : 0;
    const heldShare = limit > 0 ? Math.min(1 - share, held / limit) : 0;
    const pct = limit > 0 ? Math.round((used / limit) * 1000) / 10 : null;
    const level = share >= 0.9 ? "full" : share >= 0.6 ? "high" : "ok";
    const W = 600, H = 18;
    const graphic = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "bar", preserveAspectRatio: "none",
      role: "img", "aria-label": `${r.label}: ${pct === null ? "—" : pct + "%"}` },
      svg("rect", { x: 0, y: 0, width: W, height: H, rx: 4, class: "bar-bg" }),
      svg("rect", { x: 0, y: 0, width: (W * share).toFixed(1), height: H, rx: 4, class: "bar-fill " + level }),
      heldShare > 0 ? svg("rect", { x: (W * share).toFixed(1), y: 0, width: (W * heldShare).toFixed(1), height: H, class: "bar-held" }) : null);
    const open = r.limit === null || r.limit === undefined; // a figure the policy leaves open
    const remaining = r.remaining !== undefined && r.remaining !== null ? num(r.remaining)
      : open ? null : limit - used - held;
    container.append(el("div", { class: "bar-row" + (r.highlight ? " binding" : "") },
      el("div", { class: "bar-label" },
        el("strong", { text: r.label }), r.sub ? el("span", { class: "muted" }, " ", r.sub) : null,
        r.highlight ? el("span", { class: "tag" }, bi("约束上次补贴", "bound the last claim")) : null),
      graphic,
      el("div", { class: "bar-figures" },
        bi("已用", "Used"), " ", el("b", { text: yuan(used) }),
        held ? [" · ", bi("冻结", "Held"), " ", yuan(held)] : null,
        " · ", bi("上限", "Cap"), " ", open ? bi("未设定", "not set") : yuan(limit),
        " · ", bi("剩余", "Remaining"), " ", el("b", { text: yuan(remaining) }),
        pct !== null ? el("span", { class: "muted", text: ` (${pct}%)` }) : null)));
  }
}

// The smallest 1, 2, 2.5 or 5 × 10^k yuan (in fen) at or above `fen`: round axis ticks.
function niceCeil(fen) {
  const yuanValue = Math.max(1, fen / 100);
  const step = 10 ** Math.floor(Math.log10(yuanValue));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= yuanValue) return m * step * 100;
  return 10 * step * 100;
}

// Monthly bars (subsidy) and a cumulative line, from [{month, subsidy, cost}].
function usageChart(container, months) {
  clear(container);
  if (!months.length) {
    container.append(el("p", { class: "muted" }, bi("暂无使用记录。", "No usage yet.")));
    return;
  }
  const W = 720, H = 240, L = 78, R = 16, T = 16, B = 40;
  const maxBar = Math.max(1, ...months.map((m) => Math.max(m.subsidy, m.cost)));
  let total = 0;
  const cumulative = months.map((m) => (total += m.subsidy));
  const top = niceCeil(Math.max(maxBar, total));
  const x = (i) => L + ((W - L - R) * (i + 0.5)) / months.length;
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const bw = Math.max(4, ((W - L - R) / months.length) * 0.36);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "usage", role: "img",
    "aria-label": "使用趋势 usage over time" });
  for (let k = 0; k <= 4; k++) {
    const v = (top * k) / 4;
    chart.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end", text: yuan(Math.round(v)).replace(/\.\d\d$/, "") }));
  }
  months.forEach((m, i) => {
    chart.append(
      svg("rect", { x: x(i) - bw - 1, y: y(m.cost), width: bw, height: Math.max(0, y(0) - y(m.cost)), class: "cost" },
        svg("title", { text: `${m.month} 费用 cost ${yuan(m.cost)}` })),
      svg("rect", { x: x(i) + 1, y: y(Math.max(0, m.subsidy)), width: bw, height: Math.abs(y(0) - y(m.subsidy)), class: "subsidy",
        "data-month": m.month, "data-fen": m.subsidy },
        svg("title", { text: `${m.month} 补贴 subsidy ${yuan(m.subsidy)}` })),
      svg("text", { x: x(i), y: H - B + 16, class: "axis", "text-anchor": "middle", text: m.month }));
  });
  chart.append(svg("polyline", { class: "cumulative",
    points: cumulative.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ") }));
  cumulative.forEach((v, i) => chart.append(svg("circle", { cx: x(i), cy: y(v), r: 3, class: "cumulative-dot" })));
  container.append(chart, el("div", { class: "legend" },
    el("span", { class: "key cost" }), bi("费用", "Cost"), " ",
    el("span", { class: "key subsidy" }), bi("补贴", "Subsidy"), " ",
    el("span", { class: "key cumulative" }), bi("累计补贴", "Cumulative subsidy")));
}

// --- grantee view -------------------------------------------------------------------------

const HISTORY_PAGE = 100;
const historyPages = { afters: [-1], at: 0, base: "/v1/me" }; // where each page starts; the one shown

// The grantee's own entity (/v1/me), or, for the bureau and auditors, any entity by its
// 统一社会信用代码 (#grantee?uscc=…, /v1/entities/{uscc}).
async function showGrantee(params) {
  const uscc = params && params.get("uscc");
  const base = uscc ? `/v1/entities/${encodeURIComponent(uscc)}` : "/v1/me";
  historyPages.base = base;
  const status = $("#grantee-status"), body = $("#grantee-body");
  body.hidden = true;
  delete status.dataset.state;
  if (!token()) {
    showNotice(status, "info", bi("请用受资助方令牌登录以查看余额、额度与历史。",
      "Sign in with your grantee token to see balances, caps and history."));
    return;
  }
  showNotice(status, "info", bi("加载中…", "Loading…"));
  let vouchers, summary;
  try {
    await loadProgrammeNames();
    [vouchers, summary] = await Promise.all([api(`${base}/vouchers`), api(`${base}/history/summary`)]);
  } catch (error) {
    explain(status, error, `${base}/vouchers, ${base}/history/summary`);
    return;
  }
  const entity = vouchers.entity || {};
  if (!entity.name) {
    // A token made for a 统一社会信用代码 nobody registered (often a typo): say so, show nothing.
    showNotice(status, "warn", [el("strong", {}, bi("未登记的单位", "Unknown entity")), el("br"),
      bi(`统一社会信用代码 ${entity.uscc} 未在账本中登记，请核对令牌所对应的代码。`,
        `No entity with 统一社会信用代码 ${entity.uscc} is registered; check the code this token was made for.`)]);
    status.dataset.state = "unknown-entity";
    return;
  }
  status.hidden = true;
  body.hidden = false;
  $("#grantee-entity").textContent = `${entity.name} · ${entity.uscc}`;
  voucherCards(vouchers);
  capBars(vouchers);
  const chartTotal = $("#grantee-chart-total");
  usageChart($("#grantee-chart"), summary.months.map((m) => ({ month: m.month, subsidy: m.subsidy_fen, cost: m.cost_fen })));
  chartTotal.dataset.fen = String(summary.totals.subsidy_fen);
  fill(chartTotal, bi("合计（全部记录，按使用月份）", "Total (all history, by usage month)"), " ",
    bi("补贴", "subsidy"), " ", el("b", { text: yuan(summary.totals.subsidy_fen) }), " · ",
    bi("费用", "cost"), " ", yuan(summary.totals.cost_fen), " · ", `${summary.totals.items} `, bi("条", "items"),
    summary.totals.uncovered_fen ? [" · ", bi("因额度未补贴", "not subsidised because a cap bound"), " ",
      el("b", { class: "bad", text: yuan(summary.totals.uncovered_fen) })] : null);
  fill($("#grantee-exports"),
    downloadButton(`${base}/history.csv`, bi("导出 CSV", "Export CSV"), "history.csv"), " ",
    downloadButton(`${base}/history.xlsx`, bi("导出 Excel", "Export XLSX"), "history.xlsx"));
  historyPages.afters = [-1];
  historyPages.at = 0;
  historyPages.total = summary.totals.items;
  await historyPage(0);
}

function voucherCards(answer) {
  const cards = clear($("#grantee-vouchers"));
  const totals = answer.totals || {};
  const used = $("#grantee-used-total");
  used.dataset.fen = String(totals.used_fen || 0);
  fill(used, bi("全部算力券", "All vouchers"), ": ", bi("面值", "face value"), " ", yuan(totals.face_value_fen),
    " · ", bi("已用", "used"), " ", el("b", { text: yuan(totals.used_fen) }), " · ",
    bi("余额", "balance"), " ", yuan(totals.balance_fen));
  if (!answer.vouchers.length) cards.append(el("p", { class: "muted" }, bi("暂无算力券。", "No vouchers yet.")));
  const now = Date.parse(answer.as_of); // the ledger's time, not this computer's
  for (const v of answer.vouchers) {
    const ended = Date.parse(v.usage_end) < now;
    cards.append(el("div", { class: "card", "data-voucher": v.id },
      el("div", { class: "card-title", text: v.programme_label || v.programme }),
      el("div", { class: "big" }, el("small", {}, bi("余额", "Balance")), " ", yuan(v.balance_fen)),
      el("div", { class: "muted" }, bi("面值", "Face value"), " ", yuan(v.face_value_fen),
        " · ", bi("已用", "Used"), " ", el("span", { class: "used", text: yuan(v.used_fen) }),
        v.held_fen ? [" · ", bi("冻结", "Held"), " ", yuan(v.held_fen)] : null),
      el("div", { class: "usage-window" + (ended ? " ended" : "") }, bi("使用期", "Usage window"), " ",
        el("b", { text: `${localDate(v.usage_start)} – ${localDate(v.usage_end)}` }),
        ended ? el("span", { class: "tag warn" }, bi("已结束，新作业不再补贴", "ended: new jobs are not subsidised")) : null),
      el("div", { class: "muted small" }, bi("券的有效期（凭证签名有效期）", "Credential validity"), " ",
        `${localDate(v.valid_from)} – ${localDate(v.valid_until)}`),
      el("div", { class: "muted small" }, bi("补贴比例", "Rate"), ` ${v.rate_bp / 100}% · `, bi("中心", "Centres"), " ",
        v.centres.map((c) => labelText("centre", c)).join("、")),
      el("div", { class: "small mono", text: v.id }),
      el("span", { class: "tag status-" + v.status }, label("status", v.status)),
      v.status === "active" && v.available_fen === 0 ? el("span", { class: "tag warn exhausted" },
        bi("额度已用尽，后续使用不予补贴：", "a cap is exhausted, further usage is refused: "), label("cap", v.last_bound_by)) : null));
  }
}

function capBars(answer) {
  const binding = answer.last_binding_cap;
  bars($("#grantee-caps"), (answer.caps || []).map((c) => ({
    label: c.label,
    sub: ["（", label("scope", c.scope), "）"],
    limit: c.limit_fen, used: c.used_fen, held: c.held_fen, remaining: c.remaining_fen,
    highlight: c.binding || binding === c.name,
  })), bi("暂无额度信息。", "No caps to show."));
}

async function historyPage(n) {
  const after = historyPages.afters[n];
  const page = await api(`${historyPages.base}/history?after=${after}&limit=${HISTORY_PAGE}`);
  historyPages.at = n;
  const following = nextOf(page);
  if (following !== null) historyPages.afters[n + 1] = following;
  const tbody = clear($("#grantee-history tbody"));
  for (const it of page.items) tbody.append(historyRow(it));
  if (!page.items.length) tbody.append(el("tr", {}, el("td", { colspan: 11, class: "muted" }, bi("暂无记录。", "Nothing yet."))));
  const first = n * HISTORY_PAGE + 1;
  const info = $("#grantee-page");
  info.dataset.page = String(n + 1);
  fill(info, bi(`第 ${n + 1} 页`, `page ${n + 1}`), ` · ${page.items.length ? first : 0}–${first + page.items.length - 1} / ${historyPages.total} · `,
    bi("本页补贴", "subsidy on this page"), " ", yuan(page.totals.subsidy_fen));
  $("#grantee-prev").disabled = n === 0;
  $("#grantee-next").disabled = following === null;
}

function historyRow(it) {
  const uncovered = it.wanted_fen !== null && it.wanted_fen !== undefined ? it.wanted_fen - it.subsidy_fen : 0;
  const usage = it.usage_start ? `${beijing(it.usage_start)} – ${beijing(it.usage_end)}` : "—";
  return el("tr", { "data-index": it.index },
    el("td", { class: "small" }, localDate(it.usage_start || it.at)),
    el("td", { class: "small", text: usage }),
    el("td", {}, label("kind", it.kind)),
    el("td", { class: "mono small", text: it.record_id || it.grant || "" }),
    el("td", { class: "small" }, label("centre", it.centre)),
    el("td", { class: "small" }, programmeLabel(it.programme), el("div", { class: "mono small muted", text: it.voucher || "" })),
    el("td", { class: "num", text: yuan(it.cost_fen) }),
    el("td", { class: "num", text: yuan(it.subsidy_fen) }),
    el("td", { class: "small" }, uncovered > 0 ? [el("span", { class: "bad", text: yuan(uncovered) }), " ",
      bi("未补贴：", "not paid: "), label("cap", it.binding_cap), bi("已用尽", " exhausted")] : label("cap", it.binding_cap)),
    el("td", { class: "small muted" }, beijing(it.at)),
    el("td", {}, el("a", { href: `#auditor?index=${it.index}`, title: "验证包含证明 check its inclusion proof", text: `#${it.index} 验证 verify` })));
}

// --- bureau view --------------------------------------------------------------------------

const TABLE_PAGE = 50;

// A table shown a page at a time: rows [[cells...]], with 上一页/下一页 under it.
function pagedTable(container, headings, rows, emptyText) {
  clear(container);
  const table = el("table", {}, el("thead", {}, el("tr", {}, headings.map((h) => el("th", { class: h.num ? "num" : "" }, h.text)))));
  const tbody = el("tbody");
  table.append(tbody);
  const info = el("span", { class: "muted small page-info" });
  const prev = el("button", { type: "button", class: "secondary small prev" }, bi("上一页", "Previous"));
  const next = el("button", { type: "button", class: "secondary small next" }, bi("下一页", "Next"));
  let at = 0;
  const show = () => {
    clear(tbody);
    const page = rows.slice(at * TABLE_PAGE, (at + 1) * TABLE_PAGE);
    for (const cells of page) tbody.append(el("tr", {}, cells.map((c) => (c instanceof Node && c.tagName === "TD") ? c : el("td", {}, c))));
    if (!rows.length) tbody.append(el("tr", {}, el("td", { colspan: headings.length, class: "muted" }, emptyText)));
    const pages = Math.max(1, Math.ceil(rows.length / TABLE_PAGE));
    info.textContent = `${at + 1} / ${pages} · ${rows.length} 行 rows`;
    prev.disabled = at === 0;
    next.disabled = at + 1 >= pages;
  };
  prev.addEventListener("click", () => { at -= 1; show(); });
  next.addEventListener("click", () => { at += 1; show(); });
  container.append(el("div", { class: "table-wrap" }, table), el("div", { class: "pager" }, prev, " ", info, " ", next));
  show();
}

// A table paged by the API: load(cursor) -> {rows, next}; the cursors of pages already seen
// are kept so that 上一页 goes back. A server that answers everything at once is one page.
async function cursorTable(container, headings, load, emptyText) {
  clear(container);
  const table = el("table", {}, el("thead", {}, el("tr", {}, headings.map((h) => el("th", { class: h.num ? "num" : "" }, h.text)))));
  const tbody = el("tbody");
  table.append(tbody);
  const info = el("span", { class: "muted small page-info" });
  const prev = el("button", { type: "button", class: "secondary small prev" }, bi("上一页", "Previous"));
  const next = el("button", { type: "button", class: "secondary small next" }, bi("下一页", "Next"));
  const cursors = [null];
  let at = 0;
  const show = async (n) => {
    const page = await load(cursors[n]);
    at = n;
    if (page.next !== null && page.next !== undefined) cursors[n + 1] = page.next;
    clear(tbody);
    for (const cells of page.rows) tbody.append(el("tr", {}, cells.map((c) => (c instanceof Node && c.tagName === "TD") ? c : el("td", {}, c))));
    if (!page.rows.length) tbody.append(el("tr", {}, el("td", { colspan: headings.length, class: "muted" }, emptyText)));
    info.textContent = `第 ${n + 1} 页 page ${n + 1}` + (page.count !== undefined ? ` · ${page.count} 行 rows` : "");
    container.dataset.page = String(n + 1);
    prev.disabled = n === 0;
    next.disabled = page.next === null || page.next === undefined;
  };
  prev.addEventListener("click", () => show(at - 1));
  next.addEventListener("click", () => show(at + 1));
  container.append(el("div", { class: "table-wrap" }, table), el("div", { class: "pager" }, prev, " ", info, " ", next));
  await show(0);
}

// The next page's cursor, whichever spelling the API answers.
const nextOf = (answer) => answer.next_cursor ?? answer.next_after ?? answer.next ?? null;

// GET path (with `?…` already, or not) one page after `cursor`.
function pagePath(path, cursor, limit) {
  const sep = path.includes("?") ? "&" : "?";
  return `${path}${sep}limit=${limit}` + (cursor === null || cursor === undefined ? "" : `&cursor=${encodeURIComponent(cursor)}`);
}

const numCell = (fen) => el("td", { class: "num", text: yuan(fen) });

async function showBureau() {
  const status = $("#bureau-status"), body = $("#bureau-body");
  body.hidden = true;
  if (!token()) {
    showNotice(status, "info", bi("请用主管部门（admin）或审计令牌登录。", "Sign in with a bureau (admin) or auditor token."));
    return;
  }
  showNotice(status, "info", bi("加载中…", "Loading…"));
  const chosen = $("#bureau-year").value;
  const year = chosen ? `?year=${chosen}` : "";
  let budget, entities, centres, months;
  try {
    await loadProgrammeNames();
    [budget, entities, centres, months] = await Promise.all([
      api(`/v1/bureau/budget${year}`), api(pagePath(`/v1/bureau/entities${year}`, null, TABLE_PAGE)),
      api(pagePath(`/v1/bureau/centres${year}`, null, TABLE_PAGE)), api(`/v1/bureau/months${year}`)]);
  } catch (error) {
    explain(status, error, "/v1/bureau/…");
    return;
  }
  status.hidden = true;
  body.hidden = false;
  yearChoices(budget);
  const q = `?year=${budget.year}`;
  const poolLabel = new Map(budget.pools.map((p) => [p.id, p.label]));
  const rows = [...budget.pools, ...budget.programmes];
  bars($("#bureau-pools"), rows.map((p) => ({
    label: p.label,
    sub: p.kind === "pool" || p.kind === "scheme_pool"
      ? ["（", p.kind === "pool" ? bi("资金池", "pool") : bi("跨轮次年度资金池", "pool of every round of the scheme"),
        `：${p.programmes.map((id) => programmeNames.get(id) || id).join("、")}）`]
      : p.pool ? ["（", bi("使用资金池", "draws on"), ` ${poolLabel.get(p.pool) || p.pool}）`] : ["（", bi("无资金池", "no pool"), "）"],
    limit: p.limit_fen, used: p.used_fen, held: p.held_fen, remaining: p.remaining_fen,
  })), bi("暂无资金池。", "No pools to show."));
  const entityRow = (e) => [[el("a", { href: `#grantee?uscc=${e.uscc}`, title: "查看该单位 open this entity", text: e.name }),
    el("div", { class: "mono small muted", text: e.uscc })], e.district,
    el("td", { class: "num", text: e.claims }), numCell(e.subsidy_fen), numCell(e.grants_fen), numCell(e.total_fen), numCell(e.balance_fen)];
  const firstEntities = entities;
  await cursorTable($("#bureau-entities"), [{ text: bi("单位", "Entity") }, { text: bi("区县", "District") },
    { text: bi("补贴笔数", "Claims"), num: true }, { text: bi("补贴", "Subsidy"), num: true },
    { text: bi("奖补", "Grants"), num: true }, { text: bi("合计", "Total"), num: true }, { text: bi("余额", "Balance"), num: true }],
  async (cursor) => {
    const found = cursor === null ? firstEntities : await api(pagePath(`/v1/bureau/entities${q}`, cursor, TABLE_PAGE));
    return { rows: found.entities.map(entityRow), next: nextOf(found), count: found.count };
  }, bi("本年度暂无。", "Nothing this year."));
  const firstCentres = centres;
  await cursorTable($("#bureau-centres"), [{ text: bi("计算中心", "Centre") }, { text: bi("补贴笔数", "Claims"), num: true },
    { text: bi("补贴", "Subsidy"), num: true }, { text: bi("已结算", "Settled"), num: true }, { text: bi("待结算", "Due"), num: true }],
  async (cursor) => {
    const found = cursor === null ? firstCentres : await api(pagePath(`/v1/bureau/centres${q}`, cursor, TABLE_PAGE));
    return { rows: found.centres.map((c) => [label("centre", c.centre), el("td", { class: "num", text: c.claims }), numCell(c.subsidy_fen),
      numCell(c.settled_fen), numCell(c.due_fen)]), next: nextOf(found), count: found.count };
  }, bi("本年度暂无。", "Nothing this year."));
  pagedTable($("#bureau-months"), [{ text: bi("月份", "Month") }, { text: bi("补贴笔数", "Claims"), num: true },
    { text: bi("费用", "Cost"), num: true }, { text: bi("补贴", "Subsidy"), num: true }, { text: bi("奖补", "Grants"), num: true },
    { text: bi("合计", "Total"), num: true }],
  months.months.map((m) => [m.month, el("td", { class: "num", text: m.claims }), numCell(m.cost_fen), numCell(m.subsidy_fen),
    numCell(m.grants_fen), numCell(m.total_fen)]), bi("本年度暂无。", "Nothing this year."));
  fill($("#bureau-exports"),
    downloadButton(`/v1/bureau/report.xlsx${q}`, bi("全部报表 Excel", "All reports XLSX"), "bureau-report.xlsx"), " ",
    ...["entities", "centres", "months"].map((name) => downloadButton(`/v1/bureau/${name}.csv${q}`, `${name}.csv`, `${name}.csv`)));
  await Promise.all([loadStatements(), loadQueue()]);
}

function yearChoices(budget) {
  const select = $("#bureau-year");
  const years = [...new Set([...(budget.years || []), budget.year])].sort();
  const had = select.value;
  fill(select, ...years.map((y) => el("option", { value: y, text: String(y) })));
  select.value = had && years.includes(Number(had)) ? had : String(budget.year);
}

async function loadStatements() {
  const box = $("#bureau-statements");
  const row = (s) => [
    el("td", { class: "mono small", text: s.statement }), label("centre", s.centre), s.period, label("status", s.status),
    el("td", { class: "num", text: s.lines }), numCell(s.amount_fen),
    el("td", {}, el("button", { type: "button", class: "small open-statement", "data-statement": s.statement,
      onclick: () => openStatement(s.statement) }, bi("打开", "Open")), " ",
    downloadButton(`/v1/statements/${encodeURIComponent(s.statement)}.csv`, "CSV", `${s.statement}.csv`), " ",
    downloadButton(`/v1/statements/${encodeURIComponent(s.statement)}.xlsx`, "XLSX", `${s.statement}.xlsx`))];
  try {
    await cursorTable(box, [{ text: bi("结算单", "Statement") }, { text: bi("中心", "Centre") }, { text: bi("期间", "Period") },
      { text: bi("状态", "Status") }, { text: bi("行数", "Lines"), num: true }, { text: bi("金额", "Amount"), num: true }, { text: "" }],
    async (cursor) => {
      const found = await api(pagePath("/v1/statements", cursor, TABLE_PAGE));
      return { rows: found.statements.map(row), next: nextOf(found) };
    }, bi("暂无结算单。", "No statements yet."));
  } catch (error) { explain(box, error, "/v1/statements"); }
}

async function openStatement(id) {
  const panel = $("#bureau-statement");
  panel.hidden = false;
  panel.dataset.statement = "";
  fill(panel, el("p", { class: "muted" }, bi("加载中…", "Loading…")));
  const name = encodeURIComponent(id);
  let view, lines;
  try {
    [view, lines] = await Promise.all([api(`/v1/statements/${name}`), api(`/v1/statements/${name}/lines?limit=${TABLE_PAGE}`)]);
  } catch (error) { explain(panel, error, `/v1/statements/${id}`); return; }
  const t = view.totals;
  fill(panel,
    el("h3", {}, bi("结算单", "Statement"), " ", el("span", { class: "mono", text: view.statement })),
    el("dl", { class: "kv" },
      el("dt", {}, bi("中心", "Centre")), el("dd", {}, label("centre", view.centre)),
      el("dt", {}, bi("期间", "Period")), el("dd", { text: `${view.period} (${localDate(view.period_start)} – ${localDate(view.period_end)}，不含 exclusive)` }),
      el("dt", {}, bi("状态", "Status")), el("dd", {}, label("status", view.status)),
      el("dt", {}, bi("行数", "Lines")), el("dd", { text: `${t.lines}（${t.adjustments} 调整 adjustments）` }),
      el("dt", {}, bi("金额", "Amount")), el("dd", { class: "statement-amount", "data-fen": t.amount_fen, text: yuan(t.amount_fen) }),
      el("dt", {}, bi("日志", "Log")), el("dd", {}, el("a", { href: `#auditor?index=${view.closed_index ?? view.index}`, text: `#${view.closed_index ?? view.index} 验证 verify` }))),
    el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", { class: "num", text: "#" }), el("th", {}, bi("作业编号", "Job id")),
        el("th", {}, bi("持券单位", "Holder")), el("th", {}, bi("项目", "Programme")), el("th", { class: "num" }, bi("金额", "Amount")))),
      el("tbody", {}, lines.lines.map((l) => el("tr", {}, el("td", { class: "num", text: l.line }),
        el("td", { class: "mono small", text: l.record_id }), el("td", { class: "mono small", text: l.holder }),
        el("td", { class: "small" }, programmeLabel(l.programme)), numCell(l.amount_fen)))))),
    lines.next !== null ? el("p", { class: "muted small" }, bi(`仅显示前 ${TABLE_PAGE} 行，完整明细请导出。`, `First ${TABLE_PAGE} lines shown; export for all of them.`)) : null);
  panel.dataset.statement = view.statement;
}

// Applications the city decides: reviewed by the district, not yet decided.
async function loadQueue() {
  const box = $("#bureau-queue");
  const row = (a) => {
    const note = el("input", { type: "text", class: "note", placeholder: "意见 note" });
    const act = (decision) => async () => {
      try {
        await api(`/v1/admin/applications/${encodeURIComponent(a.application)}/decision`, { body: { decision, note: note.value } });
        await loadQueue();
        $("#bureau-decided").textContent = `${a.application}: ${labelText("opinion", decision)} ✔`;
      } catch (error) { $("#bureau-decided").textContent = `${a.application}: ✘ ${error.message}`; }
    };
    const details = el("details", {}, el("summary", {}, bi("申报内容", "what was submitted")),
      el("pre", { class: "small", text: JSON.stringify({ inputs: a.inputs, materials: a.materials, attestations: a.attestations,
        review: a.review }, null, 2) }));
    return [[el("div", { class: "mono small", text: a.application }), details], [a.applicant, el("div", { class: "muted small", text: a.district })],
      programmeLabel(a.programme), a.review ? label("opinion", a.review.opinion) : "",
      el("td", { "data-application": a.application }, note, " ",
        el("button", { type: "button", class: "small approve", onclick: act("approve") }, bi("批准", "Approve")), " ",
        el("button", { type: "button", class: "small secondary reject", onclick: act("reject") }, bi("不批准", "Reject")))];
  };
  try {
    await cursorTable(box, [{ text: bi("申报", "Application") }, { text: bi("单位", "Applicant") }, { text: bi("项目", "Programme") },
      { text: bi("区县意见", "District") }, { text: bi("决定", "Decision") }], async (cursor) => {
      const found = await api(pagePath("/v1/admin/applications?status=reviewed", cursor, TABLE_PAGE));
      return { rows: found.applications.map(row), next: nextOf(found), count: found.count };
    }, bi("暂无待决定的申报。", "Nothing awaits a decision."));
  } catch (error) { explain(box, error, "/v1/admin/applications"); }
}

// --- apply view: the programme's inputs, materials hashed in the browser, review queue -----

let programmes = null; // /v1/apply/programmes

// 元 text "12.5" -> fen 1250, by string arithmetic (no float).
function fenOf(text) {
  const m = /^\s*(\d+)(?:\.(\d{1,2}))?\s*$/.exec(text);
  if (!m) throw new Error(`"${text}" 不是金额 is not an amount in 元 (e.g. 1200.50)`);
  return Number(BigInt(m[1]) * 100n + BigInt((m[2] || "").padEnd(2, "0")));
}

function inputField(spec) {
  const id = "in-" + spec.name;
  let field;
  if (spec.type === "enum") {
    field = el("select", { id, "data-input": spec.name }, el("option", { value: "", text: "—" }),
      spec.values.map((v) => el("option", { value: v, text: v })));
  } else if (spec.type === "bool") {
    field = el("input", { id, type: "checkbox", "data-input": spec.name });
  } else if (spec.type === "date") {
    field = el("input", { id, type: "date", "data-input": spec.name });
  } else if (spec.type === "text") {
    field = el("input", { id, type: "text", "data-input": spec.name });
  } else {
    field = el("input", { id, type: "text", inputmode: "decimal", "data-input": spec.name,
      placeholder: spec.type === "fen" ? "元 yuan, e.g. 1200.50" : spec.type === "bp" ? "万分比 basis points" : "整数 integer" });
  }
  field.dataset.type = spec.type;
  const unit = spec.type === "fen" ? el("span", { class: "tag" }, bi("请按元填写，如 1200.50", "enter in 元, e.g. 1200.50; sent as fen")) : null;
  return el("label", { class: "field" }, el("span", {}, spec.text, spec.required ? " *" : "",
    el("span", { class: "en", text: ` ${spec.name} (${spec.type})` }), " ", unit), field);
}

function materialField(m) {
  const hash = el("code", { class: "hash small", "data-material-hash": m.id, text: "—" });
  const file = el("input", { type: "file", "data-material": m.id });
  file.addEventListener("change", async () => {
    hash.textContent = "…";
    if (!file.files.length) { hash.textContent = "—"; delete file.dataset.sha256; return; }
    const digest = hex(await sha256(new Uint8Array(await file.files[0].arrayBuffer()))); // SubtleCrypto, in this browser
    file.dataset.sha256 = digest;
    hash.textContent = digest;
  });
  return el("div", { class: "field" }, el("span", {}, m.text, m.required ? " *" : "", el("span", { class: "en", text: ` ${m.id}` })),
    file, el("div", {}, "SHA-256 ", hash));
}

function showProgrammeForm() {
  const chosen = programmes.programmes.find((p) => p.id === $("#apply-programme").value);
  const form = clear($("#apply-fields"));
  clear($("#apply-preview"));
  $("#apply-result").hidden = true;
  if (!chosen) return;
  form.append(...[el("h3", {}, bi("填报内容", "Inputs")), chosen.inputs.map(inputField),
    el("h3", {}, bi("申报材料（仅提交 SHA-256，文件不离开本机）", "Materials (only their SHA-256 is sent; files stay on this computer)")),
    chosen.materials.map(materialField),
    chosen.conditions.some((c) => c.attested) ? el("h3", {}, bi("承诺事项", "Attestations")) : null,
    chosen.conditions.filter((c) => c.attested).map((c) => el("label", { class: "field check" },
      el("input", { type: "checkbox", "data-attest": c.id }), " ", c.text, el("span", { class: "muted small", text: ` ${c.cite}` })))]
    .flat(Infinity).filter(Boolean));
}

// The JSON the form would submit; throws naming the field that is wrong.
function applicationBody() {
  const body = { programme: $("#apply-programme").value, inputs: {}, materials: {}, attestations: {} };
  for (const f of document.querySelectorAll("#apply-fields [data-input]")) {
    const name = f.dataset.input, type = f.dataset.type;
    if (type === "bool") { body.inputs[name] = f.checked; continue; }
    const value = f.value.trim();
    if (value === "") continue;
    if (type === "fen") body.inputs[name] = fenOf(value);
    else if (type === "int" || type === "bp") {
      if (!/^\d+$/.test(value)) throw new Error(`${name}: "${value}" 不是整数 is not an integer`);
      body.inputs[name] = Number(value);
    } else body.inputs[name] = value;
  }
  for (const f of document.querySelectorAll("#apply-fields [data-material]")) {
    if (f.dataset.sha256) body.materials[f.dataset.material] = f.dataset.sha256;
  }
  for (const f of document.querySelectorAll("#apply-fields [data-attest]")) if (f.checked) body.attestations[f.dataset.attest] = true;
  return body;
}

function previewApplication() {
  const out = clear($("#apply-preview"));
  try {
    const body = applicationBody();
    out.append(el("p", {}, bi("将提交以下内容：", "This is what will be submitted:")), el("pre", { id: "apply-json", text: JSON.stringify(body, null, 2) }));
    $("#apply-submit").disabled = false;
    return body;
  } catch (error) {
    out.append(el("p", { class: "bad", text: error.message }));
    $("#apply-submit").disabled = true;
    return null;
  }
}

async function submitApplication() {
  const body = previewApplication();
  if (!body) return;
  const result = $("#apply-result");
  result.hidden = false;
  try {
    const done = await api("/v1/apply/applications", { body });
    result.className = "notice ok";
    result.dataset.state = "submitted";
    fill(result, bi("已提交", "Submitted"), " ", el("b", { class: "mono", text: done.application || "" }),
      " · ", bi("日志", "log"), ` #${done.entry.index}`);
    loadMyApplications();
  } catch (error) {
    result.dataset.state = "refused";
    showNotice(result, "error", [bi("未提交：", "Not submitted: "), error.message]);
  }
}

function applicationRows(list, actions) {
  return list.map((a) => [el("td", { class: "mono small", text: a.application }), programmeLabel(a.programme),
    label("status", a.status), localDate(a.submitted_at), actions ? actions(a) : ""]);
}

const APP_HEADINGS = [{ text: bi("申报", "Application") }, { text: bi("项目", "Programme") }, { text: bi("状态", "Status") },
  { text: bi("提交", "Submitted") }, { text: "" }];

async function loadMyApplications() {
  try {
    await cursorTable($("#apply-mine"), APP_HEADINGS, async (cursor) => {
      const mine = await api(pagePath("/v1/apply/applications", cursor, TABLE_PAGE));
      return { rows: applicationRows(mine.applications), next: nextOf(mine), count: mine.count };
    }, bi("暂无申报。", "No applications yet."));
    $("#apply-mine-box").hidden = false;
    return true;
  } catch (error) { $("#apply-mine-box").hidden = true; return false; }
}

// A district reviewer's queue: its 区县's applications still to review.
async function loadReviewQueue() {
  const row = (a) => {
    const note = el("input", { type: "text", class: "note", placeholder: "审核意见 note" });
    const act = (opinion) => async () => {
      try {
        await api(`/v1/review/applications/${encodeURIComponent(a.application)}/opinion`, { body: { opinion, note: note.value } });
        $("#review-done").textContent = `${a.application}: ${labelText("opinion", opinion)} ✔`;
        loadReviewQueue();
      } catch (error) { $("#review-done").textContent = `${a.application}: ✘ ${error.message}`; }
    };
    return el("td", { "data-application": a.application }, note, " ",
      el("button", { type: "button", class: "small approve", onclick: act("approve") }, bi("同意", "Approve")), " ",
      el("button", { type: "button", class: "small secondary reject", onclick: act("reject") }, bi("不同意", "Reject")));
  };
  try {
    await cursorTable($("#review-queue"), APP_HEADINGS, async (cursor) => {
      const found = await api(pagePath("/v1/review/applications?status=submitted", cursor, TABLE_PAGE));
      return { rows: applicationRows(found.applications, row), next: nextOf(found), count: found.count };
    }, bi("暂无待审核的申报。", "Nothing to review."));
    $("#review-box").hidden = false;
  } catch (error) { $("#review-box").hidden = true; }
}

async function showApply() {
  const status = $("#apply-status"), body = $("#apply-body");
  body.hidden = true;
  if (!token()) {
    showNotice(status, "info", bi("请用受资助方令牌登录以申报，或用区县审核令牌登录以审核。", "Sign in with a grantee token to apply, or a district reviewer's token to review."));
    return;
  }
  try {
    programmes = await api("/v1/apply/programmes");
    await loadProgrammeNames();
  } catch (error) { explain(status, error, "/v1/apply/programmes"); return; }
  status.hidden = true;
  body.hidden = false;
  const w = programmes.online_submission;
  $("#apply-window").textContent = `${w.from} – ${w.to} (Asia/Shanghai)`;
  const select = $("#apply-programme");
  if (select.options.length <= 1) {
    select.append(...programmes.programmes.filter((p) => p.rate_bp !== null || p.kind === "grant")
      .map((p) => el("option", { value: p.id, text: `(${p.number}) ${p.title} · ${p.id}` })));
  }
  const applicant = await loadMyApplications();
  $("#apply-form").hidden = !applicant;
  await loadReviewQueue();
  if (!applicant && $("#review-box").hidden) {
    showNotice(status, "info", bi("申报用受资助方令牌，审核用区县审核令牌；主管部门请在“主管部门”页决定。",
      "Apply with a grantee token, review with a district reviewer's; the bureau decides on the Bureau tab."));
  }
}

// --- auditor view: checkpoints, signed notes, RFC 9162 inclusion proofs --------------------

const enc = new TextEncoder();

function b64decode(text) {
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

function b64encode(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function hex(bytes) { return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(""); }

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function subtle() {
  if (!window.crypto || !window.crypto.subtle) {
    throw new Error("WebCrypto 不可用：请通过 https 或 localhost 打开本页 (WebCrypto needs https or localhost)");
  }
  return window.crypto.subtle;
}

async function sha256(bytes) { return new Uint8Array(await subtle().digest("SHA-256", bytes)); }

// RFC 9162 §2.1.1: leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 || left || right).
const leafHash = (entry) => sha256(concat(new Uint8Array([0]), entry));
const nodeHash = (left, right) => sha256(concat(new Uint8Array([1]), left, right));

// RFC 9162 §2.1.3.2: fold an inclusion proof for leaf `index` in a tree of `size` to a root.
async function rootFromInclusionProof(index, size, leaf, proof) {
  let fn = BigInt(index), sn = BigInt(size) - 1n;
  if (fn > sn) throw new Error(`index ${index} is not below size ${size}`);
  let r = leaf;
  for (const p of proof) {
    if (p.length !== 32) throw new Error("a proof hash is not 32 bytes");
    if (sn === 0n) throw new Error("the proof is too long for this tree");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new Error("the proof is too short for this tree");
  return r;
}

// A C2SP tlog-checkpoint signed note: origin, size, root, [extensions], blank line, signatures.
function parseCheckpoint(note) {
  const split = note.indexOf("\n\n");
  if (split < 0) throw new Error("checkpoint note has no signature block");
  const text = note.slice(0, split + 1);
  const lines = text.split("\n");
  const size = lines[1];
  if (lines.length < 4 || !/^(0|[1-9][0-9]*)$/.test(size)) throw new Error("malformed checkpoint");
  const sigs = note.slice(split + 2).split("\n").filter((l) => l.startsWith("\u2014 ")).map((l) => {
    const parts = l.split(" ");
    return { name: parts[1], raw: b64decode(parts[2] || "") };
  });
  return { origin: lines[0], size: BigInt(size), sizeText: size, root: b64decode(lines[2]), text, sigs };
}

// C2SP signed-note verifier key: name+hex8+base64(0x01 || pub32).
function parseVkey(vkey) {
  // The base64 part may itself contain "+": split at the first two only.
  const first = vkey.indexOf("+"), second = vkey.indexOf("+", first + 1);
  if (first <= 0 || second !== first + 9) throw new Error("malformed verifier key");
  const name = vkey.slice(0, first), hash = vkey.slice(first + 1, second);
  const raw = b64decode(vkey.slice(second + 1));
  if (raw.length !== 33 || raw[0] !== 1) throw new Error("not an Ed25519 verifier key");
  return { name, hash, pub: raw.slice(1), id: name + "+" + hash };
}

// "ok" | "bad" | "unsupported": the note carries a valid Ed25519 signature by `vkey`.
async function verifyNote(cp, vkey) {
  const key = parseVkey(vkey);
  const keyHash = hex((await sha256(concat(enc.encode(key.name + "\n"), new Uint8Array([1]), key.pub))).slice(0, 4));
  if (keyHash !== key.hash) return "bad";
  const sig = cp.sigs.find((s) => s.name === key.name && s.raw.length === 68 && hex(s.raw.slice(0, 4)) === keyHash);
  if (!sig) return "bad";
  let cryptoKey;
  try {
    cryptoKey = await subtle().importKey("raw", key.pub, { name: "Ed25519" }, false, ["verify"]);
  } catch (e) {
    return "unsupported";
  }
  return (await subtle().verify({ name: "Ed25519" }, cryptoKey, sig.raw.slice(4), enc.encode(cp.text))) ? "ok" : "bad";
}

let logKeys = null; // [{vkey, from_size}] from /v1/log/key

async function logKeyFor(size) {
  if (!logKeys) {
    const k = await api("/v1/log/key", { anonymous: true });
    logKeys = k.log_keys && k.log_keys.length ? k.log_keys : [{ vkey: k.vkey, from_size: 0 }];
  }
  let chosen = logKeys[0].vkey;
  for (const e of logKeys) if (BigInt(e.from_size) <= size) chosen = e.vkey;
  return chosen;
}

// The signature is checked against the pinned key when there is one, else the served key.
async function checkedCheckpoint(note) {
  const cp = parseCheckpoint(note);
  cp.note = note;
  cp.servedKey = await logKeyFor(cp.size);
  cp.vkey = pinnedKey() || cp.servedKey;
  cp.signature = await verifyNote(cp, cp.vkey);
  return cp;
}

function signatureText(state) {
  return state === "ok" ? "✔ Ed25519 签名有效 valid"
    : state === "unsupported" ? "浏览器不支持 Ed25519 — not checked (browser lacks Ed25519)"
      : "✘ 签名无效 INVALID";
}

// C2SP cosignature/v1 verifier key: name+hex8+base64(0x04 || pub32).
function parseCosignerKey(vkey) {
  const first = vkey.indexOf("+"), second = vkey.indexOf("+", first + 1);
  if (first <= 0 || second !== first + 9) throw new Error("malformed witness key");
  const raw = b64decode(vkey.slice(second + 1));
  if (raw.length !== 33 || raw[0] !== 4) throw new Error("not a cosignature/v1 key");
  return { name: vkey.slice(0, first), hash: vkey.slice(first + 1, second), pub: raw.slice(1) };
}

// The checkpoint's cosignature by `vkey`: {state: "ok" | "bad" | "missing" | "unsupported",
// time} (c2sp.org/tlog-cosignature: Ed25519 over "cosignature/v1\ntime T\n" + the body).
async function verifyCosignature(cp, vkey) {
  const key = parseCosignerKey(vkey);
  const sig = cp.sigs.find((s) => s.name === key.name && s.raw.length === 76 && hex(s.raw.slice(0, 4)) === key.hash);
  if (!sig) return { state: "missing" };
  let time = 0n;
  for (const b of sig.raw.slice(4, 12)) time = time * 256n + BigInt(b);
  const message = concat(enc.encode(`cosignature/v1\ntime ${time}\n`), enc.encode(cp.text));
  let cryptoKey;
  try {
    cryptoKey = await subtle().importKey("raw", key.pub, { name: "Ed25519" }, false, ["verify"]);
  } catch (e) {
    return { state: "unsupported", time };
  }
  const ok = await subtle().verify({ name: "Ed25519" }, cryptoKey, sig.raw.slice(12), message);
  return { state: ok ? "ok" : "bad", time };
}

// Which of the log's witnesses cosigned the checkpoint the page checks against.
async function showWitnesses(cp) {
  const box = clear($("#cp-witnesses"));
  const listed = await api("/v1/log/witnesses", { anonymous: true });
  if (!listed.witnesses.length) {
    box.append(...bi("本日志未配置见证", "this log has no witnesses"));
    return;
  }
  for (const w of listed.witnesses) {
    const seen = await verifyCosignature(cp, w.vkey);
    const when = seen.time === undefined ? "" : " " + new Date(Number(seen.time) * 1000).toISOString().replace(".000Z", "Z");
    const text = seen.state === "ok" ? `✔ ${w.name}${when}`
      : seen.state === "missing" ? `✘ ${w.name} 未联署 no cosignature`
        : seen.state === "bad" ? `✘ ${w.name} 联署无效 INVALID`
          : `? ${w.name} 浏览器不支持 Ed25519 not checked`;
    box.append(el("div", { class: seen.state === "ok" ? "good witness" : "bad witness", title: w.vkey, text }));
  }
  box.append(el("div", { class: "muted", text: `法定数 quorum: ${listed.quorum}` }));
}

let latest = null;

async function loadCheckpoint() {
  try {
    latest = await checkedCheckpoint(await api("/checkpoint", { text: true, anonymous: true }));
  } catch (error) {
    $("#cp-origin").textContent = "—";
    $("#cp-size").textContent = error.message;
    return;
  }
  $("#cp-origin").textContent = latest.origin;
  $("#cp-size").textContent = latest.sizeText;
  $("#cp-root").textContent = b64encode(latest.root);
  $("#cp-root").title = "hex " + hex(latest.root);
  $("#cp-key").textContent = latest.servedKey;
  showPin(latest.servedKey);
  const sig = $("#cp-sig");
  sig.textContent = signatureText(latest.signature);
  sig.className = latest.signature === "ok" ? "good" : latest.signature === "bad" ? "bad" : "muted";
  if (!$("#verify-size").value) $("#verify-size").placeholder = `最新 latest (${latest.sizeText})`;
  await showWitnesses(latest).catch((error) => { $("#cp-witnesses").textContent = error.message; });
}

async function checkpointOfSize(size) {
  if (latest && latest.size === size) return latest;
  const found = await api(`/v1/log/checkpoints?after=${size - 1n}&limit=1`, { anonymous: true });
  const row = (found.checkpoints || [])[0];
  if (!row || BigInt(row.size) !== size) throw new Error(`no signed checkpoint of size ${size}`);
  return checkedCheckpoint(row.note);
}

async function verifyInclusion(index, sizeText) {
  const result = $("#verify-result"), steps = clear($("#verify-steps"));
  const mark = $("#verify-mark"), verdict = $("#verify-verdict");
  result.hidden = false;
  result.className = "result pending";
  mark.textContent = "…";
  verdict.textContent = "验证中… checking…";
  $("#verify-entry").textContent = "";
  const step = (ok, ...parts) => steps.append(el("li", { class: ok === true ? "good" : ok === false ? "bad" : "" }, ...parts));
  const done = (ok, ...why) => {
    result.className = "result " + (ok ? "ok" : "fail");
    mark.textContent = ok ? "✔" : "✘";
    mark.dataset.verdict = ok ? "ok" : "fail";
    fill(verdict, ...why.flat(Infinity));
    result.dataset.index = String(index);
    result.dataset.verdict = ok ? "ok" : "fail";
  };
  try {
    if (!latest) await loadCheckpoint();
    if (!latest) throw new Error("no checkpoint");
    const size = sizeText ? BigInt(sizeText) : latest.size;
    const cp = await checkpointOfSize(size);
    step(cp.signature !== "bad", bi("检查点", "Checkpoint"), ` ${cp.origin} · size ${cp.sizeText} · root ${b64encode(cp.root)} · `, signatureText(cp.signature));
    if (cp.signature === "bad") { done(false, bi("检查点签名无效。", "The checkpoint's signature is invalid.")); return; }
    if (BigInt(index) >= cp.size) { done(false, bi(`条目 ${index} 不在大小为 ${cp.sizeText} 的树中。`, `Entry ${index} is not in the tree of size ${cp.sizeText}.`)); return; }

    const [entry, proof] = await Promise.all([
      api(`/v1/log/entries/${index}`, { anonymous: true }),
      api(`/v1/log/proof/inclusion?index=${index}&size=${cp.sizeText}`, { anonymous: true }),
    ]);
    const bytes = b64decode(entry.data);
    let parsed = null;
    try { parsed = JSON.parse(new TextDecoder().decode(bytes)); } catch (e) { parsed = null; }
    $("#verify-entry").textContent = parsed ? JSON.stringify(parsed, null, 2) : "(not JSON)";
    step(null, bi("条目字节", "Entry bytes"), `: ${bytes.length} bytes`, parsed ? ` · ${parsed.kind} · ${parsed.at}` : "");
    const leaf = await leafHash(bytes);
    step(null, bi("重算叶哈希", "Recomputed leaf hash"), " SHA-256(0x00‖entry) = ", el("code", { text: b64encode(leaf) }));
    const hashes = (proof.proof || []).map(b64decode);
    step(null, bi("包含证明", "Inclusion proof"), `: ${hashes.length} hashes`);
    const root = await rootFromInclusionProof(index, cp.size, leaf, hashes);
    const match = equal(root, cp.root);
    step(match, bi("折叠得到的根", "Root from the proof"), " ", el("code", { text: b64encode(root) }),
      match ? bi(" = 检查点的根", " = the checkpoint's root") : bi(" ≠ 检查点的根", " ≠ the checkpoint's root"));
    if (match) {
      done(true, bi(`条目 ${index} 包含在已签名的大小为 ${cp.sizeText} 的日志中。`, `Entry ${index} is in the signed log of size ${cp.sizeText}.`));
    } else {
      done(false, bi(`条目 ${index} 的证明与检查点不符。`, `Entry ${index}'s proof does not match the checkpoint.`));
    }
  } catch (error) {
    step(false, error.message);
    done(false, bi("验证失败：", "Verification failed: "), error.message);
  }
}

// --- the pinned log key: kept in localStorage, compared with what the server serves -------

const PIN_KEY = "suanli.pinnedLogKey";

function pinnedKey() { return localStorage.getItem(PIN_KEY); }

function pinKey(vkey) {
  parseVkey(vkey); // refuses a malformed key before it is kept
  localStorage.setItem(PIN_KEY, vkey);
  logKeys = null;
  latest = null;
}

function unpinKey() { localStorage.removeItem(PIN_KEY); logKeys = null; latest = null; }

function showPin(served) {
  const pinned = pinnedKey(), box = $("#pin-state"), alarm = $("#key-alarm");
  box.dataset.pinned = pinned ? "yes" : "no";
  if (!pinned) {
    fill(box, bi("未固定密钥：签名按服务器提供的密钥检查。", "No key pinned: signatures are checked against the key the server serves."));
  } else {
    fill(box, bi("已固定密钥", "Pinned key"), " ", el("code", { text: pinned }));
  }
  const differs = Boolean(pinned && served && pinned !== served);
  alarm.hidden = !differs;
  alarm.dataset.state = differs ? "mismatch" : "ok";
  if (differs) {
    fill(alarm, el("strong", {}, bi("⚠ 警告：服务器提供的日志密钥与您固定的密钥不同！",
      "⚠ WARNING: the log key this server serves differs from the key you pinned!")), el("br"),
    bi("服务器提供", "Served"), " ", el("code", { text: served }), el("br"),
    bi("已固定", "Pinned"), " ", el("code", { text: pinned }), el("br"),
    bi("检查点按固定的密钥核验；除非您确认密钥已正式轮换，否则请勿信任此日志。",
      "Checkpoints are checked against the pinned key; do not trust this log unless you know the key was rotated."));
  }
}

// --- auditor lists: entries a page at a time, filtered by kind; the key registry -----------

const ENTRY_PAGE = 20;
const entryPages = { afters: [-1], at: 0, kind: "" };

async function entriesPage(n) {
  const kind = entryPages.kind;
  const after = entryPages.afters[n];
  const page = await api(`/v1/audit/entries?after=${after}&limit=${ENTRY_PAGE}` + (kind ? `&kind=${encodeURIComponent(kind)}` : ""));
  entryPages.at = n;
  const following = nextOf(page);
  if (following !== null) entryPages.afters[n + 1] = following;
  const select = $("#audit-kind");
  if (select.options.length <= 1) {
    for (const [k, count] of Object.entries(page.kinds).sort()) select.append(el("option", { value: k, text: `${k} (${count})` }));
    select.value = kind;
  }
  const eb = clear($("#audit-entries tbody"));
  for (const e of page.entries) {
    eb.append(el("tr", { "data-index": e.index },
      el("td", { class: "num", text: e.index }), el("td", { class: "mono small", text: e.kind }), el("td", { text: beijing(e.at) }),
      el("td", { class: "mono small", text: e.leaf_hash }),
      el("td", {}, el("button", { type: "button", class: "secondary small", "data-index": e.index,
        onclick: () => { $("#verify-index").value = e.index; verifyInclusion(e.index, $("#verify-size").value); } },
      bi("验证", "Verify")))));
  }
  const total = kind ? page.kinds[kind] || 0 : page.size;
  const info = $("#audit-page");
  info.dataset.page = String(n + 1);
  info.textContent = `${n + 1} / ${Math.max(1, Math.ceil(total / ENTRY_PAGE))} · ${total} 条 entries`;
  $("#audit-prev").disabled = n === 0;
  $("#audit-next").disabled = following === null;
}

async function loadAuditLists() {
  const signed = $("#audit-signed"), hint = $("#audit-hint");
  if (!token()) { signed.hidden = true; hint.hidden = false; return; }
  try {
    const keys = await api("/v1/audit/keys");
    entryPages.afters = [-1];
    await entriesPage(0);
    const active = keys.keys.filter((k) => k.active).length;
    $("#audit-key-count").textContent = `· ${keys.keys.length} (${active} 有效 active)`;
    const kb = clear($("#audit-keys tbody"));
    for (const k of keys.keys) {
      kb.append(el("tr", { class: k.active ? "" : "muted" },
        el("td", { class: "mono small", text: k.key_id, title: k.vkey }),
        el("td", {}, k.roles.map((r, i) => [i ? "、" : "", label("role", r)])), el("td", {}, label("centre", k.centre)),
        el("td", { class: "num", text: k.valid_from_index }),
        el("td", { class: "num", text: k.valid_until_index === null ? "—" : k.valid_until_index })));
    }
    signed.hidden = false;
    hint.hidden = true;
  } catch (error) {
    signed.hidden = true;
    hint.hidden = false;
    if (error instanceof ApiError && error.status === 403) {
      hint.textContent = "此令牌不是审计员或主管部门令牌 — this token is not an auditor's or the bureau's.";
    } else if (error instanceof ApiError && error.status === 401) {
      tokenRefused($("#audit-hint"));
    }
  }
}

// The whole log as `suanli audit verify --source FILE` reads it: a {"checkpoint": note} line
// (the signed checkpoint of the latest size), then one {"index", "data"} line per entry up to
// that size. Composed as a Blob, so the log is never held as a string here.
async function logFile() {
  if (!latest) await loadCheckpoint();
  const response = await fetch(`/v1/audit/log.jsonl?size=${latest.sizeText}`, { headers: { Authorization: "Bearer " + token() } });
  if (!response.ok) throw new ApiError(response.status, null);
  const head = JSON.stringify({ checkpoint: latest.note }) + "\n";
  return { blob: new Blob([head, await response.blob()], { type: "application/jsonl" }), size: latest.sizeText };
}

async function downloadLog() {
  const { blob, size } = await logFile();
  const a = el("a", { href: URL.createObjectURL(blob), download: `suanli-log-${size}.jsonl` });
  document.body.append(a);
  a.click();
  a.remove();
}

async function showAuditor(params) {
  await loadCheckpoint();
  loadAuditLists();
  if (params.has("index")) {
    $("#verify-index").value = params.get("index");
    if (params.has("size")) $("#verify-size").value = params.get("size");
    await verifyInclusion(Number(params.get("index")), $("#verify-size").value);
  }
}

// --- sign-in and routing ----------------------------------------------------------------------

function updateSignin() {
  const signed = Boolean(token());
  $("#token").hidden = signed;
  $("#signin-button").hidden = signed;
  $("label[for=token]").hidden = signed;
  $("#signed-in").hidden = !signed;
  $("#signout").hidden = !signed;
}

const VIEWS = ["grantee", "apply", "auditor", "bureau"];

function route() {
  const [name, query] = (location.hash.slice(1) || "grantee").split("?");
  const view = VIEWS.includes(name) ? name : "grantee";
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-" + view;
  for (const a of document.querySelectorAll(".tabs a")) a.classList.toggle("active", a.dataset.view === view);
  const params = new URLSearchParams(query || "");
  const shown = { grantee: () => showGrantee(params), apply: showApply, auditor: () => showAuditor(params), bureau: showBureau }[view]();
  return shown.catch((error) => console.error(error));
}

const on = (sel, ev, fn) => $(sel).addEventListener(ev, fn);

function start() {
  on("#signin", "submit", (ev) => {
    ev.preventDefault();
    const t = $("#token").value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    $("#token").value = "";
    updateSignin();
    route();
  });
  on("#signout", "click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    updateSignin();
    route();
  });
  on("#verify", "submit", (ev) => {
    ev.preventDefault();
    verifyInclusion(Number($("#verify-index").value), $("#verify-size").value.trim());
  });
  on("#cp-refresh", "click", () => { loadCheckpoint().then(loadAuditLists); });
  on("#pin-served", "click", () => { if (latest) { pinKey(latest.servedKey); loadCheckpoint(); } });
  on("#pin-form", "submit", (ev) => {
    ev.preventDefault();
    try { pinKey($("#pin-input").value.trim()); $("#pin-input").value = ""; loadCheckpoint(); } catch (error) { alert(error.message); }
  });
  on("#unpin", "click", () => { unpinKey(); loadCheckpoint(); });
  on("#audit-prev", "click", () => entriesPage(entryPages.at - 1));
  on("#audit-next", "click", () => entriesPage(entryPages.at + 1));
  on("#audit-kind", "change", () => { entryPages.kind = $("#audit-kind").value; entryPages.afters = [-1]; entriesPage(0); });
  on("#audit-download", "click", () => downloadLog().catch((error) => alert("下载失败 download failed: " + error.message)));
  on("#grantee-prev", "click", () => historyPage(historyPages.at - 1));
  on("#grantee-next", "click", () => historyPage(historyPages.at + 1));
  on("#bureau-year", "change", () => showBureau());
  on("#apply-programme", "change", showProgrammeForm);
  on("#apply-preview-button", "click", previewApplication);
  on("#apply-submit", "click", submitApplication);
  window.addEventListener("hashchange", route);
  updateSignin();
  route();
}

// Exposed for tests and for the curious (the console): the pure verification functions.
window.suanli = { rootFromInclusionProof, leafHash, nodeHash, parseCheckpoint, parseVkey, verifyNote, yuan, fenOf,
  logFileText: async () => (await logFile()).blob.text() };

document.addEventListener("DOMContentLoaded", start);
