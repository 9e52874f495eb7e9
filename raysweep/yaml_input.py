"""YAML as raysweep reads it: experiment files and ``--set`` values.

Stricter than ``yaml.safe_load`` where a silent reading would change the
experiment, and fast on large files:

* the text must be UTF-8;
* a key may appear once per mapping: after a merge or a copy-paste the last
  of two ``phases:`` would otherwise win without a word;
* anchors and aliases (``&a`` / ``*a``, ``<<: *defaults``) are allowed, but
  together they may repeat at most :data:`MAX_ALIASED_NODES` nodes, and an
  alias may not contain itself: a 1 kB file must not expand to gigabytes
  ("billion laughs");
* libyaml's C parser is used when PyYAML was built with it (a 10 MB file:
  about a second instead of most of a minute).

Every refusal is a :class:`~raysweep.errors.SpecError` naming the field path
(``parameters.x``, ``phases[1].name``) and the line.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from raysweep.errors import SpecError

#: Nodes (scalars, lists, mappings) that aliases may repeat in a document, all aliases together.
MAX_ALIASED_NODES = 100_000


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader (libyaml's when present), reading ``1e5`` and ``5e-3``
    as numbers as YAML 1.2 does: YAML 1.1, PyYAML's, wants a dot (``1.0e5``)
    and reads ``1e5`` as text, which users meet as "must be a number"."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)
_MERGE_TAG = "tag:yaml.org,2002:merge"


def load_text(text: str, source: str, root: str = "") -> Any:
    """The data of one YAML document; ``source`` names it in errors (a path, ``--set x``).

    ``root`` is the field path of the document itself (``--set phases.2`` for
    a ``--set`` value), which error paths inside it extend.

    Raises SpecError for invalid YAML, duplicate keys, an alias that contains
    itself, or aliases expanding past MAX_NODES nodes.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check(node, source, root)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise SpecError(source, f"not valid YAML ({_one_line(exc)})") from None
    finally:
        loader.dispose()


def load_file_bytes(data: bytes, source: str) -> Any:
    """As :func:`load_text`, from a file's bytes; non-UTF-8 bytes are a SpecError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(source, f"not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})") from None
    return load_text(text, source)


def _check(root: yaml.Node, source: str, root_path: str) -> None:
    """Walk the node graph as it expands: duplicate keys, self-containing and runaway aliases.

    An alias makes the graph share a node, so the walk meets it once per
    reference, as validation will later; each meeting after the first counts
    against MAX_ALIASED_NODES.
    """
    seen: set[int] = set()
    repeated = 0
    stack: list[tuple[yaml.Node, str, tuple[int, ...]]] = [(root, root_path, ())]
    while stack:
        node, path, ancestors = stack.pop()
        if id(node) in seen:
            repeated += 1
            if repeated > MAX_ALIASED_NODES:
                raise SpecError(
                    path or source,
                    f"YAML aliases (*name) repeat more than {MAX_ALIASED_NODES} values (anchor at line {_line(node)}); "
                    "write the values out",
                )
        seen.add(id(node))
        if id(node) in ancestors:
            raise SpecError(path or source, f"a YAML alias contains itself (line {_line(node)})")
        inner = ancestors + (id(node),)
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]", inner) for i, item in reversed(list(enumerate(node.value))))
        elif isinstance(node, yaml.MappingNode):
            first_line: dict[tuple[str, str], int] = {}
            children = []
            for key, value in node.value:
                if key.tag == _MERGE_TAG:
                    children.append((value, path, inner))
                    continue
                if isinstance(key, yaml.ScalarNode):
                    ident = (key.tag, key.value)
                    where = f"{path}.{key.value}" if path else str(key.value)
                    if ident in first_line:
                        raise SpecError(where, f"duplicate key (line {_line(key)}; first at line {first_line[ident]})")
                    first_line[ident] = _line(key)
                else:
                    where = f"{path}.?" if path else "?"
                children.append((value, where, inner))
            stack.extend(reversed(children))


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _one_line(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: the problem and where."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        context = f"{exc.context}; " if exc.context else ""
        return f"{context}{exc.problem}{where}"
    return " ".join(str(exc).split())
