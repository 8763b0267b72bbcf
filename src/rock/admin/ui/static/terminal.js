// A terminal on the sandbox's "ui" bash session over the admin's command stream
// (WebSocket <api>/stream): the line typed here is sent as one command when Enter is pressed;
// while it runs, keys go to it as input and Ctrl-C interrupts it.
(function () {
  "use strict";
  const el = document.getElementById("terminal");
  if (!el || !window.Terminal) return;
  const term = new window.Terminal({convertEol: true, cursorBlink: true, fontSize: 13, rows: 16,
                                    fontFamily: "ui-monospace, monospace"});
  const fit = new window.FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  window.addEventListener("resize", () => fit.fit());
  window.rockTerminal = term;  // for tests and the curious

  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const qs = new URLSearchParams({sandbox_id: el.dataset.sandbox, session: "ui", create: "true"});
  let ws, line = "", running = false;
  const prompt = () => term.write("\x1b[1;32m$\x1b[0m ");

  function open() {
    ws = new WebSocket(`${proto}//${location.host}${el.dataset.api}/stream?${qs}`);
    ws.onopen = () => { el.dataset.ready = "1"; term.writeln("\x1b[2mconnected to " + el.dataset.sandbox + "\x1b[0m"); prompt(); };
    ws.onclose = () => { el.dataset.ready = ""; running = false; term.writeln("\r\n\x1b[2mdisconnected\x1b[0m"); };
    ws.onmessage = (e) => {
      const msg = JSON.parse(e.data);
      if (msg.type === "output") term.write(msg.data);
      else if (msg.type === "result") {
        running = false;
        if (msg.output && !msg.output.endsWith("\n")) term.write("\r\n");
        if (msg.exit_code) term.writeln(`\x1b[31m[exit ${msg.exit_code}]\x1b[0m`);
        if (msg.failure_reason && msg.status !== "completed") term.writeln(`\x1b[33m${msg.failure_reason}\x1b[0m`);
        prompt();
      } else if (msg.type === "error") {
        running = false;
        term.writeln(`\x1b[31m${msg.error_type}: ${msg.message}\x1b[0m`);
        prompt();
      }
    };
  }

  term.onData((data) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (running) {
      if (data === "\x03") ws.send(JSON.stringify({type: "interrupt"}));
      else ws.send(JSON.stringify({type: "input", data: data.replace(/\r/g, "\n")}));
      return;
    }
    for (const ch of data) {
      if (ch === "\r") {
        term.write("\r\n");
        if (line.trim()) { running = true; ws.send(JSON.stringify({type: "run", command: line})); }
        else prompt();
        line = "";
      } else if (ch === "\x7f") {
        if (line) { line = line.slice(0, -1); term.write("\b \b"); }
      } else if (ch === "\x03") {
        line = ""; term.write("^C\r\n"); prompt();
      } else if (ch >= " ") {
        line += ch; term.write(ch);
      }
    }
  });
  open();
})();
