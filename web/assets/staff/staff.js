// Fengqiao staff pages: one small client over the case service's JSON API (/api,
// docs/cases.md) and the evidence API (/api/evidence, src/evidence_api.rs).
// The server serves the same shell for every /staff/* page with <body data-page>;
// this script renders that page. Every clickable control carries data-action
// (docs/interfaces.md, "Test hooks"); UI text is zh-CN, English with ?lang=en.
"use strict";

const LANG = new URLSearchParams(location.search).get("lang") === "en" ? "en" : "zh";
const L = (zh, en) => (LANG === "en" ? en : zh);
const $ = (s, r = document) => r.querySelector(s);
const $$ = (s, r = document) => [...r.querySelectorAll(s)];
let ME = null;

/** URL of a staff page, keeping ?lang=en. */
function u(path, params = {}) {
  const q = new URLSearchParams(params);
  if (LANG === "en") q.set("lang", "en");
  const s = q.toString();
  return s ? `${path}${path.includes("?") ? "&" : "?"}${s}` : path;
}

/** Element builder: h("div", {class: "x", "data-action": "y", onclick: f}, kids…). */
function h(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else if (k === "value") e.value = v;
    else if (k === "style") e.style.cssText = v; // CSSOM: allowed by the pages' CSP, unlike style attributes
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of kids.flat(Infinity)) if (c !== null && c !== undefined && c !== false) e.append(c.nodeType ? c : String(c));
  return e;
}

/** Replaces the children of `el`, skipping null/false and flattening arrays. */
function put(el, ...kids) {
  el.replaceChildren(...kids.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

function toLogin() {
  location.href = u("/staff/login", { next: location.pathname + location.search });
}

/** Calls the API; 401 sends the user to the login page (and back afterwards). */
async function api(method, path, body) {
  const opt = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    opt.headers["content-type"] = "application/json";
    opt.body = JSON.stringify(body);
  }
  const r = await fetch(path, opt);
  const ct = r.headers.get("content-type") || "";
  const data = ct.includes("json") ? await r.json().catch(() => null) : await r.text();
  if (r.status === 401 && path !== "/api/auth/login") {
    toLogin();
    throw new ApiError(401, data);
  }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

// ------------------------------------------------------------------ formatting
const pad = (n) => String(n).padStart(2, "0");
function fmtTime(unix) {
  if (!unix) return "—";
  const d = new Date(unix * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
function fmtMs(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return `${pad(Math.floor(s / 60))}:${pad(s % 60)}`;
}
const STATUS = {
  registered: ["已登记", "registered"], triaged: ["已分流", "triaged"], accepted: ["已受理", "accepted"],
  in_mediation: ["调解中", "in mediation"], agreement_reached: ["达成协议", "agreement reached"],
  failed: ["调解不成", "failed"], withdrawn: ["已撤回", "withdrawn"],
  confirmation_applied: ["已申请司法确认", "confirmation applied"],
  confirmation_accepted: ["法院已受理", "confirmation accepted"], confirmed: ["已确认有效", "confirmed"],
  rejected: ["已驳回", "rejected"],
};
const status = (s) => h("span", { class: "badge", "data-status": s }, STATUS[s] ? L(...STATUS[s]) : s);
const CATS = {
  family: ["婚姻家庭", "family"], neighbour: ["邻里", "neighbour"], labour: ["劳动", "labour"],
  contract: ["合同", "contract"], debt: ["债务", "debt"], property: ["物业", "property"],
  tenancy: ["租赁", "tenancy"], consumer: ["消费", "consumer"], traffic: ["交通", "traffic"],
  medical: ["医疗", "medical"], land: ["土地", "land"], other: ["其他", "other"],
};
const cat = (c) => (CATS[c] ? L(...CATS[c]) : c);
const ROLES = {
  admin: ["管理员", "admin"], triage: ["分流员", "triage"], org_admin: ["组织管理员", "org admin"],
  mediator: ["调解员", "mediator"], judge: ["法官", "judge"], clerk: ["书记员", "clerk"],
  applicant: ["申请人", "applicant"], respondent: ["被申请人", "respondent"], agent: ["代理人", "agent"],
  observer: ["旁听", "observer"],
};
const role = (r) => (ROLES[r] ? L(...ROLES[r]) : r);

/** A live countdown to `due` (Unix s); red and "overdue" once passed. One timer
 *  (below) updates every countdown in the page. */
function countdown(due) {
  const e = h("span", { class: "countdown", "data-due": due });
  tickCountdown(e);
  return e;
}
function tickCountdown(e) {
  const due = Number(e.dataset.due);
  {
    const left = due - Date.now() / 1000;
    const a = Math.abs(left);
    const d = Math.floor(a / 86400), hh = Math.floor((a % 86400) / 3600), mm = Math.floor((a % 3600) / 60);
    const span = d > 0 ? L(`${d}天${hh}小时`, `${d}d ${hh}h`) : L(`${hh}小时${mm}分`, `${hh}h ${mm}m`);
    e.textContent = left >= 0 ? L(`剩余 ${span}`, `${span} left`) : L(`已超期 ${span}`, `overdue by ${span}`);
    e.classList.toggle("overdue", left < 0);
    e.dataset.overdue = String(left < 0);
  }
}
setInterval(() => $$(".countdown[data-due]").forEach(tickCountdown), 30000);

// ------------------------------------------------------------------ forms
/** A labelled field whose server-side error shows next to it (data-field = API field name). */
function field(name, label, input) {
  input.name = input.name || name;
  input.dataset.field = name;
  input.id = input.id || `f-${name.replace(/[^a-z0-9]/gi, "-")}`;
  return h("label", { for: input.id }, label, input, h("span", { class: "field-error", "data-for": name }));
}
const input = (attrs = {}) => h("input", attrs);
function select(options, attrs = {}) {
  const s = h("select", attrs);
  for (const [v, t] of options) s.append(h("option", { value: v }, t));
  if (attrs.value !== undefined) s.value = attrs.value;
  return s;
}
function formValues(form) {
  const o = {};
  for (const el of form.elements) if (el.name) o[el.name] = el.type === "checkbox" ? el.checked : el.value;
  return o;
}
function clearErrors(form) {
  $$(".field-error", form).forEach((e) => { e.textContent = ""; delete e.dataset.code; });
  $$("[aria-invalid]", form).forEach((e) => e.removeAttribute("aria-invalid"));
  const fe = $(".form-error", form);
  if (fe) { fe.textContent = ""; fe.hidden = true; }
}
function showError(form, err) {
  const f = err.body && err.body.field;
  const slot = f && $(`.field-error[data-for="${CSS.escape(f)}"]`, form);
  if (slot) {
    slot.textContent = err.message;
    slot.dataset.code = (err.body && err.body.code) || "";
    const el = $(`[data-field="${CSS.escape(f)}"]`, form);
    if (el) { el.setAttribute("aria-invalid", "true"); el.focus(); }
  } else {
    const fe = $(".form-error", form);
    fe.textContent = (f ? `${f}: ` : "") + err.message;
    fe.hidden = false;
  }
}
/**
 * A form that keeps a draft in sessionStorage (nothing is lost on a failed submit or a
 * login expiry), validates with the browser first and shows the server's field errors.
 */
function mkForm(key, kids, action, label, onSubmit) {
  const btn = h("button", { type: "submit", class: "primary", "data-action": action }, label);
  const form = h("form", { class: "f", "data-form": key, novalidate: false },
    kids, h("div", { class: "error form-error", hidden: true, role: "alert" }), h("div", { class: "row" }, btn));
  const dk = `draft:${key}`;
  const saved = sessionStorage.getItem(dk);
  if (saved) {
    try {
      const v = JSON.parse(saved);
      queueMicrotask(() => { for (const el of form.elements) if (el.name && el.name in v && el.type !== "password" && el.type !== "file") el.type === "checkbox" ? (el.checked = v[el.name]) : (el.value = v[el.name]); });
    } catch (_) { /* a broken draft is dropped */ }
  }
  form.addEventListener("input", () => {
    const v = formValues(form);
    for (const el of form.elements) if (el.type === "password" || el.type === "file") delete v[el.name];
    sessionStorage.setItem(dk, JSON.stringify(v));
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    if (!form.checkValidity()) {
      for (const el of form.elements) if (el.validity && !el.validity.valid) {
        el.setAttribute("aria-invalid", "true");
        const slot = $(`.field-error[data-for="${CSS.escape(el.dataset.field || el.name)}"]`, form);
        if (slot) slot.textContent = el.validationMessage;
      }
      return;
    }
    btn.disabled = true;
    try {
      await onSubmit(formValues(form), form);
      sessionStorage.removeItem(dk);
    } catch (e) {
      if (e.status !== 401) showError(form, e);
    } finally {
      btn.disabled = false;
    }
  });
  return form;
}
const card = (title, ...kids) => h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...kids);
const table = (heads, rows, attrs = {}) =>
  h("div", { class: "table-wrap" }, h("table", attrs, h("thead", {}, h("tr", {}, heads.map((t) => h("th", {}, t)))), h("tbody", {}, rows)));
function notice(kind, text, attrs = {}) { return h("div", { class: kind, role: "status", ...attrs }, text); }
/** Runs an action button's request; shows an error beside it instead of losing it. */
async function act(btn, fn) {
  btn.disabled = true;
  const old = btn.parentElement.querySelector(".act-error");
  if (old) old.remove();
  try { await fn(); } catch (e) {
    if (e.status !== 401) btn.after(h("span", { class: "field-error act-error", role: "alert" }, e.message));
  } finally { btn.disabled = false; }
}

// ------------------------------------------------------------------ pages
const PAGES = {
  triage: { roles: ["triage", "admin"], nav: ["分流登记", "Triage"], render: pageTriage },
  inbox: { roles: ["org_admin"], nav: ["待受理", "Inbox"], render: pageInbox },
  mediator: { roles: ["mediator"], nav: ["我的案件", "My cases"], render: pageMediator },
  judge: { roles: ["judge"], nav: ["司法确认", "Confirmations"], render: pageJudge },
  review: { roles: ["judge", "clerk", "mediator"], render: pageReview },
  clerk: { roles: ["clerk"], nav: ["录像导出", "Export"], render: pageClerk },
  admin: { roles: ["admin"], nav: ["组织与人员", "Roster"], render: pageAdmin },
  kpi: { roles: ["admin", "triage", "org_admin"], nav: ["考核指标", "KPIs"], render: pageKpi },
};
const HOME = { admin: "kpi", triage: "triage", org_admin: "inbox", mediator: "mediator", judge: "judge", clerk: "clerk" };

function forbidden(main) {
  put(main, h("section", { class: "card forbidden", id: "forbidden", "data-code": "403" },
    h("h1", {}, L("403 · 无权访问", "403 · Forbidden")),
    h("p", {}, L("您的账号无权查看此页面。", "Your account may not see this page.")),
    h("a", { href: u("/staff/") }, L("返回工作台", "Back to my workspace"))));
  document.title = "403";
}

async function boot() {
  document.documentElement.lang = LANG === "zh" ? "zh-CN" : "en";
  $$("[data-i18n=brand]").forEach((e) => (e.textContent = L("枫桥在线调解 · 工作台", "Fengqiao · Staff")));
  const page = document.body.dataset.page;
  const main = $("#main");
  if (page === "login") return pageLogin(main);
  let me;
  try { me = await api("GET", "/api/auth/me"); } catch (e) {
    if (e.status !== 401) put(main, notice("error", e.message));
    return;
  }
  if (me.kind !== "staff") return forbidden(main);
  ME = me.user;
  $("#whoami").textContent = `${ME.display_name} · ${role(ME.role)}`;
  const lo = $("#logout");
  lo.hidden = false;
  lo.textContent = L("退出", "Log out");
  lo.onclick = async () => { await api("POST", "/api/auth/logout").catch(() => {}); location.href = u("/staff/login"); };
  const nav = $("#nav");
  for (const [k, p] of Object.entries(PAGES)) {
    if (p.nav && p.roles.includes(ME.role))
      nav.append(h("a", { href: u(`/staff/${k}`), "data-nav": k, "aria-current": k === page ? "page" : null }, L(...p.nav)));
  }
  if (page === "home" || !page) return location.replace(u(`/staff/${HOME[ME.role] || "login"}`));
  const p = PAGES[page];
  if (!p || !p.roles.includes(ME.role)) return forbidden(main);
  if (p.nav) document.title = `${L(...p.nav)} · ${L("枫桥在线调解", "Fengqiao")}`;
  try { await p.render(main); } catch (e) {
    if (e.status === 403) forbidden(main);
    else if (e.status !== 401) put(main, notice("error", e.message, { id: "page-error" }));
  }
}

function pageLogin(main) {
  document.title = L("工作人员登录", "Staff login");
  const next = new URLSearchParams(location.search).get("next");
  const safeNext = next && next.startsWith("/staff/") && !next.startsWith("//") ? next : "/staff/";
  const form = mkForm("login", [
    field("username", L("用户名", "User name"), input({ required: true, autocomplete: "username", minlength: 3 })),
    field("password", L("密码", "Password"), input({ type: "password", required: true, autocomplete: "current-password" })),
  ], "login", L("登录", "Log in"), async (v) => {
    try {
      await api("POST", "/api/auth/login", { username: v.username.trim(), password: v.password });
    } catch (e) {
      if (e.status === 401) { e.status = 422; e.body = { field: "password", code: "unauthenticated" }; e.message = L("用户名或密码错误", "Wrong user name or password"); }
      else if (e.status === 403 && e.body && e.body.code === "account_deactivated") { e.status = 422; e.body = { field: "username", code: "account_deactivated" }; e.message = L("此账号已停用，请联系管理员", "This account is deactivated; ask an administrator"); }
      throw e;
    }
    location.href = safeNext.includes("lang=") || LANG !== "en" ? safeNext : u(safeNext);
  });
  put(main, h("div", { class: "login card", id: "login" }, h("h1", {}, L("工作人员登录", "Staff login")),
    next ? notice("muted", L("请登录后继续。", "Log in to continue.")) : null, form));
}

// ---- triage
async function pageTriage(main) {
  const orgs = await api("GET", "/api/orgs");
  const party = (i, kind) => [
    h("h3", {}, role(kind)),
    h("div", { class: "row" },
      field(`parties[${i}].name`, L("姓名", "Name"), input({ required: true, maxlength: 100 })),
      field(`parties[${i}].id_number`, L("身份证号", "ID number"), input({ pattern: "[0-9]{17}[0-9Xx]", title: L("18位身份证号", "18-character ID number") })),
      field(`parties[${i}].phone`, L("手机号", "Phone"), input({ pattern: "1[0-9]{10}", title: L("11位手机号", "11-digit mobile number") }))),
  ];
  const list = h("div", { id: "triage-list" });
  const form = mkForm("register", [
    h("div", { class: "row" },
      field("category", L("纠纷类型", "Category"), select(Object.keys(CATS).map((c) => [c, cat(c)]), { value: "neighbour" })),
      field("amount_fen", L("涉及金额（元）", "Amount (yuan)"), input({ type: "number", min: 0, step: "0.01" }))),
    field("description", L("纠纷简要情况", "Description"), h("textarea", { required: true, maxlength: 10000 })),
    party(0, "applicant"), party(1, "respondent"),
  ], "register", L("登记", "Register"), async (v, f) => {
    const p = (i, kind) => ({ kind, name: v[`parties[${i}].name`].trim(), id_number: v[`parties[${i}].id_number`] || null, phone: v[`parties[${i}].phone`] || null });
    const body = { category: v.category, description: v.description, amount_fen: v.amount_fen === "" ? null : Math.round(Number(v.amount_fen) * 100), parties: [p(0, "applicant"), p(1, "respondent")] };
    const d = (await api("POST", "/api/disputes", body)).dispute;
    f.reset();
    put($("#register-result"), notice("ok", L(`已登记：${d.case_number}`, `Registered: ${d.case_number}`), { "data-case": d.case_number }));
    await refresh();
  });
  const refresh = async () => {
    const page = await api("GET", "/api/disputes?status=registered&per_page=200");
    const online = orgs.filter((o) => o.online);
    put(list, table([L("案号", "Case"), L("类型", "Category"), L("登记时间", "Registered"), L("分流至", "Route to")],
      page.items.map((d) => {
        const sel = select(online.map((o) => [o.id, o.name]), { "data-role": "org", "data-target": d.id });
        return h("tr", { "data-dispute": d.id, "data-case": d.case_number }, h("td", {}, d.case_number), h("td", {}, cat(d.category)), h("td", {}, fmtTime(d.registered_at)),
          h("td", {}, h("div", { class: "row" }, sel, h("button", { class: "primary", "data-action": "triage", "data-target": d.id,
            onclick: (ev) => act(ev.target, async () => { await api("POST", `/api/disputes/${d.id}/triage`, { org_id: Number(sel.value) }); await refresh(); }) }, L("分流", "Route")))));
      })), page.items.length ? null : notice("muted", L("没有待分流的纠纷。", "Nothing to route.")));
  };
  put(main, h("h1", {}, L("分流登记", "Registration and triage")),
    h("div", { class: "cols" }, card(L("登记纠纷", "Register a dispute"), form, h("div", { id: "register-result" })), card(L("待分流", "To route"), list)));
  await refresh();
}

// ---- organisation admin inbox (48-hour countdown)
async function pageInbox(main) {
  const [orgs, meds] = await Promise.all([api("GET", "/api/orgs"), api("GET", `/api/mediators?org_id=${ME.org_id}`)]);
  const list = h("div", { id: "inbox" });
  const refresh = async () => {
    const [page, dl] = await Promise.all([api("GET", "/api/disputes?status=triaged&per_page=200"), api("GET", "/api/deadlines?per_page=200")]);
    const due = {};
    for (const d of dl.items) if (d.kind === "triage_response" || d.kind === "court_appoint") due[d.dispute_id] = Math.min(due[d.dispute_id] || Infinity, d.due_at);
    put(list, table([L("案号", "Case"), L("类型", "Category"), L("答复期限", "Answer within"), L("受理并指派", "Accept and assign"), L("退回改派", "Re-route")],
      page.items.map((d) => {
        const med = select(meds.filter((m) => m.status === "active").map((m) => [m.id, m.name]), { "data-role": "mediator", "data-target": d.id });
        const org = select(orgs.filter((o) => o.online && o.id !== ME.org_id).map((o) => [o.id, o.name]), { "data-role": "org", "data-target": d.id });
        const reason = input({ placeholder: L("改派理由", "Reason"), "data-role": "reason", "data-target": d.id, required: true });
        return h("tr", { "data-dispute": d.id, "data-case": d.case_number }, h("td", {}, d.case_number), h("td", {}, cat(d.category)),
          h("td", {}, due[d.id] ? countdown(due[d.id]) : "—"),
          h("td", {}, h("div", { class: "row" }, med, h("button", { class: "primary", "data-action": "accept", "data-target": d.id,
            onclick: (ev) => act(ev.target, async () => { await api("POST", `/api/disputes/${d.id}/accept`, { mediator_id: Number(med.value) }); await refresh(); }) }, L("受理", "Accept")))),
          h("td", {}, h("div", { class: "row" }, org, reason, h("button", { "data-action": "reroute", "data-target": d.id,
            onclick: (ev) => act(ev.target, async () => {
              if (!reason.value.trim()) { reason.setAttribute("aria-invalid", "true"); throw new ApiError(422, { field: "reason", message: L("请填写改派理由", "Give a reason") }); }
              await api("POST", `/api/disputes/${d.id}/reroute`, { org_id: Number(org.value), reason: reason.value.trim() }); await refresh();
            }) }, L("改派", "Re-route")))));
      })), page.items.length ? null : notice("muted", L("没有待受理的纠纷。", "Nothing waiting.")));
  };
  put(main, h("h1", {}, L("待受理纠纷（48小时内答复）", "Inbox (answer within 48 hours)")), card(null, list));
  await refresh();
}

// ---- mediator console
async function pageMediator(main) {
  const list = h("div", { id: "my-cases" });
  const panel = h("div", { id: "case-panel" });
  const refresh = async () => {
    const [page, dl] = await Promise.all([api("GET", "/api/disputes?per_page=200"), api("GET", "/api/deadlines?per_page=200")]);
    const due = {};
    for (const d of dl.items) if (d.kind === "mediation") due[d.dispute_id] = d.due_at;
    put(list, table([L("案号", "Case"), L("状态", "Status"), L("调解期限（30天）", "Deadline (30 days)"), ""],
      page.items.map((d) => h("tr", { "data-dispute": d.id, "data-case": d.case_number }, h("td", {}, d.case_number), h("td", {}, status(d.status)),
        h("td", {}, due[d.id] ? countdown(due[d.id]) : "—"),
        h("td", {}, h("button", { "data-action": "open-case", "data-target": d.id, onclick: () => openCase(d.id) }, L("办理", "Open")))))));
  };
  const openCase = async (id) => {
    const det = await api("GET", `/api/disputes/${id}`);
    const d = det.dispute;
    const step = (action, label, path, body, cls) => h("button", { class: cls || "", "data-action": action, "data-target": id,
      onclick: (ev) => act(ev.target, async () => { await api("POST", `/api/disputes/${id}/${path}`, body); await refresh(); await openCase(id); }) }, label);
    const parts = [h("h2", {}, `${d.case_number} `, status(d.status)), h("p", {}, d.description),
      table([L("当事人", "Party"), L("身份", "Role"), L("证件", "ID"), L("电话", "Phone")],
        det.parties.map((p) => h("tr", {}, h("td", {}, p.name), h("td", {}, role(p.kind)), h("td", { class: "mono" }, p.id_number_masked || ""), h("td", { class: "mono" }, p.phone_masked || ""))))];
    if (d.status === "accepted")
      parts.push(h("div", { class: "row" }, d.mediator_confirmed_at ? null : step("confirm-assignment", L("确认接受指派", "Confirm assignment"), "confirm-assignment", {}),
        step("start-mediation", L("开始调解", "Start mediation"), "start", {}, "primary")));
    if (d.status === "accepted" || d.status === "in_mediation") {
      const when = new Date(Date.now() + 10 * 60000);
      const local = `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())}T${pad(when.getHours())}:${pad(when.getMinutes())}`;
      const out = h("div", { id: "invites" });
      parts.push(h("h3", {}, L("安排调解会议", "Schedule a session")), mkForm(`schedule-${id}`, [h("div", { class: "row" },
        field("scheduled_at", L("开始时间", "Start"), input({ type: "datetime-local", required: true, value: local })),
        field("duration_minutes", L("时长（分钟）", "Length (minutes)"), input({ type: "number", min: 5, max: 600, required: true, value: 60 })))],
      "schedule", L("安排并生成邀请链接", "Schedule and make invite links"), async (v) => {
        const s = await api("POST", `/api/disputes/${id}/sessions`, { scheduled_at: new Date(v.scheduled_at).toISOString(), duration_minutes: Number(v.duration_minutes) });
        out.dataset.session = s.session.id;
        put(out, h("p", { class: "muted" }, L("邀请链接只显示这一次，请复制发送给各参加人：", "Invite links are shown once; copy and send them:")),
          ...s.invites.map((i) => {
            const box = input({ readonly: true, value: i.url, "data-invite": i.pid });
            return h("div", { class: "invite", "data-pid": i.pid, "data-role": i.role }, h("strong", {}, `${i.name}（${role(i.role)}）`), box,
              h("button", { "data-action": "copy-invite", "data-target": i.pid, onclick: async (ev) => {
                box.select();
                try { await navigator.clipboard.writeText(i.url); } catch (_) { document.execCommand("copy"); }
                ev.target.textContent = L("已复制", "Copied");
              } }, L("复制", "Copy")),
              i.role === "mediator" ? h("a", { href: i.url, target: "_blank", rel: "noopener", "data-action": "join-room", class: "badge" }, L("进入调解室", "Join as mediator")) : null);
          }));
        await refresh();
      }), out);
    }
    if (det.sessions.length)
      parts.push(h("h3", {}, L("调解会议", "Sessions")), table([L("会议", "Session"), L("时间", "When"), L("录像", "Recordings")],
        det.sessions.map((s) => h("tr", { "data-session": s.id }, h("td", {}, `#${s.id}`), h("td", {}, fmtTime(s.scheduled_at)),
          h("td", {}, h("a", { href: u(`/staff/review/${id}/${s.id}`), "data-action": "open-review", "data-target": s.id }, L("查看", "Review")))))));
    if (d.status === "in_mediation") {
      parts.push(h("h3", {}, L("调解结果", "Outcome")), h("div", { class: "cols" },
        mkForm(`agree-${id}`, [field("filename", L("文件名", "File name"), input({ required: true, value: "调解协议书.txt" })),
          field("text", L("调解协议内容", "Agreement text"), h("textarea", {})),
          field("content_base64", L("或上传协议 PDF（不超过15MB）", "or upload the agreement as PDF (up to 15 MB)"), input({ type: "file", accept: "application/pdf" }))],
        "agree", L("记录调解协议", "Record agreement"), async (v, f) => {
          const file = $("input[type=file]", f).files[0];
          let body;
          if (file) {
            if (file.size > 15 * 1024 * 1024) throw new ApiError(422, { field: "content_base64", message: L("PDF 不能超过15MB", "The PDF may not exceed 15 MB") });
            const b64 = await new Promise((ok, bad) => { const r = new FileReader(); r.onload = () => ok(String(r.result).split(",")[1] || ""); r.onerror = () => bad(r.error); r.readAsDataURL(file); });
            body = { kind: "pdf", filename: file.name, content_base64: b64 };
          } else {
            if (!v.text.trim()) throw new ApiError(422, { field: "text", message: L("请填写协议内容或上传 PDF", "Write the agreement or upload a PDF") });
            body = { kind: "text", filename: v.filename, text: v.text };
          }
          await api("POST", `/api/disputes/${id}/agreement`, body); await refresh(); await openCase(id);
        }),
        mkForm(`fail-${id}`, [field("reason", L("调解不成的原因", "Why it failed"), h("textarea", { required: true }))], "fail", L("记录调解不成", "Record failure"),
          async (v) => { await api("POST", `/api/disputes/${id}/fail`, { reason: v.reason }); await refresh(); await openCase(id); })));
    }
    if (d.status === "agreement_reached") {
      const signed = new Set(det.signatures.map((s) => s.party_id));
      parts.push(h("h3", {}, L("协议签名", "Signatures")), table([L("当事人", "Party"), L("签名", "Signature")],
        det.parties.filter((p) => p.kind !== "agent").map((p) => h("tr", { "data-party": p.id }, h("td", {}, p.name),
          h("td", {}, signed.has(p.id) ? h("span", { class: "badge good", "data-signed": p.id }, L("已签名", "signed"))
            : step("sign", L("登记签名（视频核验身份）", "Record signature (ID checked on video)"), "signatures", { party_id: p.id, method: "id_card_in_video" }))))),
      h("div", { class: "row" }, step("apply-confirmation", L("申请司法确认", "Apply for judicial confirmation"), "confirmation/apply", {}, "primary")));
    }
    put(panel, card(null, ...parts));
  };
  put(main, h("h1", {}, L("我的案件", "My cases")), h("div", { class: "cols" }, card(null, list), panel));
  await refresh();
}

// ---- judge
async function pageJudge(main) {
  const list = h("div", { id: "applications" });
  const panel = h("div", { id: "case-panel" });
  const refresh = async () => {
    const [a, b] = await Promise.all(["confirmation_applied", "confirmation_accepted"].map((s) => api("GET", `/api/disputes?status=${s}&per_page=200`)));
    const items = [...a.items, ...b.items];
    put(list, table([L("案号", "Case"), L("状态", "Status"), L("类型", "Category"), ""],
      items.map((d) => h("tr", { "data-dispute": d.id, "data-case": d.case_number }, h("td", {}, d.case_number), h("td", {}, status(d.status)), h("td", {}, cat(d.category)),
        h("td", {}, h("button", { "data-action": "open-case", "data-target": d.id, onclick: () => openCase(d.id) }, L("审查", "Review")))))),
    items.length ? null : notice("muted", L("没有待审查的司法确认申请。", "No applications.")));
  };
  const openCase = async (id) => {
    const det = await api("GET", `/api/disputes/${id}`);
    const d = det.dispute;
    const agreement = det.agreement ? await api("GET", `/api/disputes/${id}/agreement`).catch((e) => `(${e.message})`) : null;
    const parts = [h("h2", {}, `${d.case_number} `, status(d.status)), h("p", {}, d.description),
      h("h3", {}, L("当事人", "Parties")), table([L("姓名", "Name"), L("身份", "Role"), L("证件", "ID")],
        det.parties.map((p) => h("tr", {}, h("td", {}, p.name), h("td", {}, role(p.kind)), h("td", { class: "mono" }, p.id_number_masked || "")))),
      h("h3", {}, L("调解协议", "Agreement")),
      det.agreement ? h("div", {}, h("pre", { id: "agreement-text", style: "white-space:pre-wrap" }, typeof agreement === "string" ? agreement : L("（PDF 文件）", "(PDF)")),
        h("p", { class: "muted" }, "SHA-256 ", h("span", { class: "mono" }, det.agreement.sha256)),
        h("p", { class: "muted" }, L(`签名：${det.signatures.length} 人`, `Signatures: ${det.signatures.length}`))) : notice("muted", L("无", "none")),
      h("h3", {}, L("调解会议与录像", "Sessions and recordings")),
      det.sessions.length ? table([L("会议", "Session"), L("时间", "When"), L("录像文件", "Files"), ""],
        det.sessions.map((s) => h("tr", { "data-session": s.id }, h("td", {}, `#${s.id}`), h("td", {}, fmtTime(s.scheduled_at)),
          h("td", {}, String(det.recordings.filter((r) => r.session_id === s.id).length)),
          h("td", {}, h("a", { href: u(`/staff/review/${id}/${s.id}`), "data-action": "open-review", "data-target": s.id }, L("审看录像", "Review")))))) : notice("muted", L("无调解会议", "No sessions")),
      h("h3", {}, L("办理经过", "History")), table([L("时间", "When"), L("操作", "Step"), L("操作人", "By")],
        det.events.map((e) => h("tr", {}, h("td", {}, fmtTime(e.at)), h("td", {}, `${e.action} → `, status(e.to_status)), h("td", {}, e.actor))))];
    if (d.status === "confirmation_applied")
      parts.push(h("div", { class: "row" }, h("button", { class: "primary", "data-action": "accept-confirmation", "data-target": id,
        onclick: (ev) => act(ev.target, async () => { await api("POST", `/api/disputes/${id}/confirmation/accept`, {}); await refresh(); await openCase(id); }) }, L("受理申请", "Accept the application"))));
    if (d.status === "confirmation_accepted")
      parts.push(h("h3", {}, L("裁定", "Ruling")), mkForm(`rule-${id}`, [h("div", { class: "row" },
        field("outcome", L("结果", "Outcome"), select([["confirmed", L("确认有效", "confirm")], ["rejected", L("驳回申请", "reject")]])),
        h("label", { class: "inline" }, input({ type: "checkbox", name: "extended" }), L("经批准延长10日", "approved +10 days used"))),
      field("note", L("裁定理由", "Note"), h("textarea", { required: true }))], "rule", L("作出裁定", "Rule"), async (v) => {
        await api("POST", `/api/disputes/${id}/confirmation/ruling`, { outcome: v.outcome, note: v.note, extended: !!v.extended });
        await refresh(); await openCase(id);
      }));
    if (d.ruling_outcome || ["confirmed", "rejected"].includes(d.status)) parts.push(notice("ok", `${L("已裁定", "Ruled")}: ${STATUS[d.status] ? L(...STATUS[d.status]) : d.status}`, { id: "ruled", "data-status": d.status }));
    put(panel, card(null, ...parts));
  };
  put(main, h("h1", {}, L("司法确认申请", "Judicial confirmation applications")), h("div", { class: "cols" }, card(null, list), panel));
  await refresh();
  const want = new URLSearchParams(location.search).get("case");
  if (want) await openCase(Number(want));
}

// ---- review of one session: video, speaking timeline, consent and pause log, verify
async function pageReview(main) {
  const m = location.pathname.match(/^\/staff\/review\/(\d+)\/(\d+)$/);
  if (!m) return put(main, notice("error", L("地址不正确", "Bad address")));
  const [, id, sid] = m;
  const v = await api("GET", `/api/evidence/disputes/${id}/sessions/${sid}`);
  const vid = v.videos.find((x) => x.media_type.startsWith("video/")) || v.videos[0];
  const player = vid ? h("video", { class: "player", id: "player", controls: true, preload: "metadata", src: vid.url, "data-recording": vid.recording_id }) : notice("muted", L("尚无审看录像", "No review video yet"), { id: "no-video" });
  const total = () => Math.max(v.duration_ms, player.duration && isFinite(player.duration) ? player.duration * 1000 : 0, 1);
  const tl = h("div", { class: "timeline", id: "timeline", "data-lanes": v.lanes.length });
  const seek = (ev) => {
    const r = ev.currentTarget.getBoundingClientRect();
    const ms = Math.round(((ev.clientX - r.left) / r.width) * total());
    tl.dataset.seekedMs = String(ms);
    if (player.tagName === "VIDEO") player.currentTime = ms / 1000;
  };
  const pauses = [];
  let open = null;
  for (const e of v.log) {
    if (e.type === "pause" && e.at_ms !== null) open = e;
    if ((e.type === "resume" || e.type === "stop") && open) { pauses.push([open.at_ms, e.at_ms, open.detail]); open = null; }
  }
  const drawTl = () => {
    const T = total();
    tl.dataset.totalMs = String(Math.round(T));
    const lane = (key, who, segs, cls) => h("div", { class: "lane", "data-lane": key },
      h("span", { class: "who", title: who }, who),
      h("div", { class: "track", "data-action": "seek", "data-target": key, onclick: seek },
        h("div", { class: "playhead", style: `left:${(100 * Number(tl.dataset.playMs || 0)) / T}%` }),
        segs.map(([a, b, why]) => h("div", { class: `seg ${cls}`, title: why || `${fmtMs(a)}–${fmtMs(b)}`, style: `left:${(100 * a) / T}%;width:${(100 * Math.max(b - a, 0)) / T}%`, "data-from": a, "data-to": b }))));
    put(tl, ...v.lanes.map((l) => lane(l.pid, `${l.name}（${role(l.role)}）`, l.segments, "")),
      pauses.length ? lane("pauses", L("暂停", "Paused"), pauses, "pause") : null,
      h("div", { class: "muted" }, `00:00 — ${fmtMs(T)}`));
  };
  drawTl();
  if (player.tagName === "VIDEO") {
    player.addEventListener("loadedmetadata", drawTl);
    player.addEventListener("timeupdate", () => {
      tl.dataset.playMs = String(Math.round(player.currentTime * 1000));
      const left = `${(100 * player.currentTime * 1000) / total()}%`;
      $$(".playhead", tl).forEach((p) => (p.style.left = left));
    });
  }
  const result = h("div", { id: "verify-result" });
  const verifyBtn = h("button", { class: "primary", "data-action": "verify", disabled: !v.recorded, onclick: (ev) => act(ev.target, async () => {
    put(result, notice("muted", L("正在校验…", "Checking…")));
    const r = await api("POST", `/api/evidence/disputes/${id}/sessions/${sid}/verify`);
    result.dataset.ok = String(r.ok);
    put(result, notice(r.ok ? "ok" : "error", r.ok ? L("校验通过：所有文件、哈希链与签名均一致", "Verified: every file, the chain and the signature check") : L(`校验失败：${r.problems.length + r.files.filter((f) => !f.ok).length} 处问题`, "Verification FAILED")),
      table([L("文件", "File"), L("结果", "Result")], r.files.map((f) => h("tr", { "data-file": f.path, "data-ok": String(f.ok) }, h("td", { class: "mono" }, f.path),
        h("td", {}, f.ok ? h("span", { class: "badge good" }, L("一致", "ok")) : h("span", { class: "badge bad" }, f.problems.join("; ")))))),
      r.problems.map((p) => notice("error", `${p.location}: ${p.message}`)),
      h("p", { class: "muted" }, L("校验值（重算）", "Recomputed value"), " ", h("span", { class: "mono" }, r.integrity_check_value || "—"), " · key ", h("span", { class: "mono" }, r.key_id)));
  }) }, L("校验", "Verify"));
  const consent = (c) => c === "accept" ? h("span", { class: "badge good" }, L("同意录像", "consented")) : c === "refuse" ? h("span", { class: "badge bad" }, L("拒绝录像", "refused")) : h("span", { class: "muted" }, "—");
  const LOGNAME = { consent: ["同意/拒绝", "consent"], start: ["开始录像", "start"], pause: ["暂停", "pause"], resume: ["恢复", "resume"], stop: ["停止", "stop"], moved: ["移动房间", "moved"], interrupted: ["中断", "interrupted"], end: ["结束", "end"], track_end: ["丢包", "packet loss"] };
  const who = (pid) => (v.participants.find((p) => p.pid === pid) || {}).name || pid || "—";
  // The recorder's own pause reasons name a participant id: show the name.
  const reasonText = (r) => {
    let m = /^awaiting consent of (.+)$/.exec(r || "");
    if (m) return L(`等待${who(m[1])}同意录像`, `awaiting ${who(m[1])}'s consent`);
    m = /^consent refused by (.+)$/.exec(r || "");
    if (m) return L(`${who(m[1])}拒绝录像`, `${who(m[1])} refused consent`);
    return r || "";
  };
  put(main, 
    h("h1", {}, `${v.case_number} · ${L("调解会议", "session")} #${v.session_id}`),
    h("p", {}, h("a", { href: u(ME.role === "judge" ? "/staff/judge" : ME.role === "clerk" ? "/staff/clerk" : "/staff/mediator", ME.role === "judge" ? { case: id } : {}), "data-action": "back" }, L("← 返回案件", "← Back to the case"))),
    v.recorded ? null : notice("muted", L("本会议没有录像记录（无证据清单）。", "This session has no recording (no manifest)."), { id: "not-recorded" }),
    h("div", { class: "review" },
      h("div", {}, card(L("审看录像", "Review video"), player, h("h3", {}, L("发言时间轴（点击跳转）", "Speaking timeline (click to seek)")), tl)),
      h("div", {},
        card(L("完整性校验", "Integrity check"), h("p", { class: "muted" }, L("完整性校验值（证据清单哈希链头）", "Integrity check value (manifest chain head)")),
          h("p", { class: "mono", id: "integrity-value" }, v.integrity_check_value || "—"),
          h("p", { class: "muted" }, L(`清单条目 ${v.entries} · 签名密钥 `, `${v.entries} entries · key `), h("span", { class: "mono" }, v.key_id || "—")),
          h("div", { class: "row" }, verifyBtn), result),
        card(L("参加人与录像同意", "Participants and consent"), table([L("姓名", "Name"), L("身份", "Role"), L("录像同意", "Consent")],
          v.participants.map((p) => h("tr", { "data-participant": p.pid, "data-consent": p.consent || "" }, h("td", {}, p.name), h("td", {}, role(p.role)), h("td", {}, consent(p.consent)))))),
        card(L("录像记录（开始/暂停/恢复/停止）", "Recording log"), table([L("时间", "Time"), L("位置", "At"), L("事件", "Event"), L("操作人", "By"), L("原因", "Reason")],
          v.log.map((e) => h("tr", { "data-log": e.type }, h("td", { class: "mono nowrap" }, e.t.slice(11, 19)), h("td", { class: "mono nowrap" }, e.at_ms === null ? "—" : fmtMs(e.at_ms)),
            h("td", {}, LOGNAME[e.type] ? L(...LOGNAME[e.type]) : e.type), h("td", {}, e.actor === "system" ? L("系统", "system") : who(e.actor)), h("td", {}, e.type === "consent" ? consent(e.detail) : reasonText(e.detail)))), { id: "log" })),
        card(L("证据文件", "Evidence files"), table([L("文件", "File"), L("状态", "Status"), L("大小", "Size")],
          v.files.map((f) => h("tr", { "data-file": f.path }, h("td", { class: "mono" }, f.path), h("td", {}, f.status), h("td", {}, f.size === null ? "—" : `${f.size}`))))),
        v.unreadable.length ? card(L("无法读取", "Unreadable"), v.unreadable.map((x) => notice("error", x))) : null)));
}

// ---- clerk: pick a case's recorded sessions, export them to disc images (docs/disc.md)
async function pageClerk(main) {
  const page = await api("GET", "/api/disputes?per_page=200");
  const panel = h("div", { id: "case-panel" });
  const MEDIA = [["cd", "CD (700 MB)"], ["dvd", "DVD (4.7 GB)"], ["dvd-dl", "DVD DL (8.5 GB)"], ["bd25", "BD (25 GB)"], ["bd50", "BD DL (50 GB)"]];
  const jobView = (j) => h("div", { class: "job", "data-export": j.export_id, "data-state": j.state },
    h("p", {}, `${fmtTime(j.started_at)} · ${j.media} · `, h("span", { class: j.state === "failed" ? "badge bad" : j.state === "done" ? "badge good" : "badge" },
      { running: L("进行中", "running"), done: L("已完成", "done"), failed: L("失败", "failed") }[j.state] || j.state), j.error ? ` ${j.error}` : ""),
    j.images.length ? table([L("光盘镜像", "Image"), L("大小", "Size"), "SHA-256"], j.images.map((im) => h("tr", { "data-image": im.name },
      h("td", {}, h("a", { href: im.url, "data-action": "download-image", download: im.name }, `${im.name}（${im.disc}/${im.discs}）`)), h("td", {}, `${(im.size / 1048576).toFixed(1)} MB`),
      h("td", { class: "mono" }, im.sha256)))) : null,
    j.caucus_left_out.length ? notice("muted", L(`未导出的背靠背录像：${j.caucus_left_out.length} 个`, `Caucus files left out: ${j.caucus_left_out.length}`)) : null);
  const openCase = async (id) => {
    const [det, jobs] = await Promise.all([api("GET", `/api/disputes/${id}`), api("GET", `/api/disputes/${id}/disc-exports`).catch(() => [])]);
    const bar = h("div", { class: "progress", id: "export-progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": 0, "data-state": "idle" }, h("div"));
    const barText = h("p", { class: "muted", id: "export-status" });
    const recorded = det.sessions.filter((s) => det.recordings.some((r) => r.session_id === s.id));
    const boxes = recorded.map((s) => input({ type: "checkbox", checked: true, "data-action": "pick-session", "data-target": s.id }));
    const media = select(MEDIA, { "data-role": "media", value: "dvd" });
    const caucus = input({ type: "checkbox", "data-role": "include-caucus" });
    const history = h("div", { id: "exports" }, jobs.map(jobView));
    const exportBtn = h("button", { class: "primary", "data-action": "export", disabled: !recorded.length, onclick: (ev) => act(ev.target, async () => {
      const sessions = recorded.filter((_, i) => boxes[i].checked).map((s) => s.id);
      if (!sessions.length) throw new ApiError(422, { field: "sessions", message: L("请至少选择一次会议", "Pick at least one session") });
      let j = await api("POST", `/api/disputes/${id}/disc-exports`, { media: media.value, sessions, include_caucus: caucus.checked });
      while (true) {
        bar.dataset.state = j.state;
        bar.setAttribute("aria-valuenow", j.percent);
        bar.firstChild.style.width = `${j.state === "done" ? 100 : j.percent}%`;
        barText.textContent = j.state === "running" ? `${j.percent}% · ${{ check: L("校验", "checking"), build: L("制作镜像", "building"), read_back: L("回读校验", "reading back") }[j.phase] || ""} ${j.discs ? `${j.disc}/${j.discs}` : ""}` : "";
        if (j.state !== "running") break;
        await new Promise((r) => setTimeout(r, 400));
        j = await api("GET", `/api/disc-exports/${j.export_id}`);
      }
      history.prepend(jobView(j));
      if (j.state === "failed") throw new ApiError(500, { message: j.error || "export failed" });
    }) }, L("导出光盘镜像", "Export disc images"));
    put(panel, card(`${det.dispute.case_number}`,
      h("h3", {}, L("录像文件", "Recordings")),
      det.recordings.length ? table([L("会议", "Session"), L("文件", "File"), L("类型", "Type"), L("大小", "Size"), L("完整性校验值", "Integrity value")],
        det.recordings.map((r) => h("tr", { "data-recording": r.id }, h("td", {}, `#${r.session_id}`),
          h("td", {}, h("a", { href: `/api/recordings/${r.id}/file`, class: "mono" }, r.file_path)), h("td", {}, r.media_type), h("td", {}, String(r.size_bytes)),
          h("td", { class: "mono" }, r.integrity_sha256)))) : notice("muted", L("本案没有录像。", "No recordings in this case.")),
      h("h3", {}, L("导出光盘镜像", "Export to disc images")),
      recorded.map((s, i) => h("label", { class: "inline" }, boxes[i], L(`会议 #${s.id}（${fmtTime(s.scheduled_at)}）`, `Session #${s.id} (${fmtTime(s.scheduled_at)})`))),
      h("div", { class: "row" }, h("label", {}, L("光盘类型", "Medium"), media), h("label", { class: "inline" }, caucus, L("包括背靠背录像（保密）", "include caucus recordings (confidential)")), exportBtn),
      bar, barText, h("h3", {}, L("导出记录", "Exports")), history));
  };
  put(main, h("h1", {}, L("录像导出", "Recording export")), h("div", { class: "cols" },
    card(null, table([L("案号", "Case"), L("状态", "Status"), ""], page.items.map((d) => h("tr", { "data-dispute": d.id }, h("td", {}, d.case_number), h("td", {}, status(d.status)),
      h("td", {}, h("button", { "data-action": "open-case", "data-target": d.id, onclick: () => openCase(d.id) }, L("选择", "Pick"))))))), panel));
}

// ---- admin: organisations, roster, staff accounts (add, edit, deactivate)
async function pageAdmin(main) {
  const orgBox = h("div", { id: "orgs" }), medBox = h("div", { id: "roster" }), userBox = h("div", { id: "users" });
  const orgEdit = h("div", { id: "org-edit" }), medEdit = h("div", { id: "mediator-edit" }), userEdit = h("div", { id: "user-edit" });
  const KINDS = { peoples_committee: ["人民调解委员会", "people's committee"], industry: ["行业性专业性", "industry"], court: ["法院", "court"], special_invited: ["特邀调解", "special invited"], lawyer: ["律师调解", "lawyer"], arbitration: ["仲裁", "arbitration"] };
  const MSTATUS = [["active", L("在岗", "active")], ["inactive", L("停用", "inactive")], ["suspended", L("暂停", "suspended")]];
  const STAFF_ROLES = ["admin", "triage", "org_admin", "mediator", "judge", "clerk"];
  const needsOrg = (r) => r === "org_admin" || r === "mediator";
  let orgs = [];
  const oname = (id) => (orgs.find((x) => x.id === id) || {}).name || "—";
  /** A table that stacks into labelled blocks on a phone (CSS `table.stack`). */
  const stable = (heads, rows) => {
    const t = table(heads, rows, { class: "stack" });
    for (const tr of $$("tbody tr", t)) [...tr.children].forEach((td, i) => { if (heads[i]) td.dataset.label = heads[i]; });
    return t;
  };
  const orgOptions = () => orgs.map((x) => [String(x.id), x.name]);
  /** An edit form in `box` (a draft per object, server field errors beside the fields). */
  const editForm = (box, key, title, kids, action, onSubmit) => {
    const cancel = h("button", { type: "button", "data-action": "cancel-edit", onclick: () => { sessionStorage.removeItem(`draft:${key}`); put(box); } }, L("取消", "Cancel"));
    const form = mkForm(key, kids, action, L("保存", "Save"), async (v, f) => { await onSubmit(v, f); put(box); await refresh(); });
    $(`[data-action="${action}"]`, form).after(cancel);
    put(box, h("div", { class: "edit", "data-edit": key }, h("h3", {}, title), form));
    const first = $("input, select", form);
    if (first) first.focus();
  };
  const editOrg = (x) => editForm(orgEdit, `org-${x.id}`, L(`修改组织：${x.name}`, `Edit organisation: ${x.name}`), [h("div", { class: "row" },
    field("name", L("名称", "Name"), input({ id: "eo-name", required: true, maxlength: 200, value: x.name })),
    field("kind", L("类型", "Kind"), select(Object.entries(KINDS).map(([k, v]) => [k, L(...v)]), { id: "eo-kind", value: x.kind })),
    field("district", L("区县", "District"), input({ id: "eo-district", required: true, maxlength: 100, value: x.district })),
    field("street", L("街道", "Street"), input({ id: "eo-street", maxlength: 100, value: x.street })))],
  "save-org", async (v) => { await api("PATCH", `/api/orgs/${x.id}`, { name: v.name, kind: v.kind, district: v.district, street: v.street }); });
  const editMediator = (x) => editForm(medEdit, `mediator-${x.id}`, L(`修改调解员：${x.name}`, `Edit mediator: ${x.name}`), [h("div", { class: "row" },
    field("name", L("姓名", "Name"), input({ id: "em-name", required: true, maxlength: 100, value: x.name })),
    field("org_id", L("组织", "Organisation"), select(orgOptions(), { id: "em-org", value: String(x.org_id) })),
    field("status", L("状态", "Status"), select(MSTATUS, { id: "em-status", value: x.status })),
    field("specialties", L("专长", "Specialties"), input({ id: "em-specialties", maxlength: 500, value: x.specialties })))],
  "save-mediator-edit", async (v) => { await api("PATCH", `/api/mediators/${x.id}`, { name: v.name, org_id: Number(v.org_id), status: v.status, specialties: v.specialties }); });
  const editUser = (x) => {
    const org = select([["", "—"], ...orgOptions()], { id: "eu-org", value: x.org_id ? String(x.org_id) : "" });
    const rs = select(STAFF_ROLES.map((r) => [r, role(r)]), { id: "eu-role", value: x.role });
    const sync = () => { org.disabled = !needsOrg(rs.value); };
    rs.addEventListener("change", sync);
    setTimeout(sync, 0); // after mkForm restored a draft
    editForm(userEdit, `user-${x.id}`, L(`修改账号：${x.username}`, `Edit account: ${x.username}`), [h("div", { class: "row" },
      field("display_name", L("姓名", "Name"), input({ id: "eu-name", required: true, maxlength: 100, value: x.display_name })),
      field("role", L("角色", "Role"), rs),
      field("org_id", L("组织（组织管理员、调解员必填）", "Organisation (org admin, mediator)"), org),
      field("password", L("新密码（不改请留空，至少10位）", "New password (blank: unchanged; 10+)"), input({ id: "eu-password", type: "password", minlength: 10, autocomplete: "new-password" })))],
    "save-user", async (v) => {
      const body = { display_name: v.display_name, role: v.role, org_id: needsOrg(v.role) && v.org_id ? Number(v.org_id) : null };
      if (needsOrg(v.role) && !v.org_id) throw new ApiError(422, { field: "org_id", message: L("组织管理员和调解员必须选择组织", "Required for org admins and mediators") });
      if (v.password) body.password = v.password;
      await api("PATCH", `/api/users/${x.id}`, body);
    });
  };
  const refresh = async () => {
    const [o, m, us] = await Promise.all([api("GET", "/api/orgs"), api("GET", "/api/mediators"), api("GET", "/api/users?per_page=200")]);
    orgs = o;
    put(orgBox, stable([L("名称", "Name"), L("类型", "Kind"), L("区县", "District"), L("街道", "Street"), L("在线", "Online"), ""], o.map((x) => h("tr", { "data-org": x.id, "data-online": String(!!x.online) },
      h("td", { "data-col": "name" }, x.name), h("td", {}, KINDS[x.kind] ? L(...KINDS[x.kind]) : x.kind), h("td", { "data-col": "district" }, x.district), h("td", { "data-col": "street" }, x.street),
      h("td", {}, x.online ? h("span", { class: "badge good" }, L("在线", "online")) : h("span", { class: "badge bad" }, L("未上线", "offline"))),
      h("td", { class: "actions" },
        h("button", { "data-action": "edit-org", "data-target": x.id, onclick: () => editOrg(x) }, L("修改", "Edit")),
        h("button", { "data-action": "toggle-online", "data-target": x.id, onclick: (ev) => act(ev.target, async () => { await api("PATCH", `/api/orgs/${x.id}`, { online: !x.online }); await refresh(); }) }, x.online ? L("下线", "Take offline") : L("上线", "Bring online")))))));
    put(medBox, stable([L("姓名", "Name"), L("组织", "Organisation"), L("专长", "Specialties"), L("状态", "Status"), ""], m.map((x) => {
      const st = select(MSTATUS, { "data-role": "status", "data-target": x.id, "aria-label": L("状态", "Status") });
      st.value = x.status;
      const sp = input({ value: x.specialties, "data-role": "specialties", "data-target": x.id, "aria-label": L("专长", "Specialties") });
      return h("tr", { "data-mediator": x.id, "data-status": x.status }, h("td", { "data-col": "name" }, x.name), h("td", { "data-col": "org" }, oname(x.org_id)), h("td", {}, sp), h("td", {}, st),
        h("td", { class: "actions" },
          h("button", { "data-action": "save-mediator", "data-target": x.id, onclick: (ev) => act(ev.target, async () => { await api("PATCH", `/api/mediators/${x.id}`, { status: st.value, specialties: sp.value }); await refresh(); }) }, L("保存", "Save")),
          h("button", { "data-action": "edit-mediator", "data-target": x.id, onclick: () => editMediator(x) }, L("修改", "Edit"))));
    })));
    put(userBox, stable([L("用户名", "User"), L("姓名", "Name"), L("角色", "Role"), L("组织", "Organisation"), L("状态", "State"), ""], us.items.map((x) => h("tr", { "data-user": x.username, "data-id": x.id, "data-active": String(x.active) },
      h("td", {}, x.username), h("td", { "data-col": "name" }, x.display_name), h("td", { "data-col": "role" }, role(x.role)), h("td", { "data-col": "org" }, x.org_id ? oname(x.org_id) : "—"),
      h("td", {}, x.active ? h("span", { class: "badge good" }, L("启用", "active")) : h("span", { class: "badge bad" }, L("已停用", "deactivated"))),
      h("td", { class: "actions" },
        h("button", { "data-action": "edit-user", "data-target": x.id, onclick: () => editUser(x) }, L("修改", "Edit")),
        x.id === ME.id ? null : h("button", { class: x.active ? "danger" : null, "data-action": x.active ? "deactivate-user" : "reactivate-user", "data-target": x.id,
          onclick: (ev) => act(ev.target, async () => {
            if (x.active && !confirm(L(`停用账号 ${x.username}？其登录将立即失效。`, `Deactivate ${x.username}? Their logins end at once.`))) return;
            await api("PATCH", `/api/users/${x.id}`, { active: !x.active }); await refresh();
          }) }, x.active ? L("停用", "Deactivate") : L("启用", "Reactivate")))))));
    for (const s of $$("select[data-orgs]")) { const keep = s.value; put(s, ...orgs.map((x) => h("option", { value: x.id }, x.name))); if (keep) s.value = keep; }
  };
  const orgSel = (attrs = {}) => h("select", { "data-orgs": "", ...attrs });
  put(main, h("h1", {}, L("组织、调解员与账号", "Organisations, roster and accounts")),
    card(L("调解组织", "Organisations"), orgBox, orgEdit, h("h3", {}, L("新增组织", "Add an organisation")), mkForm("org", [h("div", { class: "row" },
      field("name", L("名称", "Name"), input({ required: true })), field("kind", L("类型", "Kind"), select(Object.entries(KINDS).map(([k, v]) => [k, L(...v)]))),
      field("district", L("区县", "District"), input({ required: true, value: "诸暨市" })), field("street", L("街道", "Street"), input({})),
      h("label", { class: "inline" }, input({ type: "checkbox", name: "online" }), L("已上线", "online")))], "add-org", L("新增", "Add"),
    async (v, f) => { await api("POST", "/api/orgs", { name: v.name, kind: v.kind, district: v.district, street: v.street || null, online: !!v.online }); f.reset(); await refresh(); })),
    card(L("调解员名册", "Mediator roster"), medBox, medEdit, h("h3", {}, L("新增调解员", "Add a mediator")), mkForm("mediator", [h("div", { class: "row" },
      field("name", L("姓名", "Name"), input({ id: "am-name", required: true })), field("org_id", L("组织", "Organisation"), orgSel({ id: "am-org" })), field("specialties", L("专长", "Specialties"), input({ id: "am-specialties" })))], "add-mediator", L("新增", "Add"),
    async (v, f) => { await api("POST", "/api/mediators", { name: v.name, org_id: Number(v.org_id), specialties: v.specialties || null }); f.reset(); await refresh(); })),
    card(L("工作人员账号", "Staff accounts"), userBox, userEdit, h("h3", {}, L("新增账号", "Add an account")), mkForm("user", [h("div", { class: "row" },
      field("username", L("用户名", "User name"), input({ required: true, pattern: "[A-Za-z0-9._-]{3,64}" })), field("display_name", L("姓名", "Name"), input({ id: "au-name", required: true })),
      field("role", L("角色", "Role"), select(STAFF_ROLES.map((r) => [r, role(r)]))),
      field("org_id", L("组织（组织管理员、调解员必填）", "Organisation (org admin, mediator)"), orgSel({ id: "au-org" })),
      field("password", L("初始密码（至少10位）", "Initial password (10+)"), input({ type: "password", required: true, minlength: 10, autocomplete: "new-password" })))], "add-user", L("新增", "Add"),
    async (v, f) => { await api("POST", "/api/users", { username: v.username, display_name: v.display_name, role: v.role, org_id: needsOrg(v.role) ? Number(v.org_id) : null, password: v.password }); f.reset(); await refresh(); })));
  await refresh();
}

// ---- KPI dashboard: six district KPIs, district-wide and per organisation, with targets
async function pageKpi(main) {
  // No dates given: the server's default window (1 January to today, in its local time).
  const q = new URLSearchParams(location.search);
  const win = q.get("from") && q.get("to") ? `from=${encodeURIComponent(q.get("from"))}&to=${encodeURIComponent(q.get("to"))}` : "";
  const orgs = ME.role === "org_admin" ? (await api("GET", "/api/orgs")).filter((o) => o.id === ME.org_id) : await api("GET", "/api/orgs");
  const scopes = ME.role === "org_admin" ? orgs.map((o) => [o.name, o.id]) : [[L("全区", "District"), null], ...orgs.map((o) => [o.name, o.id])];
  const reports = await Promise.all(scopes.map(([, id]) => api("GET", `/api/reports/kpi?${win}${id ? `&org=${id}` : ""}`)));
  const { from, to } = reports[0];
  const overdue = await api("GET", "/api/deadlines?overdue=true&per_page=200");
  const KN = { orgs_online: ["调解组织上线率", "Organisations online"], triage_response_48h: ["48小时分流响应率", "Triage answered in 48 h"], concluded_within_limit: ["30日内办结率", "Concluded within 30 days"],
    online_share: ["线上调解占比", "Share mediated online"], success_rate: ["调解成功率", "Success rate"], trainings: ["培训完成率", "Trainings held"] };
  const pct = (x) => (x === null || x === undefined ? "—" : `${Math.round(x * 1000) / 10}%`);
  const chart = (n) => {
    const rows = reports.map((r, i) => [scopes[i][0], r.kpis.find((k) => k.number === n)]);
    const k0 = rows[0][1];
    const W = 300, rowH = 26, top = 8, H = top + rows.length * rowH + 18, x0 = 92, w = W - x0 - 44;
    const max = Math.max(1, ...rows.map(([, k]) => k.value || 0), k0.target || 0);
    const X = (v) => x0 + (w * v) / max;
    const ns = "http://www.w3.org/2000/svg";
    const s = (tag, a, text) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(a)) e.setAttribute(k, v); if (text !== undefined) e.textContent = text; return e; };
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": k0.name });
    rows.forEach(([name, k], i) => {
      const y = top + i * rowH;
      svg.append(s("text", { x: 0, y: y + 15, "font-size": 11, fill: "#1d2733" }, name.length > 8 ? `${name.slice(0, 8)}…` : name));
      svg.append(s("rect", { x: x0, y: y + 4, width: w, height: 14, fill: "#eceff1", rx: 3 }));
      const bad = k.met === false;
      svg.append(s("rect", { x: x0, y: y + 4, width: Math.max(0, X(k.value || 0) - x0), height: 14, fill: bad ? "#c62828" : "#2e7d32", rx: 3, "data-value": k.value ?? "" }));
      svg.append(s("text", { x: x0 + w + 4, y: y + 15, "font-size": 10, fill: "#6b7785" }, `${k.numerator}/${k.denominator}`));
    });
    if (k0.target !== null && k0.target !== undefined) {
      svg.append(s("line", { x1: X(k0.target), x2: X(k0.target), y1: 2, y2: H - 14, stroke: "#ef6c00", "stroke-width": 2, "stroke-dasharray": "4 3", "data-target-line": k0.target }));
      svg.append(s("text", { x: X(k0.target), y: H - 2, "font-size": 10, fill: "#ef6c00", "text-anchor": "middle" }, `${L("目标", "target")} ${pct(k0.target)}`));
    }
    return h("section", { class: "card kpi", "data-kpi": k0.key }, h("h3", {}, `${n}. ${KN[k0.key] ? L(...KN[k0.key]) : k0.name}`),
      h("p", { class: "fig" }, L("全区", "District"), ` ${pct(k0.value)} = ${k0.numerator}/${k0.denominator}`, k0.met === null ? "" : " ",
        k0.met === null ? null : h("span", { class: `badge ${k0.met ? "good" : "bad"}`, "data-met": String(k0.met) }, k0.met ? L("达标", "met") : L("未达标", "not met"))), svg);
  };
  const range = mkForm("kpi-range", [h("div", { class: "row" }, field("from", L("起", "From"), input({ type: "date", required: true, value: from })), field("to", L("止", "To"), input({ type: "date", required: true, value: to })))],
    "kpi-range", L("查询", "Show"), async (v) => { location.href = u("/staff/kpi", { from: v.from, to: v.to }); });
  put(main, h("h1", {}, L(`考核指标 ${from} 至 ${to}`, `KPIs ${from} to ${to}`)), card(null, range),
    h("div", { class: "kpis", id: "kpis" }, [1, 2, 3, 4, 5, 6].map(chart)),
    card(L(`超期事项（${overdue.total}）`, `Overdue (${overdue.total})`), table([L("案号", "Case"), L("期限", "Deadline"), L("到期", "Due"), L("状态", "State")],
      overdue.items.map((d) => h("tr", { "data-overdue": d.dispute_id }, h("td", {}, d.case_number), h("td", {}, d.rule || d.kind), h("td", {}, fmtTime(d.due_at)), h("td", {}, countdown(d.due_at)))), { id: "overdue" })));
}

boot();
