"""One decoder-only transformer for every model family.

Llama-shaped on purpose (RMSNorm, rotary positions, SwiGLU, no biases): the
same weights load into Hugging Face's ``LlamaForCausalLM``, which the speed
benchmark uses as its peer. The KV cache is a fixed-shape buffer written in
place at ``input_pos`` (as in gpt-fast), so decoding one token does no
allocation and no concatenation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cadenza.errors import ModelError

# the sizes a model folder's config may give, checked before any tensor is made: far above the bundled
# models (d_model 256, 6 layers, 1024 positions), far below a config that asks for gigabytes by mistake
SIZES = {"vocab_size": (1, 1_000_000), "d_model": (2, 8192), "n_layers": (1, 256), "n_heads": (1, 256),
         "d_ff": (1, 65536), "max_seq_len": (1, 16384)}


@dataclass
class ModelConfig:
    vocab_size: int
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 8
    d_ff: int = 704
    max_seq_len: int = 1024
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """A config from its JSON object, checked (``check``): a bad one raises a ModelError naming the field."""
        if not isinstance(d, dict):
            raise ModelError(f"the model section must be an object of sizes, not {type(d).__name__}")
        if "vocab_size" not in d:
            raise ModelError("model.vocab_size is missing")
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__}).check()

    def check(self) -> "ModelConfig":
        """Every size a whole number within SIZES, the width split into heads of even size (rotary positions
        rotate pairs), the rest positive finite numbers; else a ModelError naming the field."""
        for name, (lo, hi) in SIZES.items():
            v = getattr(self, name)
            if type(v) is not int or not lo <= v <= hi:
                raise ModelError(f"model.{name} must be a whole number from {lo} to {hi} (got {v!r})")
        if self.d_model % self.n_heads or self.head_dim % 2:
            raise ModelError(f"model.d_model ({self.d_model}) must split into model.n_heads ({self.n_heads}) "
                             "heads of an even size")
        for name, ok in (("rope_theta", lambda v: v > 0), ("norm_eps", lambda v: 0 < v < 1),
                         ("dropout", lambda v: 0 <= v < 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
                raise ModelError(f"model.{name} is out of range (got {v!r})")
        return self

    def param_fields(self) -> dict[str, tuple[str, ...]]:
        """{parameter name: the config fields that give its shape}: the tensors a weight file must hold."""
        D, F_, V = "d_model", "d_ff", "vocab_size"
        out = {"embed_tokens.weight": (V, D)}
        for i in range(self.n_layers):
            p = f"layers.{i}."
            out.update({p + "input_layernorm.weight": (D,), p + "post_attention_layernorm.weight": (D,),
                        **{p + f"self_attn.{x}_proj.weight": (D, D) for x in "qkvo"},
                        p + "mlp.gate_proj.weight": (F_, D), p + "mlp.up_proj.weight": (F_, D),
                        p + "mlp.down_proj.weight": (D, F_)})
        out.update({"norm.weight": (D,), "lm_head.weight": (V, D)})
        return out


def rope_tables(cfg: ModelConfig, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of shape (max_seq_len, head_dim), in the rotate-half layout Llama uses."""
    half = cfg.head_dim // 2
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, half, device=device, dtype=torch.float32) / half))
    ang = torch.outer(torch.arange(cfg.max_seq_len, device=device, dtype=torch.float32), inv)
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (B, nh, T, hs); cos/sin: (T, hs)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class _Fused:
    """The transposed concatenation of several Linear weights, (C x sum O), rebuilt whenever one changes.

    Inference only (no autograd through it). Two CPU savings for one-token decoding steps, where
    per-op overhead dominates: one matmul instead of several small ones (q/k/v, gate/up), and
    ``x @ W.T`` from a contiguous pre-transposed copy, which at 8-16 rows ran 1.5-2x faster than
    ``F.linear`` on the same weights (torch 2.13 CPU; prefill-sized inputs are not slower). The
    parameters stay separate, so checkpoints and the Hugging Face layout are unchanged.
    """

    def __init__(self):
        self.key, self.weight = None, None

    def __call__(self, *linears: nn.Linear) -> torch.Tensor:
        key = tuple((lin.weight.data_ptr(), lin.weight._version) for lin in linears)
        if key != self.key:
            self.weight = torch.cat([lin.weight.detach() for lin in linears]).t().contiguous()
            self.key = key
        return self.weight


def _inference(module: nn.Module) -> bool:
    return not module.training and not torch.is_grad_enabled()


def fast_cache_dtype(weight: torch.Tensor) -> torch.dtype:
    """bfloat16 for the KV cache of float32 weights on a CPU with native bf16 (AVX512-BF16/AMX), else
    the weights' dtype.

    Decoding a batch of sequences on a CPU is memory-bound in attention: each new token reads the
    whole cache. Halving its bytes made scaled_dot_product_attention 1.6-1.9x faster at 512-1024
    cached tokens (batch 8) on such a CPU; projections, norms and logits stay in float32. Elsewhere
    the conversions may cost more than they save, so the cache keeps the weights' dtype.
    """
    if weight.dtype != torch.float32:
        return weight.dtype
    if weight.device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else weight.dtype
    try:
        native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        native = False
    return torch.bfloat16 if native else weight.dtype


class KVCache(nn.Module):
    """Fixed-shape key/value buffers (B, nh, S, hs), written in place at ``input_pos``."""

    def __init__(self, batch: int, n_heads: int, max_len: int, head_dim: int, dtype, device=None):
        super().__init__()
        shape = (batch, n_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        self.k[:, :, input_pos] = k
        self.v[:, :, input_pos] = v
        return self.k, self.v


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.q_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.o_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.kv_cache: KVCache | None = None
        self._qkv, self._o = _Fused(), _Fused()

    def forward(self, x, cos, sin, input_pos=None, mask=None):
        B, T, C = x.shape
        nh, hs = self.cfg.n_heads, self.cfg.head_dim
        if _inference(self):
            q, k, v = (x @ self._qkv(self.q_proj, self.k_proj, self.v_proj)).split(C, -1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.reshape(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.reshape(B, T, nh, hs).transpose(1, 2)
        v = v.reshape(B, T, nh, hs).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.kv_cache is not None and input_pos is not None:
            cdt = self.kv_cache.k.dtype
            k, v = self.kv_cache.update(input_pos, k.to(cdt), v.to(cdt))
            # attend only to the filled part of the cache (mask is (1, 1, T, S) with S = last position
            # + 1): without torch.compile, a fixed-shape read of the whole cache costs 2-3x more per token
            S = mask.shape[-1]
            k, v = k[:, :, :S], v[:, :, :S]
            y = F.scaled_dot_product_attention(q.to(cdt), k, v, attn_mask=None if T == 1 else mask).to(x.dtype)
        else:
            # no dropout on attention weights: with dropout_p > 0, SDPA on CPU falls back to the
            # math kernel that materializes (T, T) matrices (3x slower here); the residual paths
            # carry the model's dropout instead
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(B, T, C)
        return y @ self._o(self.o_proj) if _inference(self) else self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.down_proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self._gate_up, self._down = _Fused(), _Fused()

    def forward(self, x):
        if _inference(self):
            g, u = (x @ self._gate_up(self.gate_proj, self.up_proj)).chunk(2, -1)
            return (F.silu(g) * u) @ self._down(self.down_proj)
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, input_pos=None, mask=None):
        x = x + self.drop(self.self_attn(self.input_layernorm(x), cos, sin, input_pos, mask))
        return x + self.drop(self.mlp(self.post_attention_layernorm(x)))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.cache_len = 0
        self._head = _Fused()
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def setup_cache(self, batch: int, max_len: int | None = None, dtype: torch.dtype | str | None = None):
        """Allocate KV caches for ``batch`` sequences of up to ``max_len`` tokens.

        ``dtype``: the cache's dtype (default: the weights'); ``"fast"`` picks bfloat16 where the CPU
        has native bf16 (see ``fast_cache_dtype``).
        """
        max_len = min(max_len or self.cfg.max_seq_len, self.cfg.max_seq_len)
        if dtype == "fast":
            dtype = fast_cache_dtype(self.embed_tokens.weight)
        dtype = dtype or self.embed_tokens.weight.dtype
        dev = self.embed_tokens.weight.device
        for layer in self.layers:
            layer.self_attn.kv_cache = KVCache(batch, self.cfg.n_heads, max_len, self.cfg.head_dim, dtype, dev)
        self._dw = None  # the decode weights hold the old caches' buffers
        self.cache_len = max_len
        # causal mask over the cache: row i may see columns <= i
        self.register_buffer("causal", torch.tril(torch.ones(max_len, max_len, dtype=torch.bool, device=dev)),
                             persistent=False)

    def clear_cache(self):
        for layer in self.layers:
            layer.self_attn.kv_cache = None
        self._dw = None
        self.cache_len = 0

    def _decode_weights(self) -> tuple:
        """The fused, pre-transposed inference weights (and caches), gathered for ``decode_step``;
        rebuilt when a parameter or a cache changes (one cheap key instead of a check per matmul)."""
        params = self.__dict__.get("_plist")
        if params is None:  # the parameter objects stay the same; their data and versions are checked
            params = self.__dict__["_plist"] = list(self.parameters())
        # the caches themselves, compared by identity: an id() alone may be reused by a new cache once
        # the old one is freed, and then stale buffers of another batch size were returned (seen in CI)
        # (modules compare by identity; the key holds them, so their ids cannot be reused meanwhile)
        key = (tuple(layer.self_attn.kv_cache for layer in self.layers),
               tuple((p.data_ptr(), p._version) for p in params))
        cached = getattr(self, "_dw", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        out = []
        for layer in self.layers:
            at, mlp = layer.self_attn, layer.mlp
            out.append((layer.input_layernorm.weight, at._qkv(at.q_proj, at.k_proj, at.v_proj), at._o(at.o_proj),
                        layer.post_attention_layernorm.weight, mlp._gate_up(mlp.gate_proj, mlp.up_proj),
                        mlp._down(mlp.down_proj), at.kv_cache.k, at.kv_cache.v))
        weights = tuple(out), self.norm.weight, self._head(self.lm_head)
        self._dw = (key, weights)
        return weights

    def decode_step(self, idx: torch.Tensor, input_pos: torch.Tensor, weights: tuple | None = None,
                    filled: int | None = None) -> torch.Tensor:
        """One token per sequence, idx (B, 1) at position input_pos (1,) -> logits (B, V).

        Fixed shapes in the style of gpt-fast: attention reads the whole cache under the causal
        mask's row, so the graph never changes with the position and ``torch.compile`` can fuse
        it once (``compile_decode``). Numerically the same as ``forward`` with the cache.
        ``filled`` (eager only): attend to the first ``filled`` cache positions without a mask
        instead (what ``forward`` does for one token: less to read, no module-call overhead).
        """
        layers, norm_w, head = weights if weights is not None else self._decode_weights()
        B, C = idx.shape[0], self.cfg.d_model
        nh, hs, eps = self.cfg.n_heads, self.cfg.head_dim, self.cfg.norm_eps
        x = self.embed_tokens(idx)
        cos, sin = self.rope_cos[input_pos], self.rope_sin[input_pos]
        mask = self.causal[input_pos][None, None] if filled is None else None  # (1, 1, 1, S)
        for ln1, wqkv, wo, ln2, wgu, wd, kc, vc in layers:
            h = F.rms_norm(x, (C,), ln1, eps)
            q, k, v = (h @ wqkv).split(C, -1)
            q = apply_rope(q.view(B, 1, nh, hs).transpose(1, 2), cos, sin)
            k = apply_rope(k.view(B, 1, nh, hs).transpose(1, 2), cos, sin)
            v = v.view(B, 1, nh, hs).transpose(1, 2)
            kc.index_copy_(2, input_pos, k.to(kc.dtype))
            vc.index_copy_(2, input_pos, v.to(vc.dtype))
            if filled is not None:
                kc, vc = kc[:, :, :filled], vc[:, :, :filled]
            y = F.scaled_dot_product_attention(q.to(kc.dtype), kc, vc, attn_mask=mask).to(x.dtype)
            x = x + y.transpose(1, 2).reshape(B, 1, C) @ wo
            h = F.rms_norm(x, (C,), ln2, eps)
            g, u = (h @ wgu).chunk(2, -1)
            x = x + (F.silu(g) * u) @ wd
        return (F.rms_norm(x, (C,), norm_w, eps) @ head)[:, -1]

    def compile_decode(self):
        """A torch.compile'd ``decode_step`` for the current cache (compiled once per cache shape;
        the first call takes seconds). Returns a function (idx, input_pos) -> logits."""
        weights = self._decode_weights()
        key = tuple(w.data_ptr() for layer in weights[0] for w in layer)
        if getattr(self, "_compiled_key", None) != key:
            fn = torch.compile(self.decode_step, fullgraph=True, dynamic=False)
            self._compiled = lambda idx, pos: fn(idx, pos, weights)
            self._compiled_key = key
        return self._compiled

    def forward(self, idx: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        """idx (B, T) -> logits (B, T, V). With ``input_pos`` (T,), reads and writes the KV cache."""
        T = idx.shape[1]
        if T == 1 and input_pos is not None and _inference(self) and self.layers[0].self_attn.kv_cache is not None:
            # one token with the cache: the direct path (no per-module calls); same numbers
            return self.decode_step(idx, input_pos, filled=int(input_pos[0]) + 1)[:, None]
        x = self.embed_tokens(idx)
        if input_pos is None:
            if T > self.cfg.max_seq_len:
                raise ValueError(f"sequence of {T} tokens is longer than the context ({self.cfg.max_seq_len})")
            cos, sin, mask = self.rope_cos[:T], self.rope_sin[:T], None
        else:
            cos, sin = self.rope_cos[input_pos], self.rope_sin[input_pos]
            # (1, 1, T, S): S = the last position written + 1 (one token at the end needs no mask)
            mask = self.causal[input_pos, : int(input_pos.max()) + 1][None, None]
        for layer in self.layers:
            x = layer(x, cos, sin, input_pos, mask)
        x = self.norm(x)
        return x @ self._head(self.lm_head) if _inference(self) else self.lm_head(x)
