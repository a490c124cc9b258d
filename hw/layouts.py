"""Data layouts shared by every block: the packed MX group word (spec §1.2).

The field positions come from :func:`golden.formats.group_fields`, the same definition the golden
packer uses, so the RTL, the golden model and the testbenches cannot drift apart;
:func:`check_layout` proves it field by field.
"""

from amaranth.hdl import unsigned
from amaranth.lib import data

from golden.formats import (
    EXP_BITS, GROUP_SIZE, MAX_GROUP_BITS, MICRO_COUNT, MX6, MX9, MXFormat, format_of, group_fields,
)

__all__ = ["group_layout", "element_layout", "GroupUnion", "TaggedGroup", "check_layout"]


def element_layout(fmt: "str | MXFormat") -> data.StructLayout:
    """One element: ``mant`` (m bits, LSB first) then ``sign`` (spec §1.2)."""
    f = format_of(fmt)
    return data.StructLayout({"mant": unsigned(f.mant_bits), "sign": unsigned(1)})


def group_layout(fmt: "str | MXFormat") -> data.StructLayout:
    """The packed group word of ``fmt``: ``exp``, ``micro`` (bit j is mu_j), ``elem[16]``."""
    return data.StructLayout({
        "exp": unsigned(EXP_BITS),
        "micro": unsigned(MICRO_COUNT),
        "elem": data.ArrayLayout(element_layout(fmt), GROUP_SIZE),
    })


#: A group word of either hardware precision, sharing the low bits (MX6 uses 96 of the 144).
GroupUnion = data.UnionLayout({"mx6": group_layout(MX6), "mx9": group_layout(MX9)})

#: A group word with its precision tag, as it travels on the array's buses.
TaggedGroup = data.StructLayout({"word": GroupUnion, "fmt": unsigned(1)})


def check_layout(fmt: "str | MXFormat") -> None:
    """Raise ``AssertionError`` unless :func:`group_layout` places every field where
    :func:`golden.formats.group_fields` says it is."""
    layout = group_layout(fmt)
    assert layout.size == format_of(fmt).group_bits <= MAX_GROUP_BITS
    elem = layout["elem"].shape
    for name, offset, width in group_fields(fmt):
        if name == "exp":
            f = layout["exp"]
            got = (f.offset, f.shape.width)
        elif name.startswith("micro"):
            j = int(name[6:-1])
            got = (layout["micro"].offset + j, 1)
        else:
            field, idx = name[:-1].split("[")
            base = layout["elem"].offset + int(idx) * elem.elem_shape.size
            sub = elem.elem_shape[field]
            got = (base + sub.offset, sub.shape.width)
        assert got == (offset, width), f"{name}: layout has {got}, golden has {(offset, width)}"
