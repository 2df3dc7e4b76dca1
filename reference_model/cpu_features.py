"""Whether this CPU has bf16 instructions, read from /proc/cpuinfo (torch-free, so that
`check-config` can ask too). Decides `reference.cpu_bf16: auto`."""

from __future__ import annotations

from pathlib import Path

#: /proc/cpuinfo flags of native bf16 arithmetic (AVX-512 BF16; AMX on Sapphire Rapids on)
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The first processor's flags; empty where the file is missing or unreadable (not
    Linux), so bf16 counts as absent."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_has_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """True where the CPU lists a native bf16 flag."""
    return bool(cpu_flags(cpuinfo) & BF16_FLAGS)
