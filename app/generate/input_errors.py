"""Bad input gets a clear 4xx, never a 500: record ids in URLs, page arguments, NUL characters and filter values.

FAB passes URL ids, `page_*`/`psize_*` arguments and filter values to int(), the driver or the database as
they come; out-of-range or junk values then overflow (OverflowError, DataError) or are silently ignored
(FAB's filters drop a value they cannot convert and return every row). Here they are checked first:

- a `pk` URL argument that cannot be a record id (app.rules.records.record_id) is a 404, JSON under /api/;
- `page_<View>`/`psize_<View>` arguments that are not numbers are dropped (the first page, the default size);
- a NUL character in the path, a filter/search argument or a form/JSON body is a 400 (PostgreSQL cannot store or compare it);
- filter values are cleaned per field type (FieldType.clean_filter, app/fieldtypes), see `clean_filters`.
"""
from __future__ import annotations

import json
import re

from flask import abort, current_app, jsonify, make_response, render_template, request
from flask_appbuilder.exceptions import FABException
from flask_babel import gettext, lazy_gettext
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import HTTPException

from app.i18n import lazy
from app.fieldtypes import type_of
from app.rules.records import FieldError, record_id
from app.schema.spec import EntitySpec, FieldSpec

PAGE_ARG = re.compile(r"(page|psize)_")  # FAB's get_page_args/get_page_size_args int() any argument holding these
PAGE_NUMBER = re.compile(r"-?\d{1,9}")
# query arguments whose values reach SQL (others, e.g. cursors or a picker's search text, are checked where read)
API_DATABASE_ARGS, PAGE_DATABASE_ARGS = re.compile(r"q$"), re.compile(r"_flt_")
FILTER_ARG = re.compile(r"_flt_(\d)_(.*)")  # as FAB's get_filter_args reads it


class BadArgument(ValueError):
    """A query argument out of its bounds; the message is localized, for a 400."""


def bounded_int_arg(name: str, default: int, low: int, high: int) -> int:
    """`?name=` as a whole number from low to high (absent: default); BadArgument otherwise."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdecimal() or not low <= int(raw) <= high:
        raise BadArgument(gettext("%(name)s must be a whole number from %(low)d to %(high)d.",
                                  name=name, low=low, high=high))
    return int(raw)


def install_input_checks(app) -> None:
    app.url_value_preprocessor(_check_record_id)
    app.before_request(_check_query_and_body)
    app.register_error_handler(HTTPException, _api_errors_as_json)


def _api_errors_as_json(error: HTTPException):
    """Under /api/ an HTTP error Flask raises itself (no such route, wrong method) is JSON like FAB's own answers;
    elsewhere a missing page is the portal's own page in the user's language, not Werkzeug's English one."""
    if not is_api_request() and error.code == 404:
        return render_template("portal/error.html", title=gettext("Not found"),
                               message=gettext("There is no page at this address.")), 404
    if not is_api_request() or error.code is None:
        return error
    message = gettext("Not found") if error.code == 404 else error.description
    response = error.get_response()
    response.set_data(jsonify(message=message).get_data())
    response.mimetype = "application/json"
    return response


def is_api_request() -> bool:
    return request.path.startswith("/api/")


def not_found():
    """Abort with FAB's API 404 (JSON) under /api/, else the app's 404 page."""
    if is_api_request():
        abort(make_response(jsonify(message=gettext("Not found")), 404))
    abort(404)


RECORD_ID_ARGS = ("pk", "cid", "aid")  # a record, a comment, an attachment: ids the database must be able to hold


def _check_record_id(endpoint, values) -> None:
    for name in RECORD_ID_ARGS:
        if values and name in values:
            try:
                record_id(values[name])
            except ValueError:
                not_found()


def _check_query_and_body():
    database_args = API_DATABASE_ARGS if is_api_request() else PAGE_DATABASE_ARGS
    if "\x00" in request.path or _has_nul(request.args, database_args) or _body_has_nul():
        message = gettext("The request contains a NUL character (\\u0000), which cannot be stored.")
        if is_api_request():
            return jsonify(message=message), 400
        abort(400, description=message)
    if _json_has_lone_surrogate():
        message = gettext("The request contains text that is not valid Unicode (a lone \\ud800-\\udfff escape).")
        if is_api_request():
            return jsonify(message=message), 400
        abort(400, description=message)
    if not is_api_request():
        _drop_junk_list_args()
    return None


def _has_nul(values, only=None) -> bool:
    return any("\x00" in k or "\x00" in v for k, v in values.items(multi=True) if only is None or only.match(k))


def _body_has_nul() -> bool:
    """Form and JSON bodies only: uploads (xlsx is a zip) may hold any byte."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return False
    if request.mimetype == "application/x-www-form-urlencoded":
        return _has_nul(request.form)
    if request.is_json:
        data = request.get_data(cache=True)
        return b"\\u0000" in data or b"\x00" in data
    return False


SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _json_has_lone_surrogate() -> bool:
    """JSON may escape half of a UTF-16 pair (`"\\ud800"`): Python reads it, no database can store it (a 500 at
    the INSERT). Parsed only when such an escape is there at all."""
    if request.method not in ("POST", "PUT", "PATCH") or not request.is_json:
        return False
    data = request.get_data(cache=True)
    if not SURROGATE_ESCAPE.search(data):
        return False
    try:
        _encode_all(json.loads(data))
    except UnicodeEncodeError:
        return True
    except ValueError:
        return False  # not JSON at all: the endpoint says so
    return False


def _encode_all(value) -> None:
    if isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, dict):
        for key, item in value.items():
            _encode_all(key)
            _encode_all(item)
    elif isinstance(value, list):
        for item in value:
            _encode_all(item)


def _drop_junk_list_args() -> None:
    """Page arguments that are not numbers, and `_flt_<n>_<column>` naming a filter the column does not have
    (FAB indexes its list of filters with n: an IndexError)."""
    junk = [k for k, v in request.args.items(multi=True) if PAGE_ARG.search(k) and not PAGE_NUMBER.fullmatch(v)]
    view = getattr(current_app.view_functions.get(request.endpoint), "__self__", None)
    datamodel = getattr(view, "datamodel", None)
    if datamodel is not None:
        for key in request.args:
            match = FILTER_ARG.search(key)
            if match and match[2] in datamodel.get_columns_list():
                if int(match[1]) >= len(datamodel.filter_converter_class(datamodel).convert(match[2]) or ()):
                    junk.append(key)
    if junk:
        args = request.args.copy()
        for key in junk:
            args.poplist(key)
        request.args = ImmutableMultiDict(args)  # werkzeug allows replacing the parsed arguments


# -- filter values ---------------------------------------------------------------------------------------------

class FilterValueError(FABException):
    """A filter value that does not fit its column; the message is localized and names the column."""


def clean_filter_value(field: FieldSpec, operator: str, value):
    """The value a filter on `field` compares with, typed for the column (its type's `clean_filter`);
    FieldError if it cannot be one. None for a blank value on a non-text column: that filter is not applied
    (as FAB does for gt/lt)."""
    if isinstance(value, list):  # list pages send every value as a list; the API only for in/not_in
        values = [clean_filter_value(field, operator, item) for item in value]
        return [v for v in values if v is not None] or None
    return type_of(field).clean_filter(field, operator, value)


def clean_filters(entity: EntitySpec, filters) -> list[str]:
    """Clean every value of a FAB Filters object in place; drop the ones that do not fit.

    Returns the localized problems, one per dropped filter ("Work date: Must be a date like 2026-01-31.").
    """
    problems, kept_filters, kept_values = [], [], []
    for flt, value in zip(filters.filters, filters.values):
        try:
            field = entity.field(flt.column_name)
        except KeyError:
            field = None
        if field is not None:
            try:
                value = clean_filter_value(field, flt.arg_name, value)
            except FieldError as exc:
                problems.append(gettext("Filter on %(column)s: %(reason)s", column=lazy(field.label), reason=exc))
                continue
            if value is None:
                continue
        kept_filters.append(flt)
        kept_values.append(value)
    filters.filters, filters.values = kept_filters, kept_values
    return problems


def check_filters(entity: EntitySpec, filters) -> None:
    """For the API: clean the values, or raise FilterValueError (a 400) naming the first column that is wrong."""
    problems = clean_filters(entity, filters)
    if problems:
        raise FilterValueError(problems[0])


# a filter sent at run time (personal views, drill-down links) that does not fit: the checker's English text is
# for schema authors; users get this, in their language, naming the field
FILTER_PROBLEMS = {
    "E760": lazy_gettext("A filter must be an object of field: condition."),
    "E761": lazy_gettext("There is no field %(field)s to filter on."),
    "E762": lazy_gettext("%(field)s must be a field or link.field."),
    "E763": lazy_gettext("%(field)s does not go through a link."),
    "E764": lazy_gettext("%(field)s is a link: filter on a field of the linked record."),
    "E765": lazy_gettext("The value for %(field)s does not fit that field."),
    "E766": lazy_gettext("The value for %(field)s is not one of its choices."),
    "E767": lazy_gettext("Unknown operator for %(field)s: use lt, lte, gt, gte, ne, in, contains or null."),
    "E768": lazy_gettext("That operator does not fit %(field)s."),
    "E769": lazy_gettext("$user only fits a user field (%(field)s)."),
    "E770": lazy_gettext("%(field)s is a user field: compare it with $user."),
    "E771": lazy_gettext("%(field)s cannot take that relative date."),
    "E772": lazy_gettext("%(field)s needs a list of at most 1,000 values, or one value."),
}


def filter_problem_text(problem, entity: EntitySpec | None = None) -> str:
    """A FilterProblem (app/schema/filters.py) as a localized sentence, naming the field by its label."""
    template = FILTER_PROBLEMS.get(problem.code, FILTER_PROBLEMS["E760"])
    name = problem.field or "?"
    f = entity.field(name) if entity is not None and name in entity.field_names else None
    return str(template) % {"field": str(lazy(f.label)) if f is not None else name}
