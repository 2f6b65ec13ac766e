"""Replay a tensor function as a captured CUDA graph, one graph per input shape.

At batch 1 a small model's forward pass is bound by kernel launches, not by
arithmetic (SmolLM2-135M: ~30 layers x ~15 kernels, each a few microseconds of
work and as long again to launch from Python). `ShapeGraphs(fn)` runs `fn` once
eagerly per new set of input shapes (warm-up, on a side stream), captures it into
a `torch.cuda.CUDAGraph` and from then on copies the inputs into the graph's
static tensors and replays it: one launch for the whole pass.

What `fn` must do to be captured: take and return CUDA tensors only, read every
other tensor from objects that live as long as the graph (weights, buffers), and
never synchronise with the host (`.item()`, `.cpu()`, data-dependent shapes). Its
output is copied out after each replay, so callers may keep it.

Memory: each graph keeps its own pool of the activations its pass needs, so
capture few shapes (pad inputs to buckets) and small batches. torch is imported
inside the methods; nothing happens at import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ShapeGraphs:
    """`fn(*tensors) -> tensor` replayed from one captured CUDA graph per distinct input shapes.

    Args:
        fn: the function captured (see the module's requirements).
        warmup: eager calls on a side stream before capture (lazy inits, cuBLAS workspaces).

    Example:
        >>> g = ShapeGraphs(lambda x: (x @ w).softmax(-1))  # doctest: +SKIP
        >>> y = g(x)  # first call per shape: warm-up + capture; later calls: a replay  # doctest: +SKIP
    """

    def __init__(self, fn: Callable[..., Any], warmup: int = 2) -> None:
        self.fn = fn
        self.warmup = warmup
        self._graphs: dict[tuple[Any, ...], tuple[Any, list[Any], Any]] = {}

    @property
    def n_graphs(self) -> int:
        """Shapes captured so far."""
        return len(self._graphs)

    def __call__(self, *inputs: Any) -> Any:
        import torch

        for x in inputs:
            if not isinstance(x, torch.Tensor) or x.device.type != "cuda":
                raise ValueError("ShapeGraphs replays CUDA graphs: every input must be a CUDA tensor")
        key = tuple((tuple(x.shape), x.dtype, x.device) for x in inputs)
        if key not in self._graphs:
            self._graphs[key] = self._capture(inputs)
        graph, static_in, static_out = self._graphs[key]
        for s, x in zip(static_in, inputs, strict=True):
            s.copy_(x)
        graph.replay()
        return static_out.clone()

    def _capture(self, inputs: tuple[Any, ...]) -> tuple[Any, list[Any], Any]:
        import torch

        static_in = [x.clone() for x in inputs]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.fn(*static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.fn(*static_in)
        return graph, static_in, static_out
