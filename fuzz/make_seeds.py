"""Writes the committed fuzz seeds (python3 fuzz/make_seeds.py). Small, realistic inputs covering
every reader feature; mhd_volume inputs use the framing of lungseg::mhd::fuzzing."""
import gzip, os, struct, zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
MARK = b"\n@@FILE "

def header(dims=(4, 3, 2), etype="MET_SHORT", data="image.raw", extra="", tm="1 0 0 0 1 0 0 0 1", comp=None):
    c = "CompressedData = False\n" if comp is None else f"CompressedData = True\nCompressedDataSize = {comp}\n"
    return (f"ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n{c}"
            f"TransformMatrix = {tm}\nOffset = -198.10000600000001 -195 -335.209991\nCenterOfRotation = 0 0 0\n"
            f"AnatomicalOrientation = RAI\nElementSpacing = 0.7617189884185791 0.7617189884185791 2.5\n{extra}"
            f"DimSize = {' '.join(map(str, dims))}\nElementType = {etype}\nElementDataFile = {data}\n").encode()

RAW = struct.pack("<24h", *[(-1000 + 37 * i) for i in range(24)])

def files(hdr, *named):
    out = hdr.rstrip(b"\n") if named else hdr
    for name, body in named:
        out += MARK + name.encode() + b"\n" + body
    return out

volume = {
    "luna16_raw": files(header(data="1.3.6.1.4.1.14519.5.2.1.6279.6001.105756658031515062000744821260.raw"),
                        ("1.3.6.1.4.1.14519.5.2.1.6279.6001.105756658031515062000744821260.raw", RAW)),
    "luna16_flipped": files(header(tm="-1 0 0 0 -1 0 0 0 1"), ("image.raw", RAW)),
    "zraw_zlib": files(header(data="image.zraw", comp=len(zlib.compress(RAW, 2))), ("image.zraw", zlib.compress(RAW, 2))),
    "zraw_gzip_nosize": files(header(data="image.zraw").replace(b"CompressedData = False", b"CompressedData = True"),
                              ("image.zraw", gzip.compress(RAW))),
    "mha_local": header(data="LOCAL") + RAW,
    "mha_compressed": header(data="LOCAL", comp=len(zlib.compress(RAW))) + zlib.compress(RAW),
    "header_size_minus_one": files(header(extra="HeaderSize = -1\n"), ("image.raw", b"\0" * 13 + RAW)),
    "header_size_skip": files(header(extra="HeaderSize = 16\n"), ("image.raw", b"\xff" * 16 + RAW)),
    "list_2d": files(header(data="LIST\nz0.raw\nz1.raw"), ("z0.raw", RAW[:24]), ("z1.raw", RAW[24:])),
    "list_3d_compressed": files(header(data="LIST 3D\nall.z").replace(b"CompressedData = False", b"CompressedData = True"),
                                ("all.z", zlib.compress(RAW))),
    "pattern": files(header(data="slice%03d.raw"), ("slice001.raw", RAW[:24]), ("slice002.raw", RAW[24:])),
    "pattern_step": files(header(data="s%d.raw 0 10 10"), ("s0.raw", RAW[:24]), ("s10.raw", RAW[24:])),
    "ascii": files(header(data="image.txt").replace(b"BinaryData = True", b"BinaryData = False"),
                   ("image.txt", " ".join(str(v) for v in struct.unpack("<24h", RAW)).encode())),
    "msb_float": files(header(etype="MET_FLOAT").replace(b"MSB = False", b"MSB = True"),
                       ("image.raw", struct.pack(">24f", *[i * 0.5 for i in range(24)]))),
    "two_channels": files(header(extra="ElementNumberOfChannels = 2\n", etype="MET_UCHAR"), ("image.raw", bytes(range(48)))),
    "crlf_colon": files(header().replace(b" = ", b": ").replace(b"\n", b"\r\n"), ("image.raw", RAW)),
}

hdrs = {name: data.split(MARK)[0] for name, data in volume.items()}
hdrs["everything"] = (b"ObjectType: Image\r\nNDims: 3\r\nDimSize: 4\r\n 3 2\r\nElementSize = 2 2 2\r\nPosition = 1 2 3\r\n"
                      b"Origin = 0 0 0\r\nOrientation = 0 1 0 1 0 0 0 0 -1\r\nRotation = 1 0 0 0 1 0 0 0 1\r\n"
                      b"ElementByteOrderMSB = True\r\nCompressedData = True\r\nCompressedDataSize = 99\r\nHeaderSize = -1\r\n"
                      b"ElementNumberOfChannels = 2\r\nModality = MET_MOD_CT\r\nNDims = 3\r\nElementType = MET_ULONG_ARRAY\r\n"
                      b"ElementDataFile = LIST 2D\r\na.raw\r\nb.raw\r\n")

for target, seeds in (("mhd_header", hdrs), ("mhd_volume", volume)):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
