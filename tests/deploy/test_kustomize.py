"""The test renderer of kustomize overlays (tests/deploy/kustomize.py) on its own: the merge
rules the manifests rely on, and its refusals. test_kubernetes.py compares whole overlays with
`kubectl kustomize` where kubectl is installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.kustomize import KustomizeError, merge, read_env_file, render, split_image


def test_maps_merge_and_null_deletes_a_key() -> None:
    original = {"volume": {"name": "images", "emptyDir": {}}, "keep": 1}
    patch = {"volume": {"emptyDir": None, "persistentVolumeClaim": {"claimName": "c"}}}
    assert merge(original, patch) == {
        "volume": {"name": "images", "persistentVolumeClaim": {"claimName": "c"}}, "keep": 1}
    assert original["volume"] == {"name": "images", "emptyDir": {}}, "the input is unchanged"


def test_keyed_lists_merge_with_the_patch_order_first() -> None:
    original = [{"name": "a", "env": [{"name": "A", "value": "1"}, {"name": "B"}]},
                {"name": "b"}]
    patch = [{"name": "c"}, {"name": "a", "env": [{"name": "C"}, {"name": "B", "value": "x"}]}]
    assert merge(original, patch, "containers") == [
        {"name": "c"},
        {"name": "a", "env": [{"name": "C"}, {"name": "B", "value": "x"},
                              {"name": "A", "value": "1"}]},
        {"name": "b"},
    ]


def test_a_list_item_is_deleted_by_its_key_and_other_lists_are_replaced() -> None:
    original = [{"mountPath": "/a"}, {"mountPath": "/b"}]
    assert merge(original, [{"mountPath": "/a", "$patch": "delete"}], "volumeMounts") == [
        {"mountPath": "/b"}]
    assert merge(["--x", "--y"], ["--z"], "args") == ["--z"]
    assert merge([{"containerPort": 1, "name": "a"}], [{"containerPort": 2}], "ports") == [
        {"containerPort": 2}, {"containerPort": 1, "name": "a"}]


def test_image_names_split_from_tags_and_digests() -> None:
    assert split_image("stablenew:local") == ("stablenew", ":local")
    assert split_image("registry:5000/sd-webui") == ("registry:5000/sd-webui", "")
    assert split_image("r.io/x@sha256:ab") == ("r.io/x", "@sha256:ab")


def test_an_unimplemented_kustomization_field_is_refused(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(KustomizeError, match="namePrefix"):
        render(tmp_path)


def test_a_patch_without_its_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("patches:\n  - path: p.yaml\n")
    (tmp_path / "p.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: gone}\n")
    with pytest.raises(KustomizeError, match="found 0 times"):
        render(tmp_path)


def test_a_whole_object_is_deleted_by_a_patch(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [s.yaml]\npatches:\n  - path: p.yaml\n")
    (tmp_path / "s.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")
    (tmp_path / "p.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n$patch: delete\n")
    assert render(tmp_path) == []


def test_env_files_are_read_as_kustomize_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text("# comment\n\nA=1\nB=http://h:1/p?q=a=b\n")
    assert read_env_file(path) == {"A": "1", "B": "http://h:1/p?q=a=b"}
    path.write_text("NOT A SETTING\n")
    with pytest.raises(KustomizeError, match="not KEY=value"):
        read_env_file(path)
