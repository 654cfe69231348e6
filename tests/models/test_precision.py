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
    assert p._read_cpu_flags.__wrapped__(_cpuinfo(tmp_path, flags)) == expected


def test_unreadable_cpuinfo_means_no_bf16(tmp_path):
    assert p._read_cpu_flags.__wrapped__(str(tmp_path / "missing")) == ()


def test_auto_follows_the_flags(monkeypatch):
    monkeypatch.delenv(p.CPU_BF16_ENV, raising=False)
    monkeypatch.setattr(p, "cpu_bf16_flags", lambda: ("amx_bf16",))
    assert p.resolve_precision("auto", device="cpu") == "bfloat16"
    monkeypatch.setattr(p, "cpu_bf16_flags", lambda: ())
    assert p.resolve_precision("auto", device="cpu") == "float32"
    assert p.resolve_precision("bfloat16", device="cpu") == "bfloat16"  # forced


@pytest.mark.parametrize("value, resolved", [("1", "bfloat16"), ("0", "float32")])
def test_the_environment_stands_in_for_the_flags(monkeypatch, value, resolved):
    monkeypatch.setenv(p.CPU_BF16_ENV, value)
    assert p.resolve_precision("auto", device="cpu") == resolved
    assert p.describe_precision("auto", device="cpu") == (
        f"{resolved} (auto: MOALIGN_CPU_BF16={value} stands in for the CPU's units)")
    assert p.resolve_precision("float32", device="cpu") == "float32"  # forced stays forced
    monkeypatch.setenv(p.CPU_BF16_ENV, "yes")
    with pytest.raises(ValueError, match="MOALIGN_CPU_BF16 must be 0 or 1"):
        p.resolve_precision("auto", device="cpu")


def test_bad_precision_is_named():
    assert p.precision_problems("fp16") == [
        "'precision' must be one of auto, float32, bfloat16, got 'fp16'"]
    with pytest.raises(ValueError, match="precision must be one of"):
        p.resolve_precision("half")
