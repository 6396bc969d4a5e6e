#!/usr/bin/env python3
"""Writes the seed corpora (valid requests the fuzzer mutates). Run from devices/fuzz/."""
import struct

NEXT, WRITE, INDIRECT = 1, 2, 4


def desc(addr, length, flags=0, nxt=0):
    return struct.pack("<QIHH", addr, length, flags, nxt)


def put(img, at, data):
    if len(img) < at + len(data):
        img.extend(b"\0" * (at + len(data) - len(img)))
    img[at:at + len(data)] = data


def avail(img, at, heads):
    put(img, at, struct.pack("<HH", 0, len(heads)) + b"".join(struct.pack("<H", h) for h in heads))


def blk_hdr(ty, sector):
    return struct.pack("<IIQ", ty, 0, sector)


def blk_basic():
    img = bytearray()
    d = [
        desc(0x900, 16, NEXT, 1), desc(0xa00, 512, NEXT, 2), desc(0x980, 1, WRITE),  # OUT
        desc(0x910, 16, NEXT, 4), desc(0xc00, 512, WRITE | NEXT, 5), desc(0x981, 1, WRITE),  # IN
        desc(0x920, 16, NEXT, 7), desc(0x982, 1, WRITE),  # FLUSH
        desc(0x930, 16, NEXT, 9), desc(0xe00, 20, WRITE | NEXT, 10), desc(0x983, 1, WRITE),  # GET_ID
    ]
    put(img, 0, b"".join(d))
    avail(img, 0x100, [0, 3, 6, 8])
    for at, ty in [(0x900, 1), (0x910, 0), (0x920, 4), (0x930, 8)]:
        put(img, at, blk_hdr(ty, 1))
    put(img, 0xa00, bytes(range(256)) * 2)
    put(img, 0xe00, b"\0" * 20)
    return bytes([0]) + bytes(img)


def blk_indirect_discard():
    img = bytearray()
    put(img, 0, desc(0x1000, 48, INDIRECT))  # discard via an indirect table
    put(img, 16, desc(0x940, 16, NEXT, 2) + desc(0x2000, 0, NEXT, 3) + desc(0x950, 16, NEXT, 3) + desc(0x984, 1, WRITE))
    avail(img, 0x100, [0, 1])
    put(img, 0x1000, desc(0x900, 16, NEXT, 1) + desc(0x910, 32, NEXT, 2) + desc(0x980, 1, WRITE))
    put(img, 0x900, blk_hdr(11, 0))
    put(img, 0x910, struct.pack("<QII", 8, 8, 0) + struct.pack("<QII", 64, 1, 0))
    put(img, 0x940, blk_hdr(13, 0))
    put(img, 0x950, struct.pack("<QII", 16, 4, 1))
    return bytes([2]) + bytes(img)


def net_basic(mrg):
    img = bytearray()
    put(img, 0, desc(0x1000, 1526, WRITE) + desc(0x1800, 1526, WRITE))
    avail(img, 0x100, [0, 1])
    put(img, 0x400, desc(0x2000, 12, NEXT, 1) + desc(0x2010, 60))
    avail(img, 0x500, [0])
    put(img, 0x2000, b"\0" * 12 + b"\xff" * 6 + b"\x02" + b"\0" * 5 + b"\x08\x06" + bytes(46))
    frame = b"\0" * 12 + bytes(range(60))
    big = b"\0" * 12 + bytes(3000)
    frames = struct.pack("<H", len(frame)) + frame + struct.pack("<H", len(big)) + big
    return bytes([mrg]) + struct.pack("<H", len(img)) + bytes(img) + frames


for name, data in [("blk_request/basic", blk_basic()), ("blk_request/indirect_discard", blk_indirect_discard()),
                   ("net_frames/plain", net_basic(0)), ("net_frames/mrg", net_basic(1))]:
    with open(f"corpus/{name}", "wb") as f:
        f.write(data)
