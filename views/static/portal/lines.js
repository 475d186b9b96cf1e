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
    grid.addEventListener("input", function () { totals(grid); });
    grid.addEventListener("change", function () { totals(grid); });
    totals(grid);
  }

  function setupAll() { document.querySelectorAll("div.portal-lines").forEach(setup); }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setupAll);
  } else {
    setupAll();
  }
})();
