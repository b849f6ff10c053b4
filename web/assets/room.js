// Fengqiao room client: join page, preview, signaling (docs/signaling.md), media grid.
// No build step; plain ES2020. Test hooks: data-action on controls,
// <video data-participant-id> per remote tile, and window.fq.stats().
"use strict";

const I18N = {
  zh: {
    brand: "枫桥在线调解", joinTitle: "加入调解会议", youJoinAs: "您的身份", nameFixed: "姓名由邀请链接确定，不能修改。",
    camera: "摄像头", microphone: "麦克风", join: "加入", leave: "离开", mute: "静音", unmute: "取消静音",
    cameraOffBtn: "关闭摄像头", cameraOnBtn: "打开摄像头", cameraOff: "摄像头已关闭",
    privacy: "调解过程不公开。请在安静、私密的环境中参加。",
    connecting: "正在连接…", connected: "已连接", notJoined: "未加入", reconnecting: "连接中断", waitingVideo: "等待视频…",
    you: "我", leftTitle: "您已离开调解会议", endedTitle: "调解会议已结束",
    roles: { mediator: "调解员", applicant: "申请人", respondent: "被申请人", agent: "代理人", observer: "旁听" },
    waitingTitle: "请稍候，调解员将允许您进入调解。", waitingHint: "在此之前，其他人看不到也听不到您；您只能看到自己的画面。",
    waitingList: "等候室", waitingEmpty: "没有人在等候。", admit: "允许进入", reject: "拒绝",
    forceMute: "静音", forceUnmute: "取消静音", remove: "移出", move: "移至", endSession: "结束调解",
    mainRoom: "主调解室", sideApplicant: "申请人单独调解室", sideRespondent: "被申请人单独调解室", youAreIn: "您所在：",
    mutedByMediator: "调解员已将您静音，其他人暂时听不到您。", videoMutedByMediator: "调解员已暂停转发您的视频。",
    removeReason: "移出原因（将记入调解记录）：", confirmEnd: "确定结束本次调解？所有人将离开会议。",
    consentTitle: "本次调解将被录音录像", consentAccept: "同意录制", consentRefuse: "拒绝录制",
    consentText: "录音录像将作为调解记录保存，可能提交法院用于司法确认。所有在场人员同意后才开始录制；您可以拒绝，调解员将决定如何继续。",
    consentMineAccept: "您已同意录制。", consentMineRefuse: "您已拒绝录制，录制已暂停。您可以随时改为同意。",
    recRecording: "录制中", recPaused: "录制已暂停", recStopped: "录制已结束",
    integrityTitle: "录制已结束。完整性校验值：", integrityHint: "请核对并记下此值；法院可据此验证录音录像未被修改。",
    integrityPending: "正在计算完整性校验值…",
    recordPanel: "录音录像", recordStart: "开始录制", recordPause: "暂停录制", recordResume: "继续录制", recordStop: "结束录制",
    pauseReason: "暂停原因（必填）", pauseReasonNeeded: "请填写暂停原因，它将记入录制记录。",
    consentAnswers: { accept: "已同意", refuse: "已拒绝", pending: "未答复" },
    reasonRefused: "拒绝录制：", reasonAwaiting: "等待同意：",
    err: {
      insecure: "此页面未通过安全连接（HTTPS）打开，浏览器不允许使用摄像头和麦克风。请使用 https:// 开头的邀请链接。",
      permission: "无法使用摄像头或麦克风：浏览器拒绝了权限。请在地址栏的网站设置中允许摄像头和麦克风，然后刷新页面。",
      nodevice: "没有找到摄像头或麦克风。请连接设备后刷新页面。",
      room_full: "调解会议人数已满，无法加入。请联系调解员。",
      bad_token: "邀请链接无效。请向调解员索取新的链接。",
      token_expired: "邀请链接已过期。请向调解员索取新的链接。",
      network: "与服务器的连接中断。请检查网络后刷新页面。",
      generic: "出现错误：",
      replaced: "您已在另一个窗口加入此会议。",
      ice_failed: "媒体连接失败，请检查网络后重新加入。",
      server_shutdown: "服务器正在维护，会议暂停。",
      rejected: "调解员未允许您进入本次调解。", removed: "您已被调解员移出本次调解。", ended: "调解员已结束本次调解。",
      forbidden: "只有调解员可以进行此操作。",
      resume_expired: "连接中断时间过长，您已离开调解会议。请重新打开邀请链接加入。",
    },
    participantReconnecting: "连接中断，正在重连…",
    shamTitle: "虚假调解风险告知", shamAck: "我已知悉", warnSham: "虚假调解告知", shamAcked: "已确认告知",
    shamText: "请如实陈述纠纷事实。当事人之间恶意串通，企图通过调解侵害国家利益、社会公共利益或者他人合法权益的，属于虚假调解：调解协议不予司法确认，并可依法追究法律责任。",
    idCheck: "记录身份核验", idStill: "截取画面", idVerified: "身份已核验", idFailed: "身份核验未通过",
    idMethods: { id_document: "出示身份证件", face_comparison: "人脸比对", known_person: "熟识人员" },
    idResults: { verified: "核验通过", failed: "核验未通过" },
  },
  en: {
    brand: "Fengqiao Online Mediation", joinTitle: "Join the mediation session", youJoinAs: "You join as",
    nameFixed: "Your name comes from the invite link and cannot be changed.",
    camera: "Camera", microphone: "Microphone", join: "Join", leave: "Leave", mute: "Mute", unmute: "Unmute",
    cameraOffBtn: "Camera off", cameraOnBtn: "Camera on", cameraOff: "Camera is off",
    privacy: "Mediation is not public. Please join from a quiet, private place.",
    connecting: "Connecting…", connected: "Connected", notJoined: "Not joined", reconnecting: "Connection lost", waitingVideo: "Waiting for video…",
    you: "me", leftTitle: "You have left the session", endedTitle: "The session has ended",
    roles: { mediator: "Mediator", applicant: "Applicant", respondent: "Respondent", agent: "Agent", observer: "Observer" },
    waitingTitle: "Please wait: the mediator will let you in.", waitingHint: "Until then nobody sees or hears you; you see only your own picture.",
    waitingList: "Waiting room", waitingEmpty: "Nobody is waiting.", admit: "Admit", reject: "Reject",
    forceMute: "Mute", forceUnmute: "Unmute", remove: "Remove", move: "Move to", endSession: "End session",
    mainRoom: "Main room", sideApplicant: "Applicant's side room", sideRespondent: "Respondent's side room", youAreIn: "You are in: ",
    mutedByMediator: "The mediator muted you; others cannot hear you for now.", videoMutedByMediator: "The mediator paused your video.",
    removeReason: "Reason for removal (goes into the session record):", confirmEnd: "End this session? Everyone will leave.",
    consentTitle: "This session will be recorded (audio and video)", consentAccept: "I consent", consentRefuse: "I refuse",
    consentText: "The recording is kept as the record of the mediation and may go to a court for judicial confirmation. Recording runs only when everyone present has consented; you may refuse, and the mediator decides how to go on.",
    consentMineAccept: "You consented to recording.", consentMineRefuse: "You refused; recording is paused. You can consent at any time.",
    recRecording: "Recording", recPaused: "Recording paused", recStopped: "Recording ended",
    integrityTitle: "Recording ended. Integrity check value:", integrityHint: "Check and note this value: a court can use it to verify the recording was not altered.",
    integrityPending: "Computing the integrity check value…",
    recordPanel: "Recording", recordStart: "Start recording", recordPause: "Pause", recordResume: "Resume", recordStop: "Stop recording",
    pauseReason: "Reason for the pause (required)", pauseReasonNeeded: "Give a reason for the pause: it goes into the record.",
    consentAnswers: { accept: "consented", refuse: "refused", pending: "no answer yet" },
    reasonRefused: "Refused by: ", reasonAwaiting: "Awaiting consent of: ",
    err: {
      insecure: "This page was not opened over a secure connection (HTTPS), so the browser blocks camera and microphone. Use an https:// invite link.",
      permission: "Camera or microphone permission was denied. Allow them in the site settings and reload.",
      nodevice: "No camera or microphone found. Connect one and reload.",
      room_full: "The session is full. Please contact the mediator.",
      bad_token: "This invite link is not valid. Ask the mediator for a new one.",
      token_expired: "This invite link has expired. Ask the mediator for a new one.",
      network: "The connection to the server was lost. Check your network and reload.",
      generic: "Something went wrong: ",
      replaced: "You joined this session from another window.",
      ice_failed: "The media connection failed. Check your network and join again.",
      server_shutdown: "The server is going down for maintenance; the session is paused.",
      rejected: "The mediator did not admit you to this session.", removed: "The mediator removed you from this session.",
      ended: "The mediator ended the session.", forbidden: "Only the mediator can do that.",
      resume_expired: "The connection was lost for too long and you left the session. Open the invite link again to rejoin.",
    },
    participantReconnecting: "Connection lost, reconnecting…",
    shamTitle: "Warning against sham mediation", shamAck: "I understand", warnSham: "Sham-mediation warning", shamAcked: "acknowledged the warning",
    shamText: "State the facts of the dispute truthfully. Parties who collude to harm the state, the public interest or others' lawful rights through mediation commit sham mediation: the agreement will not be judicially confirmed, and they may be held legally liable.",
    idCheck: "Record identity check", idStill: "capture frame", idVerified: "identity verified", idFailed: "identity check failed",
    idMethods: { id_document: "ID document", face_comparison: "face comparison", known_person: "known person" },
    idResults: { verified: "verified", failed: "failed" },
  },
};
const LANG = new URLSearchParams(location.search).get("lang") === "en" ? "en" : "zh";
function t(key) {
  const get = (d) => key.split(".").reduce((o, k) => (o == null ? undefined : o[k]), d);
  const v = get(I18N[LANG]);
  return v === undefined ? get(I18N.en) : v;
}

const $ = (id) => document.getElementById(id);
const token = decodeURIComponent(location.pathname.replace(/^\/join\//, "").replace(/\/$/, ""));
let claims = {};
try {
  const b64 = token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  claims = JSON.parse(new TextDecoder().decode(bytes));
} catch (_) { /* the server will say bad_token */ }

const state = {
  ws: null, pc: null, local: null, me: null, participants: new Map(), streams: new Map(),
  audioMuted: false, videoMuted: false, queue: Promise.resolve(), joinedAt: 0, firstFrameAt: 0, left: false,
  waiting: false, myRoom: null, forced: new Map(), waitingList: [], recording: null,
  // Resume (docs/signaling.md): the token of the last `joined`; while resuming, until when
  // to keep trying, and whether the resume brings a new peer connection.
  resumeToken: null, resuming: false, resumeUntil: 0, resumeRestart: false,
};
// How long the page keeps trying to resume after its WebSocket dropped (the server's
// default media.resume_window_ms; a server with a shorter window answers resume_expired).
const RESUME_TRY_MS = 30000;
window.fq = {
  state,
  // The last `recording` message (state, reason, consent, integrity), or null.
  recording() { return state.recording || null; },
  // Per remote participant: decoded video frames and received audio packets (getStats).
  async stats() {
    const out = {};
    if (!state.pc) return out;
    const report = await state.pc.getStats();
    const byTrack = new Map();
    for (const r of state.pc.getReceivers()) byTrack.set(r.track.id, r);
    for (const [pid, stream] of state.streams) {
      out[pid] = { framesDecoded: 0, audioPackets: 0 };
      for (const tr of stream.getTracks()) {
        const rc = byTrack.get(tr.id);
        if (!rc) continue;
        const st = await rc.getStats();
        st.forEach((s) => {
          if (s.type !== "inbound-rtp") return;
          if (s.kind === "video") out[pid].framesDecoded += s.framesDecoded || 0;
          if (s.kind === "audio") out[pid].audioPackets += s.packetsReceived || 0;
        });
      }
    }
    void report;
    return out;
  },
  timing() { return { joinedAt: state.joinedAt, firstFrameAt: state.firstFrameAt }; },
};

function applyI18n() {
  document.documentElement.lang = LANG === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) {
    const v = t(el.dataset.i18n);
    if (typeof v === "string") el.textContent = v;
  }
  document.title = t("brand");
}

function setStatus(key, kind) {
  const s = $("status");
  s.textContent = t(key);
  s.dataset.state = kind || "idle";
}

function showError(where, key, detail) {
  const box = $(where);
  const msg = t("err." + key);
  box.textContent = msg ? msg + (key === "generic" && detail ? detail : "") : t("err.generic") + (detail || key);
  box.dataset.code = key;
  box.hidden = false;
}

// ---------------------------------------------------------------- lobby

async function listDevices() {
  const devs = await navigator.mediaDevices.enumerateDevices();
  const fill = (sel, kind, current) => {
    sel.innerHTML = "";
    for (const d of devs.filter((x) => x.kind === kind)) {
      const o = document.createElement("option");
      o.value = d.deviceId;
      o.textContent = d.label || d.deviceId.slice(0, 8);
      if (d.deviceId === current) o.selected = true;
      sel.appendChild(o);
    }
  };
  const vt = state.local && state.local.getVideoTracks()[0];
  const at = state.local && state.local.getAudioTracks()[0];
  fill($("camera-select"), "videoinput", vt && vt.getSettings().deviceId);
  fill($("mic-select"), "audioinput", at && at.getSettings().deviceId);
}

async function openMedia() {
  const cam = $("camera-select").value, mic = $("mic-select").value;
  // ?rawaudio=1 (tests, recording checks): no echo cancellation, noise suppression
  // or automatic gain, so the recording can be compared with the source.
  const raw = new URLSearchParams(location.search).get("rawaudio") === "1";
  const proc = raw ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false } : {};
  const constraints = {
    audio: mic ? { deviceId: { exact: mic }, ...proc } : (raw ? proc : true),
    video: cam ? { deviceId: { exact: cam }, width: 1280, height: 720 } : { width: 1280, height: 720 },
  };
  if (state.local) state.local.getTracks().forEach((tr) => tr.stop());
  state.local = await navigator.mediaDevices.getUserMedia(constraints);
  $("preview").srcObject = state.local;
}

async function lobby() {
  applyI18n();
  $("invited-name").textContent = claims.name || "";
  $("invited-role").textContent = (t("roles") || {})[claims.role] || claims.role || "";
  $("room-label").textContent = claims.room ? "#" + claims.room : "";
  if (!window.isSecureContext || !navigator.mediaDevices) {
    showError("lobby-error", "insecure");
    return;
  }
  try {
    await openMedia();
    await listDevices();
    $("join").disabled = false;
  } catch (e) {
    const key = e && (e.name === "NotAllowedError" || e.name === "SecurityError") ? "permission"
      : e && (e.name === "NotFoundError" || e.name === "OverconstrainedError") ? "nodevice" : "generic";
    showError("lobby-error", key, e && e.message);
    $("lobby-error").dataset.code = key;
  }
  for (const id of ["camera-select", "mic-select"]) {
    $(id).addEventListener("change", () => openMedia().catch((e) => showError("lobby-error", "generic", e.message)));
  }
  $("join").addEventListener("click", join);
}

// ---------------------------------------------------------------- room

function send(msg) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
}

function tile(pid, name, role, self) {
  let el = document.querySelector(`.tile[data-tile="${CSS.escape(pid)}"]`);
  if (el) return el;
  el = document.createElement("div");
  el.className = "tile" + (self ? " self" : "");
  el.dataset.tile = pid;
  const v = document.createElement("video");
  v.autoplay = true; v.playsInline = true;
  if (self) { v.muted = true; v.dataset.self = "true"; } else { v.dataset.participantId = pid; }
  const label = document.createElement("div");
  label.className = "label";
  const n = document.createElement("span");
  n.className = "name";
  n.textContent = self ? `${name}（${t("you")}）` : name;
  const r = document.createElement("span");
  r.className = "role-tag";
  r.textContent = (t("roles") || {})[role] || role || "";
  const m = document.createElement("span");
  m.className = "mic-off"; m.textContent = "🔇"; m.hidden = true;
  const where = document.createElement("span");
  where.className = "room-tag";
  label.append(n, r, m, where);
  // The picture with its name label; the mediator's controls go in a bar under it,
  // never over the face.
  const screen = document.createElement("div");
  screen.className = "screen";
  screen.append(v, label);
  el.append(screen);
  modControls(el, pid, self);
  if (!self) {
    const w = document.createElement("div");
    w.className = "waiting"; w.textContent = t("waitingVideo");
    screen.appendChild(w);
    v.addEventListener("playing", () => {
      w.remove();
      if (!state.firstFrameAt) state.firstFrameAt = performance.now();
    });
  }
  $("grid").appendChild(el);
  return el;
}

// ------------------------------------------------------- session controls

const SIDE_ROOMS = ["main", "applicant-room", "respondent-room"];
function isMediator() { return !!state.me && state.me.role === "mediator"; }
function roomName(r) {
  if (!r || r === "main") return t("mainRoom");
  if (r === "applicant-room") return t("sideApplicant");
  if (r === "respondent-room") return t("sideRespondent");
  return r;
}

function button(label, action, target, onClick) {
  const b = document.createElement("button");
  b.type = "button"; b.textContent = label; b.dataset.action = action; b.dataset.target = target;
  b.addEventListener("click", onClick);
  return b;
}

// The mediator's per-tile controls: mute, remove (others only) and move (anyone, self too).
function modControls(el, pid, self) {
  if (!isMediator() || el.querySelector(".mod")) return;
  const box = document.createElement("div");
  box.className = "mod";
  if (!self) {
    box.append(
      button(t("forceMute"), "mute", pid, () => {
        const f = state.forced.get(pid) || { audio: false, video: false };
        send({ type: "mute", id: pid, audio: !f.audio, video: f.video });
      }),
      button(t("remove"), "remove", pid, () => {
        const reason = window.prompt(t("removeReason"), "");
        if (reason !== null) send({ type: "remove", id: pid, reason });
      }),
    );
    box.append(identityControls(el, pid));
  }
  const sel = document.createElement("select");
  sel.dataset.role = "move-target";
  for (const r of SIDE_ROOMS) {
    const o = document.createElement("option");
    o.value = r; o.textContent = roomName(r);
    sel.appendChild(o);
  }
  box.append(sel, button(t("move"), "move", pid, () => send({ type: "move", id: pid, to: sel.value })));
  el.appendChild(box);
}

// Identity check (the mediator's, per tile): method, result, and optionally a still of
// the participant's current video frame (canvas → JPEG, small enough for one message).
function identityControls(el, pid) {
  const wrap = document.createElement("span");
  wrap.className = "identity-controls";
  const pick = (role, options) => {
    const sel = document.createElement("select");
    sel.dataset.role = role;
    for (const [v, label] of Object.entries(options)) {
      const o = document.createElement("option");
      o.value = v; o.textContent = label;
      sel.appendChild(o);
    }
    return sel;
  };
  const method = pick("identity-method", t("idMethods"));
  const result = pick("identity-result", t("idResults"));
  const still = document.createElement("input");
  still.type = "checkbox"; still.checked = true; still.dataset.role = "identity-still";
  const stillLabel = document.createElement("label");
  stillLabel.append(still, document.createTextNode(t("idStill")));
  wrap.append(method, result, stillLabel, button(t("idCheck"), "identity-check", pid, () => {
    const msg = { type: "identity", id: pid, method: method.value, result: result.value };
    if (still.checked) {
      const frame = captureStill(el.querySelector("video"));
      if (frame) msg.still = frame;
    }
    send(msg);
  }));
  return wrap;
}

// A JPEG data URL of the video's current frame, at most 640 px wide and under 60 000
// characters (the signaling limit is 64 KiB), or null without a frame.
function captureStill(video) {
  if (!video || !video.videoWidth) return null;
  const scale = Math.min(1, 640 / video.videoWidth);
  const c = document.createElement("canvas");
  c.width = Math.round(video.videoWidth * scale); c.height = Math.round(video.videoHeight * scale);
  c.getContext("2d").drawImage(video, 0, 0, c.width, c.height);
  for (let q = 0.85; q > 0.1; q -= 0.15) {
    const url = c.toDataURL("image/jpeg", q);
    if (url.length < 60000) return url;
  }
  return null;
}

function tileBadge(pid, cls, text) {
  const el = document.querySelector(`.tile[data-tile="${CSS.escape(pid)}"] .label`);
  if (!el) return;
  let b = el.querySelector("." + cls);
  if (!b) { b = document.createElement("span"); b.className = cls; el.appendChild(b); }
  b.textContent = text;
}

// Who is shown: a party sees the people of their own room only; the mediator sees all,
// each tagged with their room.
function refreshTiles() {
  for (const el of document.querySelectorAll(".tile")) {
    const pid = el.dataset.tile;
    const self = state.me && pid === state.me.id;
    const p = self ? state.me : state.participants.get(pid);
    const r = (p && p.side_room) || null;
    if (self) el.hidden = false;
    else el.hidden = !isMediator() && r !== state.myRoom;
    const tag = el.querySelector(".room-tag");
    if (tag) tag.textContent = r ? "· " + roomName(r) : "";
    const sel = el.querySelector("select[data-role=move-target]");
    if (sel && document.activeElement !== sel) {
      const v = r || "main";
      if (![...sel.options].some((o) => o.value === v)) {
        const o = document.createElement("option"); o.value = v; o.textContent = roomName(v); sel.appendChild(o);
      }
      sel.value = v;
    }
  }
  const where = $("where");
  where.hidden = state.waiting || !state.me;
  where.textContent = t("youAreIn") + roomName(state.myRoom);
}

function renderWaiting(list) {
  state.waitingList = list;
  const ul = $("waiting-list");
  ul.innerHTML = "";
  for (const p of list) {
    const li = document.createElement("li");
    li.dataset.waiting = p.id;
    const n = document.createElement("strong"); n.textContent = p.name;
    const r = document.createElement("span"); r.className = "role"; r.textContent = (t("roles") || {})[p.role] || p.role;
    li.append(n, r,
      button(t("admit"), "admit", p.id, () => send({ type: "admit", id: p.id })),
      button(t("reject"), "reject", p.id, () => send({ type: "reject", id: p.id })));
    ul.appendChild(li);
  }
  $("waiting-empty").hidden = list.length > 0;
}

function showModeration() {
  const f = state.me && state.forced.get(state.me.id);
  const box = $("moderation-notice");
  const lines = [];
  if (f && f.audio) lines.push(t("mutedByMediator"));
  if (f && f.video) lines.push(t("videoMutedByMediator"));
  box.textContent = lines.join(" ");
  box.hidden = lines.length === 0;
}

function removeTile(pid) {
  const el = document.querySelector(`.tile[data-tile="${CSS.escape(pid)}"]`);
  if (el) el.remove();
  state.streams.delete(pid);
  state.participants.delete(pid);
}

// Shows `stream` in the participant's tile again: a <video> keeps playing the track it
// picked when its srcObject was set, so a changed stream is set anew.
function replay(pid, stream) {
  const el = document.querySelector(`.tile[data-tile="${CSS.escape(pid)}"]`);
  if (!el) return;
  const v = el.querySelector("video");
  v.srcObject = null;
  v.srcObject = stream;
  v.play().catch(() => {});
}

function onTrack(ev) {
  const pid = ev.streams[0] ? ev.streams[0].id : ev.track.id;
  // The SFU reuses a transceiver whose Consumer went (someone moved to another room)
  // for the next Consumer, so the same track object can arrive again for another
  // participant (its msid changed, RFC 8829 §5.10): it leaves whoever showed it before,
  // and it replaces the new owner's earlier track of its kind.
  for (const [other, st] of state.streams) {
    if (other !== pid && st.getTracks().includes(ev.track)) { st.removeTrack(ev.track); replay(other, st); }
  }
  let stream = state.streams.get(pid);
  if (!stream) { stream = new MediaStream(); state.streams.set(pid, stream); }
  for (const tr of stream.getTracks()) if (tr !== ev.track && tr.kind === ev.track.kind) stream.removeTrack(tr);
  if (!stream.getTracks().includes(ev.track)) stream.addTrack(ev.track);
  ev.track.addEventListener("ended", () => stream.removeTrack(ev.track));
  // The server's offer took the track from this participant (their Consumer went).
  if (ev.streams[0]) {
    ev.streams[0].addEventListener("removetrack", (e) => {
      if (e.track === ev.track && stream.getTracks().includes(e.track)) { stream.removeTrack(e.track); replay(pid, stream); }
    });
  }
  const p = state.participants.get(pid) || { name: pid, role: "" };
  tile(pid, p.name, p.role, false);
  refreshTiles();
  replay(pid, stream);
}

async function handle(msg) {
  switch (msg.type) {
    case "joined": {
      if (msg.resume_token) state.resumeToken = msg.resume_token;
      const renew = !msg.resumed || state.resumeRestart;
      if (msg.resumed) {
        // Back after a dropped connection: same id, room and media on the server.
        state.resuming = false;
        $("room-error").hidden = true;
        for (const pid of [...state.participants.keys()]) {
          if (!msg.participants.some((p) => p.id === pid)) removeTile(pid);
        }
        if (renew) {
          // A new peer connection replaces the old one (network changed).
          if (state.pc) { state.pc.close(); state.pc = null; }
          for (const st of state.streams.values()) for (const tr of st.getTracks()) st.removeTrack(tr);
          setStatus("connecting");
        } else {
          setStatus("connected", "connected");
        }
      }
      state.me = msg.me;
      state.myRoom = msg.me.side_room || null;
      state.waiting = !!msg.waiting;
      state.joinedAt = performance.now();
      $("waiting-notice").hidden = !state.waiting;
      $("waiting-panel").hidden = !isMediator();
      $("end-session").hidden = !isMediator();
      $("warn-sham").hidden = !isMediator();
      $("record-panel").hidden = !isMediator();
      for (const p of msg.participants) { state.participants.set(p.id, p); tile(p.id, p.name, p.role, false); }
      const self = tile(msg.me.id, msg.me.name, msg.me.role, true);
      self.querySelector("video").srcObject = state.local;
      refreshTiles();
      if (renew) await startPeer();
      break;
    }
    case "identity_checked": {
      tileBadge(msg.id, "identity-tag", msg.result === "verified" ? t("idVerified") : t("idFailed"));
      const tag = document.querySelector(`.tile[data-tile="${CSS.escape(msg.id)}"] .identity-tag`);
      if (tag) { tag.dataset.identity = msg.result; tag.title = `${t("idMethods")[msg.method] || msg.method}${msg.still_sha256 ? " · SHA-256 " + msg.still_sha256 : ""}`; }
      break;
    }
    case "sham_warning":
      $("sham-warning").hidden = false;
      break;
    case "warning_acknowledged":
      tileBadge(msg.id, "ack-tag", t("shamAcked"));
      break;
    case "participant_reconnecting":
    case "participant_resumed": {
      const el = document.querySelector(`.tile[data-tile="${CSS.escape(msg.id)}"]`);
      if (el) {
        const on = msg.type === "participant_reconnecting";
        el.classList.toggle("reconnecting", on);
        el.title = on ? t("participantReconnecting") : "";
      }
      break;
    }
    case "waiting":
      renderWaiting(msg.participants);
      break;
    case "participant_waiting":
      if (!state.waitingList.some((p) => p.id === msg.participant.id)) renderWaiting([...state.waitingList, msg.participant]);
      break;
    case "admitted":
      state.waiting = false;
      $("waiting-notice").hidden = true;
      for (const p of msg.participants) { state.participants.set(p.id, p); tile(p.id, p.name, p.role, false); }
      refreshTiles();
      break;
    case "moved": {
      const to = msg.to === "main" ? null : msg.to;
      if (state.me && msg.id === state.me.id) { state.myRoom = to; state.me.side_room = to; }
      const p = state.participants.get(msg.id);
      if (p) p.side_room = to;
      refreshTiles();
      break;
    }
    case "muted_by_mediator": {
      state.forced.set(msg.id, { audio: msg.audio, video: msg.video });
      const el = document.querySelector(`.tile[data-tile="${CSS.escape(msg.id)}"]`);
      if (el) {
        const b = el.querySelector("button[data-action=mute]");
        if (b) b.textContent = msg.audio ? t("forceUnmute") : t("forceMute");
        const icon = el.querySelector(".mic-off");
        if (icon && msg.audio) icon.hidden = false;
      }
      showModeration();
      break;
    }
    case "answer":
      await state.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
      break;
    case "offer":
      // Polite peer: an incoming offer rolls back any offer of ours (glare).
      await state.pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
      await state.pc.setLocalDescription(await state.pc.createAnswer());
      send({ type: "answer", sdp: state.pc.localDescription.sdp });
      break;
    case "participant_joined":
      state.participants.set(msg.participant.id, msg.participant);
      tile(msg.participant.id, msg.participant.name, msg.participant.role, false);
      refreshTiles();
      break;
    case "participant_left":
      removeTile(msg.id);
      break;
    case "mute": {
      const el = document.querySelector(`.tile[data-tile="${CSS.escape(msg.id)}"] .mic-off`);
      if (el) el.hidden = !msg.audio;
      break;
    }
    case "active_speaker":
      for (const el of document.querySelectorAll(".tile")) el.classList.toggle("speaking", el.dataset.tile === msg.id);
      break;
    case "error":
      if (msg.re === "resume") {
        // Too late, or the mediator removed them meanwhile: this participant has left.
        state.resuming = false;
        if (msg.code === "session_ended") end(t("endedTitle"), t("err.ended"));
        else end(t("leftTitle"), t(msg.code === "removed" ? "err.removed" : "err.resume_expired"));
        if (state.ws) state.ws.close();
      } else if (msg.re === "join") {
        $("room").hidden = true; $("lobby").hidden = false;
        showError("lobby-error", ["room_full", "bad_token", "token_expired", "removed"].includes(msg.code) ? msg.code : "generic", msg.message);
        $("join").disabled = false;
        setStatus("notJoined", "error");
        state.left = true; // the socket closing now is expected, not a network error
        if (state.ws) state.ws.close();
      } else {
        console.warn("signaling error", msg);
      }
      break;
    case "recording":
      renderRecording(msg);
      break;
    case "closed":
      end(t("endedTitle"), t("err." + msg.reason) || msg.reason);
      break;
    default:
      break;
  }
}

// ------------------------------------------------------------- recording

function nameOf(pid) {
  if (state.me && pid === state.me.id) return state.me.name;
  const p = state.participants.get(pid);
  return p ? p.name : pid;
}

function reasonText(r) {
  if (!r) return "";
  let m = /^consent refused by (.+)$/.exec(r);
  if (m) return t("reasonRefused") + nameOf(m[1]);
  m = /^awaiting consent of (.+)$/.exec(r);
  if (m) return t("reasonAwaiting") + nameOf(m[1]);
  return r;
}

function renderRecording(msg) {
  state.recording = msg;
  const ind = $("recording-indicator");
  ind.hidden = false;
  ind.dataset.state = msg.state;
  const label = { recording: t("recRecording"), paused: t("recPaused"), stopped: t("recStopped") }[msg.state] || msg.state;
  $("recording-text").textContent = msg.state === "paused" && msg.reason ? `${label}（${reasonText(msg.reason)}）` : label;
  const mine = state.me ? msg.consent[state.me.id] : undefined;
  const ask = msg.state !== "stopped" && !isMediator() && state.me && state.me.id in msg.consent && mine !== "accept";
  $("consent-box").hidden = !ask;
  $("consent-mine").textContent = mine === "refuse" ? t("consentMineRefuse") : "";
  $("integrity").hidden = msg.state !== "stopped";
  $("integrity-value").textContent = msg.integrity || t("integrityPending");
  if (isMediator()) {
    const ul = $("consent-status");
    ul.textContent = "";
    for (const [pid, a] of Object.entries(msg.consent)) {
      const li = document.createElement("li");
      li.dataset.consentOf = pid;
      li.dataset.answer = a || "pending";
      li.textContent = `${nameOf(pid)}：${t("consentAnswers")[a || "pending"]}`;
      ul.appendChild(li);
    }
    const on = msg.state !== "stopped";
    document.querySelector("[data-action=record-start]").hidden = true;
    document.querySelector("[data-action=record-pause]").hidden = !(on && msg.state === "recording");
    $("pause-reason").hidden = !(on && msg.state === "recording");
    document.querySelector("[data-action=record-resume]").hidden = !(on && msg.state === "paused");
    document.querySelector("[data-action=record-stop]").hidden = !on;
  }
}

function setupRecordControls() {
  $("pause-reason").placeholder = t("pauseReason");
  for (const a of ["record-pause", "record-resume", "record-stop"]) document.querySelector(`[data-action=${a}]`).hidden = true;
  $("pause-reason").hidden = true;
  document.querySelector("[data-action=record-start]").addEventListener("click", () => send({ type: "record", action: "start" }));
  document.querySelector("[data-action=record-pause]").addEventListener("click", () => {
    const reason = $("pause-reason").value.trim();
    if (!reason) { $("record-error").textContent = t("pauseReasonNeeded"); $("pause-reason").focus(); return; }
    $("record-error").textContent = "";
    send({ type: "record", action: "pause", reason });
    $("pause-reason").value = "";
  });
  document.querySelector("[data-action=record-resume]").addEventListener("click", () => send({ type: "record", action: "resume" }));
  document.querySelector("[data-action=record-stop]").addEventListener("click", () => send({ type: "record", action: "stop" }));
  document.querySelector("[data-action=consent-accept]").addEventListener("click", () => send({ type: "consent", answer: "accept" }));
  document.querySelector("[data-action=consent-refuse]").addEventListener("click", () => send({ type: "consent", answer: "refuse" }));
}

async function startPeer() {
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" });
  state.pc = pc;
  for (const tr of state.local.getTracks()) pc.addTrack(tr, state.local);
  pc.ontrack = onTrack;
  pc.onicecandidate = (e) => {
    if (e.candidate) send({ type: "candidate", candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex });
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "connected") setStatus("connected", "connected");
    if (pc.connectionState === "failed" || pc.connectionState === "disconnected") setStatus("reconnecting", "error");
  };
  await pc.setLocalDescription(await pc.createOffer());
  send({ type: "offer", sdp: pc.localDescription.sdp });
}

function join() {
  state.left = false;
  $("join").disabled = true;
  $("lobby-error").hidden = true;
  setStatus("connecting");
  connect(() => ({ type: "join", v: 1, token }));
}

// After the WebSocket dropped: resume with the resume token, with a new peer connection
// unless the current one is still connected.
function resume() {
  if (state.left) return;
  state.resumeRestart = !(state.pc && state.pc.connectionState === "connected");
  connect(() => ({ type: "resume", v: 1, token, resume_token: state.resumeToken, restart: state.resumeRestart }));
}

function connect(first) {
  const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws");
  state.ws = ws;
  ws.onopen = () => send(first());
  ws.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch (_) { return; }
    if (msg.type === "joined") { $("lobby").hidden = true; $("room").hidden = false; }
    // Messages are handled strictly in order.
    state.queue = state.queue.then(() => handle(msg)).catch((e) => console.error("handling", msg.type, e));
  };
  ws.onclose = () => {
    if (state.ws !== ws || state.left || !state.me) return;
    setStatus("reconnecting", "error");
    if (state.resumeToken) {
      if (!state.resuming) { state.resuming = true; state.resumeUntil = Date.now() + RESUME_TRY_MS; }
      if (Date.now() < state.resumeUntil) { setTimeout(resume, 1000); return; }
    }
    state.resuming = false;
    showError("room-error", "network");
  };
}

// Closing or reloading the page is a leave, not a dropped connection.
window.addEventListener("pagehide", () => { if (state.me && !state.left) send({ type: "leave" }); });

function end(title, detail) {
  state.left = true;
  if (state.pc) state.pc.close();
  if (state.local) state.local.getTracks().forEach((tr) => tr.stop());
  $("room").hidden = true; $("lobby").hidden = true; $("ended").hidden = false;
  $("ended-title").textContent = title;
  $("ended-detail").textContent = detail || "";
}

$("toggle-mic").addEventListener("click", () => {
  state.audioMuted = !state.audioMuted;
  state.local.getAudioTracks().forEach((tr) => (tr.enabled = !state.audioMuted));
  $("toggle-mic").setAttribute("aria-pressed", String(state.audioMuted));
  $("toggle-mic").textContent = state.audioMuted ? t("unmute") : t("mute");
  send({ type: "mute", audio: state.audioMuted, video: state.videoMuted });
});
$("toggle-camera").addEventListener("click", () => {
  state.videoMuted = !state.videoMuted;
  state.local.getVideoTracks().forEach((tr) => (tr.enabled = !state.videoMuted));
  $("toggle-camera").setAttribute("aria-pressed", String(state.videoMuted));
  $("toggle-camera").textContent = state.videoMuted ? t("cameraOnBtn") : t("cameraOffBtn");
  send({ type: "mute", audio: state.audioMuted, video: state.videoMuted });
});
$("warn-sham").addEventListener("click", () => send({ type: "warn_sham" }));
document.querySelector("[data-action=ack-warning]").addEventListener("click", () => {
  send({ type: "ack_warning" });
  $("sham-warning").hidden = true;
});
$("end-session").addEventListener("click", () => {
  if (window.confirm(t("confirmEnd"))) send({ type: "end_session" });
});
$("leave").addEventListener("click", () => {
  send({ type: "leave" });
  end(t("leftTitle"), "");
});

setupRecordControls();
lobby();
