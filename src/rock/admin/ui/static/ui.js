// Live pages: regions marked data-live="<fragment url>" are fetched again whenever the server's
// event stream (body[data-events]) says "change"; data-src regions load once after the page;
// the sandbox page's stat cards follow "stats" events. No framework: the pages are server-rendered.
(function () {
  "use strict";
  const liveState = document.getElementById("live-state");

  async function load(el, url) {
    const r = await fetch(url, {credentials: "same-origin"});
    if (r.status === 401) { location.href = "/ui/login?next=" + encodeURIComponent(location.pathname + location.search); return; }
    el.innerHTML = await r.text();
    el.dispatchEvent(new CustomEvent("ui:loaded", {bubbles: true}));
  }

  function refresh() {
    document.querySelectorAll("[data-live]").forEach((el) => load(el, el.dataset.live).catch(() => {}));
  }

  function showStats(stats) {
    const text = {
      cpu_percent: stats.cpu_percent == null ? "…" : stats.cpu_percent.toFixed(1) + " %",
      cpu_seconds: stats.cpu_seconds == null ? "" : stats.cpu_seconds.toFixed(2) + " cpu-seconds",
      memory: stats.memory, memory_limit: "limit " + stats.memory_limit,
      pids: stats.pids == null ? "-" : String(stats.pids), pids_limit: stats.pids_limit ? "limit " + stats.pids_limit : "",
    };
    document.querySelectorAll("[data-stat]").forEach((el) => { el.textContent = text[el.dataset.stat] ?? ""; });
  }

  function connect() {
    const url = document.body.dataset.events;
    if (!url) return;
    const source = new EventSource(url);
    source.onopen = () => { if (liveState) { liveState.className = "on"; liveState.title = "live"; } };
    source.onerror = () => { if (liveState) { liveState.className = "off"; liveState.title = "reconnecting"; } };
    source.addEventListener("change", refresh);
    source.addEventListener("stats", (e) => showStats(JSON.parse(e.data)));
  }

  // The file browser: folder links load the folder into the same region.
  document.addEventListener("click", (e) => {
    const link = e.target.closest("a[data-files]");
    if (!link) return;
    e.preventDefault();
    const region = document.getElementById("files");
    const url = new URL(region.dataset.src, location.href);
    url.searchParams.set("path", link.dataset.files);
    region.dataset.src = url.pathname + url.search;
    load(region, region.dataset.src);
  });

  document.querySelectorAll("[data-src]").forEach((el) => load(el, el.dataset.src).catch(() => {}));
  connect();
})();
