// tango-resend console: refresh the parts marked data-poll by fetching their fragment.
// Without this script the pages still work; live parts fall back to a <noscript> refresh.
(function () {
  "use strict";

  function follow(element) {
    var url = element.getAttribute("data-poll");
    var every = parseInt(element.getAttribute("data-every"), 10) || 2000;
    window.setTimeout(function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (response.status === 401) { window.location.reload(); return null; }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html === null) { window.setTimeout(tick, every); return; }
          var holder = document.createElement("template");
          holder.innerHTML = html.trim();
          var fresh = holder.content.firstElementChild;
          if (!fresh) { window.setTimeout(tick, every); return; }
          // Never pull the focus from under a keyboard user, nor redraw what did not change.
          var focused = element.contains(document.activeElement);
          if (focused || fresh.outerHTML === element.outerHTML) {
            if (!focused && !fresh.hasAttribute("data-poll")) { return; }
            window.setTimeout(tick, every);
            return;
          }
          element.replaceWith(fresh);
          element = fresh;
          if (fresh.hasAttribute("data-poll")) { window.setTimeout(tick, every); }
        })
        .catch(function () { window.setTimeout(tick, every); });
    }, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(follow);
    var invalid = document.querySelector("[aria-invalid=true]");
    if (invalid) { invalid.focus(); }
  });
})();
