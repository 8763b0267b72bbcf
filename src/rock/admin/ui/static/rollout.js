// A rollout's page: its model calls and its token sequences' heads come once as JSON (data.json), the token ids
// in parts as they come into view; both are drawn as virtual lists: only the rows in view are in the document,
// so a trajectory of thousands of calls or millions of tokens scrolls as fast as a short one.
(function () {
  "use strict";
  const ROW = 30, TOKENS_PER_ROW = 24, SLACK = 8;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  // A list of `count` rows of height ROW in `box`; draw(i) makes row i's element.
  function virtualList(box, count, draw) {
    const spacer = el("div", "vspacer");
    spacer.style.height = count * ROW + "px";
    box.style.height = Math.min(count * ROW + 2, 448) + "px";  // a short list takes only its rows
    box.replaceChildren(spacer);
    let shown = "";
    function paint(force) {
      const first = Math.max(0, Math.floor(box.scrollTop / ROW) - SLACK);
      const last = Math.min(count, Math.ceil((box.scrollTop + box.clientHeight) / ROW) + SLACK);
      const key = first + ":" + last;
      if (key === shown && force !== true) return;
      shown = key;
      const rows = [];
      for (let i = first; i < last; i++) {
        const row = draw(i);
        row.style.top = i * ROW + "px";
        row.classList.add("vrow");
        rows.push(row);
      }
      spacer.replaceChildren(...rows);
    }
    box.addEventListener("scroll", () => requestAnimationFrame(() => paint()));
    paint();
    return paint;
  }

  function preview(call) {
    const a = call.answer || {};
    if (a.tool_calls && a.tool_calls.length) return a.tool_calls.map((t) => t.name + "(" + (t.arguments || "").slice(0, 80) + ")").join(" ");
    return (a.content || call.error || "").slice(0, 160);
  }

  function message(m) {
    const box = el("div", "msg role-" + m.role);
    box.append(el("strong", null, m.role + (m.tool_call_id ? " · " + m.tool_call_id : "")));
    if (m.content) box.append(el("pre", "wrap", m.content));
    (m.tool_calls || []).forEach((t) => box.append(el("pre", "wrap tool-call", "→ " + t.name + " " + (t.arguments || ""))));
    return box;
  }

  function showCall(call) {
    const pane = document.getElementById("call-detail");
    const head = el("p");
    head.append(el("strong", null, "call " + call.index), " · " + call.api + " · " + call.mode + " · " + call.status +
      (call.http_status ? " (HTTP " + call.http_status + ")" : "") + " · " +
      (call.latency_ms == null ? "-" : call.latency_ms.toFixed(0) + " ms") + (call.model ? " · " + call.model : ""));
    const parts = [head];
    if (call.error) parts.push(el("p", "bad", call.error));
    if (call.tools && call.tools.length) parts.push(el("p", null, "tools: " + call.tools.join(", ")));
    parts.push(el("h5", null, call.restarted ? "prompt (a new conversation)" : "new messages"));
    call.new_messages.forEach((m) => parts.push(message(m)));
    parts.push(el("h5", null, "answer"));
    parts.push(message(call.answer));
    if (call.usage) parts.push(el("small", null, "usage: " + JSON.stringify(call.usage)));
    pane.replaceChildren(...parts);
    pane.dataset.call = call.index;
  }

  function drawCalls(calls) {
    const box = document.getElementById("calls");
    if (!calls.length) { box.replaceChildren(el("small", null, "No model call.")); box.classList.add("empty"); return; }
    virtualList(box, calls.length, (i) => {
      const c = calls[i];
      const row = el("div", "call-row " + (c.status === "success" ? "" : "bad"));
      row.dataset.index = c.index;
      row.append(el("span", "c-index", "#" + c.index), el("span", "c-api", c.api),
        el("span", "c-lat", c.latency_ms == null ? "-" : c.latency_ms.toFixed(0) + " ms"), el("span", "c-prev", preview(c)));
      row.addEventListener("click", () => showCall(c));
      return row;
    });
    showCall(calls[0]);
  }

  // The token sequences: their heads come with the calls, their ids in parts of PART tokens from the tokens route,
  // fetched when their rows come into view (the list starts when the section itself scrolls into view), so a
  // rollout of millions of token ids opens as fast as a short one.
  const PART = 2400;

  function drawTokens(tokens, src) {
    const reasons = document.getElementById("token-reasons");
    reasons.replaceChildren(...tokens.reasons.map((r) => el("p", "reason", "call " + r.index + ": " + r.reason)));
    const seqs = tokens.sequences;
    const firstRow = [];  // the row of each sequence's head; its tokens' rows follow it
    let count = 0;
    seqs.forEach((s) => { firstRow.push(count); count += 1 + Math.ceil(s.length / TOKENS_PER_ROW); });
    const box = document.getElementById("tokens");
    if (!count) { box.replaceChildren(el("small", null, "No token ids in this rollout.")); box.classList.add("empty"); return; }
    box.style.height = Math.min(count * ROW + 2, 448) + "px";
    const parts = new Map();  // "seq:part" -> the part's data, or null while it is fetched
    let repaint = null;

    function part(n, p) {
      const key = n + ":" + p;
      if (parts.has(key)) return parts.get(key);
      parts.set(key, null);
      fetch(src + "/" + n + "?offset=" + p * PART + "&limit=" + PART, {credentials: "same-origin"})
        .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
        .then((data) => { parts.set(key, data); if (repaint) repaint(true); })
        .catch(() => parts.delete(key));
      return null;
    }

    function seqOf(i) {  // the sequence whose rows hold row i (binary search over firstRow)
      let lo = 0, hi = seqs.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (firstRow[mid] <= i) lo = mid; else hi = mid - 1;
      }
      return lo;
    }

    function draw(i) {
      const n = seqOf(i);
      const s = seqs[n];
      if (i === firstRow[n]) {
        return el("div", "seq-head", "sequence " + n + " · calls " + s.calls.join(", ") + " · " + s.length +
          " tokens · starts: " + s.start.reason + (s.start.detail ? " (" + s.start.detail + ")" : ""));
      }
      const at = (i - firstRow[n] - 1) * TOKENS_PER_ROW;
      const p = Math.floor(at / PART);
      const data = part(n, p);
      if (!data) return el("div", "tok-row loading", "…");
      const row = el("div", "tok-row");
      for (let k = at; k < Math.min(at + TOKENS_PER_ROW, s.length); k++) {
        const j = k - data.offset, id = data.token_ids[j], mask = data.loss_mask[j], lp = data.logprobs[j];
        const t = el("span", "tok m" + mask, String(id));
        t.dataset.mask = mask;
        t.dataset.pos = k;
        t.title = "token " + k + " · id " + id + " · mask " + mask + (lp == null ? "" : " · logprob " + lp.toFixed(4));
        if (lp != null) t.dataset.logprob = lp;
        row.append(t);
      }
      return row;
    }

    const seen = new IntersectionObserver((entries) => {
      if (!entries.some((e) => e.isIntersecting)) return;
      seen.disconnect();
      repaint = virtualList(box, count, draw);
    });
    seen.observe(box);
  }

  const calls = document.getElementById("calls");
  fetch(calls.dataset.src, {credentials: "same-origin"}).then((r) => r.json()).then((data) => {
    drawCalls(data.calls);
    drawTokens(data.tokens, calls.dataset.tokens);
    document.body.dataset.ready = "1";
  });
})();
