#!/usr/bin/env python3
"""Generate ``src/airlock/_models.py`` from the daemon's OpenAPI document.

Every schema in ``components.schemas`` becomes a frozen dataclass (or a ``str`` enum) with
``from_dict``/``to_dict``, and every operation becomes a ``Route`` constant (method and path
template), so the hand-written client follows the document. No network, standard library only.

    python3 tools/gen_models.py            # rewrite the module from docs/api/openapi.json
    python3 tools/gen_models.py --check    # exit 1 if the module is stale
    python3 tools/gen_models.py DOC OUT    # other paths
"""

from __future__ import annotations

import json
import keyword
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
DOC = HERE.parents[2] / "docs" / "api" / "openapi.json"
OUT = HERE.parent / "src" / "airlock" / "_models.py"

Schema = Dict[str, Any]


def _ref_name(ref: str) -> str:
    prefix = "#/components/schemas/"
    if not ref.startswith(prefix):
        raise ValueError(f"unsupported $ref {ref!r}")
    return ref[len(prefix) :]


def _split_null(s: Schema) -> Tuple[Schema, bool]:
    """The schema without its `null` alternative, and whether it had one."""
    if "oneOf" in s:
        alts = [a for a in s["oneOf"] if a.get("type") != "null"]
        if len(alts) == 1 and len(alts) < len(s["oneOf"]):
            return alts[0], True
        raise ValueError(f"unsupported oneOf {s!r}")
    t = s.get("type")
    if isinstance(t, list) and "null" in t:
        rest = [x for x in t if x != "null"]
        if len(rest) != 1:
            raise ValueError(f"unsupported type list {t!r}")
        return {**s, "type": rest[0]}, True
    return s, False


class Gen:
    def __init__(self, doc: Schema) -> None:
        self.schemas: Dict[str, Schema] = doc["components"]["schemas"]

    def is_enum(self, name: str) -> bool:
        return "enum" in self.schemas[name]

    def ann(self, s: Schema) -> str:
        """The Python annotation of a (non-null) schema."""
        if "$ref" in s:
            return _ref_name(s["$ref"])
        t = s.get("type")
        if t == "string":
            return "str"
        if t == "integer":
            return "int"
        if t == "number":
            return "float"
        if t == "boolean":
            return "bool"
        if t == "array":
            return f"List[{self.ann(s['items'])}]"
        if t == "object":
            extra = s.get("additionalProperties")
            if isinstance(extra, dict):
                return f"Dict[str, {self.ann(extra)}]"
            # An object the document leaves open (`Object`): any JSON value.
            return "Any"
        raise ValueError(f"unsupported schema {s!r}")

    def load(self, s: Schema, v: str) -> Optional[str]:
        """The expression turning JSON `v` into the annotated type, or None for `v` as-is."""
        if "$ref" in s:
            name = _ref_name(s["$ref"])
            return f"{name}({v})" if self.is_enum(name) else f"{name}.from_dict({v})"
        if s.get("type") == "array":
            inner = self.load(s["items"], "x")
            return f"[{inner} for x in {v}]" if inner else f"list({v})"
        if s.get("type") == "object" and isinstance(s.get("additionalProperties"), dict):
            inner = self.load(s["additionalProperties"], "x")
            return f"{{k: {inner} for k, x in {v}.items()}}" if inner else f"dict({v})"
        return None

    def dump(self, s: Schema, v: str) -> Optional[str]:
        """The expression turning `v` of the annotated type into JSON, or None for as-is."""
        if "$ref" in s:
            name = _ref_name(s["$ref"])
            return f"{v}.value" if self.is_enum(name) else f"{v}.to_dict()"
        if s.get("type") == "array":
            inner = self.dump(s["items"], "x")
            return f"[{inner} for x in {v}]" if inner else f"list({v})"
        if s.get("type") == "object" and isinstance(s.get("additionalProperties"), dict):
            inner = self.dump(s["additionalProperties"], "x")
            return f"{{k: {inner} for k, x in {v}.items()}}" if inner else f"dict({v})"
        return None

    def default(self, s: Schema) -> str:
        """The default of an optional, non-nullable field (serde's `#[serde(default)]`)."""
        t = s.get("type")
        if t == "boolean":
            return "False"
        if t == "integer":
            return "0"
        if t == "string":
            return '""'
        if t == "array":
            return "field(default_factory=list)"
        if t == "object":
            return "field(default_factory=dict)"
        raise ValueError(f"no default for {s!r}")

    def enum(self, name: str, s: Schema) -> List[str]:
        out = [f"class {name}(str, Enum):", *_doc(s.get("description", name), "    ")]
        for v in s["enum"]:
            out.append(f"    {_ident(v).upper()} = {_q(v)}")
        return out

    def model(self, name: str, s: Schema) -> List[str]:
        required = set(s.get("required", []))
        props: Dict[str, Schema] = s.get("properties", {})
        fields = []
        for key, ps in props.items():
            inner, nullable = _split_null(ps)
            fields.append((key, _ident(key), inner, nullable, key in required))
        # Dataclass order: fields without defaults first (document order otherwise).
        fields.sort(key=lambda f: not f[4])
        out = [
            "@dataclass(frozen=True)",
            f"class {name}:",
            *_doc(s.get("description", name), "    "),
            "",
        ]
        for key, py, inner, nullable, req in fields:
            t = self.ann(inner)
            if nullable:
                t = f"Optional[{t}]"
            if req:
                out.append(f"    {py}: {t}")
            elif nullable:
                out.append(f"    {py}: {t} = None")
            else:
                out.append(f"    {py}: {t} = {self.default(inner)}")
            desc = props[key].get("description") or inner.get("description")
            if desc:
                out.extend(_doc(desc, "    "))
        out += [
            "",
            "    @classmethod",
            f"    def from_dict(cls, d: Mapping[str, Any]) -> {name}:",
            f'        """Parse the JSON object of a `{name}` (unknown keys are ignored)."""',
            "        return cls(",
        ]
        for key, py, inner, nullable, req in fields:
            k = _q(key)
            if req:
                val = self.load(inner, f"d[{k}]") or f"d[{k}]"
            elif nullable:
                conv = self.load(inner, f"d[{k}]")
                val = f"None if d.get({k}) is None else {conv}" if conv else f"d.get({k})"
            else:
                default = self.default(inner)
                if default.startswith("field("):
                    empty = "[]" if inner.get("type") == "array" else "{}"
                    raw = f"(d.get({k}) or {empty})"
                else:
                    raw = f"d.get({k}, {default})"
                val = self.load(inner, raw) or raw
            out.append(f"            {py}={val},")
        out += [
            "        )",
            "",
            "    def to_dict(self) -> Dict[str, Any]:",
            f'        """The JSON object of this `{name}` (None fields left out)."""',
            "        out: Dict[str, Any] = {}",
        ]
        for key, py, inner, nullable, req in fields:
            val = self.dump(inner, f"self.{py}") or f"self.{py}"
            if nullable:
                out += [f"        if self.{py} is not None:", f"            out[{_q(key)}] = {val}"]
            else:
                out.append(f"        out[{_q(key)}] = {val}")
        out.append("        return out")
        return out

    def routes(self, doc: Schema) -> List[str]:
        out = []
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                summary = (op.get("summary") or op["operationId"]).strip()
                out.append(
                    f"{op['operationId'].upper()} = Route({_q(method.upper())}, {_q(path)})"
                )
                out.extend(_doc(summary, ""))
        return out

    def render(self, doc: Schema) -> str:
        head = f'''# Generated by tools/gen_models.py from docs/api/openapi.json: do not edit.
# Regenerate with `python3 sdk/python/tools/gen_models.py`; a test fails when this is stale.
"""Wire types and routes of the {doc["info"]["title"]} (version {doc["info"]["version"]})."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Mapping, NamedTuple, Optional


class Route(NamedTuple):
    """An operation of the API: HTTP method and path template."""

    method: str
    path: str

'''
        blocks = []
        for name, s in sorted(self.schemas.items()):
            blocks.append("\n".join(self.enum(name, s) if "enum" in s else self.model(name, s)))
        body = "\n\n\n".join(blocks)
        return head + "\n" + "\n".join(self.routes(doc)) + "\n\n\n" + body + "\n"


def _q(text: str) -> str:
    """A double-quoted Python string literal."""
    return json.dumps(text, ensure_ascii=True)


def _ident(key: str) -> str:
    py = "".join(c if c.isalnum() or c == "_" else "_" for c in key)
    return py + "_" if keyword.iskeyword(py) else py


def _doc(text: str, indent: str) -> List[str]:
    text = " ".join(text.split()).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = textwrap.wrap(text, width=96 - len(indent) - 6) or [""]
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    return [f'{indent}"""{lines[0]}', *(f"{indent}{l}" for l in lines[1:]), f'{indent}"""']


def render(doc_path: Path = DOC) -> str:
    """The module text for the document at `doc_path`."""
    doc = json.loads(doc_path.read_text(encoding="utf-8"))
    return Gen(doc).render(doc)


def main(argv: List[str]) -> int:
    check = "--check" in argv
    paths = [a for a in argv if a != "--check"]
    doc = Path(paths[0]) if paths else DOC
    out = Path(paths[1]) if len(paths) > 1 else OUT
    text = render(doc)
    if check:
        if out.read_text(encoding="utf-8") != text:
            print(f"{out} is stale: run python3 {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
