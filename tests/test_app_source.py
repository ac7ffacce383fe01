"""Reading a PR through the fake GitHub, and extracting tarballs safely."""

from __future__ import annotations

import asyncio
import gzip
import io
import struct
import tarfile
import threading
import time
import tracemalloc
import zlib

import pytest

from bot.app.review import fetch_trees
from bot.app.source import (
    ArchiveRejected,
    ExtractLimits,
    compare_pull,
    extract_tarball,
    fetch_tree,
    list_changed_files,
    read_repo_config,
)
from tests.conftest import eventually
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


async def test_merge_base_and_changed_files_from_one_compare(gh, fakegh):
    fakegh.repos[REPO].pulls[2].files.append({"filename": "big.bin", "status": "added", "patch": None})
    base, changed = await compare_pull(gh, REPO, 2, "main", HEAD)
    assert base == "b" * 40
    assert [(f.filename, f.patch is None) for f in changed.files] == [("apps/web/deployment.yaml", False),
                                                                       ("big.bin", True)]
    assert changed == await list_changed_files(gh, REPO, 2), "the compare's diff is the pull request's"
    [call] = fakegh.calls("repos/compare-commits")
    assert call.path.endswith(f"/compare/main...{HEAD}")
    assert len(fakegh.calls("pulls/list-files")) == 1, "only the comparison above asked for it"


@pytest.mark.parametrize("count, list_files_pages", [(299, 0), (300, 3), (3000, 30)])
async def test_a_compare_at_its_300_file_cap_asks_for_the_whole_list(gh, fakegh, count, list_files_pages):
    fakegh.repos[REPO].pulls[2].files = [{"filename": f"f{i}", "status": "added"} for i in range(count)]
    _, changed = await compare_pull(gh, REPO, 2, "main", HEAD)
    assert len(changed.files) == count and changed.everything == (count >= 3000)
    assert len(fakegh.calls("pulls/list-files")) == list_files_pages


async def test_fetch_tree_follows_redirect_and_strips_top_folder(gh, fakegh, tmp_path):
    stats = await fetch_tree(gh, REPO, HEAD, tmp_path / "head")
    assert stats.files == 1
    assert (tmp_path / "head" / "apps/web/deployment.yaml").read_bytes().endswith(b"# new\n")
    assert [r.operation_id for r in fakegh.requests][-2:] == ["repos/download-tarball-archive", "codeload"]


async def test_repo_config_from_default_branch(gh, fakegh):
    assert await read_repo_config(gh, REPO) == "environments: {}\n"
    [call] = fakegh.calls("repos/get-content")
    assert call.path.endswith("/contents/.github/infra-review.yml") and call.query == {}
    assert not fakegh.calls("repos/get"), "GitHub reads the default branch when no ref is given"
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


def _tar(members: list[tuple[tarfile.TarInfo, bytes]], *, gz: bool = True) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return gzip.compress(raw.getvalue(), compresslevel=1) if gz else raw.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(f"o-r-1/{name}")
    info.size = len(data)
    return info, data


def _dir(name: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(f"o-r-1/{name}")
    info.type = tarfile.DIRTYPE
    return info, b""


@pytest.mark.parametrize("flood", [
    lambda i: (_link(f"o-r-1/l{i}", "ok.yaml"), b""),
    lambda i: _dir(f"d{i}"),
    lambda i: (_link(f"o-r-1/p{i}", "", tarfile.FIFOTYPE), b""),
])
def test_every_entry_counts_toward_the_entry_cap(tmp_path, flood):
    data = _tar([_file("ok.yaml"), *(flood(i) for i in range(50))])
    with pytest.raises(ArchiveRejected, match="more than 20 entries"):
        extract_tarball(data, tmp_path / "out", ExtractLimits(max_entries=20))
    assert extract_tarball(data, tmp_path / "ok", ExtractLimits(max_entries=51)).files == 1


def test_a_symlink_flood_is_rejected_quickly_with_the_default_limits(tmp_path):
    data = _tar([(_link(f"o-r-1/l{i}", "x"), b"") for i in range(100_000)])
    start = time.perf_counter()
    with pytest.raises(ArchiveRejected, match="entries"):
        extract_tarball(data, tmp_path / "out")
    assert time.perf_counter() - start < 3


def test_members_are_not_kept_in_memory(tmp_path):
    data = _tar([(_link(f"o-r-1/l{i}", "x" * 50), b"") for i in range(30_000)])
    tracemalloc.start()
    try:
        extract_tarball(data, tmp_path / "out", ExtractLimits(max_entries=40_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"{peak / 2**20:.1f} MiB for 30,000 links"


def _zeros_member(size: int, kind: bytes = b"Z") -> bytes:
    """A valid gzipped tar: one header declaring `size` bytes of an unknown member type, those zeros,
    the end-of-archive blocks. Built a MiB block at a time (about 1 KiB compressed per MiB)."""
    info = tarfile.TarInfo("o-r-1/blob")
    info.type, info.size = kind, size
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    mib = bytes(1024 * 1024)
    out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", comp.compress(header), comp.flush(zlib.Z_FULL_FLUSH)]
    block = comp.compress(mib) + comp.flush(zlib.Z_FULL_FLUSH)
    out.append(block * (size // len(mib)))
    out.append(comp.compress(bytes(2 * 512)) + comp.flush())
    crc = zlib.crc32(header)
    for _ in range(size // len(mib)):
        crc = zlib.crc32(mib, crc)
    crc = zlib.crc32(bytes(2 * 512), crc)
    out.append(struct.pack("<II", crc, (len(header) + size + 2 * 512) % 2**32))
    return b"".join(out)


def test_unknown_member_with_gigabytes_of_zeros_is_rejected_without_decompressing(tmp_path):
    data = _zeros_member(4 * 1024**3)
    assert len(data) < 8 * 1024 * 1024
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ArchiveRejected, match="blob"):
            extract_tarball(data, tmp_path / "out")
        elapsed, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1 and peak < 32 * 1024 * 1024, (elapsed, peak)


def test_skipped_data_counts_toward_the_total(tmp_path):
    members = []
    for i in range(4):
        info = tarfile.TarInfo(f"o-r-1/blob{i}")
        info.type, info.size = b"Z", 1000
        members.append((info, b"z" * 1000))
    with pytest.raises(ArchiveRejected, match="bytes unpacked"):
        extract_tarball(_tar(members), tmp_path / "out", ExtractLimits(max_total_bytes=3000))


@pytest.mark.parametrize("members, words", [
    ([_file("apps/web"), _file("apps/web/deployment.yaml")], "both a file and a folder"),
    ([_file("apps/web/deployment.yaml"), _file("apps/web")], "both a file and a folder"),
    ([_file("a" * 300 + ".yaml")], "longer than"),
    ([_file("/".join(["d" * 200] * 25) + "/x.yaml")], "longer than"),
])
def test_paths_the_file_system_cannot_hold_are_rejected(tmp_path, members, words):
    with pytest.raises(ArchiveRejected, match=words):
        extract_tarball(_tar(members), tmp_path / "out")


@pytest.mark.parametrize("mangle", [
    lambda d: d[: len(d) // 2],                            # truncated
    lambda d: d[:40] + bytes(b ^ 0x55 for b in d[40:80]) + d[80:],  # corrupt deflate data
    lambda d: d[:-8] + b"\0\0\0\0" + d[-4:],              # bad CRC
    lambda d: b"",
    lambda d: gzip.compress(b"not a tar archive at all" * 100),
])
def test_broken_archives_are_rejected(tmp_path, mangle):
    data = _tar([_file(f"f{i}.yaml", b"kind: ConfigMap\n" * 200) for i in range(20)])
    with pytest.raises(ArchiveRejected):
        extract_tarball(mangle(data), tmp_path / "out")


class _Downloader:
    """Just enough of the client for fetch_tree: `download` returns the archive's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def download(self, url: str, url_vars: dict, *, max_bytes: int) -> bytes:
        return self.data


async def test_extraction_does_not_block_the_event_loop(tmp_path):
    data = tarball("o-r-1", {f"apps/a{i // 100}/f{i}.yaml": b"kind: ConfigMap\n" * 20 for i in range(15_000)})
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    start = time.perf_counter()
    stats = await fetch_tree(_Downloader(data), REPO, HEAD, tmp_path / "head")
    took = time.perf_counter() - start
    done.set()
    await ticker
    assert stats.files == 15_000 and took > 0.3, "the archive is large enough to notice a blocked loop"
    assert max(gaps) < min(0.25, took / 2), f"the loop stalled {max(gaps):.2f}s during a {took:.2f}s extraction"


async def test_a_cancelled_fetch_stops_extracting_before_it_returns(tmp_path):
    data = tarball("o-r-1", {f"d{i // 100}/f{i}.yaml": b"kind: ConfigMap\n" for i in range(15_000)})
    task = asyncio.create_task(fetch_tree(_Downloader(data), REPO, HEAD, tmp_path / "head"))
    await eventually(lambda: next((tmp_path / "head").rglob("*.yaml"), None), interval=0.005,
                     what="the extraction to write its first file")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    written = sum(1 for _ in (tmp_path / "head").rglob("*.yaml"))
    await asyncio.sleep(0.3)
    assert 0 < written < 15_000 and sum(1 for _ in (tmp_path / "head").rglob("*.yaml")) == written


async def test_a_cancelled_review_stops_both_extractions_before_its_folder_is_removed(tmp_path, monkeypatch):
    """`fetch_trees` fetches head and base together. When the review is cancelled while one side is
    still downloading, it returns only after the other side's extraction has ended (gather returned at
    once, and the job's temporary folder was then removed under a running extraction)."""
    import bot.app.source as source

    data = tarball("o-r-1", {f"d{i // 100}/f{i}.yaml": b"kind: ConfigMap\n" for i in range(15_000)})
    ended = threading.Event()
    real = source.extract_tarball

    def slow_to_stop(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        finally:
            time.sleep(0.2)  # a last member still being written when the stop arrives
            ended.set()

    monkeypatch.setattr(source, "extract_tarball", slow_to_stop)

    class OneSideHangs(_Downloader):
        async def download(self, url: str, url_vars: dict, *, max_bytes: int) -> bytes:
            if url_vars["ref"] == "base":
                await asyncio.Event().wait()
            return await super().download(url, url_vars, max_bytes=max_bytes)

    trees = (("head", tmp_path / "head"), ("base", tmp_path / "base"))
    task = asyncio.create_task(fetch_trees(OneSideHangs(data), REPO, trees, ExtractLimits()))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended.is_set(), "the cancelled fetch returned while an extraction was still running"
