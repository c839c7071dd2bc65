"""Independent PyTorch reference of the CoCa model described in /work/shared/spec/COCA.md,
and of OpenCLIP's CLIP family (a config without `multimodal_cfg`).

This is a golden-file generator for the C++ implementation, not a runtime dependency.
It is written from the spec (not copied from OpenCLIP); parameter names, shapes and
state_dict order follow the OpenCLIP naming listed in spec/params/*.tsv.

Conventions (spec section numbers in brackets):
  * LayerNorm eps 1e-5, GELU exact (erf), attention scale head_dim**-0.5, no dropout [5].
  * All Linear weights are [out, in]; y = x W^T + b [5].
  * logit_scale is stored raw; the loss uses exp(logit_scale) [6].
Only torch primitives are used (matmul, softmax, erf, ...); every layer is spelled out.

Usage:
    cfg = load_config("coca_tiny.json")           # OpenCLIP JSON schema
    model = build_model(cfg)                      # CoCa / CLIP / CustomTextCLIP; zero/one init
    out = model(images, text)                     # dict of outputs (see CoCa.forward)
    losses = model_losses(out, text, cfg.text.pad_id)

Families (chosen by the config, as OpenCLIP does):
  * CoCa: `multimodal_cfg` present. Vision with attentional pooler (default) or without
    (`vision_cfg.attentional_pool: false`, OpenCLIP's coca_base): then ln_post runs over all
    trunk tokens (width w), proj is [w, embed_dim], the decoder sees tokens 1.. after ln_post.
  * CLIP: no `multimodal_cfg`. Text tower without CLS (`embed_cls` false, default here):
    causal mask only, ln_final on all positions, pooled at argmax(token id) (first
    occurrence). `custom_text: true` -> OpenCLIP CustomTextCLIP names (`text.*`), otherwise
    OpenCLIP CLIP names (text tensors at the top level). Loss: contrastive only.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

LN_EPS = 1e-5

# --------------------------------------------------------------------------------------
# Config (spec section 1)
# --------------------------------------------------------------------------------------

_REQUIRED = object()


@dataclass
class VisionCfg:
    image_size: int
    patch_size: int
    width: int
    layers: int
    head_width: int = 64
    mlp_ratio: float = 4.0
    attentional_pool: bool = True
    attn_pooler_queries: int = 256
    attn_pooler_heads: int = 8

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


@dataclass
class TextCfg:
    context_length: int
    vocab_size: int
    width: int
    heads: int
    layers: int
    mlp_ratio: float = 4.0
    embed_cls: bool = True
    pad_id: int = 0
    correct_cls_mask: bool = False


@dataclass
class MultimodalCfg:
    context_length: int
    vocab_size: int
    width: int
    heads: int
    layers: int
    mlp_ratio: float = 4.0


@dataclass
class CocaCfg:
    embed_dim: int
    vision: VisionCfg
    text: TextCfg
    multimodal: Optional[MultimodalCfg]   # None: CLIP family (no decoder)
    custom_text: bool = False             # CLIP only: text tensors under `text.`

    @property
    def is_coca(self) -> bool:
        return self.multimodal is not None


# Keys (per section) that OpenCLIP's CoCa configs carry but that do not change the model
# described by the spec; accepted silently. Anything else unknown gets a warning.
_BENIGN = {
    "": set(),
    "vision_cfg": {"output_tokens"},
    "text_cfg": {"output_tokens"},
    "multimodal_cfg": {"attn_pooler_heads", "output_tokens"},
}

_SCHEMA = {
    "vision_cfg": (VisionCfg, {
        "image_size": (int, _REQUIRED), "patch_size": (int, _REQUIRED),
        "width": (int, _REQUIRED), "layers": (int, _REQUIRED),
        "head_width": (int, 64), "mlp_ratio": (float, 4.0),
        "attentional_pool": (bool, True), "attn_pooler_queries": (int, 256),
        "attn_pooler_heads": (int, 8),
    }),
    "text_cfg": (TextCfg, {
        "context_length": (int, _REQUIRED), "vocab_size": (int, _REQUIRED),
        "width": (int, _REQUIRED), "heads": (int, _REQUIRED), "layers": (int, _REQUIRED),
        "mlp_ratio": (float, 4.0), "embed_cls": (bool, True), "pad_id": (int, 0),
        "correct_cls_mask": (bool, False),
    }),
    "multimodal_cfg": (MultimodalCfg, {
        "context_length": (int, _REQUIRED), "vocab_size": (int, _REQUIRED),
        "width": (int, _REQUIRED), "heads": (int, _REQUIRED), "layers": (int, _REQUIRED),
        "mlp_ratio": (float, 4.0),
    }),
}


# Family-dependent defaults (spec section 1: attentional_pool "[false; true for CoCa]",
# embed_cls "[true for CoCa]"; OpenCLIP's CLIP defaults are false for both).
_CLIP_DEFAULTS = {"vision_cfg": {"attentional_pool": False}, "text_cfg": {"embed_cls": False}}


def _parse_section(obj: dict, section: str, default_overrides=None):
    cls, fields = _SCHEMA[section]
    default_overrides = default_overrides or {}
    if not isinstance(obj, dict):
        raise ValueError(f"config key '{section}' must be an object")
    kwargs = {}
    for key, (typ, default) in fields.items():
        if key in obj:
            val = obj[key]
            if typ is bool:
                if not isinstance(val, bool):
                    raise ValueError(f"config key '{section}.{key}' must be a boolean")
            elif typ is int:
                if isinstance(val, bool) or not isinstance(val, int):
                    raise ValueError(f"config key '{section}.{key}' must be an integer")
            else:
                if isinstance(val, bool) or not isinstance(val, (int, float)):
                    raise ValueError(f"config key '{section}.{key}' must be a number")
                val = float(val)
            kwargs[key] = val
        elif default is _REQUIRED:
            raise ValueError(f"missing required config key '{section}.{key}'")
        else:
            kwargs[key] = default_overrides.get(key, default)
    for key in obj:
        if key not in fields and key not in _BENIGN[section]:
            warnings.warn(f"unknown config key '{section}.{key}' ignored")
    return cls(**kwargs)


def parse_config(obj: dict) -> CocaCfg:
    if not isinstance(obj, dict):
        raise ValueError("config must be a JSON object")
    # `multimodal_cfg` absent -> CLIP family
    known = ("embed_dim", "vision_cfg", "text_cfg", "multimodal_cfg", "custom_text")
    for key in ("embed_dim", "vision_cfg", "text_cfg"):
        if key not in obj:
            raise ValueError(f"missing required config key '{key}'")
    for key in obj:
        if key not in known and key not in _BENIGN[""]:
            warnings.warn(f"unknown config key '{key}' ignored")
    embed_dim = obj["embed_dim"]
    if isinstance(embed_dim, bool) or not isinstance(embed_dim, int):
        raise ValueError("config key 'embed_dim' must be an integer")
    custom_text = obj.get("custom_text", False)
    if not isinstance(custom_text, bool):
        raise ValueError("config key 'custom_text' must be a boolean")
    coca = "multimodal_cfg" in obj
    over = {} if coca else _CLIP_DEFAULTS
    v = _parse_section(obj["vision_cfg"], "vision_cfg", over.get("vision_cfg"))
    t = _parse_section(obj["text_cfg"], "text_cfg", over.get("text_cfg"))
    m = _parse_section(obj["multimodal_cfg"], "multimodal_cfg") if coca else None
    cfg = CocaCfg(embed_dim=embed_dim, vision=v, text=t, multimodal=m, custom_text=custom_text)
    validate_config(cfg)
    return cfg


def validate_config(cfg: CocaCfg) -> None:
    v, t, m = cfg.vision, cfg.text, cfg.multimodal
    if v.width % v.head_width:
        raise ValueError("vision_cfg.width must be a multiple of head_width")
    if v.image_size % v.patch_size:
        raise ValueError("vision_cfg.image_size must be a multiple of patch_size")
    if v.attentional_pool:
        if cfg.embed_dim % v.attn_pooler_heads:
            raise ValueError("embed_dim must be a multiple of vision_cfg.attn_pooler_heads")
        if v.attn_pooler_queries < 2:
            raise ValueError("vision_cfg.attn_pooler_queries must be >= 2 (1 contrastive + decoder tokens)")
    if t.width % t.heads:
        raise ValueError("text_cfg.width must be a multiple of heads")
    if m is None:
        # CLIP family. OpenCLIP's CLIP (custom_text false) copies the text tower's tensors
        # to the top level and has no cls_emb; a CLS text tower needs CustomTextCLIP.
        if t.embed_cls and not cfg.custom_text:
            raise ValueError("text_cfg.embed_cls=true needs custom_text=true in a CLIP config")
        return
    if not t.embed_cls:
        raise ValueError("text_cfg.embed_cls=false is not a CoCa model (unsupported)")
    if m.width % m.heads:
        raise ValueError("multimodal_cfg.width must be a multiple of heads")
    if v.attentional_pool and m.width != cfg.embed_dim:
        # decoder cross-attention input = pooler output (width embed_dim)
        raise ValueError("multimodal_cfg.width must equal embed_dim")
    if not v.attentional_pool and m.width != v.width:
        # decoder cross-attention input = vision tokens after ln_post (width vision_cfg.width)
        raise ValueError("multimodal_cfg.width must equal vision_cfg.width "
                         "(attentional_pool=false)")
    if m.width != t.width:
        # The decoder consumes the unimodal token embeddings (width text_cfg.width) directly.
        raise ValueError("multimodal_cfg.width must equal text_cfg.width")
    if m.vocab_size != t.vocab_size:
        # OpenCLIP sizes the decoder output by text_cfg.vocab_size; the spec names
        # multimodal_cfg.vocab_size. Refuse the ambiguous case instead of guessing.
        raise ValueError("multimodal_cfg.vocab_size must equal text_cfg.vocab_size")


def load_config(path_or_obj) -> CocaCfg:
    if isinstance(path_or_obj, dict):
        return parse_config(path_or_obj)
    with open(path_or_obj) as f:
        return parse_config(json.load(f))


# --------------------------------------------------------------------------------------
# Building blocks (spec section 5)
# --------------------------------------------------------------------------------------

def _param(shape, device, dtype, fill=0.0):
    t = torch.empty(shape, device=device, dtype=dtype)
    if t.device.type != "meta":
        t.fill_(fill)
    return nn.Parameter(t)


class LayerNorm(nn.Module):
    def __init__(self, dim, device=None, dtype=torch.float32):
        super().__init__()
        self.weight = _param((dim,), device, dtype, 1.0)
        self.bias = _param((dim,), device, dtype, 0.0)

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        xc = x - mean
        var = (xc * xc).mean(dim=-1, keepdim=True)  # biased variance
        return xc * torch.rsqrt(var + LN_EPS) * self.weight + self.bias


class Linear(nn.Module):
    def __init__(self, d_in, d_out, bias=True, device=None, dtype=torch.float32):
        super().__init__()
        self.weight = _param((d_out, d_in), device, dtype)
        if bias:
            self.bias = _param((d_out,), device, dtype)
        else:
            self.bias = None

    def forward(self, x):
        y = x @ self.weight.t()
        return y + self.bias if self.bias is not None else y


def gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x * (1.0 / math.sqrt(2.0))))


class MultiheadAttention(nn.Module):
    """Multi-head attention in PyTorch nn.MultiheadAttention's parameter layout.

    Model dim d, key/value input dim kdim. kdim == d: packed in_proj_weight [3d, d]
    (rows q, k, v). Otherwise separate q_proj_weight [d, d], k_proj_weight [d, kdim],
    v_proj_weight [d, kdim]. Bias is always in_proj_bias [3d] (q, k, v).
    """

    def __init__(self, d, heads, kdim=None, device=None, dtype=torch.float32):
        super().__init__()
        kdim = d if kdim is None else kdim
        assert d % heads == 0
        self.d, self.heads, self.kdim = d, heads, kdim
        self.head_dim = d // heads
        self.packed = kdim == d
        if self.packed:
            self.in_proj_weight = _param((3 * d, d), device, dtype)
        else:
            self.q_proj_weight = _param((d, d), device, dtype)
            self.k_proj_weight = _param((d, kdim), device, dtype)
            self.v_proj_weight = _param((d, kdim), device, dtype)
        self.in_proj_bias = _param((3 * d,), device, dtype)
        self.out_proj = Linear(d, d, device=device, dtype=dtype)
        self.keep_probs = False  # debug: store last attention probabilities
        self.last_probs = None

    def qkv_weights(self):
        d = self.d
        if self.packed:
            w = self.in_proj_weight
            wq, wk, wv = w[:d], w[d:2 * d], w[2 * d:]
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        b = self.in_proj_bias
        return wq, wk, wv, b[:d], b[d:2 * d], b[2 * d:]

    def forward(self, q_in, kv_in, visible: Optional[torch.Tensor] = None):
        """q_in [B, Lq, d], kv_in [B, Lk, kdim]; visible: bool, broadcastable to
        [B, Lq, Lk] (True = key visible). Returns [B, Lq, d]."""
        wq, wk, wv, bq, bk, bv = self.qkv_weights()
        B, Lq, _ = q_in.shape
        Lk = kv_in.shape[1]
        H, hd = self.heads, self.head_dim
        q = (q_in @ wq.t() + bq).reshape(B, Lq, H, hd).transpose(1, 2)  # [B,H,Lq,hd]
        k = (kv_in @ wk.t() + bk).reshape(B, Lk, H, hd).transpose(1, 2)
        v = (kv_in @ wv.t() + bv).reshape(B, Lk, H, hd).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)) * (hd ** -0.5)  # [B,H,Lq,Lk]
        if visible is not None:
            vis = visible
            if vis.dim() == 2:
                vis = vis.unsqueeze(0)
            scores = scores.masked_fill(~vis.unsqueeze(1), float("-inf"))
        # softmax in at least fp32
        sdt = scores.dtype if scores.dtype == torch.float64 else torch.float32
        probs = torch.softmax(scores.to(sdt), dim=-1).to(scores.dtype)
        if self.keep_probs:
            self.last_probs = probs.detach()
        o = (probs @ v).transpose(1, 2).reshape(B, Lq, self.d)
        return self.out_proj(o)


class Mlp(nn.Module):
    def __init__(self, width, mlp_ratio, device=None, dtype=torch.float32):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.c_fc = Linear(width, hidden, device=device, dtype=dtype)
        self.c_proj = Linear(hidden, width, device=device, dtype=dtype)

    def forward(self, x):
        return self.c_proj(gelu_erf(self.c_fc(x)))


class ResidualBlock(nn.Module):
    """Pre-LN self-attention block: x += attn(ln_1(x)); x += mlp(ln_2(x))."""

    def __init__(self, width, heads, mlp_ratio, device=None, dtype=torch.float32):
        super().__init__()
        self.ln_1 = LayerNorm(width, device, dtype)
        self.attn = MultiheadAttention(width, heads, device=device, dtype=dtype)
        self.ln_2 = LayerNorm(width, device, dtype)
        self.mlp = Mlp(width, mlp_ratio, device, dtype)

    def forward(self, x, visible=None):
        h = self.ln_1(x)
        x = x + self.attn(h, h, visible)
        return x + self.mlp(self.ln_2(x))


class CrossAttentionBlock(nn.Module):
    """x += attn(ln_1(x), ln_1_kv(img), ln_1_kv(img)); x += mlp(ln_2(x)). No mask."""

    def __init__(self, width, heads, mlp_ratio, device=None, dtype=torch.float32):
        super().__init__()
        self.ln_1 = LayerNorm(width, device, dtype)
        self.attn = MultiheadAttention(width, heads, device=device, dtype=dtype)
        self.ln_1_kv = LayerNorm(width, device, dtype)
        self.ln_2 = LayerNorm(width, device, dtype)
        self.mlp = Mlp(width, mlp_ratio, device, dtype)

    def forward(self, x, img):
        kv = self.ln_1_kv(img)
        x = x + self.attn(self.ln_1(x), kv)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, heads, layers, mlp_ratio, device=None, dtype=torch.float32):
        super().__init__()
        self.resblocks = nn.ModuleList(
            [ResidualBlock(width, heads, mlp_ratio, device, dtype) for _ in range(layers)])

    def forward(self, x, visible=None):
        for blk in self.resblocks:
            x = blk(x, visible)
        return x


def causal_visible(n, device=None):
    """[n, n] bool, True where key j <= query i."""
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


# --------------------------------------------------------------------------------------
# Image tower (spec section 2)
# --------------------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    """conv1: weight [width, 3, p, p], no bias, stride p, as a matmul over flattened
    patches in (channel, row, column) order. Patches are ordered row-major over the grid."""

    def __init__(self, width, patch, device=None, dtype=torch.float32):
        super().__init__()
        self.patch = patch
        self.weight = _param((width, 3, patch, patch), device, dtype)

    def forward(self, images):
        B, C, H, W = images.shape
        p = self.patch
        gh, gw = H // p, W // p
        x = images[:, :, :gh * p, :gw * p].reshape(B, C, gh, p, gw, p)
        x = x.permute(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, C * p * p)
        return x @ self.weight.reshape(self.weight.shape[0], -1).t()  # [B, g*g, width]


class AttentionalPooler(nn.Module):
    def __init__(self, d, kv_width, heads, n_queries, device=None, dtype=torch.float32):
        super().__init__()
        self.query = _param((n_queries, d), device, dtype)
        self.attn = MultiheadAttention(d, heads, kdim=kv_width, device=device, dtype=dtype)
        self.ln_q = LayerNorm(d, device, dtype)
        self.ln_k = LayerNorm(kv_width, device, dtype)

    def forward(self, x):
        B = x.shape[0]
        kv = self.ln_k(x)
        q = self.ln_q(self.query).unsqueeze(0).expand(B, -1, -1)
        return self.attn(q, kv)  # [B, n_q, d]


class VisionTower(nn.Module):
    def __init__(self, v: VisionCfg, embed_dim: int, device=None, dtype=torch.float32):
        super().__init__()
        self.cfg = v
        w = v.width
        # pooled width d: embed_dim with the attentional pooler, else the vision width
        d = embed_dim if v.attentional_pool else w
        # direct parameters first (state_dict order: class_embedding, positional_embedding, proj)
        self.class_embedding = _param((w,), device, dtype)
        self.positional_embedding = _param((v.grid * v.grid + 1, w), device, dtype)
        self.proj = _param((d, embed_dim), device, dtype)
        self.conv1 = PatchEmbed(w, v.patch_size, device, dtype)
        self.ln_pre = LayerNorm(w, device, dtype)
        self.transformer = Transformer(w, v.heads, v.layers, v.mlp_ratio, device, dtype)
        if v.attentional_pool:
            self.attn_pool = AttentionalPooler(d, w, v.attn_pooler_heads, v.attn_pooler_queries,
                                               device, dtype)
        else:
            self.attn_pool = None
        self.ln_post = LayerNorm(d, device, dtype)

    def forward(self, images):
        """Returns dict: latent [B,E] (unnormalised), embs [B,n-1,d], trunk [B,g*g+1,w].
        With the pooler: n = n_q, d = embed_dim; without: ln_post over all g*g+1 trunk
        tokens (pool type 'tok'), n = g*g+1, d = width."""
        v = self.cfg
        assert images.shape[1] == 3 and images.shape[2] == v.image_size and images.shape[3] == v.image_size
        x = self.conv1(images)
        B = x.shape[0]
        cls = self.class_embedding.reshape(1, 1, -1).expand(B, 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.ln_pre(x)
        trunk = self.transformer(x)
        if self.attn_pool is not None:
            pooled = self.ln_post(self.attn_pool(trunk))  # [B, n_q, d]
        else:
            pooled = self.ln_post(trunk)                  # [B, g*g+1, w]
        latent = pooled[:, 0] @ self.proj
        return {"latent": latent, "embs": pooled[:, 1:], "trunk": trunk}


# --------------------------------------------------------------------------------------
# Unimodal text tower (spec section 3)
# --------------------------------------------------------------------------------------

class TokenEmbedding(nn.Module):
    def __init__(self, vocab, width, device=None, dtype=torch.float32):
        super().__init__()
        self.weight = _param((vocab, width), device, dtype)

    def forward(self, ids):
        return self.weight[ids.long()]


def text_cls_visible(text, pad_id, correct_cls_mask):
    """Visibility of the keys 0..L' for the CLS query (row L'), [B, L'+1] bool.

    correct_cls_mask=False (OpenCLIP): key 0 always visible; key j (1<=j<=L') visible iff
    text[j-1] != pad_id (validity shifted right by one).
    correct_cls_mask=True: key j < L' visible iff text[j] != pad_id; key L' (CLS) visible.
    """
    valid = text != pad_id  # [B, L']
    ones = torch.ones_like(valid[:, :1])
    if correct_cls_mask:
        return torch.cat([valid, ones], dim=1)
    return torch.cat([ones, valid], dim=1)


def text_visible(text, pad_id, correct_cls_mask):
    """Full [B, L'+1, L'+1] bool self-attention visibility for the text tower."""
    B, Lp = text.shape
    S = Lp + 1
    vis = causal_visible(S, text.device).unsqueeze(0).repeat(B, 1, 1)
    vis[:, S - 1, :] = vis[:, S - 1, :] & text_cls_visible(text, pad_id, correct_cls_mask)
    return vis


def argmax_index(text):
    """[B] int64: position of the largest token id of each row, first occurrence (OpenCLIP's
    text.argmax(dim=-1); the end-of-text token has the largest id)."""
    L = text.shape[1]
    pos = torch.arange(L, device=text.device).expand_as(text)
    is_max = text == text.max(dim=1, keepdim=True).values
    return torch.where(is_max, pos, torch.full_like(pos, L)).min(dim=1).values


def encode_text_argmax(m, t: TextCfg, text):
    """CLIP text tower without CLS (embed_cls false). `m` carries token_embedding,
    positional_embedding [L,w], transformer, ln_final, text_projection [w,E] (a TextTower or
    the top-level CLIP module). Plain causal mask, no padding mask. Returns dict latent [B,E]
    (unnormalised), trunk [B,L',w] (transformer output, before ln_final), pool_index [B]."""
    B, Lp = text.shape
    assert Lp <= t.context_length
    x = m.token_embedding(text) + m.positional_embedding[:Lp]
    trunk = m.transformer(x, causal_visible(Lp, text.device))
    x = m.ln_final(trunk)
    idx = argmax_index(text)
    pooled = x[torch.arange(B, device=text.device), idx]
    return {"latent": pooled @ m.text_projection, "trunk": trunk, "pool_index": idx}


class TextTower(nn.Module):
    def __init__(self, t: TextCfg, embed_dim: int, device=None, dtype=torch.float32):
        super().__init__()
        self.cfg = t
        w = t.width
        # embed_cls: CLS appended at the end (CoCa); else CLIP's argmax-pooled tower
        if t.embed_cls:
            self.cls_emb = _param((w,), device, dtype)
        self.positional_embedding = _param((t.context_length + int(t.embed_cls), w), device, dtype)
        self.text_projection = _param((w, embed_dim), device, dtype)
        self.token_embedding = TokenEmbedding(t.vocab_size, w, device, dtype)
        self.transformer = Transformer(w, t.heads, t.layers, t.mlp_ratio, device, dtype)
        self.ln_final = LayerNorm(w, device, dtype)

    def forward(self, text):
        """text [B, L'] int (L' <= context_length). Returns dict: latent [B,E]
        (unnormalised), token_embs [B,L',w] (no ln_final), cls_pre_ln [B,w], visible.
        Without embed_cls: see encode_text_argmax."""
        t = self.cfg
        if not t.embed_cls:
            return encode_text_argmax(self, t, text)
        B, Lp = text.shape
        assert Lp <= t.context_length
        x = self.token_embedding(text)
        cls = self.cls_emb.reshape(1, 1, -1).expand(B, 1, -1).to(x.dtype)
        x = torch.cat([x, cls], dim=1) + self.positional_embedding[:Lp + 1]
        vis = text_visible(text, t.pad_id, t.correct_cls_mask)
        x = self.transformer(x, vis)
        cls_out = x[:, Lp]
        latent = self.ln_final(cls_out) @ self.text_projection
        return {"latent": latent, "token_embs": x[:, :Lp], "cls_pre_ln": cls_out, "visible": vis}


# --------------------------------------------------------------------------------------
# Multimodal decoder (spec section 4)
# --------------------------------------------------------------------------------------

class MultimodalDecoder(nn.Module):
    def __init__(self, m: MultimodalCfg, vocab_size: int, device=None, dtype=torch.float32):
        super().__init__()
        self.cfg = m
        w = m.width
        self.text_projection = _param((w, vocab_size), device, dtype)
        self.resblocks = nn.ModuleList(
            [ResidualBlock(w, m.heads, m.mlp_ratio, device, dtype) for _ in range(m.layers)])
        self.cross_attn = nn.ModuleList(
            [CrossAttentionBlock(w, m.heads, m.mlp_ratio, device, dtype) for _ in range(m.layers)])
        self.ln_final = LayerNorm(w, device, dtype)

    def forward(self, image_embs, token_embs):
        T = token_embs.shape[1]
        assert T <= self.cfg.context_length
        vis = causal_visible(T, token_embs.device)
        x = token_embs
        for sa, ca in zip(self.resblocks, self.cross_attn):
            x = sa(x, vis)
            x = ca(x, image_embs)
        return self.ln_final(x) @ self.text_projection  # [B, T, V]


# --------------------------------------------------------------------------------------
# CoCa
# --------------------------------------------------------------------------------------

def l2_normalize(x):
    # F.normalize semantics (eps 1e-12 on the norm); never active for non-degenerate input
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class CoCa(nn.Module):
    def __init__(self, cfg: CocaCfg, device=None, dtype=torch.float32):
        super().__init__()
        self.cfg = cfg
        self.logit_scale = _param((), device, dtype, math.log(1.0 / 0.07))
        # child order = state_dict order of spec/params/*.tsv
        self.text = TextTower(cfg.text, cfg.embed_dim, device, dtype)
        self.visual = VisionTower(cfg.vision, cfg.embed_dim, device, dtype)
        self.text_decoder = MultimodalDecoder(cfg.multimodal, cfg.text.vocab_size, device, dtype)

    def forward(self, images, text):
        """images [B,3,H,W] float, text [B,L] int. Decoder consumes token embeddings
        0..L-2; caption_logits [B,L-1,V] are scored against text[:,1:]."""
        vis = self.visual(images)
        txt = self.text(text)
        logits = self.text_decoder(vis["embs"], txt["token_embs"][:, :-1])
        return {
            "image_features": l2_normalize(vis["latent"]),
            "text_features": l2_normalize(txt["latent"]),
            "caption_logits": logits,
            "logit_scale": self.logit_scale,
            # debug intermediates
            "image_latent": vis["latent"],
            "image_embs": vis["embs"],
            "vision_trunk": vis["trunk"],
            "text_latent": txt["latent"],
            "text_cls_pre_ln": txt["cls_pre_ln"],
            "text_token_embs": txt["token_embs"],
            "text_visible": txt["visible"],
        }


class CLIP(nn.Module):
    """OpenCLIP's CLIP (custom_text false): the text tower's tensors at the top level.
    Registration order = OpenCLIP state_dict order: positional_embedding, text_projection,
    logit_scale, visual.*, transformer.*, token_embedding.weight, ln_final.*."""

    def __init__(self, cfg: CocaCfg, device=None, dtype=torch.float32):
        super().__init__()
        assert not cfg.is_coca and not cfg.custom_text and not cfg.text.embed_cls
        self.cfg = cfg
        t, w = cfg.text, cfg.text.width
        self.positional_embedding = _param((t.context_length, w), device, dtype)
        self.text_projection = _param((w, cfg.embed_dim), device, dtype)
        self.logit_scale = _param((), device, dtype, math.log(1.0 / 0.07))
        self.visual = VisionTower(cfg.vision, cfg.embed_dim, device, dtype)
        self.transformer = Transformer(w, t.heads, t.layers, t.mlp_ratio, device, dtype)
        self.token_embedding = TokenEmbedding(t.vocab_size, w, device, dtype)
        self.ln_final = LayerNorm(w, device, dtype)

    def encode_text(self, text):
        return encode_text_argmax(self, self.cfg.text, text)

    def forward(self, images, text):
        return _clip_outputs(self.visual(images), self.encode_text(text), self.logit_scale)


class CustomTextCLIP(nn.Module):
    """OpenCLIP's CustomTextCLIP (custom_text true): logit_scale, visual.*, text.*."""

    def __init__(self, cfg: CocaCfg, device=None, dtype=torch.float32):
        super().__init__()
        assert not cfg.is_coca and cfg.custom_text
        self.cfg = cfg
        self.logit_scale = _param((), device, dtype, math.log(1.0 / 0.07))
        self.visual = VisionTower(cfg.vision, cfg.embed_dim, device, dtype)
        self.text = TextTower(cfg.text, cfg.embed_dim, device, dtype)

    def encode_text(self, text):
        return self.text(text)

    def forward(self, images, text):
        return _clip_outputs(self.visual(images), self.encode_text(text), self.logit_scale)


def _clip_outputs(vis, txt, logit_scale):
    out = {
        "image_features": l2_normalize(vis["latent"]),
        "text_features": l2_normalize(txt["latent"]),
        "logit_scale": logit_scale,
        "image_latent": vis["latent"],
        "image_embs": vis["embs"],
        "vision_trunk": vis["trunk"],
        "text_latent": txt["latent"],
    }
    if "pool_index" in txt:
        out["text_trunk"] = txt["trunk"]
        out["text_pool_index"] = txt["pool_index"]
    return out


def build_model(cfg: CocaCfg, device=None, dtype=torch.float32) -> nn.Module:
    """The OpenCLIP model class the config selects: CoCa, CLIP or CustomTextCLIP."""
    if cfg.is_coca:
        return CoCa(cfg, device, dtype)
    if cfg.custom_text:
        return CustomTextCLIP(cfg, device, dtype)
    return CLIP(cfg, device, dtype)


def clip_text_to_custom_name(name: str) -> str:
    """CLIP (top-level text) tensor name -> CustomTextCLIP name."""
    if name == "logit_scale" or name.startswith("visual."):
        return name
    return "text." + name


def cross_entropy_mean(logits, target):
    """Mean over rows of -log softmax(logits)[target]."""
    lse = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
    return (lse - picked).mean()


def coca_losses(out, text, pad_id=0, clip_w=1.0, cap_w=2.0):
    """Spec section 6. Returns dict contrastive, caption, total, logits_per_image."""
    img, txt = out["image_features"], out["text_features"]
    s = out["logit_scale"].exp()
    logits_i2t = s * img @ txt.t()
    logits_t2i = s * txt @ img.t()
    labels = torch.arange(img.shape[0], device=img.device)
    contrastive = 0.5 * (cross_entropy_mean(logits_i2t, labels) + cross_entropy_mean(logits_t2i, labels))

    logits = out["caption_logits"]                       # [B, L-1, V]
    target = text[:, 1:].long()                          # [B, L-1]
    lse = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    keep = (target != pad_id).to(logits.dtype)
    caption = ((lse - picked) * keep).sum() / keep.sum()

    total = clip_w * contrastive + cap_w * caption
    return {"contrastive": contrastive, "caption": caption, "total": total,
            "logits_per_image": logits_i2t}


def clip_losses(out):
    """CLIP family: symmetric InfoNCE only (OpenCLIP's ClipLoss, no weight); total = contrastive."""
    img, txt = out["image_features"], out["text_features"]
    logits_i2t = out["logit_scale"].exp() * img @ txt.t()
    labels = torch.arange(img.shape[0], device=img.device)
    contrastive = 0.5 * (cross_entropy_mean(logits_i2t, labels) +
                         cross_entropy_mean(logits_i2t.t(), labels))
    return {"contrastive": contrastive, "total": contrastive, "logits_per_image": logits_i2t}


def model_losses(out, text, pad_id=0, clip_w=1.0, cap_w=2.0):
    """coca_losses for CoCa outputs (with caption_logits), clip_losses otherwise."""
    if "caption_logits" in out:
        return coca_losses(out, text, pad_id, clip_w, cap_w)
    return clip_losses(out)


# --------------------------------------------------------------------------------------
# Parameter listing helpers
# --------------------------------------------------------------------------------------

def read_params_tsv(path):
    """[(name, shape tuple)] from spec/params/*.tsv ('scalar' -> ())."""
    rows = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            name, shape = line.split("\t")
            dims = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
            rows.append((name, dims))
    return rows
