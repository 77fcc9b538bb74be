"""The benchmarks' shared helpers: sections of docs/benchmarks.md, model sizing."""

from __future__ import annotations

from pathlib import Path

from bench.common import _mlp_layers, table, update_doc_section


def test_a_section_is_replaced_and_the_others_are_kept(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    update_doc_section("one", "## One\nfirst", doc)
    update_doc_section("two", "## Two\nsecond", doc)
    update_doc_section("one", "## One\nagain", doc)
    text = doc.read_text()
    assert text.startswith("# Benchmarks")
    assert "again" in text and "first" not in text and "second" in text
    assert text.index("## One") < text.index("## Two")
    assert text.count("<!-- bench:one:start -->") == 1


def test_model_layers_come_to_the_size_asked_for() -> None:
    for target_mb in (1, 10):
        first, second = _mlp_layers(target_mb * 1024 * 1024)
        params = 64 * first + first + first * second + second + second * 10 + 10
        assert abs(params * 4 / (target_mb * 1024 * 1024) - 1) < 0.05


def test_tables_are_markdown() -> None:
    assert table(["a", "b"], [[1, 2]]) == "| a | b |\n|---|---|\n| 1 | 2 |"
