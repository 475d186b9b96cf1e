// Draws every <canvas data-chart="..."> with the locally served Chart.js (no CDN: intranets). A dataset's
// `drill` (one URL per bar, point or slice; app/data/reports/output.py) makes a click open the records behind it.
(function () {
  function drillOf(chart, elements) {
    if (!elements.length) { return null; }
    var hit = elements[0], dataset = chart.data.datasets[hit.datasetIndex];
    return dataset && dataset.drill ? dataset.drill[hit.index] : null;
  }
  function draw() {
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var config = JSON.parse(canvas.getAttribute("data-chart"));
      if (!config || !config.type) { return; }
      config.options = config.options || {};
      config.options.onClick = function (event, elements, chart) {
        var url = drillOf(chart, elements);
        if (url && url.charAt(0) === "/") { window.location.href = url; }  // our own links only
      };
      config.options.onHover = function (event, elements, chart) {
        chart.canvas.style.cursor = drillOf(chart, elements) ? "pointer" : "default";
      };
      canvas.chart = new Chart(canvas.getContext("2d"), config);
      canvas.setAttribute("data-drawn", "true");
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
