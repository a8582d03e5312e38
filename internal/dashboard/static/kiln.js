// kiln dashboard: live updates. Pages work without this script; with it, an event
// about what the page shows (or, on some pages, every 10 s) fetches the page's main
// content again and swaps it in.
(function () {
  "use strict";
  var body = document.body, main = document.getElementById("main"), badge = document.getElementById("live");
  var scope = body.getAttribute("data-live");
  if (!main || !badge || !scope || !window.EventSource || !window.fetch) return;
  var busy = false, again = false, last = 0;

  function typing() {
    var a = document.activeElement;
    return a && main.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName);
  }
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var wait = Math.max(0, 300 - (Date.now() - last));
    setTimeout(function () {
      fetch(location.href, { headers: { "X-Kiln-Partial": "1" }, credentials: "same-origin", cache: "no-store" })
        .then(function (r) {
          if (r.status === 401) { location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html !== null && html !== undefined && !typing()) {
            main.innerHTML = html;
            body.setAttribute("data-refreshed", String(Date.now()));
          }
        })
        .catch(function () {})
        .then(function () {
          busy = false; last = Date.now();
          if (again) { again = false; refresh(); }
        });
    }, wait);
  }
  function connect() {
    var es = new EventSource("/ui/stream?since=-1");
    es.onopen = function () { badge.textContent = "Live"; badge.className = "live on"; };
    es.onerror = function () { badge.textContent = "Reconnecting…"; badge.className = "live off"; };
    es.onmessage = function (m) {
      var ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      if (scope === "*" || ev.service === scope || ev.service === scope + "-candidate") refresh();
    };
  }
  connect();
  var poll = parseInt(body.getAttribute("data-poll") || "0", 10);
  if (poll > 0) setInterval(refresh, poll);
})();
