// Fengqiao archive disc: offline listing and verifier (docs/disc.md, docs/evidence.md).
// Runs from file:// with no network and no install. WebCrypto only: SHA-256 per
// 16 MiB chunk (digest is one-shot), Ed25519 signatures (Chromium 137+, Firefox 129+,
// Safari 17+).
"use strict";
(function () {
  const M = JSON.parse(document.getElementById("disc-manifest").textContent);
  const enc = new TextEncoder();
  const hex = (b) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, "0")).join("");
  const sha = async (bytes) => hex(await crypto.subtle.digest("SHA-256", bytes));
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  };
  const href = (p) => p.split("/").map(encodeURIComponent).join("/");
  const ROLE = {
    evidence_manifest: "证据清单 evidence manifest", evidence_signature: "清单签名 signature",
    original: "原始录制 original", wav: "音频 WAV", activity: "发言记录 activity", review: "回放录像 review video",
    other: "其他 other",
  };

  // ---- listing (works before any folder is chosen) ----
  const meta = document.getElementById("meta");
  const row = (k, v) => meta.append(el("tr", {}, el("td", {}, k), el("td", {}, v)));
  row("案号 Case", M.case_number);
  row("光盘 Disc", `第 ${M.disc} 张，共 ${M.discs} 张 (disc ${M.disc} of ${M.discs})`);
  row("卷标 Volume id", M.volume_id);
  row("导出时间 Exported", `${M.created} (UTC)，${M.exported_by}`);
  row("签名密钥 Key id", el("code", {}, M.key_id));
  row("含背靠背录像 Caucus included", M.caucus_included ? "是 yes（保密 confidential）" : "否 no");

  const sessions = document.getElementById("sessions");
  for (const s of M.sessions) {
    const box = el("div", { "data-session": s.session_id });
    box.append(el("h3", {}, `会话 Session ${s.session_id}（${s.folder}）`));
    box.append(el("p", {}, "完整性校验值 Integrity check value: ", el("code", { class: "hash", "data-head": s.session_id }, s.head),
      s.last_entry === "interrupted" ? "（录制中断后已封存 closed out after an interruption）" : ""));
    const names = Object.entries(s.participants).map(([p, n]) => `${n} (${p})`).join("，");
    if (names) box.append(el("p", {}, "参与人 Participants: ", names));
    for (const f of M.files.filter((f) => f.session === s.session_id && f.role === "review")) {
      const fig = el("figure", {});
      fig.append(el("video", { controls: "", preload: "metadata", src: href(f.path) }));
      fig.append(el("figcaption", {}, f.path, f.confidential ? el("span", { class: "conf" }, " 保密 CONFIDENTIAL") : ""));
      box.append(fig);
    }
    if (s.caucus_left_out.length) {
      box.append(el("p", {}, `未导出背靠背（保密）录像 ${s.caucus_left_out.length} 个 caucus files left out.`));
    }
    sessions.append(box);
  }

  const tbody = document.querySelector("#files tbody");
  const rows = new Map();
  for (const f of M.files) {
    const tr = el("tr", { "data-path": f.path, "data-status": "pending" },
      el("td", {}, el("a", { href: href(f.path) }, f.path),
        f.original_path ? el("div", {}, "原名 original name: ", f.original_path) : "",
        el("div", {}, ROLE[f.role] || f.role, f.confidential ? el("span", { class: "conf" }, " 保密 CONFIDENTIAL") : "")),
      el("td", {}, f.size),
      el("td", { class: "hash" }, f.sha256),
      el("td", { class: "status" }, "—"));
    rows.set(f.path, tr);
    tbody.append(tr);
  }
  if (M.elsewhere.length) {
    const ul = el("ul", {});
    for (const x of M.elsewhere) ul.append(el("li", {}, `${x.path} → 第 ${x.disc} 张光盘 (disc ${x.disc})`));
    document.getElementById("elsewhere").append(el("p", {}, "本套光盘其他盘上的文件 Files on the other discs of this set:"), ul);
  }

  // ---- verification ----
  const KEYS = {
    session: ["v", "room", "case_id", "session_id", "chunk_size", "key_id", "recorder"],
    participant: ["pid", "name", "role"], consent: ["answer"], start: [], pause: ["reason"], resume: [], stop: [],
    file_open: ["path", "pid", "kind", "codec"], file: ["path", "status", "size", "sha256", "chunks"],
    track: ["track", "pid", "kind", "codec", "room", "clock_rate", "rtp_ts", "offset_ms", "sync"],
    moved: ["pid", "room"], track_end: ["track", "packets", "lost", "queue_dropped"], file_lost: ["path", "reason"], interrupted: ["reason", "unsigned_entries", "torn_tail"], end: [],
  };
  const COMMON = ["seq", "prev", "t", "actor", "type"];
  const T_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
  const fatal = new TextDecoder("utf-8", { fatal: true });

  function pemToDer(text) {
    const b64 = text.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, "").replace(/\s+/g, "");
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  }
  async function ed25519(spki, sigB64, message) {
    const key = await crypto.subtle.importKey("spki", spki, { name: "Ed25519" }, false, ["verify"]);
    const sig = Uint8Array.from(atob(sigB64), (c) => c.charCodeAt(0));
    return crypto.subtle.verify({ name: "Ed25519" }, key, sig, enc.encode(message));
  }

  // Checks one file against size and chunk hashes; returns null or a reason.
  async function checkFile(file, f) {
    if (file.size !== f.size) return `大小不符 size ${file.size}, expected ${f.size}`;
    const C = M.chunk_size;
    const n = Math.ceil(f.size / C);
    if (n !== f.chunks.length) return "清单分块数不符 chunk count differs";
    for (let k = 0; k < n; k++) {
      const h = await sha(await file.slice(k * C, Math.min((k + 1) * C, f.size)).arrayBuffer());
      if (h !== f.chunks[k]) return `内容不符 SHA-256 of chunk ${k} (bytes ${k * C}–${Math.min((k + 1) * C, f.size) - 1}) differs`;
    }
    if (n === 1 && f.chunks[0] !== f.sha256) return "清单不一致 manifest sha256 differs from its chunk";
    return null;
  }

  // docs/evidence.md § Verifying, rules 1–4, 6, 7 (rule 5 is the per-file check above).
  async function checkEvidence(bytes, sigText, spki, s) {
    if (!bytes.length || bytes[bytes.length - 1] !== 0x0a) return { err: "manifest.jsonl is empty or ends in a torn line" };
    let c = new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode("fengqiao-evidence-v1")));
    let start = 0, n = 0, last = null;
    const files = new Map();
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i] !== 0x0a) continue;
      const line = bytes.subarray(start, i);
      let e, text;
      try { text = fatal.decode(line); e = JSON.parse(text); } catch (x) { return { err: `line ${n + 1}: not UTF-8 JSON` }; }
      if (JSON.stringify(e) !== text) return { err: `line ${n + 1}: not canonical` };
      const want = KEYS[e.type];
      if (!want || JSON.stringify(Object.keys(e)) !== JSON.stringify(COMMON.concat(want))) return { err: `line ${n + 1}: unknown type or fields` };
      if ((e.type === "session") !== (n === 0)) return { err: `line ${n + 1}: the session header must be line 1 only` };
      if (n === 0 && (e.v !== 1 || e.chunk_size !== 16777216)) return { err: "line 1: not format v1" };
      if (e.seq !== n) return { err: `line ${n + 1}: seq ${e.seq} (entry removed, inserted or reordered)` };
      if (e.prev !== hex(c)) return { err: `line ${n + 1}: chain broken (altered or removed entry)` };
      if (!T_RE.test(e.t)) return { err: `line ${n + 1}: bad time` };
      if (last === "end") return { err: `line ${n + 1}: entry after end` };
      if (e.type === "file") files.set(e.path, e);
      const buf = new Uint8Array(32 + line.length);
      buf.set(c); buf.set(line, 32);
      c = new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
      last = e.type; n++; start = i + 1;
    }
    if (last !== "end" && last !== "interrupted") return { err: "the manifest is not finished (no end entry)" };
    const head = hex(c);
    let sig;
    try { sig = JSON.parse(sigText.replace(/\n$/, "")); } catch (x) { return { err: "manifest.sig is not JSON" }; }
    if (sig.v !== 1 || sig.alg !== "Ed25519" || sig.key_id !== M.key_id) return { err: "manifest.sig: wrong version, algorithm or key id" };
    if (sig.entries !== n) return { err: `manifest.sig covers ${sig.entries} entries, the manifest has ${n}` };
    if (!(await ed25519(spki, sig.sig, "fengqiao-evidence-v1\n" + head))) return { err: "manifest.sig: the signature does not verify" };
    if (head !== s.head) return { err: `the chain head ${head} is not the integrity check value on this disc's list` };
    return { head, files };
  }

  async function verify(fileList) {
    const result = document.getElementById("result");
    const notes = document.getElementById("notes");
    notes.textContent = "";
    result.dataset.state = "running";
    result.textContent = "正在校验… Verifying…";
    const byPath = new Map();
    for (const f of fileList) {
      const rel = (f.webkitRelativePath || f.name).split("/").slice(1).join("/") || f.name;
      byPath.set(rel, f);
    }
    const failures = [];
    const fail = (what, why) => failures.push(`${what}: ${why}`);
    // The disc manifest, its signature and the key.
    let spki = null;
    const dm = byPath.get("disc-manifest.json"), ds = byPath.get("disc-manifest.sig"), pk = byPath.get("evidence-public-key.pem");
    if (!dm || !ds || !pk) {
      fail("disc-manifest.json", "未找到光盘清单，请选择光盘根文件夹 not found: choose the disc's root folder");
    } else {
      try {
        const dmBytes = new Uint8Array(await dm.arrayBuffer());
        const picked = JSON.parse(fatal.decode(dmBytes));
        if (JSON.stringify(picked) !== JSON.stringify(M)) fail("disc-manifest.json", "与本页内嵌清单不一致 differs from the copy in index.html");
        spki = pemToDer(await pk.text());
        const raw = spki.subarray(spki.length - 32);
        const kid = hex(await crypto.subtle.digest("SHA-256", raw)).slice(0, 16);
        notes.append(el("p", {}, "光盘上的公钥 Key on this disc: ", el("code", {}, kid), "（请与法院留存的公钥核对 compare with the court's copy）"));
        if (kid !== M.key_id) fail("evidence-public-key.pem", `key id ${kid} is not the manifest's ${M.key_id}`);
        const s = JSON.parse((await ds.text()).trim());
        const digest = await sha(dmBytes);
        if (s.sha256 !== digest || !(await ed25519(spki, s.sig, "fengqiao-disc-v1\n" + digest))) fail("disc-manifest.sig", "光盘清单签名无效 signature does not verify");
      } catch (x) {
        fail("disc-manifest.json", `无法校验 cannot check: ${x}`);
      }
    }
    // Every file.
    let ok = 0;
    for (const f of M.files) {
      const tr = rows.get(f.path);
      const cell = tr.querySelector("td.status");
      const file = byPath.get(f.path);
      if (!file) {
        tr.dataset.status = "missing"; cell.textContent = "缺失 MISSING"; fail(f.path, "缺失 missing"); continue;
      }
      cell.textContent = "…";
      const why = await checkFile(file, f);
      if (why) { tr.dataset.status = "bad"; cell.textContent = "不一致 MISMATCH: " + why; fail(f.path, why); }
      else { tr.dataset.status = "ok"; cell.textContent = "一致 OK"; ok++; }
    }
    // Each session's evidence manifest: chain, signature, and its file entries.
    for (const s of M.sessions) {
      const mf = M.files.find((f) => f.session === s.session_id && f.role === "evidence_manifest");
      const sf = M.files.find((f) => f.session === s.session_id && f.role === "evidence_signature");
      const a = mf && byPath.get(mf.path), b = sf && byPath.get(sf.path);
      const where = `会话 session ${s.session_id} manifest.jsonl`;
      if (!a || !b || !spki) { fail(where, "cannot check (missing)"); continue; }
      let r;
      try { r = await checkEvidence(new Uint8Array(await a.arrayBuffer()), await b.text(), spki, s); } catch (x) { r = { err: String(x) }; }
      if (r.err) { fail(where, r.err); continue; }
      for (const f of M.files.filter((f) => f.session === s.session_id && f.in_evidence_manifest)) {
        const e = r.files.get(f.rel);
        if (!e || e.sha256 !== f.sha256 || e.size !== f.size) fail(f.path, "证据清单与光盘清单不一致 the evidence manifest lists other hashes");
      }
      document.querySelector(`[data-head="${CSS.escape(s.session_id)}"]`).append(" ✔");
    }
    const known = new Set(M.files.map((f) => f.path).concat(["disc-manifest.json", "disc-manifest.sig", "evidence-public-key.pem", "index.html", "disc.js"]));
    for (const p of byPath.keys()) if (!known.has(p)) notes.append(el("p", {}, "清单外文件 not listed (not checked): ", p));
    if (failures.length === 0) {
      result.dataset.state = "ok";
      result.textContent = `全部 ${ok} 个文件、证据清单链与签名校验一致。All ${ok} files, the evidence chains and the signatures check: OK.`;
    } else {
      result.dataset.state = "failed";
      result.textContent = "";
      result.append(el("p", {}, `校验失败 FAILED — ${failures.length} 处问题 problem(s):`));
      const ul = el("ul", { id: "failures" });
      for (const f of failures) ul.append(el("li", {}, f));
      result.append(ul);
    }
  }

  document.getElementById("pick").addEventListener("change", (ev) => verify([...ev.target.files]));
  // Test and tool hook (docs/disc.md): verify a list of File objects whose
  // webkitRelativePath starts with the disc folder's name.
  window.fqDisc = { manifest: M, verify };
})();
