"""A random-weight Piper voice with the architecture and size of a real "medium" voice.

Piper's medium voices (en_US-lessac-medium, the shipped default) are VITS models trained with
piper_train's defaults: 22.05 kHz, hop 256, a 6-layer text encoder (192 wide, 2 heads, FFN 768,
kernel 3), a stochastic duration predictor, a 4-step residual coupling flow (WaveNet, 4 layers,
kernel 5) and a HiFi-GAN generator with resblock "2", kernel sizes (3, 5, 7), dilations
((1, 2), (2, 6), (3, 12)), upsample rates (8, 8, 4), 256 initial channels, upsample kernels
(16, 16, 8) (rhasspy/piper src/python/piper_train/vits/lightning.py and __main__.py). Those are
~15.7 M parameters (a real medium .onnx is 63 MB of float32: ~15.8 M).

This module writes that graph as ONNX with random weights and Piper's I/O (`input` int64
[1, ids], `input_lengths`, `scales` [noise, length, noise_w] -> `output` float [1, 1, samples]),
so the real piper-tts package loads it and runs the real espeak-ng phonemizer, and the compute
per second of audio is that of a real medium voice. Two simplifications, both cheap parts of the
model: the duration predictor is a stack of depthwise-separable convolutions of the same width
whose output is ignored (every phoneme id gets `FRAMES_PER_ID` frames, chosen so that English
text comes out at ~14 characters per second), and the text encoder's attention has no relative
position terms. The audio is noise: its duration and its cost are what matter.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 22050
HOP = 256
HIDDEN = 192
FILTER = 768
HEADS = 2
ENC_LAYERS = 6
FLOWS = 4
WN_LAYERS = 4
WN_KERNEL = 5
RESBLOCK_KERNELS = (3, 5, 7)
RESBLOCK_DILATIONS = ((1, 2), (2, 6), (3, 12))
UPSAMPLE_RATES = (8, 8, 4)
UPSAMPLE_KERNELS = (16, 16, 8)
UPSAMPLE_INITIAL = 256
N_SYMBOLS = 256
# Piper's ids for English text (espeak phonemes, stress marks, spaces, a pad after each):
# ~2.2 per character. Speech at ~14 characters per second (about 150 words a minute) is
# 86.13 frames/s / (14 * 2.2) ids/s = ~2.7 frames per id on average (pads get few frames).
FRAMES_PER_ID = 2.66
VERSION = 2
NAME = "vits-medium-shape.onnx"


class _Graph:
    def __init__(self, seed: int) -> None:
        from onnx import helper

        self.h = helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.rng = np.random.default_rng(seed)
        self.n = 0
        self.params = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, value: Any, dtype: Any = np.float32) -> str:
        from onnx import numpy_helper

        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def weight(self, shape: tuple[int, ...], fan_in: int) -> str:
        self.params += int(np.prod(shape))
        return self.const(self.rng.normal(0, fan_in ** -0.5, shape).astype(np.float32))

    def op(self, kind: str, inputs: list[str], **attrs: Any) -> str:
        out = self.name(kind.lower())
        self.nodes.append(self.h.make_node(kind, inputs, [out], **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int = 1, dilation: int = 1,
             groups: int = 1, bias: bool = True) -> str:
        w = self.weight((cout, cin // groups, k), cin // groups * k)
        inputs = [x, w] + ([self.const(np.zeros(cout))] if bias else [])
        pad = (k - 1) * dilation // 2
        return self.op("Conv", inputs, kernel_shape=[k], dilations=[dilation], pads=[pad, pad],
                       group=groups)

    def conv_t(self, x: str, cin: int, cout: int, k: int, stride: int) -> str:
        w = self.weight((cin, cout, k), cin * k)
        pad = (k - stride) // 2
        return self.op("ConvTranspose", [x, w, self.const(np.zeros(cout))], kernel_shape=[k],
                       strides=[stride], pads=[pad, pad])

    def layer_norm(self, x: str, dim: int) -> str:  # over the last axis
        return self.op("LayerNormalization", [x, self.const(np.ones(dim)),
                                              self.const(np.zeros(dim))], axis=-1)

    def channel_norm(self, x: str, dim: int) -> str:  # [1, C, T] normalised over C
        t = self.op("Transpose", [x], perm=[0, 2, 1])
        return self.op("Transpose", [self.layer_norm(t, dim)], perm=[0, 2, 1])


def _text_encoder(g: _Graph, ids: str) -> tuple[str, str]:
    """ids [1, N] -> (m_p, logs_p) [1, 192, N]."""
    emb = g.weight((N_SYMBOLS, HIDDEN), HIDDEN)
    x = g.op("Gather", [emb, ids], axis=0)                      # [1, N, 192]
    x = g.op("Mul", [x, g.const(np.float32(HIDDEN ** 0.5))])
    head = HIDDEN // HEADS
    split_heads = g.const([1, -1, HEADS, head], np.int64)
    merge = g.const([1, -1, HIDDEN], np.int64)
    for _ in range(ENC_LAYERS):
        def proj(src: str) -> str:
            return g.op("MatMul", [src, g.weight((HIDDEN, HIDDEN), HIDDEN)])
        q, k, v = (g.op("Transpose", [g.op("Reshape", [proj(x), split_heads])],
                        perm=[0, 2, 1, 3]) for _ in range(3))
        scores = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])])
        scores = g.op("Mul", [scores, g.const(np.float32(head ** -0.5))])
        ctx = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), merge])
        x = g.layer_norm(g.op("Add", [x, proj(ctx)]), HIDDEN)
        xc = g.op("Transpose", [x], perm=[0, 2, 1])              # [1, 192, N]
        y = g.op("Relu", [g.conv(xc, HIDDEN, FILTER, 3)])
        y = g.op("Transpose", [g.conv(y, FILTER, HIDDEN, 3)], perm=[0, 2, 1])
        x = g.layer_norm(g.op("Add", [x, y]), HIDDEN)
    xc = g.op("Transpose", [x], perm=[0, 2, 1])
    stats = g.conv(xc, HIDDEN, 2 * HIDDEN)
    m = g.op("Slice", [stats, g.const([0], np.int64), g.const([HIDDEN], np.int64),
                       g.const([1], np.int64)])
    logs = g.op("Slice", [stats, g.const([HIDDEN], np.int64), g.const([2 * HIDDEN], np.int64),
                          g.const([1], np.int64)])
    # The duration predictor's cost: 5 stacks (pre + 4 flows) of 3 depthwise-separable convs.
    d = g.conv(xc, HIDDEN, HIDDEN)
    for _ in range(5):
        for i in range(3):
            d = g.conv(g.op("Relu", [g.channel_norm(g.conv(d, HIDDEN, HIDDEN, 3, 3 ** i, HIDDEN),
                                                    HIDDEN)]), HIDDEN, HIDDEN)
    dur = g.op("ReduceMean", [d], keepdims=0)                   # unused value, real cost
    m = g.op("Add", [m, g.op("Mul", [g.op("Unsqueeze", [dur, g.const([0, 1, 2], np.int64)]),
                                     g.const(np.float32(0.0))])])
    return m, logs


def _expand(g: _Graph, x: str, ids: str, scales: str) -> str:
    """[1, C, N] -> [1, C, ceil(N * FRAMES_PER_ID * length_scale)] (nearest)."""
    from onnx import TensorProto

    n = g.op("Cast", [g.op("Gather", [g.op("Shape", [ids]), g.const([1], np.int64)], axis=0)],
             to=TensorProto.FLOAT)
    length_scale = g.op("Gather", [scales, g.const([1], np.int64)], axis=0)
    frames = g.op("Mul", [g.op("Mul", [n, g.const(np.float32(FRAMES_PER_ID))]), length_scale])
    frames = g.op("Cast", [g.op("Ceil", [frames])], to=TensorProto.INT64)
    sizes = g.op("Concat", [g.const([1, HIDDEN], np.int64), frames], axis=0)
    return g.op("Resize", [x, "", "", sizes], mode="nearest")


def _flow(g: _Graph, z: str) -> str:
    half = HIDDEN // 2
    for _ in range(FLOWS):
        z = g.op("Slice", [z, g.const([HIDDEN - 1], np.int64), g.const([-HIDDEN - 1], np.int64),
                           g.const([1], np.int64), g.const([-1], np.int64)])   # Flip
        x0 = g.op("Slice", [z, g.const([0], np.int64), g.const([half], np.int64),
                            g.const([1], np.int64)])
        x1 = g.op("Slice", [z, g.const([half], np.int64), g.const([HIDDEN], np.int64),
                            g.const([1], np.int64)])
        h = g.conv(x0, half, HIDDEN)
        out = None
        for layer in range(WN_LAYERS):
            a = g.conv(h, HIDDEN, 2 * HIDDEN, WN_KERNEL)
            t = g.op("Tanh", [g.op("Slice", [a, g.const([0], np.int64),
                                             g.const([HIDDEN], np.int64),
                                             g.const([1], np.int64)])])
            s = g.op("Sigmoid", [g.op("Slice", [a, g.const([HIDDEN], np.int64),
                                                g.const([2 * HIDDEN], np.int64),
                                                g.const([1], np.int64)])])
            acts = g.op("Mul", [t, s])
            last = layer == WN_LAYERS - 1
            rs = g.conv(acts, HIDDEN, HIDDEN if last else 2 * HIDDEN)
            if last:
                skip = rs
            else:
                h = g.op("Add", [h, g.op("Slice", [rs, g.const([0], np.int64),
                                                   g.const([HIDDEN], np.int64),
                                                   g.const([1], np.int64)])])
                skip = g.op("Slice", [rs, g.const([HIDDEN], np.int64),
                                      g.const([2 * HIDDEN], np.int64), g.const([1], np.int64)])
            out = skip if out is None else g.op("Add", [out, skip])
        m = g.conv(out, HIDDEN, half)
        z = g.op("Concat", [x0, g.op("Sub", [x1, m])], axis=1)
    return z


def _generator(g: _Graph, z: str) -> str:
    x = g.conv(z, HIDDEN, UPSAMPLE_INITIAL, 7)
    ch = UPSAMPLE_INITIAL
    for rate, kernel in zip(UPSAMPLE_RATES, UPSAMPLE_KERNELS):
        x = g.conv_t(g.op("LeakyRelu", [x], alpha=0.1), ch, ch // 2, kernel, rate)
        ch //= 2
        total = None
        for k, dilations in zip(RESBLOCK_KERNELS, RESBLOCK_DILATIONS):
            r = x
            for d in dilations:
                r = g.op("Add", [g.conv(g.op("LeakyRelu", [r], alpha=0.1), ch, ch, k, d), r])
            total = r if total is None else g.op("Add", [total, r])
        x = g.op("Mul", [total, g.const(np.float32(1 / len(RESBLOCK_KERNELS)))])
    x = g.conv(g.op("LeakyRelu", [x], alpha=0.01), ch, 1, 7, bias=False)
    return g.op("Tanh", [x])


def build_model(seed: int = 0) -> tuple[Any, int]:
    """The ONNX ModelProto and its parameter count."""
    from onnx import TensorProto, helper

    g = _Graph(seed)
    m, logs = _text_encoder(g, "input")
    m, logs = _expand(g, m, "input", "scales"), _expand(g, logs, "input", "scales")
    noise_scale = g.op("Gather", [g.op("Reshape", ["scales", g.const([3], np.int64)]),
                                  g.const(0, np.int64)], axis=0)
    noise = g.op("Mul", [g.op("RandomNormalLike", [m]), g.op("Exp", [logs])])
    z = g.op("Add", [m, g.op("Mul", [noise, noise_scale])])
    audio = _generator(g, _flow(g, z))
    g.nodes.append(helper.make_node("Identity", [audio], ["output"]))
    g.nodes.append(helper.make_node("Identity", ["input_lengths"], ["lengths_unused"]))
    graph = helper.make_graph(
        g.nodes, "vits_medium_shape",
        inputs=[helper.make_tensor_value_info("input", TensorProto.INT64, [1, "phonemes"]),
                helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
                helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3])],
        outputs=[helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, "time"]),
                 helper.make_tensor_value_info("lengths_unused", TensorProto.INT64, [1])],
        initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="bench.vits_voice")
    model.ir_version = 8
    return model, g.params


def make_voice(outdir: Path, force: bool = False) -> Path:
    """Write (or reuse) the voice and its .onnx.json; returns the .onnx path."""
    import onnx

    from tests.support.models import _piper_config

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / NAME
    stamp = outdir / f".{NAME}.stamp"
    key = json.dumps({"version": VERSION, "frames_per_id": FRAMES_PER_ID})
    if not force and path.is_file() and stamp.is_file() and stamp.read_text() == key:
        return path
    model, params = build_model()
    tmp = path.with_name(f".{NAME}.tmp{os.getpid()}")
    onnx.save(model, str(tmp))
    config = _piper_config(SAMPLE_RATE)
    config["dataset"] = f"bench-vits-medium-shape ({params} random parameters)"
    config["audio"]["quality"] = "medium"
    config["hop_length"] = HOP
    path.with_name(NAME + ".json").write_text(json.dumps(config, indent=2, ensure_ascii=False),
                                              encoding="utf-8")
    os.replace(tmp, path)
    stamp.write_text(key)
    return path


def parameter_count() -> int:
    return build_model()[1]


REFERENCE = ("Of course, I can book that for you. We're open Sunday to Thursday from nine to "
             "six, and on Friday until one.")


def measure_rtf(path: Path, repeats: int = 3) -> dict[str, float]:
    """Real-time factor of the voice here, loaded as the appliance loads it (1 thread)."""
    import time

    from appliance.tts.piper import Voice

    voice = Voice.load(path, threads=1)
    best = float("inf")
    audio_s = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        pieces = list(voice.synthesize(REFERENCE))
        best = min(best, time.perf_counter() - started)
        audio_s = sum(len(p.samples) for p in pieces) / SAMPLE_RATE
    return {"rtf": best / audio_s, "audio_s": audio_s, "chars_per_s": len(REFERENCE) / audio_s}
