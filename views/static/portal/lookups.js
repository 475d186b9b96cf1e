// Type-ahead pickers: every <select class="portal-lookup" data-lookup-url=...> becomes a Select2 that asks the
// server for one page of matching records at a time (app/build/lookups.py). Titles are inserted as text, never HTML.
(function ($) {
  if (!$ || !$.fn.select2) { return; }

  function asText(item) {
    return $("<span/>").text(item.text === undefined ? "" : String(item.text));
  }

  function init(element) {
    var $select = $(element);
    if ($select.hasClass("select2-hidden-accessible")) { return; }
    $select.select2({
      theme: "bootstrap",
      width: "100%",
      placeholder: $select.attr("data-placeholder") || "",
      allowClear: $select.attr("data-allow-clear") === "true",
      maximumInputLength: 100,
      templateResult: asText,
      templateSelection: asText,
      ajax: {
        url: $select.attr("data-lookup-url"),
        dataType: "json",
        delay: 250,
        data: function (params) {
          var query = {q: params.term || "", page: params.page || 1};
          // a filtered picker also sends the form's values its filter reads (liveform.js)
          return window.portalLookupParams ? $.extend(query, window.portalLookupParams(element)) : query;
        },
        processResults: function (data) {
          return {
            results: $.map(data.results, function (record) { return {id: record.id, text: record.title}; }),
            pagination: {more: data.more}
          };
        }
      }
    });
  }

  function initAll() { $("select.portal-lookup").each(function () { init(this); }); }

  window.portalLookups = {initAll: initAll};  // lines.js: pickers in grid rows added later
  $(initAll);
  // FAB's list filters add their value inputs when a filter is chosen from the menu
  $(document).on("click", "a.filter", initAll);
})(window.jQuery);
