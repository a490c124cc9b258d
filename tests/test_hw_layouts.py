"""hw.layouts against golden.formats and the golden packer: one definition of the group word."""

import numpy as np
import pytest

from golden import mx
from golden.formats import MX6, MX9
from hw.layouts import GroupUnion, check_layout, group_layout


@pytest.mark.parametrize("fmt", ["mx6", "mx9", "mx4"])
def test_layout_fields_match_golden(fmt):
    check_layout(fmt)


@pytest.mark.parametrize("f", [MX6, MX9])
def test_amaranth_const_equals_golden_pack(f):
    rng = np.random.default_rng(f.code)
    t = mx.quantize(rng.standard_normal((5, 16)).astype(np.float32) * 3, f.name, "rne")
    words = mx.pack(t)
    for r in range(5):
        const = group_layout(f).const({
            "exp": int(t.exp[r, 0]),
            "micro": sum(int(b) << j for j, b in enumerate(t.micro[r, 0])),
            "elem": [{"mant": int(q), "sign": int(s)} for q, s in zip(t.mant[r, 0], t.sign[r, 0])],
        })
        assert const.as_value().value == words[r, 0]


def test_union_is_as_wide_as_mx9():
    assert GroupUnion.size == MX9.group_bits == 144
