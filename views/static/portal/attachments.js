// The detail page's drop zone (views/templates/portal/show_files.html): drop or choose several files, each is
// posted with the CSRF token; refused files are listed by name and reason, then the page reloads to list the rest.
(function () {
  "use strict";
  var form = document.getElementById("portal-files-form");
  var zone = document.getElementById("portal-dropzone");
  var input = document.getElementById("portal-files-input");
  var errors = document.getElementById("portal-files-errors");
  if (!form || !zone || !window.fetch || !window.FormData) { return; }  // without JS the form posts as it is

  function showErrors(messages) {
    errors.textContent = "";
    messages.forEach(function (message) {
      var item = document.createElement("li");
      item.textContent = message;  // text, never HTML
      errors.appendChild(item);
    });
  }

  function upload(files) {
    if (!files || !files.length) { return; }
    var data = new FormData();
    data.append("csrf_token", form.querySelector("input[name=csrf_token]").value);
    Array.prototype.forEach.call(files, function (file) { data.append("file", file, file.name); });
    zone.classList.add("portal-uploading");
    fetch(form.action, {method: "POST", body: data, credentials: "same-origin",
                        headers: {"Accept": "application/json"}})
      .then(function (response) {
        return response.json().catch(function () { return {refused: [response.status + " " + response.statusText]}; });
      })
      .then(function (result) {
        zone.classList.remove("portal-uploading");
        var refused = (result.refused || []).concat(result.message ? [result.message] : []);
        if (result.stored) {
          if (refused.length) { sessionStorage.setItem("portal-files-errors", JSON.stringify(refused)); }
          window.location.reload();
        } else {
          showErrors(refused);
        }
      })
      .catch(function (error) { zone.classList.remove("portal-uploading"); showErrors([String(error)]); });
  }

  var kept = sessionStorage.getItem("portal-files-errors");
  if (kept) { sessionStorage.removeItem("portal-files-errors"); showErrors(JSON.parse(kept)); }

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.style.borderColor = "#337ab7"; });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.style.borderColor = "#bbb"; });
  });
  zone.addEventListener("drop", function (event) { upload(event.dataTransfer && event.dataTransfer.files); });
  form.addEventListener("submit", function (event) { event.preventDefault(); upload(input.files); });
})();
