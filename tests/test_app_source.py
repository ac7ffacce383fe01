"""Reading a PR through the fake GitHub, and extracting tarballs safely."""

from __future__ import annotations

import io
import tarfile

import pytest

from bot.app.source import (
    ArchiveRejected,
    ExtractLimits,
    extract_tarball,
    fetch_tree,
    list_changed_files,
    merge_base,
    read_repo_config,
)
from tests.fakegh import tarball

REPO = "Codertocat/Hello-World"
HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


async def test_changed_files_keep_missing_patches(gh, fakegh):
    fakegh.repos[REPO].pulls[2].files.append({"filename": "big.bin", "status": "added", "patch": None})
    changed = await list_changed_files(gh, REPO, 2)
    assert [(f.filename, f.patch is None) for f in changed.files] == [("apps/web/deployment.yaml", False),
                                                                       ("big.bin", True)]
    assert not changed.everything


async def test_3000_files_means_everything_changed(gh, fakegh):
    fakegh.repos[REPO].pulls[2].files = [{"filename": f"f{i}", "status": "added"} for i in range(3000)]
    changed = await list_changed_files(gh, REPO, 2)
    assert changed.everything and len(changed.files) == 3000
    assert len(fakegh.calls("pulls/list-files")) == 30


async def test_merge_base_from_compare(gh, fakegh):
    assert await merge_base(gh, REPO, "main", HEAD) == "b" * 40
    [call] = fakegh.calls("repos/compare-commits")
    assert call.path.endswith(f"/compare/main...{HEAD}")


async def test_fetch_tree_follows_redirect_and_strips_top_folder(gh, fakegh, tmp_path):
    stats = await fetch_tree(gh, REPO, HEAD, tmp_path / "head")
    assert stats.files == 1
    assert (tmp_path / "head" / "apps/web/deployment.yaml").read_bytes().endswith(b"# new\n")
    assert [r.operation_id for r in fakegh.requests][-2:] == ["repos/download-tarball-archive", "codeload"]


async def test_repo_config_from_default_branch(gh, fakegh):
    assert await read_repo_config(gh, REPO) == "environments: {}\n"
    [call] = fakegh.calls("repos/get-content")
    assert call.path.endswith("/contents/.github/infra-review.yml") and call.query == {"ref": "master"}
    fakegh.repos[REPO].trees["master"] = {}
    assert await read_repo_config(gh, REPO, "master") is None


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_extraction_skips_links_and_escapes(tmp_path):
    extra = [_link("o-r-1/evil", "/etc/passwd"), _link("o-r-1/hard", "/etc/shadow", tarfile.LNKTYPE)]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name in ("o-r-1/../escape.txt", "/abs.txt", "o-r-1/ok.yaml"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        for info in extra:
            tar.addfile(info)
        fifo = tarfile.TarInfo("o-r-1/pipe")
        fifo.type = tarfile.FIFOTYPE
        tar.addfile(fifo)
    stats = extract_tarball(raw.getvalue(), tmp_path / "out")
    assert stats.files == 1 and (tmp_path / "out" / "ok.yaml").read_bytes() == b"hi"
    assert len(stats.skipped) == 5
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out" / "evil").exists()


def test_extraction_limits(tmp_path):
    data = tarball("o-r-1", {f"f{i}.yaml": b"x" * 10 for i in range(5)})
    with pytest.raises(ArchiveRejected, match="files"):
        extract_tarball(data, tmp_path / "a", ExtractLimits(max_files=4))
    with pytest.raises(ArchiveRejected, match="bytes unpacked"):
        extract_tarball(data, tmp_path / "b", ExtractLimits(max_total_bytes=30))
    with pytest.raises(ArchiveRejected):
        extract_tarball(b"not a tarball", tmp_path / "c")
