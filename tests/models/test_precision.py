"""``precision: auto`` reads the machine: bfloat16 only where the CPU has bfloat16 units."""

from __future__ import annotations

import pytest

from moalign.models import precision as p


def _cpuinfo(tmp_path, flags: str) -> str:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: fpu sse2 {flags}\n\n")
    return str(path)


@pytest.mark.parametrize("flags, expected", [
    ("avx512f avx512_bf16", ("avx512_bf16",)),
    ("avx512f amx_tile amx_bf16", ("amx_bf16",)),
    ("avx512f avx512_vnni", ()),  # AVX-512 without bfloat16 units: emulated, slow
])
def test_cpu_flags_are_read(tmp_path, flags, expected):
    assert p.cpu_bf16_flags.__wrapped__(_cpuinfo(tmp_path, flags)) == expected


def test_unreadable_cpuinfo_means_no_bf16(tmp_path):
    assert p.cpu_bf16_flags.__wrapped__(str(tmp_path / "missing")) == ()


def test_auto_follows_the_flags(monkeypatch):
    monkeypatch.setattr(p, "cpu_bf16_flags", lambda: ("amx_bf16",))
    assert p.resolve_precision("auto", device="cpu") == "bfloat16"
    monkeypatch.setattr(p, "cpu_bf16_flags", lambda: ())
    assert p.resolve_precision("auto", device="cpu") == "float32"
    assert p.resolve_precision("bfloat16", device="cpu") == "bfloat16"  # forced


def test_bad_precision_is_named():
    assert p.precision_problems("fp16") == [
        "'precision' must be one of auto, float32, bfloat16, got 'fp16'"]
    with pytest.raises(ValueError, match="precision must be one of"):
        p.resolve_precision("half")
