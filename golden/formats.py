"""MX block formats and the packed group word (spec §1.1, §1.2).

This module is the one definition of the formats and of the packed layout: the golden packer
(:mod:`golden.mx`), the Amaranth layouts (:mod:`hw.layouts`) and the testbenches all derive their
field positions from :func:`group_fields`.
"""

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "GROUP_SIZE", "SUBGROUP_SIZE", "MICRO_COUNT", "EXP_BITS", "EXP_BIAS", "NAN_EXP",
    "MXFormat", "MX9", "MX6", "MX4", "FORMATS", "format_of", "format_codes", "group_fields",
    "MAX_GROUP_BITS",
]

#: Elements per group, k1 (spec §1.1).
GROUP_SIZE = 16
#: Elements per subgroup sharing one microexponent, k2 (spec §1.1).
SUBGROUP_SIZE = 2
#: Microexponents per group.
MICRO_COUNT = GROUP_SIZE // SUBGROUP_SIZE
#: Width of the shared exponent, biased like the FP32 exponent field.
EXP_BITS = 8
EXP_BIAS = 127
#: Shared exponent of a NaN group (any Inf or NaN among its inputs).
NAN_EXP = 255


@dataclass(frozen=True)
class MXFormat:
    """One MX format with shared microexponents (spec §1.1).

    Parameters
    ----------
    name : str
        ``"mx9"``, ``"mx6"`` or ``"mx4"``.
    mant_bits : int
        m, the magnitude bits per element (an explicit integer, no hidden bit).
    code : int
        The precision tag that travels with a group on the hardware buses; 0 is MX6, 1 is MX9.
    """

    name: str
    mant_bits: int
    code: int

    @property
    def elem_bits(self) -> int:
        """Bits per element: sign and magnitude."""
        return self.mant_bits + 1

    @property
    def group_bits(self) -> int:
        """Bits of one packed group word (spec §1.2)."""
        return EXP_BITS + MICRO_COUNT + GROUP_SIZE * self.elem_bits

    @property
    def max_mant(self) -> int:
        """Largest magnitude, the saturation value of rounding."""
        return (1 << self.mant_bits) - 1

    def __str__(self) -> str:
        return self.name


MX6 = MXFormat("mx6", 4, 0)
MX9 = MXFormat("mx9", 7, 1)
MX4 = MXFormat("mx4", 2, 2)

#: Formats by name.
FORMATS = {f.name: f for f in (MX9, MX6, MX4)}
_BY_CODE = {f.code: f for f in FORMATS.values()}
#: Width of the widest packed group (MX9), the width of group buses and memory images.
MAX_GROUP_BITS = MX9.group_bits


def format_of(fmt: "str | int | MXFormat") -> MXFormat:
    """The :class:`MXFormat` named by ``fmt`` (a name, a precision code or a format).

    Raises
    ------
    ValueError
        If ``fmt`` names no MX format.
    """
    if isinstance(fmt, MXFormat):
        return fmt
    if isinstance(fmt, (int, np.integer)) and not isinstance(fmt, bool):
        if int(fmt) in _BY_CODE:
            return _BY_CODE[int(fmt)]
    elif isinstance(fmt, str) and fmt.lower() in FORMATS:
        return FORMATS[fmt.lower()]
    raise ValueError(f"Unknown MX format {fmt!r}; expected one of {sorted(FORMATS)}")


def format_codes(fmts: "str | MXFormat | Iterable", groups: int) -> np.ndarray:
    """Per-group precision codes (uint8 ``[groups]``) for one format or one format per group.

    Raises
    ------
    ValueError
        If a format is unknown or a sequence does not hold one format per group.
    """
    if isinstance(fmts, (str, MXFormat, int, np.integer)):
        return np.full(groups, format_of(fmts).code, dtype=np.uint8)
    codes = np.array([format_of(f).code for f in fmts], dtype=np.uint8)
    if codes.shape != (groups,):
        raise ValueError(f"Expected one format per group ({groups} groups), got {codes.size}")
    return codes


def group_fields(fmt: "str | MXFormat") -> list[tuple[str, int, int]]:
    """The fields of a packed group word as ``(name, bit offset, width)``, LSB first (spec §1.2).

    Names are ``"exp"``, ``"micro[j]"``, ``"mant[i]"`` and ``"sign[i]"``.
    """
    f = format_of(fmt)
    fields = [("exp", 0, EXP_BITS)]
    fields += [(f"micro[{j}]", EXP_BITS + j, 1) for j in range(MICRO_COUNT)]
    base = EXP_BITS + MICRO_COUNT
    for i in range(GROUP_SIZE):
        off = base + i * f.elem_bits
        fields += [(f"mant[{i}]", off, f.mant_bits), (f"sign[{i}]", off + f.mant_bits, 1)]
    return fields


def describe(fmts: Sequence[str]) -> str:
    """A short summary such as ``"70 mx6 + 2 mx9"`` of per-group formats."""
    names, counts = np.unique(np.asarray(fmts), return_counts=True)
    return " + ".join(f"{c} {n}" for n, c in zip(names, counts))
