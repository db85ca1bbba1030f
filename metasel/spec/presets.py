"""Model size presets: random-weight models the collector can build in seconds on a CPU."""

from __future__ import annotations

from typing import Any

#: Size presets: random-weight models the collector can build in seconds on a CPU.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "llama-5m": dict(arch="llama", layers=2, hidden=128, heads=4, kv_heads=2, intermediate=344, vocab=16384),
    "llama-12m": dict(arch="llama", layers=4, hidden=256, heads=4, kv_heads=2, intermediate=688, vocab=16384),
    "llama-34m": dict(arch="llama", layers=6, hidden=384, heads=6, kv_heads=2, intermediate=1024, vocab=32000),
    "llama-56m": dict(arch="llama", layers=8, hidden=512, heads=8, kv_heads=4, intermediate=1376, vocab=32000),
    "llama-125m": dict(arch="llama", layers=12, hidden=768, heads=12, kv_heads=4, intermediate=2048, vocab=32000),
    "qwen2-14m": dict(arch="qwen2", layers=4, hidden=192, heads=6, kv_heads=2, intermediate=512, vocab=32000),
    "qwen2-41m": dict(arch="qwen2", layers=6, hidden=448, heads=7, kv_heads=1, intermediate=1216, vocab=32000),
    "qwen2-108m": dict(arch="qwen2", layers=10, hidden=640, heads=10, kv_heads=2, intermediate=1792, vocab=50000),
    "gpt2-5m": dict(arch="gpt2", layers=4, hidden=256, heads=4, kv_heads=4, intermediate=1024, vocab=8192),
    "gpt2-27m": dict(arch="gpt2", layers=6, hidden=512, heads=8, kv_heads=8, intermediate=2048, vocab=16384),
    "gpt2-124m": dict(arch="gpt2", layers=12, hidden=768, heads=12, kv_heads=12, intermediate=3072, vocab=50257),
    "mistral-25m": dict(arch="mistral", layers=4, hidden=320, heads=8, kv_heads=2, intermediate=1024, vocab=32000),
    "mistral-76m": dict(arch="mistral", layers=8, hidden=640, heads=10, kv_heads=2, intermediate=1792, vocab=32000),
}
