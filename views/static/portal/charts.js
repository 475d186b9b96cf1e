// Draws every <canvas data-chart="..."> with the locally served Chart.js (no CDN: intranets).
(function () {
  function draw() {
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var config = JSON.parse(canvas.getAttribute("data-chart"));
      if (!config || !config.type) { return; }
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
