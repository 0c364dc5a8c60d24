"""Compiled templates kept on disk: used by the next process, and never the cause of a failed render."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from jinja2 import Environment, FileSystemLoader
from jinja2.bccache import bc_magic

from marginwatch.compiled_templates import TolerantBytecodeCache, template_cache

PAGE = "<h1>{{ title }}</h1>{% for row in rows %}<p>{{ row }}</p>{% endfor %}"
RENDERED = "<h1>LTV</h1><p>a</p><p>b</p>"


class CountingEnvironment(Environment):
    """An environment that counts the templates it compiles from source."""

    compiled = 0

    def compile(self, *args: Any, **kwargs: Any) -> Any:
        type(self).compiled += 1
        return super().compile(*args, **kwargs)


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "page.j2").write_text(PAGE, encoding="utf-8")
    return folder


def render(templates: Path, cache: TolerantBytecodeCache) -> str:
    """Render the page as a fresh process would: a new environment over the same folders."""
    environment = CountingEnvironment(loader=FileSystemLoader(templates), bytecode_cache=cache)
    return environment.get_template("page.j2").render(title="LTV", rows=["a", "b"])


def cached_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("__jinja2_*.cache"))


def test_a_template_compiled_once_is_loaded_by_the_next_environment(templates: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    CountingEnvironment.compiled = 0
    assert render(templates, TolerantBytecodeCache(str(cache_dir))) == RENDERED
    assert CountingEnvironment.compiled == 1 and len(cached_files(cache_dir)) == 1
    assert render(templates, TolerantBytecodeCache(str(cache_dir))) == RENDERED
    assert CountingEnvironment.compiled == 1  # the second environment compiled nothing


def test_a_changed_template_is_compiled_afresh(templates: Path, tmp_path: Path) -> None:
    cache = TolerantBytecodeCache(str(tmp_path))
    assert render(templates, cache) == RENDERED
    (templates / "page.j2").write_text(PAGE.replace("h1", "h2"), encoding="utf-8")
    assert render(templates, cache) == RENDERED.replace("h1", "h2")


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(bc_magic) + 2],  # cut inside its header, as by another tool's crash
        lambda data: data[: len(data) // 2],  # cut inside the code
        lambda data: data[: len(bc_magic)] + b"\x00" * (len(data) - len(bc_magic)),  # the header, then zeros
        lambda data: b"",
    ],
    ids=["cut-header", "cut-code", "zeroed", "empty"],
)
def test_a_damaged_cache_file_costs_a_compile_not_the_render(templates: Path, tmp_path: Path, damage: Any) -> None:
    cache = TolerantBytecodeCache(str(tmp_path))
    render(templates, cache)
    [kept] = cached_files(tmp_path)
    kept.write_bytes(damage(kept.read_bytes()))
    CountingEnvironment.compiled = 0
    assert render(templates, cache) == RENDERED
    assert CountingEnvironment.compiled == 1
    CountingEnvironment.compiled = 0
    assert render(templates, cache) == RENDERED  # the recompiled code was kept again
    assert CountingEnvironment.compiled == 0


def test_a_folder_that_takes_nothing_costs_a_compile_not_the_render(templates: Path, tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    cache = TolerantBytecodeCache(str(gone))
    gone.rmdir()  # removed under the running process (or a full disk): nothing can be kept
    CountingEnvironment.compiled = 0
    assert render(templates, cache) == RENDERED
    assert render(templates, cache) == RENDERED
    assert CountingEnvironment.compiled == 2 and not gone.exists()


def test_without_a_private_folder_there_is_no_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with monkeypatch.context() as patched:
        patched.setattr("tempfile.tempdir", str(tmp_path))
        (tmp_path / f"_jinja2-cache-{os.getuid()}").write_text("not a folder")  # the name taken by a file
        template_cache.cache_clear()
        assert template_cache() is None
    template_cache.cache_clear()  # the system's own temporary folder again
    assert isinstance(template_cache(), TolerantBytecodeCache)
