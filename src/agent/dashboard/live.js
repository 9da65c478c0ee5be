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
    // Keep an open <details> open across the update, and what is being
    // typed into a form (where, and what is selected in it) too.
    var open = Array.prototype.map.call(
      main.querySelectorAll("details[open] summary"), function (s) { return s.textContent; });
    var typed = {};
    Array.prototype.forEach.call(main.querySelectorAll("input[id]"), function (i) {
      if (i.value !== i.defaultValue) typed[i.id] = i.value;
    });
    var active = document.activeElement;
    var focused = active && main.contains(active) ? active.id : null;
    // An input's selection (or caret) goes with its focus: a user who
    // selected the suggested value to replace it still replaces it.
    var selection = focused && typeof active.selectionStart === "number"
      ? [active.selectionStart, active.selectionEnd, active.selectionDirection] : null;
    main.innerHTML = e.data;
    Array.prototype.forEach.call(main.querySelectorAll("details summary"), function (s) {
      if (open.indexOf(s.textContent) >= 0) s.parentNode.open = true;
    });
    Object.keys(typed).forEach(function (id) {
      var i = document.getElementById(id);
      if (i && main.contains(i)) i.value = typed[id];
    });
    if (focused) {
      var f = document.getElementById(focused);
      if (f && main.contains(f)) {
        f.focus();
        if (selection && typeof f.setSelectionRange === "function") {
          f.setSelectionRange(selection[0], selection[1], selection[2]);
        }
      }
    }
    live.textContent = "Live · updated " + new Date().toLocaleTimeString();
  });
  source.addEventListener("open", function () { live.textContent = "Live"; });
  source.addEventListener("error", function () {
    live.textContent = "Live updates interrupted; reconnecting…";
  });
})();
