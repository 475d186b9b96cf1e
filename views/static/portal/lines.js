// Inline lines (app/generate/lines.py): add and remove rows of a parent form's grid and keep its totals row up to
// date. New rows are copies of the grid's <template> row with "__n__" in their input names replaced by a fresh
// number; link pickers in them are set up by lookups.js. Values are read as text, never inserted as HTML.
(function () {
  "use strict";

  function number(text) {
    var value = parseFloat(String(text || "").replace(/[,\s]/g, ""));
    return isNaN(value) ? null : value;
  }

  function totals(grid) {
    grid.querySelectorAll("td.portal-lines-total").forEach(function (cell) {
      var column = cell.getAttribute("data-column");
      var scale = parseInt(cell.getAttribute("data-scale"), 10) || 0;
      var sum = 0, seen = false;
      grid.querySelectorAll("tbody tr.portal-line").forEach(function (row) {
        var input = row.querySelector("input[data-column='" + column + "']");
        var shown = row.querySelector(".portal-line-value[data-column='" + column + "']");
        var value = number(input ? input.value : (shown ? shown.textContent : ""));
        if (value !== null) { sum += value; seen = true; }
      });
      cell.textContent = seen ? sum.toFixed(scale) : "";
    });
  }

  function addRow(grid) {
    var template = grid.querySelector("template.portal-line-template");
    if (!template) { return; }
    var n = parseInt(grid.getAttribute("data-next"), 10) || 0;
    grid.setAttribute("data-next", String(n + 1));
    var row = template.content.querySelector("tr").cloneNode(true);
    row.querySelectorAll("[name]").forEach(function (input) {
      input.setAttribute("name", input.getAttribute("name").replace("__n__", String(n)));
    });
    grid.querySelector("tbody").appendChild(row);
    if (window.portalLookups) { window.portalLookups.initAll(); }
    var first = row.querySelector("input:not([type=hidden]), select");
    if (first) { first.focus(); }
    totals(grid);
  }

  // A row's formula cells (e.g. amount = qty * unit_price) follow what is typed: the row's values go to the line
  // entity's own live-form preview (app/generate/liveform.py), the same server code as a save, debounced per row.
  function previewRow(grid, row, changed) {
    var url = grid.getAttribute("data-preview-url");
    if (!url || !row) { return; }
    var prefix = grid.getAttribute("data-key") + "-";
    var data = new URLSearchParams();
    row.querySelectorAll("[name]").forEach(function (input) {
      var name = input.getAttribute("name");
      if (name.indexOf(prefix) !== 0 || (input.type === "checkbox" && !input.checked)) { return; }
      var field = name.slice(prefix.length).replace(/^[0-9]+-/, "");
      if (field === "id") { data.append("_id", input.value); } else { data.append(field, input.value); }
    });
    var form = grid.closest("form");
    var token = form ? form.querySelector("input[name='csrf_token']") : null;
    if (token) { data.append("csrf_token", token.value); }
    data.append("_changed", changed || "");
    var seq = (row.portalPreviewSeq || 0) + 1;
    row.portalPreviewSeq = seq;
    fetch(url, {method: "POST", body: data, credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (answer) {
        if (!answer || row.portalPreviewSeq !== seq) { return; }
        Object.keys(answer.values || {}).forEach(function (name) {
          var cell = row.querySelector(".portal-line-value[data-column='" + name.replace(/[^a-z0-9_]/g, "") + "']");
          var value = answer.values[name];
          if (cell) { cell.textContent = value === null || value === undefined ? "" : String(value); }
        });
        totals(grid);
      })
      .catch(function () { /* the saved values are computed on the server anyway */ });
  }

  function schedulePreview(grid, event) {
    var row = event.target.closest ? event.target.closest("tr.portal-line") : null;
    if (!row || !grid.getAttribute("data-preview-url")) { return; }
    clearTimeout(row.portalPreviewTimer);
    var name = event.target.getAttribute("data-column") || "";
    row.portalPreviewTimer = setTimeout(function () { previewRow(grid, row, name); }, 250);
  }

  function setup(grid) {
    if (grid.getAttribute("data-ready")) { return; }
    grid.setAttribute("data-ready", "1");
    grid.addEventListener("click", function (event) {
      if (event.target.closest(".portal-line-add")) {
        addRow(grid);
      } else if (event.target.closest(".portal-line-remove")) {
        event.target.closest("tr.portal-line").remove();  // an existing line left out of the post is deleted
        totals(grid);
      }
    });
    grid.addEventListener("input", function (event) { totals(grid); schedulePreview(grid, event); });
    grid.addEventListener("change", function (event) { totals(grid); schedulePreview(grid, event); });
    totals(grid);
  }

  function setupAll() { document.querySelectorAll("div.portal-lines").forEach(setup); }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setupAll);
  } else {
    setupAll();
  }
})();
