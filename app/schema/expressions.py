"""The expression language of `formula:` fields and `rules: - check:` (docs/schema.md, "Expressions").

    round(days * rate, 2)          hours <= days * 12          end_date == null or end_date >= start_date

Parsed by lark (a maintained LALR parser: the grammar below is the whole language; never Python eval) into
a small tree of tuples, typed against the entity's fields by `infer` (for `portal check`), and turned once
into a closure by `compile_expression`, so evaluating it per record (an import row) is plain calls.

Null semantics are SQL's: a null operand, a division by zero or a bad argument gives null, never an
exception; `and`/`or` follow three-valued logic; a check passes unless it is definitely false.
Nothing here imports Flask or SQLAlchemy (the checker uses it).
"""
from __future__ import annotations

import datetime as dt
import operator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from lark import Lark, Token, Transformer, UnexpectedInput, v_args

GRAMMAR = r"""
?start: or_
?or_: and_ ("or" and_)*            -> or_
?and_: not_ ("and" not_)*          -> and_
?not_: "not" not_                  -> not_
     | comparison
?comparison: sum (COMPARE sum)?    -> compare
?sum: product (ADD product)*       -> arith
?product: unary (MUL unary)*       -> arith
?unary: "-" unary                  -> neg
      | atom
?atom: NUMBER                      -> number
     | STRING                      -> string
     | "null"                      -> null
     | "true"                      -> true
     | "false"                     -> false
     | NAME "(" [or_ ("," or_)*] ")" -> call
     | NAME ("." NAME)?            -> name
     | "(" or_ ")"
COMPARE: "==" | "!=" | "<=" | ">=" | "<" | ">"
ADD: "+" | "-"
MUL: "*" | "/"
NAME: /(?!(and|or|not|null|true|false)\b)[a-z_][a-z0-9_]*/
NUMBER: /\d+(\.\d+)?/
STRING: /"([^"\\]|\\.)*"|'([^'\\]|\\.)*'/
%ignore /[ \t\r\n]+/
"""

MAX_SOURCE = 2000  # an expression is a line of YAML; longer text is refused before parsing


class ExpressionError(ValueError):
    """A syntax error: `column` is 1-based in the expression text."""

    def __init__(self, message: str, column: int = 1) -> None:
        super().__init__(message)
        self.column = column


@v_args(inline=True)
class _ToTree(Transformer):
    """Lark's parse tree -> plain tuples: ("num", Decimal), ("str", s), ("null",), ("bool", b),
    ("name", path), ("call", fn, args), ("op", op, a, b), ("neg", a), ("not", a), ("and"|"or", items)."""

    def number(self, token):
        return ("num", Decimal(str(token)))

    def string(self, token):
        text = str(token)[1:-1]
        return ("str", text.encode("utf-8").decode("unicode_escape") if "\\" in text else text)

    def null(self):
        return ("null",)

    def true(self):
        return ("bool", True)

    def false(self):
        return ("bool", False)

    def name(self, first, second=None):
        return ("name", (str(first),) if second is None else (str(first), str(second)))

    def call(self, fn, *args):
        return ("call", str(fn), tuple(a for a in args if a is not None))

    def neg(self, a):
        return ("neg", a)

    def not_(self, a):
        return ("not", a)

    def or_(self, *items):
        return items[0] if len(items) == 1 else ("or", items)

    def and_(self, *items):
        return items[0] if len(items) == 1 else ("and", items)

    def compare(self, a, op=None, b=None):
        return a if op is None else ("op", str(op), a, b)

    def arith(self, first, *rest):
        tree = first
        for op, operand in zip(rest[::2], rest[1::2]):
            tree = ("op", str(op), tree, operand)
        return tree


_PARSER = Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)


def parse(source: str):
    """The expression's tree, or ExpressionError (with the column) on a syntax error."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("the expression is empty")
    if len(source) > MAX_SOURCE:
        raise ExpressionError(f"the expression is longer than {MAX_SOURCE} characters")
    try:
        return _ToTree().transform(_PARSER.parse(source))
    except UnexpectedInput as exc:
        column = getattr(exc, "column", 1) or 1
        token = getattr(exc, "token", None)
        near = f" near '{token}'" if isinstance(token, Token) and str(token) else ""
        if getattr(exc, "token", None) is not None and getattr(exc.token, "type", "") == "$END":
            near = " (it ends too early)"
        raise ExpressionError(f"syntax error at column {column}{near}", column) from None
    except RecursionError:
        raise ExpressionError("the expression nests too deeply") from None


def names(tree) -> set[tuple[str, ...]]:
    """Every field path the expression reads."""
    if tree[0] == "name":
        return {tree[1]}
    found = set()
    for part in _children(tree):
        found |= names(part)
    return found


def functions(tree) -> set[str]:
    found = {tree[1]} if tree[0] == "call" else set()
    for part in _children(tree):
        found |= functions(part)
    return found


def _children(tree):
    tag = tree[0]
    if tag == "call":
        return tree[2]
    if tag == "op":
        return tree[2:]
    if tag in ("neg", "not"):
        return (tree[1],)
    if tag in ("and", "or"):
        return tree[1]
    return ()


# -- static types ---------------------------------------------------------------------------------
# "number", "text", "date", "datetime", "boolean", "null" (the literal), "any" (unknown: never an error)
NUMBER, TEXT, DATE, DATETIME, BOOLEAN, NULL, ANY = "number", "text", "date", "datetime", "boolean", "null", "any"

# argument count (min, max) of each function; None: any number
FUNCTIONS = {
    "round": (1, 2), "abs": (1, 1), "min": (1, None), "max": (1, None), "coalesce": (1, None),
    "if": (3, 3), "concat": (1, None), "len": (1, 1), "year": (1, 1), "month": (1, 1), "day": (1, 1),
    "days_between": (2, 2),
}
VOLATILE_FUNCTIONS: frozenset = frozenset()  # none of the functions above depends on the clock


class ExpressionTypeError(ValueError):
    pass


def _fits(actual: str, *wanted: str) -> bool:
    return actual in (ANY, NULL) or actual in wanted


def _same(a: str, b: str) -> str:
    return b if a in (ANY, NULL) else a


def infer(tree, type_of) -> str:
    """The expression's type; `type_of(path)` gives a field path's type (KeyError: unknown name is the
    caller's business). Raises ExpressionTypeError with a readable reason on a mismatch."""
    tag = tree[0]
    if tag == "num":
        return NUMBER
    if tag == "str":
        return TEXT
    if tag == "null":
        return NULL
    if tag == "bool":
        return BOOLEAN
    if tag == "name":
        return type_of(tree[1])
    if tag == "neg":
        inner = infer(tree[1], type_of)
        if not _fits(inner, NUMBER):
            raise ExpressionTypeError(f"'-' needs a number, not {inner}")
        return NUMBER
    if tag == "not" or tag in ("and", "or"):
        for part in _children(tree):
            inner = infer(part, type_of)
            if not _fits(inner, BOOLEAN):
                raise ExpressionTypeError(f"'{tag}' needs true/false values, not {inner}")
        return BOOLEAN
    if tag == "op":
        op, a, b = tree[1], infer(tree[2], type_of), infer(tree[3], type_of)
        if op in ("==", "!="):
            if a not in (ANY, NULL) and b not in (ANY, NULL) and a != b and {a, b} != {DATE, DATETIME}:
                raise ExpressionTypeError(f"'{op}' compares {a} with {b}")
            return BOOLEAN
        if op in ("<", "<=", ">", ">="):
            if not (_fits(a, NUMBER, TEXT, DATE, DATETIME) and _fits(b, NUMBER, TEXT, DATE, DATETIME)) or \
                    (a not in (ANY, NULL) and b not in (ANY, NULL) and a != b and {a, b} != {DATE, DATETIME}):
                raise ExpressionTypeError(f"'{op}' cannot order {a} against {b}")
            return BOOLEAN
        if op == "+" and (a == TEXT or b == TEXT):
            if not (_fits(a, TEXT) and _fits(b, TEXT)):
                raise ExpressionTypeError(f"'+' joins text with text only, not {a} with {b} (use concat())")
            return TEXT
        if not (_fits(a, NUMBER) and _fits(b, NUMBER)):
            raise ExpressionTypeError(f"'{op}' needs numbers, not {a} and {b}")
        return NUMBER if ANY not in (a, b) or op != "+" else ANY
    fn, args = tree[1], tree[2]
    if fn not in FUNCTIONS:
        raise ExpressionTypeError(f"unknown function '{fn}'")
    low, high = FUNCTIONS[fn]
    if len(args) < low or (high is not None and len(args) > high):
        wanted = f"{low}" if low == high else f"{low} or more" if high is None else f"{low} to {high}"
        raise ExpressionTypeError(f"{fn}() takes {wanted} arguments, got {len(args)}")
    types = [infer(a, type_of) for a in args]

    def need(index, *wanted):
        if not _fits(types[index], *wanted):
            raise ExpressionTypeError(f"argument {index + 1} of {fn}() must be {' or '.join(wanted)}, not {types[index]}")

    if fn in ("round", "abs"):
        for i in range(len(args)):
            need(i, NUMBER)
        return NUMBER
    if fn in ("min", "max", "coalesce"):
        result = NULL
        for t in types:
            if result not in (ANY, NULL) and t not in (ANY, NULL) and t != result:
                raise ExpressionTypeError(f"{fn}() mixes {result} and {t}")
            result = _same(result, t)
        return result
    if fn == "if":
        need(0, BOOLEAN)
        if types[1] not in (ANY, NULL) and types[2] not in (ANY, NULL) and types[1] != types[2]:
            raise ExpressionTypeError(f"if() gives {types[1]} or {types[2]}; both branches must have one type")
        return _same(types[1], types[2])
    if fn == "concat":
        return TEXT
    if fn == "len":
        need(0, TEXT)
        return NUMBER
    if fn in ("year", "month", "day"):
        need(0, DATE, DATETIME)
        return NUMBER
    need(0, DATE, DATETIME)
    need(1, DATE, DATETIME)
    return NUMBER  # days_between


# -- evaluation -----------------------------------------------------------------------------------
def _number(value):
    """A value as a Decimal for arithmetic (ints, floats, Decimals); None when it is not a number."""
    if value.__class__ is Decimal:  # the usual case first: it runs per operand of every record written
        return value if value.is_finite() else None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if value == value and value not in (float("inf"), float("-inf")) else None
    return None


def _date(value):
    return value.date() if isinstance(value, dt.datetime) else value if isinstance(value, dt.date) else None


def _comparable(a, b):
    """Both sides as one kind of value (numbers as Decimals, a datetime against a date as dates)."""
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na, nb
    if isinstance(a, dt.date) and isinstance(b, dt.date) and isinstance(a, dt.datetime) != isinstance(b, dt.datetime):
        return _date(a), _date(b)
    return a, b


def _compare(op, a, b):
    if a is None or b is None:
        return None
    a, b = _comparable(a, b)
    try:
        if op == "==":
            return a == b
        if op == "!=":
            return a != b
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        return a >= b
    except (TypeError, ArithmeticError):  # text against a number, a NaN: unknown, as in SQL
        return None


def _divide(x, y):
    return None if y == 0 else x / y


_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": _divide}


def _arith(op, a, b, apply=None):
    if a is None or b is None:
        return None
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    x, y = _number(a), _number(b)
    if x is None or y is None:
        return None
    try:
        return (apply or _ARITH[op])(x, y)
    except (ArithmeticError, InvalidOperation):
        return None


def _round(x, places=0):
    x, places = _number(x), _number(places)
    if x is None or places is None or places != places.to_integral_value() or not -20 <= places <= 20:
        return None
    try:
        return x.quantize(Decimal(1).scaleb(-int(places)), rounding=ROUND_HALF_UP)
    except (ArithmeticError, InvalidOperation):
        return None


def _extreme(pick):
    def fn(*values):
        if any(v is None for v in values):
            return None
        try:
            return pick(_number(v) if _number(v) is not None else v for v in values)
        except (TypeError, ArithmeticError):
            return None
    return fn


def _text(value):
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize() if value == value.to_integral_value() else value, "f")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _days_between(a, b):
    a, b = _date(a), _date(b)
    return None if a is None or b is None else Decimal((b - a).days)


def _part(attribute):
    return lambda v: None if _date(v) is None else Decimal(getattr(_date(v), attribute))


_CALLS = {
    "round": _round,
    "abs": lambda x: None if _number(x) is None else abs(_number(x)),
    "min": _extreme(min),
    "max": _extreme(max),
    "concat": lambda *values: "".join(_text(v) for v in values),
    "len": lambda v: None if not isinstance(v, str) else Decimal(len(v)),
    "year": _part("year"),
    "month": _part("month"),
    "day": _part("day"),
    "days_between": _days_between,
}


def compile_expression(tree):
    """The tree as a closure `fn(get)`, where `get(path)` gives a field path's value; never raises for
    any values (a type the expression does not expect gives null)."""
    tag = tree[0]
    if tag in ("num", "str", "bool"):
        constant = tree[1]
        return lambda get: constant
    if tag == "null":
        return lambda get: None
    if tag == "name":
        path = tree[1]
        return lambda get: get(path)
    if tag == "neg":
        inner = compile_expression(tree[1])
        return lambda get: _arith("-", 0, inner(get))
    if tag == "not":
        inner = compile_expression(tree[1])

        def negate(get):
            value = inner(get)
            return None if not isinstance(value, bool) else not value
        return negate
    if tag in ("and", "or"):
        parts = [compile_expression(p) for p in tree[1]]
        decisive = tag == "or"  # or: any true wins; and: any false wins; else null if any null

        def logic(get):
            unknown = False
            for part in parts:
                value = part(get)
                if not isinstance(value, bool):
                    unknown = True
                elif value is decisive:
                    return decisive
            return None if unknown else not decisive
        return logic
    if tag == "op":
        op, left, right = tree[1], compile_expression(tree[2]), compile_expression(tree[3])
        if op in ("==", "!=") and ("null",) in (tree[2], tree[3]):  # `x == null` asks whether x is empty
            other = right if tree[2] == ("null",) else left
            empty = op == "=="
            return lambda get: (other(get) is None) is empty
        if op in ("==", "!=", "<", "<=", ">", ">="):
            return lambda get: _compare(op, left(get), right(get))
        operation = _ARITH[op]
        return lambda get: _arith(op, left(get), right(get), operation)
    fn, args = tree[1], [compile_expression(a) for a in tree[2]]
    if fn == "coalesce":
        def coalesce(get):
            for arg in args:
                value = arg(get)
                if value is not None:
                    return value
            return None
        return coalesce
    if fn == "if":
        test, then, otherwise = args
        return lambda get: then(get) if test(get) is True else otherwise(get)
    call = _CALLS[fn]

    def apply(get):
        try:
            return call(*(arg(get) for arg in args))
        except (TypeError, ValueError, ArithmeticError, OverflowError):
            return None
    return apply


@dataclass(frozen=True)
class Expression:
    """A parsed expression as the spec keeps it: source text, tree, and the compiled closure."""

    source: str
    tree: tuple = field(compare=False, repr=False)
    run: object = field(compare=False, repr=False)

    @classmethod
    def of(cls, source: str) -> "Expression":
        tree = parse(source)
        return cls(source, tree, compile_expression(tree))

    @property
    def names(self) -> set[tuple[str, ...]]:
        return names(self.tree)

    def evaluate(self, get):
        return self.run(get)

    def evaluate_values(self, values: dict):
        """Evaluate over a plain dict (paths joined with dots: {"worker.day_rate": 300}); for tests and tools."""
        return self.run(lambda path: values.get(".".join(path)))
