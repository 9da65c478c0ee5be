// Live updates: the server pushes the new <main> of this page over
// Server-Sent Events whenever the agent's status changes. Without
// JavaScript the page is the same, only not updated until reloaded.
(function () {
  "use strict";
  if (!window.EventSource) return;
  var main = document.getElementById("main");
  var live = document.getElementById("live");
  var page = document.body.getAttribute("data-page");
  var source = new EventSource("/ui/events?page=" + encodeURIComponent(page));
  source.addEventListener("page", function (e) {
    // Keep an open <details> open across the update.
    var open = Array.prototype.map.call(
      main.querySelectorAll("details[open] summary"), function (s) { return s.textContent; });
    main.innerHTML = e.data;
    Array.prototype.forEach.call(main.querySelectorAll("details summary"), function (s) {
      if (open.indexOf(s.textContent) >= 0) s.parentNode.open = true;
    });
    live.textContent = "Live · updated " + new Date().toLocaleTimeString();
  });
  source.addEventListener("open", function () { live.textContent = "Live"; });
  source.addEventListener("error", function () {
    live.textContent = "Live updates interrupted; reconnecting…";
  });
})();
