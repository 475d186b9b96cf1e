// The navbar bell: its unread count is fetched after the page loads, so pages run no query of their own for it.
(function () {
  "use strict";
  function refresh() {
    var badge = document.getElementById("portal-bell-count");
    if (!badge) { return; }
    fetch(badge.getAttribute("data-url"), {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (!body) { return; }
        badge.textContent = String(body.unread);
        badge.style.display = body.unread ? "" : "none";
        badge.setAttribute("data-loaded", "1");
      });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", refresh);
  } else {
    refresh();
  }
})();
