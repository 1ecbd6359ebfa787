"""Writes the 1 GiB bench job (bench/make_job.py's safetensors file) as an
ONNX model: a ModelProto (ir_version 8, opset 17) whose graph holds the 241
tensors as FLOAT initializers in raw_data, in the safetensors file's order,
and no nodes. The bytes are encoded here, streaming, so the 1 GiB is never
held twice in memory (field numbers: docs/formats/onnx.md).

Usage: python3 bench/make_job_onnx.py JOB.safetensors OUT.onnx
"""
import json
import struct
import sys


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wt):
    return varint(field << 3 | wt)


def lenrec(field, payload_len):
    return key(field, 2) + varint(payload_len)


def main(src, dst):
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        tensors = sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                         key=lambda kv: kv[1]["data_offsets"][0])
        heads = []
        for name, info in tensors:
            assert info["dtype"] == "F32"
            lo, hi = info["data_offsets"]
            h = b"".join(key(1, 0) + varint(d) for d in info["shape"])
            h += key(2, 0) + varint(1) + lenrec(8, len(name.encode())) + name.encode()
            h += lenrec(9, hi - lo)
            heads.append((h, lo, hi))
        graph_len = 0
        for h, lo, hi in heads:
            body = len(h) + hi - lo
            graph_len += len(lenrec(5, body)) + body
        gname = b"bench"
        graph_len += len(lenrec(2, len(gname))) + len(gname)
        opset = key(2, 0) + varint(17)
        with open(dst, "wb") as out:
            out.write(key(1, 0) + varint(8))
            out.write(lenrec(2, 5) + b"graft")
            out.write(lenrec(8, len(opset)) + opset)
            out.write(lenrec(7, graph_len))
            out.write(lenrec(2, len(gname)) + gname)
            for h, lo, hi in heads:
                out.write(lenrec(5, len(h) + hi - lo) + h)
                f.seek(base + lo)
                left = hi - lo
                while left:
                    chunk = f.read(min(left, 1 << 24))
                    out.write(chunk)
                    left -= len(chunk)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
