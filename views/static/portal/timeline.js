// The detail page's timeline: "Older" fetches the next page (an HTML fragment the server rendered and escaped)
// and puts it where the button was.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".portal-timeline-older");
    if (!button) { return; }
    var item = button.closest(".portal-timeline-more");
    button.disabled = true;
    fetch(button.getAttribute("data-url"), {credentials: "same-origin", headers: {"X-Requested-With": "XMLHttpRequest"}})
      .then(function (response) {
        if (!response.ok) { throw new Error(response.status); }
        return response.text();
      })
      .then(function (html) {
        var holder = document.createElement("ul");
        holder.innerHTML = html;
        var list = item.parentNode;
        while (holder.firstChild) { list.insertBefore(holder.firstChild, item); }
        item.remove();
      })
      .catch(function () { button.disabled = false; });
  });
}());
