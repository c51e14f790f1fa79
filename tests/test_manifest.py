"""book.toml and chapters/ agree; the manifest rejects malformed entries."""

import pytest

from genbook.book.execution import read_chapter
from genbook.book.manifest import load_manifest
from genbook.paths import REPO_ROOT

DESIGN_ORDER = ["00_preface", "01_attention", "02_bert_vit", "03_vqvae", "04_gan", "05_ddpm", "06_sde",
                "07_flow_matching", "08_latent_diffusion", "09_dalle", "10_capstone"]


def test_manifest_lists_every_planned_chapter_in_order():
    assert [c.slug for c in load_manifest().chapters] == DESIGN_ORDER


def test_chapters_directory_matches_written_chapters():
    on_disk = sorted(p.stem for p in (REPO_ROOT / "chapters").glob("*.py"))
    written = sorted(c.slug for c in load_manifest().written())
    assert on_disk == written, (
        "chapters/ and book.toml disagree: files without status='written' "
        f"{sorted(set(on_disk) - set(written))}, written chapters without a file {sorted(set(written) - set(on_disk))}"
    )
    assert not list((REPO_ROOT / "chapters").glob("*.ipynb")), "chapters are .py notebooks without outputs"


@pytest.mark.parametrize("chapter", load_manifest().written(), ids=lambda c: c.slug)
def test_written_chapter_reads_as_notebook(chapter):
    nb = read_chapter(chapter.path)
    assert nb.metadata["kernelspec"]["name"] == "python3", "the header names the kernel MyST-NB and the cache use"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "title first"
    assert chapter.budget_s <= 200


def test_malformed_manifest_is_a_clear_error(tmp_path):
    bad = tmp_path / "book.toml"
    head = '[book]\ntitle = "t"\n[[chapters]]\n'
    bad.write_text(head + 'slug = "5_ddpm"\ntitle = "x"\nstatus = "written"\nbudget_s = 1\n')
    with pytest.raises(ValueError, match="slug '5_ddpm' must look like '05_ddpm'"):
        load_manifest(bad)
    bad.write_text(head + 'slug = "05_ddpm"\ntitle = "x"\nstatus = "done"\nbudget_s = 1\n')
    with pytest.raises(ValueError, match="status 'done' must be one of"):
        load_manifest(bad)
    bad.write_text(head + 'slug = "05_ddpm"\ntitle = "x"\n')
    with pytest.raises(ValueError, match=r"lacks \['budget_s', 'status'\]"):
        load_manifest(bad)
