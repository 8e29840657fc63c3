"""Prometheus' alert templating, the part annotations use, plus Prometheus' duration format.

A template is Go `text/template` text: `{{ $labels.route }}`, `{{ $value | humanizePercentage }}`,
`{{ $labels.route | toUpper }}`, `{{ printf "%.2f" $value }}`, `{{ reReplaceAll "-.*" "" $labels.x }}`.
Supported: the variables `$labels`, `$value`, `$externalLabels`, `$externalURL` (and their dot
forms `.Labels`, `.Value`, ...), string and number literals, pipelines, and these functions of
Prometheus' template reference: humanize, humanize1024, humanizeDuration, humanizePercentage,
humanizeTimestamp, toUpper, toLower, title, stripPort, stripDomain, reReplaceAll, match, printf,
safeHtml. Not supported in-process: actions (`if`, `range`, `with`, `define`, ...) and
functions that query Prometheus (`query`, `first`, ...): `check_template` says so, and the stack
config refuses such a template for in-process stacks, so it fails at `pulumi preview`.

`expand` renders one template for one alert; a failure raises `TemplateError`, and the rule that
owns the template renders Prometheus' `<error expanding template: ...>` instead
(`rules/alerting.go`) and marks itself unhealthy; the other rules are not affected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["NotInProcessError", "TemplateError", "check_template", "duration", "expand", "expand_or_error", "go_float"]

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def duration(seconds: float) -> str:
    """Seconds as a Prometheus duration: 300 -> "5m", 5400 -> "1h30m", 0.5 -> "500ms"."""
    if seconds < 0:
        raise ValueError(f"duration must be >= 0, got {seconds}")
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    out = []
    for unit, size in _UNITS:
        count, millis = divmod(millis, size * 1000)
        if count:
            out.append(f"{count}{unit}")
    if millis:
        out.append(f"{millis}ms")
    return "".join(out)


class TemplateError(ValueError):
    """A template that does not parse, or fails for one alert's data."""


class NotInProcessError(TemplateError):
    """Valid for Prometheus, but uses what the in-process evaluator does not have (actions, queries)."""


# --- value formatting (Prometheus template/template.go) ---------------------------------------


def go_float(v: float) -> str:
    """A float64 as Go's fmt prints it with %v (shortest form)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def _special(v: float) -> str:
    # Go's %g prints NaN, +Inf and -Inf; Python's would print nan, inf and -inf.
    return go_float(v)


def _to_float(v: Any) -> float:
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v))
    except ValueError:
        raise TemplateError(f"can't convert {v!r} to float") from None


def _humanize(v: Any) -> str:
    v = _to_float(v)
    if math.isnan(v) or math.isinf(v):
        return _special(v)
    if v == 0:
        return f"{v:.4g}"
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
        return f"{v:.4g}{prefix}"
    v, prefix = _scale_down(v)
    return f"{v:.4g}{prefix}"


def _scale_down(v: float) -> tuple[float, str]:
    """A value below 1 as a number >= 1 and its SI prefix (m, u, n, ...), as Prometheus does."""
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return v, prefix


def _humanize1024(v: Any) -> str:
    v = _to_float(v)
    if math.isnan(v) or math.isinf(v):
        return _special(v)
    if abs(v) <= 1:
        return f"{v:.4g}"
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix, v = p, v / 1024
    return f"{v:.4g}{prefix}"


def _humanize_duration(v: Any) -> str:
    v = _to_float(v)
    if math.isnan(v) or math.isinf(v):
        return _special(v)
    if v == 0:
        return f"{v:.4g}s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        d = int(v)
        seconds, minutes, hours, days = d % 60, (d // 60) % 60, (d // 3600) % 24, d // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{v:.4g}s"
    v, prefix = _scale_down(v)
    return f"{v:.4g}{prefix}s"


def _humanize_timestamp(v: Any) -> str:
    v = _to_float(v)
    if math.isnan(v) or math.isinf(v):
        return _special(v)
    # Go's time.Time.String(): "2006-01-02 15:04:05.999999999 -0700 MST"
    return datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def _string(fn: Callable[[str], str]) -> Callable[..., str]:
    def call(v: Any) -> str:
        if not isinstance(v, str):
            raise TemplateError(f"wrong type for value; expected string; got {_go_type(v)}")
        return fn(v)

    return call


def _go_type(v: Any) -> str:
    return "float64" if isinstance(v, float) else "string" if isinstance(v, str) else type(v).__name__


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _strip_domain(host: str) -> str:
    name, colon, port = host.partition(":") if host.count(":") == 1 else (host, "", "")
    if re.fullmatch(r"[0-9.]+", name):
        return host
    return name.split(".", 1)[0] + colon + port


def _re_replace_all(pattern: Any, repl: Any, text: Any) -> str:
    try:
        compiled = re.compile(str(pattern))
    except re.error as exc:
        raise TemplateError(f"reReplaceAll: bad pattern {pattern!r}: {exc}") from None
    # Go's $1 / ${1} expansion -> Python's \g<1>
    return compiled.sub(re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", str(repl)), str(text))


def _match(pattern: Any, text: Any) -> bool:
    try:
        return re.search(str(pattern), str(text)) is not None
    except re.error as exc:
        raise TemplateError(f"match: bad pattern {pattern!r}: {exc}") from None


_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")


def _printf(fmt: Any, *args: Any) -> str:
    if not isinstance(fmt, str):
        raise TemplateError("printf: the format must be a string")
    values = list(args)

    def one(m: re.Match[str]) -> str:
        flags, width, prec, verb = m.groups()
        if verb == "%":
            return "%"
        if not values:
            return f"%!{verb}(MISSING)"
        v = values.pop(0)
        spec = "%" + flags + (width or "") + (f".{prec}" if prec is not None else "")
        if verb == "v":
            return go_float(v) if isinstance(v, float) else str(v)
        if verb in "sq":
            text = go_float(v) if isinstance(v, float) else str(v)
            return (spec + "s") % (f'"{text}"' if verb == "q" else text)
        if verb in "dxX":
            return (spec + verb) % int(_to_float(v))
        if verb in "eEfFgG":
            return (spec + verb) % _to_float(v)
        raise TemplateError(f"printf: verb %{verb} is not supported in-process")

    return _VERB.sub(one, fmt)


_FUNCS: dict[str, Callable[..., Any]] = {
    "humanize": _humanize,
    "humanize1024": _humanize1024,
    "humanizeDuration": _humanize_duration,
    "humanizePercentage": lambda v: _special(_to_float(v)) + "%" if not math.isfinite(_to_float(v))
    else "%.4g%%" % (_to_float(v) * 100),
    "humanizeTimestamp": _humanize_timestamp,
    "toUpper": _string(str.upper),
    "toLower": _string(str.lower),
    "title": _string(lambda s: re.sub(r"\b([a-z])", lambda m: m.group(1).upper(), s)),
    "stripPort": _string(_strip_port),
    "stripDomain": _string(_strip_domain),
    "reReplaceAll": _re_replace_all,
    "match": _match,
    "printf": _printf,
    "safeHtml": lambda v: str(v),
}
# Prometheus functions that need its query engine or Go values this evaluator does not have.
_NOT_IN_PROCESS = {
    "query", "first", "label", "value", "strvalue", "sortByLabel", "args", "tmpl", "graphLink",
    "tableLink", "externalURL", "pathPrefix", "parseDuration", "toTime", "toDuration", "now",
}
_ACTIONS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}


# --- parsing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Var:
    root: str  # labels | value | externalLabels | externalURL
    key: str | None = None


@dataclass(frozen=True)
class _Lit:
    value: Any


@dataclass(frozen=True)
class _Func:
    name: str


@dataclass
class _Template:
    # Text pieces and pipelines, in order; a pipeline is a list of commands, each a list of args.
    parts: list[str | list[list[Any]]] = field(default_factory=list)


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)
      | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      | (?P<var>\$[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?|\$)
      | (?P<field>(?:\.[A-Za-z_]\w*)+|\.)
      | (?P<ident>[A-Za-z_]\w*)
      | (?P<pipe>\|)
      | (?P<bad>\S)
    )""",
    re.X,
)
_VARS = {"$labels": "labels", "$value": "value", "$externalLabels": "externalLabels", "$externalURL": "externalURL"}
_FIELDS = {".Labels": "labels", ".Value": "value", ".ExternalLabels": "externalLabels", ".ExternalURL": "externalURL"}


def _parse_action(src: str) -> list[list[Any]]:
    commands: list[list[Any]] = [[]]
    pos = 0
    src = src.strip()
    if not src:
        raise TemplateError("missing value for command")
    first = src.split(None, 1)[0]
    if first in _ACTIONS:
        raise NotInProcessError(f"{{{{ {first} }}}} actions are not supported by the in-process evaluator")
    if src.startswith("/*"):
        return []  # a comment
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        kind = m.lastgroup
        text = m.group(kind)  # type: ignore[arg-type]
        if kind == "pipe":
            if not commands[-1]:
                raise TemplateError("missing command before '|'")
            commands.append([])
        elif kind == "str":
            if text.startswith("`"):
                commands[-1].append(_Lit(text[1:-1]))
            else:
                try:
                    commands[-1].append(_Lit(bytes(text[1:-1], "utf-8").decode("unicode_escape")))
                except UnicodeDecodeError:
                    raise TemplateError(f"bad string literal {text}") from None
        elif kind == "num":
            commands[-1].append(_Lit(float(text) if any(c in text for c in ".eE") else int(text)))
        elif kind in ("var", "field"):
            root, _, key = text.partition(".") if kind == "var" else (text, "", "")
            if kind == "field":
                head = "." + text[1:].split(".", 1)[0] if text != "." else "."
                key = text[len(head) + 1:] if len(text) > len(head) else ""
                root = head
                name = _FIELDS.get(root)
            else:
                name = _VARS.get(root)
            if name is None:
                raise TemplateError(f"undefined variable or field {text!r}")
            if key and name not in ("labels", "externalLabels"):
                raise TemplateError(f"{text!r}: {root} has no fields")
            commands[-1].append(_Var(name, key or None))
        elif kind == "ident":
            if text in ("true", "false"):
                commands[-1].append(_Lit(text == "true"))
            elif text in _FUNCS:
                commands[-1].append(_Func(text))
            elif text in _NOT_IN_PROCESS:
                raise NotInProcessError(f"function {text!r} needs Prometheus' query engine; not supported in-process")
            else:
                raise TemplateError(f'function "{text}" not defined')
        else:
            raise TemplateError(f"unexpected {text!r} in command")
    if not commands[-1]:
        raise TemplateError("missing command after '|'")
    for i, cmd in enumerate(commands):
        if not isinstance(cmd[0], _Func) and len(cmd) > 1:
            raise TemplateError(f"can't give argument to non-function {_describe(cmd[0])}")
        if i > 0 and not isinstance(cmd[0], _Func):
            raise TemplateError(f"non executable command in pipeline stage {i + 1}")
    return commands


def _describe(arg: Any) -> str:
    if isinstance(arg, _Var):
        return "$" + arg.root + (f".{arg.key}" if arg.key else "")
    return repr(arg.value) if isinstance(arg, _Lit) else arg.name


_DELIMS = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


def _parse(text: str) -> _Template:
    t = _Template()
    pos = 0
    trim_next = False  # the previous action ended with " -}}"
    for m in _DELIMS.finditer(text):
        before = text[pos:m.start()]
        if trim_next:
            before = before.lstrip()
        if m.group(1):
            before = before.rstrip()
        t.parts.append(before)
        t.parts.append(_parse_action(m.group(2)))
        trim_next = bool(m.group(3))
        pos = m.end()
    rest = text[pos:].lstrip() if trim_next else text[pos:]
    if "{{" in rest:
        raise TemplateError("unclosed action")
    t.parts.append(rest)
    return t


_CACHE: dict[str, _Template] = {}


def _compiled(text: str) -> _Template:
    t = _CACHE.get(text)
    if t is None:
        t = _CACHE[text] = _parse(text)
        if len(_CACHE) > 4096:
            _CACHE.clear()
    return t


def check_template(text: str) -> None:
    """Raise TemplateError if `text` would not expand in-process (syntax, unknown functions)."""
    _compiled(text)


# --- expansion --------------------------------------------------------------------------------


def _print(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{k}:{v[k]}" for k in sorted(v)) + "]"
    return str(v)


def expand(
    text: str,
    labels: Mapping[str, str],
    value: float,
    *,
    external_labels: Mapping[str, str] | None = None,
    external_url: str = "",
) -> str:
    """Expand one template for one alert; raises TemplateError as Prometheus' Expand would fail."""
    data: dict[str, Any] = {"labels": dict(labels), "value": value, "externalLabels": dict(external_labels or {}),
            "externalURL": external_url}

    def arg(a: Any) -> Any:
        if isinstance(a, _Lit):
            return a.value
        if isinstance(a, _Var):
            v = data[a.root]
            # A missing label expands to "" (Go templates print a missing map key's zero value).
            return v.get(a.key, "") if a.key is not None else v
        raise TemplateError(f"{a.name} is a function, not a value")

    out = []
    for part in _compiled(text).parts:
        if isinstance(part, str):
            out.append(part)
            continue
        if not part:
            continue
        piped: Any = None
        for i, cmd in enumerate(part):
            head = cmd[0]
            if isinstance(head, _Func):
                args = [arg(a) for a in cmd[1:]]
                if i > 0:
                    args.append(piped)
                try:
                    piped = _FUNCS[head.name](*args)
                except TypeError:
                    raise TemplateError(f"wrong number of args for {head.name}: got {len(args)}") from None
            else:
                piped = arg(head)
        out.append(_print(piped))
    return "".join(out)


def expand_or_error(text: str, labels: Mapping[str, str], value: float, **kw: Any) -> tuple[str, str | None]:
    """(expansion, None), or Prometheus' `<error expanding template: ...>` and the error."""
    try:
        return expand(text, labels, value, **kw), None
    except TemplateError as exc:
        return f"<error expanding template: {exc}>", str(exc)
