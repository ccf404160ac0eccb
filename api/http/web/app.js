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

async function api(path, options) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t && !(options && options.anonymous)) headers.Authorization = "Bearer " + t;
  const response = await fetch(path, { headers, cache: "no-store" });
  const type = response.headers.get("content-type") || "";
  if (!response.ok) {
    let problem = null;
    if (type.includes("json")) { try { problem = await response.json(); } catch (e) { problem = null; } }
    throw new ApiError(response.status, problem);
  }
  if (options && options.text) return response.text();
  return response.json();
}

function showNotice(node, kind, parts) {
  node.className = "notice " + kind;
  clear(node).append(...parts.flat(Infinity));
  node.hidden = false;
}

function explain(node, error, what) {
  if (error instanceof ApiError && error.unavailable) {
    showNotice(node, "info", [el("strong", {}, bi("尚未开放", "Not available yet")), el("br"),
      what + " — ", bi("此服务器还没有提供该接口。", "this server does not offer this endpoint yet.")]);
  } else if (error instanceof ApiError && error.status === 401) {
    showNotice(node, "warn", bi("请先用令牌登录。", "Please sign in with a token."));
  } else if (error instanceof ApiError && error.status === 403) {
    showNotice(node, "warn", [bi("此令牌无权查看：", "This token may not see this: "), error.message]);
  } else {
    showNotice(node, "error", [bi("出错了：", "Something went wrong: "), error.message]);
  }
}

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
        el("strong", { text: r.label }), r.sub ? el("span", { class: "muted", text: " " + r.sub }) : null,
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
      svg("rect", { x: x(i) + 1, y: y(m.subsidy), width: bw, height: Math.max(0, y(0) - y(m.subsidy)), class: "subsidy" },
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

async function showGrantee() {
  const status = $("#grantee-status"), body = $("#grantee-body");
  body.hidden = true;
  if (!token()) {
    showNotice(status, "info", bi("请用受资助方令牌登录以查看余额、额度与历史。",
      "Sign in with your grantee token to see balances, caps and history."));
    return;
  }
  showNotice(status, "info", bi("加载中…", "Loading…"));
  let vouchers, history;
  try {
    [vouchers, history] = await Promise.all([api("/v1/me/vouchers"), api("/v1/me/history")]);
  } catch (error) {
    explain(status, error, "/v1/me/vouchers, /v1/me/history");
    return;
  }
  status.hidden = true;
  body.hidden = false;
  const entity = pick(vouchers, "entity") || {};
  $("#grantee-entity").textContent = [pick(entity, "name"), pick(entity, "uscc")].filter(Boolean).join(" · ");

  const list = Array.isArray(vouchers) ? vouchers : pick(vouchers, "vouchers") || [];
  const cards = clear($("#grantee-vouchers"));
  if (!list.length) cards.append(el("p", { class: "muted" }, bi("暂无算力券。", "No vouchers yet.")));
  for (const v of list) {
    const face = pick(v, "face_fen", "face_value_fen", "amount_fen");
    const remaining = pick(v, "remaining_fen", "balance_fen");
    const centres = pick(v, "centres") || [];
    cards.append(el("div", { class: "card" },
      el("div", { class: "card-title", text: pick(v, "programme_label", "programme_name", "programme") || "" }),
      el("div", { class: "big" }, el("small", {}, bi("余额", "Balance")), " ", yuan(remaining)),
      el("div", { class: "muted" }, bi("面值", "Face value"), " ", yuan(face),
        " · ", bi("已用", "Used"), " ", yuan(pick(v, "used_fen", "redeemed_fen"))),
      el("div", { class: "muted small" }, bi("有效期", "Valid"), " ",
        beijing(pick(v, "valid_from", "usage_from")), " – ", beijing(pick(v, "valid_until", "usage_until"))),
      centres.length ? el("div", { class: "muted small" }, bi("中心", "Centres"), " ", centres.join(", ")) : null,
      el("div", { class: "small mono", text: pick(v, "id", "voucher_id") || "" }),
      pick(v, "status") ? el("span", { class: "tag", text: pick(v, "status") }) : null));
  }

  const binding = pick(vouchers, "last_binding_cap", "binding_cap");
  const caps = (pick(vouchers, "caps") || []).map((c) => ({
    label: pick(c, "label", "name", "id") || "",
    sub: pick(c, "scope", "kind") ? `(${pick(c, "scope", "kind")})` : "",
    limit: pick(c, "limit_fen", "cap_fen", "amount_fen"),
    used: pick(c, "used_fen") || 0,
    held: pick(c, "held_fen") || 0,
    remaining: pick(c, "remaining_fen"),
    highlight: Boolean(pick(c, "binding")) || (binding && binding === pick(c, "name", "id")),
  }));
  bars($("#grantee-caps"), caps, bi("暂无额度信息。", "No caps to show."));

  const items = Array.isArray(history) ? history : pick(history, "items", "history") || [];
  const byMonth = new Map();
  for (const it of items) {
    const m = monthOf(pick(it, "at", "time"));
    if (!m) continue;
    const row = byMonth.get(m) || { month: m, subsidy: 0, cost: 0 };
    row.subsidy += num(pick(it, "subsidy_fen"));
    row.cost += num(pick(it, "cost_fen"));
    byMonth.set(m, row);
  }
  usageChart($("#grantee-chart"), [...byMonth.values()].sort((a, b) => a.month.localeCompare(b.month)));

  const tbody = clear($("#grantee-history tbody"));
  for (const it of items) {
    const index = pick(it, "index", "log_index");
    tbody.append(el("tr", {},
      el("td", { text: beijing(pick(it, "at", "time")) }),
      el("td", { text: pick(it, "kind") || "" }),
      el("td", { text: pick(it, "centre", "center") || "" }),
      el("td", { class: "mono small", text: pick(it, "voucher", "voucher_id") || "" }),
      el("td", { class: "num", text: yuan(pick(it, "cost_fen")) }),
      el("td", { class: "num", text: yuan(pick(it, "subsidy_fen")) }),
      el("td", { text: pick(it, "binding_cap") || "" }),
      el("td", {}, index === undefined ? "" :
        el("a", { href: `#auditor?index=${index}`, title: "验证包含证明 check its inclusion proof", text: `#${index} 验证 verify` }))));
  }
  if (!items.length) tbody.append(el("tr", {}, el("td", { colspan: 8, class: "muted" }, bi("暂无记录。", "Nothing yet."))));
}

// --- bureau view --------------------------------------------------------------------------

async function showBureau() {
  const status = $("#bureau-status"), body = $("#bureau-body");
  body.hidden = true;
  if (!token()) {
    showNotice(status, "info", bi("请用主管部门（admin）或审计令牌登录。", "Sign in with a bureau (admin) or auditor token."));
    return;
  }
  showNotice(status, "info", bi("加载中…", "Loading…"));
  let budget;
  try {
    budget = await api("/v1/bureau/budget");
  } catch (error) {
    explain(status, error, "/v1/bureau/budget");
    return;
  }
  status.hidden = true;
  body.hidden = false;
  $("#bureau-period").textContent = pick(budget, "period", "year") ? `· ${pick(budget, "period", "year")}` : "";
  const rows = [...(pick(budget, "pools") || []), ...(pick(budget, "programmes") || [])];
  bars($("#bureau-pools"), rows.map((p) => ({
    label: pick(p, "label", "name", "id") || "",
    sub: pick(p, "period") ? `(${pick(p, "period")})` : "",
    limit: pick(p, "limit_fen", "pool_fen", "amount_fen", "cap_fen"),
    used: pick(p, "used_fen", "granted_fen") || 0,
    held: pick(p, "held_fen") || 0,
    remaining: pick(p, "remaining_fen"),
  })), bi("暂无资金池。", "No pools to show."));
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

async function checkedCheckpoint(note) {
  const cp = parseCheckpoint(note);
  cp.vkey = await logKeyFor(cp.size);
  cp.signature = await verifyNote(cp, cp.vkey);
  return cp;
}

function signatureText(state) {
  return state === "ok" ? "✔ Ed25519 签名有效 valid"
    : state === "unsupported" ? "浏览器不支持 Ed25519 — not checked (browser lacks Ed25519)"
      : "✘ 签名无效 INVALID";
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
  $("#cp-key").textContent = latest.vkey;
  const sig = $("#cp-sig");
  sig.textContent = signatureText(latest.signature);
  sig.className = latest.signature === "ok" ? "good" : latest.signature === "bad" ? "bad" : "muted";
  if (!$("#verify-size").value) $("#verify-size").placeholder = `最新 latest (${latest.sizeText})`;
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
    clear(verdict).append(...why.flat(Infinity));
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

async function loadAuditLists() {
  const signed = $("#audit-signed"), hint = $("#audit-hint");
  if (!token()) { signed.hidden = true; hint.hidden = false; return; }
  try {
    const [keys, page] = await Promise.all([
      api("/v1/audit/keys"),
      (async () => {
        const size = latest ? Number(latest.size) : 0;
        return api(`/v1/audit/entries?after=${Math.max(-1, size - 21)}&limit=20`);
      })(),
    ]);
    const active = keys.keys.filter((k) => k.active).length;
    $("#audit-key-count").textContent = `· ${keys.keys.length} (${active} 有效 active)`;
    const kb = clear($("#audit-keys tbody"));
    for (const k of keys.keys) {
      kb.append(el("tr", { class: k.active ? "" : "muted" },
        el("td", { class: "mono small", text: k.key_id, title: k.vkey }),
        el("td", { text: k.roles.join(", ") }), el("td", { text: k.centre || "" }),
        el("td", { class: "num", text: k.valid_from_index }),
        el("td", { class: "num", text: k.valid_until_index === null ? "—" : k.valid_until_index })));
    }
    const eb = clear($("#audit-entries tbody"));
    for (const e of [...page.entries].reverse()) {
      eb.append(el("tr", {},
        el("td", { class: "num", text: e.index }), el("td", { text: e.kind }), el("td", { text: beijing(e.at) }),
        el("td", { class: "mono small", text: e.leaf_hash }),
        el("td", {}, el("button", { type: "button", class: "secondary small", "data-index": e.index,
          onclick: () => { $("#verify-index").value = e.index; verifyInclusion(e.index, $("#verify-size").value); } },
        bi("验证", "Verify")))));
    }
    $("#audit-download").href = "#auditor";
    $("#audit-download").onclick = (ev) => { ev.preventDefault(); downloadLog(); };
    signed.hidden = false;
    hint.hidden = true;
  } catch (error) {
    signed.hidden = true;
    hint.hidden = false;
    if (error instanceof ApiError && error.status === 403) {
      hint.textContent = "此令牌不是审计员或主管部门令牌 — this token is not an auditor's or the bureau's.";
    }
  }
}

// The JSONL download needs the bearer token, so it is fetched and handed over as a blob.
async function downloadLog() {
  const response = await fetch("/v1/audit/log.jsonl", { headers: { Authorization: "Bearer " + token() } });
  if (!response.ok) { alert("下载失败 download failed: HTTP " + response.status); return; }
  const blob = await response.blob();
  const a = el("a", { href: URL.createObjectURL(blob), download: `suanli-log-${response.headers.get("x-log-size") || ""}.jsonl` });
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

function route() {
  const [name, query] = (location.hash.slice(1) || "grantee").split("?");
  const view = ["grantee", "auditor", "bureau"].includes(name) ? name : "grantee";
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-" + view;
  for (const a of document.querySelectorAll(".tabs a")) a.classList.toggle("active", a.dataset.view === view);
  const params = new URLSearchParams(query || "");
  const shown = view === "grantee" ? showGrantee() : view === "auditor" ? showAuditor(params) : showBureau();
  return shown.catch((error) => console.error(error));
}

function start() {
  $("#signin").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("#token").value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    $("#token").value = "";
    updateSignin();
    route();
  });
  $("#signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    updateSignin();
    route();
  });
  $("#verify").addEventListener("submit", (ev) => {
    ev.preventDefault();
    verifyInclusion(Number($("#verify-index").value), $("#verify-size").value.trim());
  });
  $("#cp-refresh").addEventListener("click", () => { loadCheckpoint().then(loadAuditLists); });
  window.addEventListener("hashchange", route);
  updateSignin();
  route();
}

// Exposed for tests and for the curious (the console): the pure verification functions.
window.suanli = { rootFromInclusionProof, leafHash, nodeHash, parseCheckpoint, parseVkey, verifyNote, yuan };

document.addEventListener("DOMContentLoaded", start);
