"""The configuration reference page, generated from the pydantic models of agent/config.py.

Every key of :class:`agent.config.Config` with its type, default, constraints and description.
A description is the field's ``description=`` where it has one, else the comment that explains
the key in ``config/agent.example.yaml``, else the comment next to the field in the model's
source. Nothing here is written by hand, so the page cannot drift from the code.
"""

from __future__ import annotations

import ast
import inspect
import io
import re
import socket
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types
import yaml
from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

QUANTITY = "<quantity>"  # the path segment of a key under sensors: that names a quantity
ITEM = "[]"  # the path segment of an item of a list of sections
NAME = ".<name>"  # the path segment of an entry of a mapping of names to sections

# factories whose value depends on the machine that builds the docs
_FACTORY_WORDS: dict[Callable[[], Any], str] = {socket.gethostname: "the host name"}
# BeforeValidator functions of agent/config.py -> the kind of value they take
_KINDS = {
    "parse_duration": "duration",
    "parse_size": "size",
    "_topic_word": "topic word",
    "_actuator_action": "device/actuator=action",
    "_condition": "condition",
}


@dataclass
class Key:
    path: str
    type: str
    default: str
    constraints: str
    description: str
    section: bool  # a mapping of keys of its own (listed below it)


# ---- types and values -------------------------------------------------------------------------


def _kind(metadata: list[Any]) -> str | None:
    for item in metadata:
        if isinstance(item, BeforeValidator):
            name = getattr(item.func, "__name__", "")
            if name in _KINDS:
                return _KINDS[name]
    return None


def _split_annotated(tp: Any) -> tuple[Any, list[Any]]:
    if typing.get_origin(tp) is typing.Annotated:
        base, *meta = typing.get_args(tp)
        return base, list(meta)
    return tp, []


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def type_name(tp: Any, metadata: list[Any] | None = None) -> str:
    """A type in the words of the YAML file: ``duration``, ``list of string``, ``integer, or
    null``."""
    tp, meta = _split_annotated(tp)
    kind = _kind([*(metadata or []), *meta])
    if kind:
        return kind
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        parts = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (", or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_plural(type_name(args[0]))}"
    if origin is tuple:
        return "[" + ", ".join(type_name(a) for a in args) + "]"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if _is_model(tp):
        return "section"
    names = {str: "string", int: "integer", float: "number", bool: "`true` or `false`",
             Path: "path"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _plural(word: str) -> str:
    if re.fullmatch(r"[a-z ]+", word):
        return word + "s"
    return f"{word} values" if word.startswith("[") else word


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s" if seconds >= 1 else f"{seconds * 1000:g}ms"


def _size(count: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10), ("GB", 10**9),
                       ("MB", 10**6), ("KB", 10**3)):
        if count >= size and count % size == 0:
            return f"{count // size}{unit}"
    return f"{count}B"


def yaml_value(value: Any, kind: str | None = None) -> str:
    """A default as one would write it in the YAML file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind == "duration" and isinstance(value, int | float):
        return _duration(float(value))
    if kind == "size" and isinstance(value, int):
        return _size(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v, kind) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v, kind)}" for k, v in value.items()) + "}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _inner_kind(tp: Any) -> str | None:
    """The kind of the values of a field (through ``X | None`` and ``list[X]``)."""
    tp, meta = _split_annotated(tp)
    kind = _kind(meta)
    if kind:
        return kind
    for arg in typing.get_args(tp):
        kind = _inner_kind(arg)
        if kind:
            return kind
    return None


def default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        factory = field.default_factory
        if factory in _FACTORY_WORDS:
            return _FACTORY_WORDS[factory]
        value = factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return ""
    kind = _kind(field.metadata) or _inner_kind(field.annotation)
    return f"`{yaml_value(value, kind)}`"


def constraints_text(field: FieldInfo) -> str:
    words = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            words.append(f"≥ {yaml_value(item.ge)}")
        elif isinstance(item, annotated_types.Gt):
            words.append(f"> {yaml_value(item.gt)}")
        elif isinstance(item, annotated_types.Le):
            words.append(f"≤ {yaml_value(item.le)}")
        elif isinstance(item, annotated_types.Lt):
            words.append(f"< {yaml_value(item.lt)}")
        elif isinstance(item, annotated_types.MinLen):
            words.append(f"at least {item.min_length} item{'s' * (item.min_length != 1)}")
        elif isinstance(item, annotated_types.MaxLen):
            words.append(f"at most {item.max_length} items")
    return ", ".join(words)


# ---- the models' structure --------------------------------------------------------------------


def _field_type(field: FieldInfo) -> Any:
    return field.annotation


def _submodel(tp: Any) -> tuple[type[BaseModel] | None, str]:
    """The section a field opens, and the path segment its keys sit under ('', '[]' or
    '.<name>')."""
    tp, _ = _split_annotated(tp)
    if _is_model(tp):
        return tp, ""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        for arg in args:
            model, seg = _submodel(arg)
            if model is not None:
                return model, seg
    if origin is list and args:
        model, _ = _submodel(args[0])
        if model is not None:
            return model, ITEM
    if origin is dict and len(args) == 2:
        model, _ = _submodel(args[1])
        if model is not None:
            return model, NAME
    return None, ""


def extra_model(model: type[BaseModel]) -> type[BaseModel] | None:
    """The section type of the free keys of a model that allows them (``sensors:``)."""
    if model.model_config.get("extra") != "allow":
        return None
    hints = typing.get_type_hints(model, include_extras=True)
    extra = hints.get("__pydantic_extra__")
    args = typing.get_args(extra)
    return args[1] if len(args) == 2 and _is_model(args[1]) else None


def _join(prefix: str, name: str) -> str:
    return name if not prefix else (f"{prefix}{name}" if name == ITEM else f"{prefix}.{name}")


# ---- descriptions -----------------------------------------------------------------------------


def source_comments(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the comment beside it (or just above it) in the model's source."""
    try:
        source = textwrap.dedent(inspect.getsource(model))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    out: dict[str, str] = {}
    cls = ast.parse(source).body[0]
    assert isinstance(cls, ast.ClassDef)
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        end = node.end_lineno or node.lineno
        words = [comments[n] for n in range(node.lineno, end + 1) if n in comments]
        above: list[str] = []
        n = node.lineno - 1
        while n >= 1 and lines[n - 1].strip().startswith("#"):
            above.insert(0, comments.get(n, ""))
            n -= 1
        text = " ".join([*above, *words]).strip()
        if text:
            out[node.target.id] = text
    return out


def _inline_comment(lines: list[str], line: int, column: int) -> tuple[str, int] | None:
    """The comment on ``line`` (0-based) after ``column``, and the column of its '#'."""
    text = lines[line]
    match = re.search(r"(?:^|\s)#", text[column:])
    if not match:
        return None
    col = column + match.end() - 1
    return text[col + 1:].strip(), col


def example_comments(text: str, model: type[BaseModel]) -> dict[str, str]:
    """Key path -> the comment that explains the key in an example YAML file.

    A comment continued on the next lines (comment-only lines whose '#' stands in the same
    column) is joined. Keys under ``sensors:`` that name a quantity become ``<quantity>``, list
    items ``[]``."""
    lines = text.splitlines()
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    out: dict[str, str] = {}

    def comment_for(key: yaml.Node, value: yaml.Node) -> str | None:
        same_line = value.start_mark.line == key.start_mark.line
        nested = isinstance(value, yaml.MappingNode | yaml.SequenceNode)
        if same_line and (not nested or getattr(value, "flow_style", False)):
            line, column = value.end_mark.line, value.end_mark.column
        else:
            line, column = key.end_mark.line, key.end_mark.column
        found = _inline_comment(lines, line, column)
        if found is None:
            return None
        words, col = [found[0]], found[1]
        for nxt in lines[line + 1:]:
            if nxt.strip().startswith("#") and len(nxt) > col and nxt[col] == "#" \
                    and not nxt[:col].strip():
                words.append(nxt[col + 1:].strip())
            else:
                break
        return " ".join(w for w in words if w)

    def walk(node: yaml.Node | None, cls: type[BaseModel] | None, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode) or cls is None:
            return
        extra = extra_model(cls)
        for key, value in node.value:
            name = key.value
            if name in cls.model_fields:
                path = _join(prefix, name)
                child, seg = _submodel(_field_type(cls.model_fields[name]))
            elif extra is not None:
                path, child, seg = _join(prefix, QUANTITY), extra, ""
            else:
                continue
            # keys inside {a: 1, b: 2} share the line's comment with their parent key
            words = None if node.flow_style else comment_for(key, value)
            if words and words.startswith("or ") and value.start_mark.line == value.end_mark.line:
                # "smooth: {ewma: 0.3}  # or {median: 5}": the comment continues the value
                shown = lines[value.start_mark.line][value.start_mark.column:value.end_mark.column]
                words = f"`{shown}` {words}"
            if words and path not in out:
                out[path] = words
            if seg == ITEM and isinstance(value, yaml.SequenceNode):
                for item in value.value:
                    walk(item, child, path + ITEM)
            elif seg == NAME and isinstance(value, yaml.MappingNode):
                for entry_key, entry in value.value:
                    words = None if value.flow_style else comment_for(entry_key, entry)
                    if words and path + NAME not in out:
                        out[path + NAME] = words
                    walk(entry, child, path + NAME)
            else:
                walk(value, child, path)

    walk(root, model, "")
    return out


def docstring_summary(model: type[BaseModel]) -> str:
    doc = model.__doc__ or ""
    if not doc or doc.startswith(f"{model.__name__}("):  # pydantic's generated signature
        return ""
    para = inspect.cleandoc(doc).split("\n\n")[0]
    para = re.sub(r":\w+:`([^`]+)`", r"`\1`", para).replace("``", "`")
    return " ".join(para.split())


# ---- the page ---------------------------------------------------------------------------------


def keys(model: type[BaseModel], examples: dict[str, str], prefix: str = "") -> Iterator[Key]:
    """Every key under ``model``, depth first, in the order of the source."""
    comments = source_comments(model)
    for name, field in model.model_fields.items():
        path = _join(prefix, name)
        child, seg = _submodel(_field_type(field))
        description = field.description or examples.get(path) or comments.get(name) or (
            docstring_summary(child) if child is not None else "")
        yield Key(path, type_name(field.annotation, field.metadata), default_text(field),
                  constraints_text(field), description, child is not None)
        if child is not None:
            if seg == NAME:
                yield Key(path + NAME, "section", "", "", examples.get(path + NAME) or
                          docstring_summary(child), True)
            yield from keys(child, examples, path + seg)
    extra = extra_model(model)
    if extra is not None:
        path = _join(prefix, QUANTITY)
        yield Key(path, "section", "", "", docstring_summary(extra) or
                  "settings of one quantity, named as in the topic", True)
        yield from keys(extra, examples, path)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(config_model: type[BaseModel], example_yaml: Path,
           more: dict[str, str] | None = None) -> str:
    """The page. ``more``: descriptions by key path for keys that neither the models nor the
    example file explain; a path that is not a key is an error (it would drift silently)."""
    examples = example_comments(example_yaml.read_text(encoding="utf-8"), config_model)
    more = more or {}
    stale = sorted(set(more) - {k.path for k in keys(config_model, {})})
    if stale:
        raise ValueError(f"descriptions for keys the configuration does not have: {stale}")
    out = [
        "# Configuration reference",
        "",
        "<!-- generated from agent/config.py and config/agent.example.yaml by "
        "docs/gen/config_reference.py at every build: do not edit -->",
        "",
        "Every key of the configuration file, generated from the pydantic models the agent "
        "validates it with. Unknown keys are errors. Durations are strings with a unit "
        '(`"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"7d"`), sizes too (`"500MB"`, `"2GiB"`). '
        f"`{ITEM}` is an item of a list, `<name>` a name you choose; `{QUANTITY}` is a quantity "
        "named as in the sensor "
        "topic (`temperature`, `co2`, ...). `config/agent.example.yaml` shows every key in "
        "use, and [Editor support](../editor.md) makes an editor check and complete the file.",
        "",
    ]
    section: str | None = None
    for key in keys(config_model, examples):
        top = key.path.split(".")[0].split("[")[0]
        if top != section:
            section = top
            out += ["", f"## `{top}`", ""]
            out += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
        words = key.description or more.get(key.path, "")
        if key.constraints:
            words = f"{words} ({key.constraints})" if words else key.constraints
        out.append(f"| `{key.path}` | {_cell(key.type)} | {_cell(key.default)} | "
                   f"{_cell(words)} |")
    return "\n".join(out) + "\n"


def read_descriptions(path: Path) -> dict[str, str]:
    """``key.path: text`` lines (``#`` starts a comment line) -> {path: text}."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, text = line.partition(": ")
            if not sep:
                raise ValueError(f"{path}: write 'key.path: text', got {line!r}")
            out[key.strip()] = text.strip()
    return out
