"""Compiled pipeline specs (the YAML ``tuneloop compile`` writes): read, retarget, pin, check parameters.

Plain YAML in and out, no kfp: the rewrites keep KFP's own layout (its header comments, then the
spec dumped with sorted keys), so a rewritten template differs from a fresh compile only where asked.

* :func:`rewrite` points every tuneloop image at an :class:`~tuneloop.images.ImageSet` (repository,
  tag, digests) and, when asked, compiles the GPU task settings in as constants: the executor's
  resources get the fields KFP writes for constants (``accelerator.type/count``, ``cpuLimit``,
  ``memoryLimit`` next to the ``resource*`` ones), and the four pipeline parameters leave the
  template's interface (their values are fixed now, so passing them would be an error).
* :func:`interface` lists a template's parameters; :func:`check_parameters` refuses unknown and
  missing ones before anything is submitted or run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuneloop.config import close_match
from tuneloop.gpu import PARAMETERS as GPU_PARAMETERS
from tuneloop.gpu import GpuSettings
from tuneloop.images import ImageSet, image_kind

_PLACEHOLDER = re.compile(r"^\{\{\$\.inputs\.parameters\['[^']+'\]\}\}$")
# KFP parameter types -> what a value must be (JSON types), for messages and checks.
_TYPES = {
    "STRING": (str,),
    "NUMBER_INTEGER": (int,),
    "NUMBER_DOUBLE": (int, float),
    "BOOLEAN": (bool,),
    "STRUCT": (dict,),
    "LIST": (list,),
}
_TYPE_WORDS = {
    "STRING": "a string", "NUMBER_INTEGER": "an integer", "NUMBER_DOUBLE": "a number",
    "BOOLEAN": "true or false", "STRUCT": "a JSON object", "LIST": "a JSON list",
}


class TemplateError(ValueError):
    """A compiled template cannot be read or rewritten as asked; the message says why and what to do."""


@dataclass
class Template:
    """A compiled pipeline: KFP's header comments and the YAML documents (spec, then platform spec)."""

    header: str
    docs: list[Any]

    @property
    def spec(self) -> dict[str, Any]:
        return self.docs[0]

    @property
    def name(self) -> str:
        return str(self.spec.get("pipelineInfo", {}).get("name", ""))

    def dump(self) -> str:
        return self.header + yaml.dump_all(self.docs, sort_keys=True)


def load(text: str, where: str = "template") -> Template:
    """Parse a compiled pipeline YAML.

    Raises:
        TemplateError: not YAML, or not a KFP v2 pipeline spec.
    """
    lines = text.splitlines(keepends=True)
    n = 0
    while n < len(lines) and lines[n].startswith("#"):
        n += 1
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        docs = [d for d in yaml.load_all("".join(lines[n:]), Loader=loader) if d is not None]
    except yaml.YAMLError as exc:
        raise TemplateError(f"{where} is not YAML: {exc}") from exc
    if not docs or not isinstance(docs[0], dict) or "root" not in docs[0] or "deploymentSpec" not in docs[0]:
        raise TemplateError(f"{where} is not a compiled KFP pipeline (no root/deploymentSpec); run tuneloop compile")
    return Template("".join(lines[:n]), docs)


def read(path: str | Path) -> Template:
    try:
        return load(Path(path).read_text(), str(path))
    except OSError as exc:
        raise TemplateError(f"{path}: {exc}") from exc


def containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(executor name, container spec)`` for every container executor."""
    for name, executor in sorted(spec.get("deploymentSpec", {}).get("executors", {}).items()):
        if isinstance(executor, dict) and isinstance(executor.get("container"), dict):
            yield name, executor["container"]


def images(spec: Mapping[str, Any]) -> dict[str, str]:
    """``{executor: image}`` of every container executor."""
    return {name: c.get("image", "") for name, c in containers(spec)}


def retarget_images(template: Template, images_: ImageSet) -> int:
    """Point every tuneloop image (any repository, tag or digest) at ``images_``; returns how many."""
    changed = 0
    for _, container in containers(template.spec):
        kind = image_kind(container.get("image", ""))
        if kind is not None:
            container["image"] = images_.ref(kind)
            changed += 1
    return changed


def pin_gpu(template: Template, gpu: Mapping[str, Any] | GpuSettings) -> list[str]:
    """Compile the given GPU settings into the template as constants; returns the parameters removed.

    ``gpu`` holds any of ``accelerator_type`` + ``accelerator_count``, ``cpu_limit``, ``memory_limit``
    (checked values, e.g. a :class:`~tuneloop.gpu.GpuSettings`). Every executor whose resource field
    is a placeholder gets the constant, with the legacy fields KFP writes for constants; the
    parameters leave the root interface and the root tasks receive the constant instead.

    Raises:
        TemplateError: the pipeline has no GPU task (no such parameter).
    """
    values = gpu.to_dict() if isinstance(gpu, GpuSettings) else dict(gpu)
    values = {k: v for k, v in values.items() if k in GPU_PARAMETERS and v is not None}
    root_params = template.spec["root"].get("inputDefinitions", {}).get("parameters", {})
    missing = [k for k in values if k not in root_params]
    if missing:
        raise TemplateError(f"pipeline {template.name!r} has no GPU task (no parameter {missing[0]!r})")
    from tuneloop.gpu import cpu_to_float, memory_to_gb

    for _, container in containers(template.spec):
        res = container.get("resources")
        if not isinstance(res, dict):
            continue
        acc = res.get("accelerator")
        if isinstance(acc, dict) and "accelerator_type" in values and _PLACEHOLDER.match(str(acc.get("resourceType", ""))):
            kind, count = values["accelerator_type"], int(values["accelerator_count"])
            res["accelerator"] = {"count": str(count), "resourceCount": str(count), "resourceType": kind, "type": kind}
        if "cpu_limit" in values and _PLACEHOLDER.match(str(res.get("resourceCpuLimit", ""))):
            res["resourceCpuLimit"], res["cpuLimit"] = values["cpu_limit"], cpu_to_float(values["cpu_limit"])
        if "memory_limit" in values and _PLACEHOLDER.match(str(res.get("resourceMemoryLimit", ""))):
            res["resourceMemoryLimit"] = values["memory_limit"]
            res["memoryLimit"] = memory_to_gb(values["memory_limit"])
    constants = {k: (float(v) if k == "accelerator_count" else v) for k, v in values.items()}
    for task in template.spec["root"].get("dag", {}).get("tasks", {}).values():
        for spec in task.get("inputs", {}).get("parameters", {}).values():
            if spec.get("componentInputParameter") in constants:
                value = constants[spec.pop("componentInputParameter")]
                spec["runtimeValue"] = {"constant": value}
    for k in constants:
        root_params.pop(k)
    dangling = sorted(
        {s.get("componentInputParameter") for t in template.spec["root"]["dag"]["tasks"].values()
         for s in t.get("inputs", {}).get("parameters", {}).values()} & set(constants)
    )
    assert not dangling, dangling
    template.header = "".join(
        line for line in template.header.splitlines(keepends=True)
        if not any(re.match(rf"^#\s+{re.escape(k)}:", line) for k in constants)
    )
    return sorted(constants)


def rewrite(
    text: str,
    *,
    images: ImageSet | None = None,
    gpu: Mapping[str, Any] | GpuSettings | None = None,
    where: str = "template",
) -> str:
    """A compiled template with its images retargeted and/or its GPU settings compiled as constants."""
    template = load(text, where)
    if images is not None:
        retarget_images(template, images)
    if gpu:
        pin_gpu(template, gpu)
    return template.dump()


# -- parameters ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """One pipeline parameter of a template: its KFP type, whether it must be given, its default."""

    name: str
    type: str
    required: bool
    default: Any = None
    description: str = ""

    @property
    def type_word(self) -> str:
        return _TYPE_WORDS.get(self.type, self.type.lower())


def interface(spec: Mapping[str, Any]) -> dict[str, Parameter]:
    """The root parameters of a compiled spec (``root.inputDefinitions.parameters``)."""
    out = {}
    for name, p in sorted(spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}).items()):
        required = not p.get("isOptional", False) and "defaultValue" not in p
        out[name] = Parameter(
            name, str(p.get("parameterType", "STRING")), required, p.get("defaultValue"), p.get("description", "")
        )
    return out


def check_parameters(
    params: Mapping[str, Any],
    parameters: Mapping[str, Parameter],
    *,
    pipeline: str = "pipeline",
    option: str = "-p",
    raw: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Refuse unknown, missing and mistyped parameters before anything runs; returns them coerced.

    KFP takes a number for a float parameter and a whole float for an integer one (JSON has one number
    type); anything else of the wrong type is refused, naming the parameter and its type. ``raw`` holds
    the text each value was typed as (``-p KEY=TEXT``): a string parameter takes the text itself, so
    ``-p table=2024`` is the table "2024", not a number.

    Raises:
        TemplateError: the first problem found: unknown names (with the closest valid one and the list of
            valid names), then missing required names, then wrongly typed values.
    """
    unknown = [k for k in params if k not in parameters]
    if unknown:
        hints = []
        for k in unknown:
            near = close_match(k, parameters)
            hints.append(f"{k!r} (did you mean {near!r}?)" if near else repr(k))
        noun = "parameter" if len(unknown) == 1 else "parameters"
        raise TemplateError(
            f"{option}: {pipeline} has no {noun} {', '.join(hints)}; its parameters are {sorted(parameters)}"
        )
    missing = [p.name for p in parameters.values() if p.required and p.name not in params]
    if missing:
        raise TemplateError(
            f"{pipeline} needs {', '.join(f'{option} {m}=...' for m in missing)} "
            f"({'; '.join(f'{m}: {_first_line(parameters[m].description)}' for m in missing)})"
        )
    out = {}
    for k, v in params.items():
        if raw is not None and k in raw and parameters[k].type == "STRING":
            out[k] = raw[k]
        else:
            out[k] = _coerce(parameters[k], v, option)
    return out


def _first_line(text: str) -> str:
    return (text or "no description").strip().split("\n")[0].rstrip(".")


def _coerce(p: Parameter, value: Any, option: str) -> Any:
    want = _TYPES.get(p.type)
    if want is None:
        return value
    if p.type == "STRING" and not isinstance(value, str):
        # -p name=123 parses as JSON 123: a string parameter takes it as the text the user typed
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
    if p.type == "NUMBER_INTEGER" and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, want) and (p.type == "BOOLEAN" or not isinstance(value, bool)):
        return value
    raise TemplateError(f"{option} {p.name}={value!r}: {p.name} takes {p.type_word}")


_SUFFIX = re.compile(r"(-\d+)+$")


def canonical_component_names(text: str) -> str:
    """The compiled YAML with its components named in a fixed order, whatever the hash seed.

    KFP 2.17 renames the components of a sub-pipeline that collide with the outer pipeline's
    (``comp-condition-5`` -> ``comp-condition-5-2``) in an order that follows the interpreter's hash seed,
    so the same pipeline can compile to differently numbered (equivalent) YAML. Here every component is
    renamed by a walk from the root (each DAG's tasks in name order): the n-th distinct component of a
    base name is ``<base>`` then ``<base>-2``, ... The spec is otherwise unchanged (header comments kept).
    """
    lines = text.splitlines(keepends=True)
    n = 0
    while n < len(lines) and lines[n].startswith("#"):
        n += 1
    header, docs = "".join(lines[:n]), list(yaml.safe_load_all("".join(lines[n:])))
    spec = docs[0] if docs and isinstance(docs[0], dict) else None
    if not spec or not isinstance(spec.get("components"), dict) or "root" not in spec:
        return text
    comps: dict[str, Any] = spec["components"]
    new: dict[str, str] = {}
    used: dict[str, int] = {}

    def walk(dag: Mapping[str, Any]) -> None:
        for _, task in sorted((dag.get("tasks") or {}).items()):
            old = (task.get("componentRef") or {}).get("name")
            if not old or old in new:
                continue
            base = _SUFFIX.sub("", old)
            used[base] = used.get(base, 0) + 1
            new[old] = base if used[base] == 1 else f"{base}-{used[base]}"
            inner = comps.get(old, {}).get("dag")
            if inner:
                walk(inner)

    walk(spec["root"].get("dag") or {})
    for old in sorted(set(comps) - set(new)):  # not reached from the root (none expected): keep, unclashed
        new[old] = old

    def rename(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "componentRef" and isinstance(v, dict) and v.get("name") in new:
                    v = {**v, "name": new[v["name"]]}
                out[k] = rename(v)
            return out
        if isinstance(node, list):
            return [rename(v) for v in node]
        return node

    spec = rename(spec)
    spec["components"] = {new[k]: v for k, v in spec["components"].items()}
    if len(set(new.values())) != len(new):
        return text  # a canonical name would clash with a kept one: leave KFP's numbering
    return header + yaml.dump_all([spec, *docs[1:]], sort_keys=True)
