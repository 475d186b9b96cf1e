// The report page remembers the user's last date range per report in localStorage: it is a preference of this
// browser (no table, no write per page view), and a page opened without a range (menu, dashboard) gets it back.
(function () {
  var form = document.getElementById("report-form");
  var from = document.getElementById("report-from"), to = document.getElementById("report-to");
  if (!form || !from || !to || !window.localStorage) { return; }
  var key = "portal.report.range." + form.getAttribute("data-report");
  var params = new URLSearchParams(window.location.search);
  function remember(start, end) {
    try {
      if (start || end) { localStorage.setItem(key, JSON.stringify({from: start, to: end})); }
      else { localStorage.removeItem(key); }
    } catch (e) { /* storage full or refused: the page still works */ }
  }
  if (params.has("from") || params.has("to")) {
    remember(params.get("from") || "", params.get("to") || "");
  } else if (!params.has("reset")) {
    var saved = null;
    try { saved = JSON.parse(localStorage.getItem(key) || "null"); } catch (e) { saved = null; }
    var iso = /^\d{4}-\d{2}-\d{2}$/;
    if (saved && (iso.test(saved.from || "") || iso.test(saved.to || ""))) {
      params.set("from", iso.test(saved.from || "") ? saved.from : "");
      params.set("to", iso.test(saved.to || "") ? saved.to : "");
      window.location.replace(window.location.pathname + "?" + params.toString());
      return;
    }
  }
  form.addEventListener("submit", function () { remember(from.value, to.value); });
  var reset = document.getElementById("report-reset");
  if (reset) {
    reset.addEventListener("click", function () { remember("", ""); });
  }
})();
