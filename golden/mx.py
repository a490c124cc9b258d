"""MX quantization, dequantization and packing (spec §1.1, §1.2).

Everything is vectorised over whole tensors: a tensor is grouped along its last axis into groups
of 16 (zero-padded to a multiple of 16), and every group is quantized at once. Formats are per
group along the last axis (the K axis of a GEMM), shared by all leading indices, which is what the
MixDiT scheme needs (spec §4): a token's groups may differ in precision, but the same K group has
the same precision in every token.

Examples
--------
>>> import numpy as np
>>> from golden import mx
>>> t = mx.quantize(np.linspace(-1, 1, 32, dtype=np.float32), "mx6")
>>> t.exp.shape, t.mant.shape, t.formats
((2,), (2, 16), ('mx6', 'mx6'))
>>> words = mx.pack(t)            # one Python int per group, spec §1.2
>>> mx.unpack(words, t.formats) == t
True
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .formats import (
    EXP_BIAS, GROUP_SIZE, MAX_GROUP_BITS, MICRO_COUNT, MX9, NAN_EXP, SUBGROUP_SIZE, MXFormat,
    format_codes, format_of,
)

__all__ = [
    "ROUNDINGS", "MXTensor", "quantize", "mx9_to_mx6", "pack", "pack_tagged", "pack_bytes", "unpack",
    "write_memh", "read_memh", "words_to_bytes", "bytes_to_words",
]

#: Rounding modes of :func:`quantize` (spec §1.1).
ROUNDINGS = ("trunc", "rne")

_MANT_BITS_BY_CODE = np.zeros(256, dtype=np.int32)
for _name in ("mx6", "mx9", "mx4"):
    _MANT_BITS_BY_CODE[format_of(_name).code] = format_of(_name).mant_bits


@dataclass(eq=False)
class MXTensor:
    """A tensor in MX block format, grouped along its last axis (spec §1.1).

    Attributes
    ----------
    exp : numpy.ndarray of uint8, shape ``[..., G]``
        Shared exponents E (255 marks a NaN group).
    micro : numpy.ndarray of uint8, shape ``[..., G, 8]``
        Microexponents mu_j (0 or 1), one per subgroup of two elements.
    sign : numpy.ndarray of uint8, shape ``[..., G, 16]``
        Sign bits s_i.
    mant : numpy.ndarray of uint8, shape ``[..., G, 16]``
        Magnitudes q_i (m bits each, explicit integers).
    fmt : numpy.ndarray of uint8, shape ``[G]``
        Precision code of each group along the last axis (:attr:`golden.formats.MXFormat.code`).
    length : int
        The unpadded length of the last axis; :meth:`dequantize` returns that many values.
    """

    exp: np.ndarray
    micro: np.ndarray
    sign: np.ndarray
    mant: np.ndarray
    fmt: np.ndarray
    length: int

    @property
    def groups(self) -> int:
        """G, the number of groups along the last axis."""
        return self.exp.shape[-1]

    @property
    def shape(self) -> tuple[int, ...]:
        """Leading shape and G: the shape of :attr:`exp`."""
        return self.exp.shape

    @property
    def formats(self) -> tuple[str, ...]:
        """Format name of each group along the last axis."""
        return tuple(format_of(int(c)).name for c in self.fmt)

    @property
    def mant_bits(self) -> np.ndarray:
        """m of each group along the last axis, int32 ``[G]``."""
        return _MANT_BITS_BY_CODE[self.fmt]

    @property
    def nan_groups(self) -> np.ndarray:
        """Boolean ``[..., G]``: which groups are NaN groups."""
        return self.exp == NAN_EXP

    def __getitem__(self, index) -> "MXTensor":
        """Select along the leading axes (never the group axis), e.g. ``t[3]`` or ``t[:, 2:5]``."""
        idx = index if isinstance(index, tuple) else (index,)
        if len(idx) >= self.exp.ndim or any(i is Ellipsis or i is None for i in idx):
            raise IndexError("MXTensor indexes its leading axes only, without ... or None")
        return MXTensor(self.exp[idx], self.micro[idx], self.sign[idx], self.mant[idx],
                        self.fmt, self.length)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MXTensor):
            return NotImplemented
        return (np.array_equal(self.exp, other.exp) and np.array_equal(self.micro, other.micro)
                and np.array_equal(self.sign, other.sign) and np.array_equal(self.mant, other.mant)
                and np.array_equal(self.fmt, other.fmt))

    def element_scale(self) -> np.ndarray:
        """Per-element power-of-two exponent ``E - 127 - mu - (m - 1)``, int32 ``[..., G, 16]``."""
        mu = np.repeat(self.micro, SUBGROUP_SIZE, axis=-1).astype(np.int32)
        return (self.exp.astype(np.int32)[..., None] - EXP_BIAS - mu
                - (self.mant_bits[:, None] - 1))

    def dequantize(self) -> np.ndarray:
        """The values the groups represent, float32 ``[..., length]`` (exact; spec §1.1).

        A NaN group decodes to NaN in every lane; a zero magnitude keeps its sign (-0.0).
        """
        mag = np.ldexp(self.mant.astype(np.float32), self.element_scale())
        val = np.where(self.sign.astype(bool), -mag, mag).astype(np.float32)
        val[self.nan_groups] = np.nan
        flat = val.reshape(*val.shape[:-2], self.groups * GROUP_SIZE)
        return np.ascontiguousarray(flat[..., :self.length])


def _as_float32(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"MX quantization needs floating-point data, not {x.dtype}")
    if x.ndim == 0:
        raise ValueError("MX quantization needs at least one axis to group along")
    # Wider floats are first rounded to FP32, the hardware's input format (spec §1.1).
    return np.ascontiguousarray(x, dtype=np.float32)


def _pad_groups(x: np.ndarray) -> np.ndarray:
    """Zero-pad the last axis to a multiple of 16 (spec §1.1) and split it into groups."""
    k = x.shape[-1]
    g = -(-k // GROUP_SIZE)
    if g * GROUP_SIZE != k:
        pad = np.zeros(x.shape[:-1] + (g * GROUP_SIZE - k,), dtype=np.float32)
        x = np.concatenate([x, pad], axis=-1)
    return x.reshape(x.shape[:-1] + (g, GROUP_SIZE))


def quantize(x: np.ndarray, fmt: "str | MXFormat | Sequence[str]",
             rounding: str = "trunc") -> MXTensor:
    """Quantize ``x`` into MX groups along its last axis (spec §1.1).

    Parameters
    ----------
    x : array_like of floats
        Values; converted to float32 first (BF16 data is FP32 with zero low bits). The last axis is
        zero-padded to a multiple of 16.
    fmt : str, MXFormat or sequence of str
        ``"mx9"``, ``"mx6"`` or ``"mx4"`` for every group, or one format per group along the
        last axis (mixed precision).
    rounding : {"trunc", "rne"}
        Truncation (the default, DaCapo's hardware path) or round to nearest, ties to even, with
        saturation at ``2**m - 1``.

    Returns
    -------
    MXTensor

    Raises
    ------
    TypeError
        If ``x`` is not floating-point data.
    ValueError
        For an unknown format or rounding, or a wrong number of per-group formats.
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"Unknown rounding {rounding!r}; expected one of {ROUNDINGS}")
    xf = _as_float32(x)
    length = xf.shape[-1]
    # Work on [..., G, 8, 2]: subgroup pairs on the last axis, so the microexponents broadcast.
    u = _pad_groups(xf).view(np.uint32)
    groups = u.shape[-2]
    codes = format_codes(fmt, groups)
    u = u.reshape(u.shape[:-1] + (MICRO_COUNT, SUBGROUP_SIZE))
    m = _MANT_BITS_BY_CODE[codes][:, None, None]                       # [G, 1, 1]

    e = ((u >> 23) & np.uint32(0xFF)).astype(np.int16)               # [..., G, 8, 2]
    pair_e = np.maximum(e[..., 0], e[..., 1])                          # [..., G, 8]
    big_e = pair_e.max(axis=-1)                                        # [..., G]
    micro = np.minimum(big_e[..., None] - pair_e, 1)                   # [..., G, 8]
    nan_group = big_e == NAN_EXP                                       # any e == 255

    base = big_e[..., None] - micro + (24 - m[..., 0]).astype(np.int16)
    sh = base[..., None] - e
    # A flushed element (e == 0) shifts by 31, which clears any significand below 2^24 under
    # either rounding; every other shift is at least 24 - m.
    sh[e == 0] = 31
    np.minimum(sh, 31, out=sh)
    shu = sh.astype(np.uint32)
    sig = (u & np.uint32(0x7FFFFF)) | np.uint32(1 << 23)
    if rounding == "trunc":
        q = sig >> shu
    else:
        # Round half to even: add half - 1 plus the kept LSB, then shift (sig + 2^30 < 2^32).
        lsb = (sig >> shu) & np.uint32(1)
        q = (sig + ((np.uint32(1) << (shu - np.uint32(1))) - np.uint32(1)) + lsb) >> shu
        np.minimum(q, ((1 << m) - 1).astype(np.uint32), out=q)

    lead = u.shape[:-2]
    exp = big_e.astype(np.uint8)
    micro = micro.astype(np.uint8)
    # The sign is the top bit of each word's last byte (little-endian).
    sign = (u.view(np.uint8)[..., 3::4] >> 7).reshape(lead + (GROUP_SIZE,))
    mant = q.astype(np.uint8).reshape(lead + (GROUP_SIZE,))
    if nan_group.any():
        # A NaN group: E = 255, mu = 0, s = 0, q = 0 (spec §1.1).
        micro[nan_group] = 0
        sign[nan_group] = 0
        mant[nan_group] = 0
    return MXTensor(exp, micro, sign, mant, codes, length)


def mx9_to_mx6(t: MXTensor) -> MXTensor:
    """The cheap MX9 -> MX6 path: keep E, mu and signs, ``q6 = q9 >> 3`` (spec §1.1).

    Under truncation this equals quantizing the original values to MX6 directly. Groups that are
    not MX9 pass through unchanged.
    """
    is9 = t.fmt == format_of("mx9").code
    shift = np.where(is9, format_of("mx9").mant_bits - format_of("mx6").mant_bits, 0)
    mant = (t.mant >> shift[:, None].astype(np.uint8)).astype(np.uint8)
    fmt = np.where(is9, format_of("mx6").code, t.fmt).astype(np.uint8)
    return MXTensor(t.exp.copy(), t.micro.copy(), t.sign.copy(), mant, fmt, t.length)


def _group_nbytes(t: MXTensor) -> int:
    return max(format_of(int(c)).group_bits for c in np.unique(t.fmt)) // 8 if t.groups else 0


def pack_bytes(t: MXTensor, width: "int | None" = None) -> np.ndarray:
    """Packed group words as little-endian bytes, uint8 ``[..., G, width // 8]`` (spec §1.2).

    Parameters
    ----------
    t : MXTensor
    width : int, optional
        Word width in bits (a multiple of 8, at least the widest group of ``t``); narrower groups
        are zero-extended. Defaults to the widest group of ``t``.
    """
    nbytes = _group_nbytes(t) if width is None else width // 8
    if width is not None and (width % 8 or nbytes < _group_nbytes(t)):
        raise ValueError(f"Word width {width} must be a multiple of 8 and hold every group")
    out = np.zeros(t.exp.shape + (nbytes,), dtype=np.uint8)
    for code in np.unique(t.fmt):
        f = format_of(int(code))
        sel = t.fmt == code
        exp_bits = (t.exp[..., sel, None] >> np.arange(8, dtype=np.uint8)) & 1
        mant_bits = (t.mant[..., sel, :, None] >> np.arange(f.mant_bits, dtype=np.uint8)) & 1
        elems = np.concatenate([mant_bits, t.sign[..., sel, :, None]], axis=-1)
        word = np.concatenate([exp_bits, t.micro[..., sel, :],
                               elems.reshape(elems.shape[:-2] + (-1,))], axis=-1)
        out[..., sel, :f.group_bits // 8] = np.packbits(word, axis=-1, bitorder="little")
    return out


def bytes_to_words(b: np.ndarray) -> np.ndarray:
    """Little-endian byte rows ``[..., nbytes]`` to an object array of Python ints ``[...]``."""
    b = np.ascontiguousarray(b, dtype=np.uint8)
    n = b.shape[-1]
    raw = b.tobytes()
    words = np.empty(len(raw) // n if n else 0, dtype=object)
    words[:] = [int.from_bytes(raw[i:i + n], "little") for i in range(0, len(raw), n)]
    return words.reshape(b.shape[:-1])


def words_to_bytes(words: "np.ndarray | Iterable[int]", nbytes: int) -> np.ndarray:
    """Python ints ``[...]`` to little-endian byte rows, uint8 ``[..., nbytes]``.

    Raises
    ------
    ValueError
        If a word is negative or does not fit in ``nbytes`` bytes.
    """
    arr = np.asarray(words, dtype=object)
    flat = arr.reshape(-1)
    try:
        raw = b"".join(int(w).to_bytes(nbytes, "little") for w in flat)
    except OverflowError:
        raise ValueError(f"A word does not fit in {nbytes * 8} bits or is negative") from None
    return np.frombuffer(raw, dtype=np.uint8).reshape(arr.shape + (nbytes,)).copy()


def pack(t: MXTensor) -> np.ndarray:
    """Packed group words (spec §1.2): an object array of Python ints, shape ``[..., G]``."""
    return bytes_to_words(pack_bytes(t))


def pack_tagged(t: MXTensor) -> np.ndarray:
    """Packed group words with their precision tag above the word (bit ``MAX_GROUP_BITS``: 1 for
    MX9), as a group travels on the hardware's buses (``hw.layouts.TaggedGroup``) and leaves
    the MX converter: an object array of Python ints, shape ``[..., G]``."""
    words = pack(t)
    tags = np.broadcast_to(np.asarray(t.fmt) == MX9.code, words.shape)
    out = np.empty(words.size, dtype=object)
    out[:] = [int(w) | (int(g) << MAX_GROUP_BITS)
              for w, g in zip(words.reshape(-1), tags.reshape(-1))]
    return out.reshape(words.shape)


def unpack(words: "np.ndarray | Sequence", fmt: "str | MXFormat | Sequence[str]",
           length: "int | None" = None) -> MXTensor:
    """Fields of packed group words, the inverse of :func:`pack` (spec §1.2).

    Parameters
    ----------
    words : array_like
        Python ints ``[..., G]``, or little-endian bytes uint8 ``[..., G, nbytes]``.
    fmt : str or sequence of str
        Format of every group, or one per group along the last axis.
    length : int, optional
        Unpadded length of the last axis; defaults to ``16 * G``.
    """
    arr = np.asarray(words)
    if arr.dtype == np.uint8:
        b = arr
    else:
        b = words_to_bytes(arr, MAX_GROUP_BITS // 8)
    groups = b.shape[-2]
    codes = format_codes(fmt, groups)
    lead = b.shape[:-2]
    exp = np.zeros(lead + (groups,), dtype=np.uint8)
    micro = np.zeros(lead + (groups, MICRO_COUNT), dtype=np.uint8)
    sign = np.zeros(lead + (groups, GROUP_SIZE), dtype=np.uint8)
    mant = np.zeros(lead + (groups, GROUP_SIZE), dtype=np.uint8)
    for code in np.unique(codes):
        f = format_of(int(code))
        sel = codes == code
        bits = np.unpackbits(b[..., sel, :], axis=-1, bitorder="little")
        if bits[..., f.group_bits:].any():
            raise ValueError(f"A {f.name} group word has bits set above bit {f.group_bits - 1}")
        exp[..., sel] = np.packbits(bits[..., :8], axis=-1, bitorder="little")[..., 0]
        micro[..., sel, :] = bits[..., 8:16]
        elems = bits[..., 16:f.group_bits].reshape(bits.shape[:-1] + (GROUP_SIZE, f.elem_bits))
        weights = (1 << np.arange(f.mant_bits)).astype(np.uint16)
        mant[..., sel, :] = (elems[..., :f.mant_bits] * weights).sum(axis=-1).astype(np.uint8)
        sign[..., sel, :] = elems[..., f.mant_bits]
    return MXTensor(exp, micro, sign, mant, codes, GROUP_SIZE * groups if length is None else length)


def write_memh(path: "str | Path", words: np.ndarray, width: int = MAX_GROUP_BITS) -> None:
    """Write words as a ``$readmemh`` image: one word per line, hexadecimal, MSB first.

    Parameters
    ----------
    path : path
    words : numpy.ndarray
        Little-endian bytes uint8 ``[N, nbytes]`` (e.g. from :func:`pack_bytes` reshaped), or
        Python ints ``[N]``.
    width : int
        Word width in bits; every line has ``ceil(width / 4)`` hex digits.
    """
    arr = np.asarray(words)
    nbytes = -(-width // 8)
    b = arr if arr.dtype == np.uint8 else words_to_bytes(arr.reshape(-1), nbytes)
    b = b.reshape(-1, b.shape[-1])
    if b.shape[-1] < nbytes:
        b = np.concatenate([b, np.zeros((b.shape[0], nbytes - b.shape[-1]), np.uint8)], axis=1)
    digits = -(-width // 4)
    if b.shape[-1] > nbytes or (b.size and width % 8 and (b[:, -1] >> (width % 8)).any()):
        raise ValueError(f"Words wider than {width} bits")
    text = b[:, ::-1].tobytes().hex()
    row = 2 * b.shape[-1]
    lines = [text[i + row - digits:i + row] for i in range(0, len(text), row)]
    Path(path).write_text("".join(line + "\n" for line in lines))


def read_memh(path: "str | Path", width: int = MAX_GROUP_BITS) -> np.ndarray:
    """Read a ``$readmemh``/``$writememh`` image into little-endian bytes, uint8 ``[N, nbytes]``.

    Comments (``//``) and blank lines are skipped; ``@address`` lines are not supported.

    Raises
    ------
    ValueError
        If a line is not hexadecimal, holds an ``x``/``z`` digit, or is wider than ``width``.
    """
    nbytes = -(-width // 8)
    rows = []
    for n, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("//", 1)[0].strip().replace("_", "")
        if not line:
            continue
        try:
            value = int(line, 16)
        except ValueError:
            raise ValueError(f"{path}:{n}: not a hexadecimal word: {raw.strip()!r}") from None
        if value >> width:
            raise ValueError(f"{path}:{n}: word wider than {width} bits")
        rows.append(value.to_bytes(nbytes, "little"))
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), nbytes).copy()
