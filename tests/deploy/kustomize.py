"""A small kustomize: renders the subset of kustomization features deploy/kubernetes uses.

No Python library renders kustomize overlays faithfully, and the kustomize binary is not a
Python dependency, so the deploy tests render the overlays with this module. It refuses any
kustomization field it does not implement (so a new feature cannot be silently ignored), and
test_kubernetes.py compares its output with `kubectl kustomize` wherever kubectl is installed.

Implemented: `resources` (files and directories), `components`, `namespace`, `patches` (by
`path`, strategic merge: maps merge, `null` deletes a key, lists of containers, env, volumes,
volume mounts and ports merge on their key, `$patch: delete` removes a list item or a whole
object, other lists are replaced), `replicas`, `images`, and `configMapGenerator` (`envs`,
`literals`, `behavior: create|merge`). Generated ConfigMaps keep their plain name: kustomize
adds a hash of the content to it (and to every reference), which changes nothing else.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

KUSTOMIZATION_FILE = "kustomization.yaml"
SUPPORTED = frozenset({"apiVersion", "kind", "namespace", "resources", "components", "patches",
                       "replicas", "images", "configMapGenerator"})
CLUSTER_SCOPED = frozenset({"Namespace", "PersistentVolume", "StorageClass", "ClusterRole",
                            "ClusterRoleBinding", "CustomResourceDefinition"})
# The merge key of each list the patches here touch (Kubernetes' patchMergeKey).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name",
              "volumes": "name", "volumeMounts": "mountPath", "imagePullSecrets": "name"}
PORT_KEYS = ("containerPort", "port")
DIRECTIVE = "$patch"

Obj = dict[str, Any]


class KustomizeError(ValueError):
    """A kustomization this renderer cannot render (or kustomize would refuse)."""


def render(directory: Path) -> list[Obj]:
    """The objects `kubectl kustomize directory` prints (generated names without their hash)."""
    return _build(directory, [], expect_component=False)


def identity(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(kind, name): how patches and transformers find an object."""
    return str(obj["kind"]), str(obj["metadata"]["name"])


def load_yaml_documents(path: Path) -> list[Obj]:
    documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    for document in documents:
        if not isinstance(document, dict):
            raise KustomizeError(f"{path}: a document is not a mapping")
    return documents


def _kustomization(directory: Path) -> Obj:
    path = directory / KUSTOMIZATION_FILE
    if not path.is_file():
        raise KustomizeError(f"no {KUSTOMIZATION_FILE} in {directory}")
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(document) - SUPPORTED)
    if unknown:
        raise KustomizeError(f"{path}: this renderer does not implement {unknown}")
    return dict(document)


def _build(directory: Path, objects: list[Obj], expect_component: bool) -> list[Obj]:
    """Accumulate `directory` onto `objects` as kustomize does: resources, components, then
    this kustomization's generators and transformers over everything accumulated."""
    kustomization = _kustomization(directory)
    if (kustomization.get("kind") == "Component") != expect_component:
        raise KustomizeError(f"{directory}: a Component only goes under `components`, and "
                             "only a Component does")
    for entry in kustomization.get("resources", []):
        _add_all(objects, _resource(directory / entry))
    for entry in kustomization.get("components", []):
        objects = _build(directory / entry, objects, expect_component=True)
    _generate(directory, kustomization.get("configMapGenerator", []), objects)
    for patch in kustomization.get("patches", []):
        objects = _patch_all(objects, directory / patch["path"])
    if "namespace" in kustomization:
        _set_namespace(objects, kustomization["namespace"])
    _set_replicas(objects, kustomization.get("replicas", []))
    _set_images(objects, kustomization.get("images", []))
    return objects


def _resource(path: Path) -> list[Obj]:
    if path.is_dir():
        return _build(path, [], expect_component=False)
    return load_yaml_documents(path)


def _add_all(objects: list[Obj], new: Iterable[Obj]) -> None:
    known = {identity(obj) for obj in objects}
    for obj in new:
        if identity(obj) in known:
            raise KustomizeError(f"{identity(obj)} is defined twice")
        known.add(identity(obj))
        objects.append(obj)


# --- generators ---------------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as kustomize's `envs` reads them: blank lines and # comments skipped,
    the value taken as written."""
    data: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise KustomizeError(f"{path}:{number}: not KEY=value: {raw!r}")
        data[key] = value
    return data


def _generate(directory: Path, generators: list[Obj], objects: list[Obj]) -> None:
    for generator in generators:
        data: dict[str, str] = {}
        for env_file in generator.get("envs", []):
            data |= read_env_file(directory / env_file)
        for literal in generator.get("literals", []):
            key, _, value = literal.partition("=")
            data[key] = value
        name = generator["name"]
        behavior = generator.get("behavior", "create")
        existing = [obj for obj in objects if identity(obj) == ("ConfigMap", name)]
        if behavior == "merge":
            if not existing:
                raise KustomizeError(f"ConfigMap {name}: nothing to merge into")
            existing[0].setdefault("data", {}).update(data)
        elif behavior == "create":
            _add_all(objects, [{"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": name}, "data": data}])
        else:
            raise KustomizeError(f"ConfigMap {name}: behavior {behavior!r} not implemented")


# --- strategic merge patches --------------------------------------------------------------------


def _patch_all(objects: list[Obj], path: Path) -> list[Obj]:
    for patch in load_yaml_documents(path):
        target = identity(patch)
        matches = [index for index, obj in enumerate(objects) if identity(obj) == target]
        if len(matches) != 1:
            raise KustomizeError(f"{path}: patch target {target} found {len(matches)} times")
        index = matches[0]
        if patch.get(DIRECTIVE) == "delete":
            objects = objects[:index] + objects[index + 1:]
        else:
            objects[index] = merge(objects[index], patch)
    return objects


def merge(original: Any, patch: Any, field: str = "") -> Any:
    """The strategic merge of `patch` into `original` (neither is changed)."""
    if isinstance(original, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(original)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = merge(merged[key], value, key)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(original, list) and isinstance(patch, list):
        key = _merge_key(field, original + patch)
        if key is not None:
            return _merge_list(original, patch, key)
    return copy.deepcopy(patch)


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field in MERGE_KEYS:
        return MERGE_KEYS[field]
    if field == "ports":
        for key in PORT_KEYS:
            if items and all(isinstance(item, dict) and key in item for item in items):
                return key
    return None


def _merge_list(original: list[Obj], patch: list[Obj], key: str) -> list[Obj]:
    """The patch's items first, in its order (merged with the original item of the same key),
    then the original items the patch does not name: the order kustomize produces."""
    by_key = {item[key]: item for item in original}
    merged: list[Obj] = []
    named = set()
    for item in patch:
        named.add(item[key])
        if item.get(DIRECTIVE) == "delete":
            continue
        if item[key] in by_key:
            merged.append(merge(by_key[item[key]], item))
        else:
            merged.append(copy.deepcopy(item))
    merged.extend(copy.deepcopy(item) for item in original if item[key] not in named)
    return merged


# --- transformers -------------------------------------------------------------------------------


def _set_namespace(objects: list[Obj], namespace: str) -> None:
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace


def _set_replicas(objects: list[Obj], entries: list[Obj]) -> None:
    for entry in entries:
        found = [obj for obj in objects
                 if obj["metadata"]["name"] == entry["name"] and "replicas" in obj.get("spec", {})]
        if not found:
            raise KustomizeError(f"replicas: nothing named {entry['name']} has replicas")
        for obj in found:
            obj["spec"]["replicas"] = entry["count"]


def pod_containers(obj: Mapping[str, Any]) -> list[Obj]:
    """Init containers then containers of a workload's pod template (none for other kinds)."""
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def split_image(image: str) -> tuple[str, str]:
    """'registry/name:tag' -> ('registry/name', ':tag'); a digest stays with the tag part."""
    for separator in ("@", ":"):
        name, sep, rest = image.rpartition(separator)
        if sep and "/" not in rest:
            return name, sep + rest
    return image, ""


def _set_images(objects: list[Obj], entries: list[Obj]) -> None:
    for obj in objects:
        for container in pod_containers(obj):
            name, tag = split_image(container["image"])
            for entry in entries:
                if entry["name"] == name:
                    new_tag = f":{entry['newTag']}" if "newTag" in entry else tag
                    container["image"] = entry.get("newName", name) + new_tag
                    break
