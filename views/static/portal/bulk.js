// Bulk actions on a list page (views/templates/portal/list.html): row checkboxes, the page's header checkbox,
// "select all N matching the filter" when the page is full, and a confirmation before a delete.
(function () {
  "use strict";
  var form = document.getElementById("bulk-form");
  if (!form) { return; }
  var all = document.getElementById("bulk-check-all");
  var scope = document.getElementById("bulk-scope");
  var status = document.getElementById("bulk-selected");
  var matching = document.getElementById("bulk-select-matching");
  var clear = document.getElementById("bulk-clear");
  var apply = document.getElementById("bulk-apply");
  var action = document.getElementById("bulk-action");

  function boxes() { return Array.prototype.slice.call(document.querySelectorAll("input.bulk-check")); }
  function text(template, count) { return template.replace("__N__", count); }
  var total = all ? all.getAttribute("data-count") + (all.getAttribute("data-capped") === "true" ? "+" : "") : "0";

  function refresh() {
    var list = boxes();
    var ticked = list.filter(function (b) { return b.checked; }).length;
    var pageFull = all && list.length > 0 && list.length >= parseInt(all.getAttribute("data-page-size"), 10) &&
      parseInt(all.getAttribute("data-count"), 10) > list.length;
    if (scope.value === "filter") {
      status.textContent = text(status.getAttribute("data-all"), total);
    } else {
      status.textContent = ticked ? text(status.getAttribute("data-some"), ticked) : status.getAttribute("data-none");
    }
    if (all) { all.checked = list.length > 0 && ticked === list.length; }
    matching.textContent = text(matching.getAttribute("data-label"), total);
    matching.style.display = scope.value !== "filter" && pageFull && ticked === list.length ? "" : "none";
    clear.style.display = scope.value === "filter" || ticked ? "" : "none";
    apply.disabled = !(ticked || scope.value === "filter");
  }

  if (all) {
    all.addEventListener("change", function () {
      boxes().forEach(function (b) { b.checked = all.checked; });
      if (!all.checked) { scope.value = "ids"; }
      refresh();
    });
  }
  boxes().forEach(function (b) {
    b.addEventListener("change", function () { if (!b.checked) { scope.value = "ids"; } refresh(); });
  });
  matching.addEventListener("click", function (e) { e.preventDefault(); scope.value = "filter"; refresh(); });
  clear.addEventListener("click", function (e) {
    e.preventDefault();
    scope.value = "ids";
    boxes().forEach(function (b) { b.checked = false; });
    refresh();
  });
  form.addEventListener("submit", function (e) {
    if (apply.disabled) { e.preventDefault(); return; }
    if (action.value === "delete" && !window.confirm(form.getAttribute("data-confirm-delete"))) { e.preventDefault(); }
  });
  refresh();
}());
