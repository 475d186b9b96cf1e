// Live add/edit forms (app/generate/liveform.py): formula fields recomputed as the user types, defaults from a link
// filled when the link changes (the user may still overwrite them), and filtered pickers that follow the fields
// their filter reads. Values are set as input values (text), never as HTML.
(function ($) {
  if (!$) { return; }

  var NAME = /^[a-z][a-z0-9_]*$/;  // schema field names: safe inside a selector
  var ID = /^[0-9]{1,18}$/;

  function field(form, name) {
    return NAME.test(name) ? form.find("[name='" + name + "']") : $();
  }

  // The `record.<field>` values a filtered picker's lookup sends (lookups.js asks for them).
  window.portalLookupParams = function (select) {
    var $select = $(select), form = $select.closest("form"), params = {};
    ($select.attr("data-record-fields") || "").split(",").forEach(function (name) {
      var value = field(form, name).val();
      if ($.isArray(value)) { value = value[0]; }
      if (value) { params["record." + name] = value; }
    });
    return params;
  };

  // A field the filter reads changed: keep each chosen record that still passes, clear the others.
  function recheck(select) {
    var $select = $(select), chosen = $select.val();
    var ids = ($.isArray(chosen) ? chosen : [chosen]).filter(function (id) { return ID.test(id || ""); });
    ids.forEach(function (id) {
      var query = $.extend({q: "", page: 1, id: id}, window.portalLookupParams(select));
      $.getJSON($select.attr("data-lookup-url"), query).done(function (answer) {
        if (answer.results && answer.results.length) { return; }
        $select.find("option[value='" + id + "']").remove();
        $select.val($.isArray(chosen) ? ids.filter(function (other) { return other !== id; }) : null).trigger("change");
        $select.closest("form").trigger("portal:rechecked", [$select.attr("name")]);
      });
    });
  }

  function previewUrl(form) {
    return form.find("[data-preview-url]").first().attr("data-preview-url");
  }

  // Ask the server for the formula values (and, when a link changed, its defaults) of the data typed so far.
  function preview(form, changed) {
    var url = previewUrl(form);
    if (!url) { return; }
    var data = form.serializeArray();
    data.push({name: "_changed", value: changed || ""});
    var edit = /\/edit\/([0-9]+)/.exec(window.location.pathname);
    if (edit) { data.push({name: "_id", value: edit[1]}); }
    var seq = (form.data("previewSeq") || 0) + 1;
    form.data("previewSeq", seq);
    $.post(url, $.param(data), null, "json").done(function (answer) {
      var filled = false;
      $.each(answer.defaults || {}, function (name, value) {  // always applied: the user changed the link
        var input = field(form, name);
        var text = value === null || value === undefined ? "" : String(value);
        if (input.length && input.val() !== text) { input.val(text); filled = true; }
      });
      if (form.data("previewSeq") !== seq) {  // a newer answer is on its way; it may predate these defaults
        if (filled) { schedule(form, ""); }
        return;
      }
      $.each(answer.values || {}, function (name, value) {
        if (NAME.test(name)) {
          form.find("#" + name + ".portal-computed").val(value === null || value === undefined ? "" : String(value));
        }
      });
    });
  }

  function schedule(form, changed) {
    clearTimeout(form.data("previewTimer"));
    form.data("previewTimer", setTimeout(function () { preview(form, changed); }, 250));
  }

  function init() {
    $("form").has("[data-preview-url], select[data-record-fields]").each(function () {
      var form = $(this);
      if (form.data("liveForm")) { return; }
      form.data("liveForm", true);
      form.find("select[data-record-fields]").each(function () {
        var select = this;
        $(select).attr("data-record-fields").split(",").forEach(function (name) {
          field(form, name).on("change", function () { recheck(select); });
        });
      });
      if (!previewUrl(form)) { return; }
      form.on("input change", "input[name], select[name], textarea[name]", function (event) {
        var target = $(event.target);
        if (target.is("[data-fills]")) {  // a link with defaults: fill now
          clearTimeout(form.data("previewTimer"));
          preview(form, target.attr("name"));
        } else {
          schedule(form, target.attr("name"));
        }
      });
    });
  }

  $(init);
})(window.jQuery);
