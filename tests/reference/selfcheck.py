#!/usr/bin/python3
"""Self-checks of the PyTorch reference (run: /usr/bin/python3 tests/reference/selfcheck.py).

 1. float64 torch.autograd.gradcheck of the total loss w.r.t. several parameters, on the
    micro, micro_kv, micro_nopool and micro_clip configs, plus a central-difference
    directional-derivative check of every parameter.
 2. CLS-mask semantics (spec section 3), both variants: explicit visibility rule, the
    attention probabilities actually used, and invariance / dependence of text_features on
    the content of pad positions.
 3. state_dict names, shapes and order of models built (on the meta device) from
    spec/configs/coca_tiny.json and coca_ViT-B-32.json equal spec/params/*.tsv exactly;
    coca_ViT-L-14.json builds.
 4. Building blocks against PyTorch built-ins: LayerNorm, GELU, patchify vs conv2d, attention
    (packed and q/k/v_proj) vs nn.MultiheadAttention loaded from our state_dict, losses vs
    F.cross_entropy(ignore_index=pad).
 5. Config parsing: defaults, missing-key errors, unknown-key warnings.
 6. The committed golden files are reproduced from the golden weights file.
 7. CLIP family and CoCa without attentional pooler: state_dict names/order of micro_clip
    (OpenCLIP CLIP) and micro_clip_custom (CustomTextCLIP), OpenCLIP ViT-B-32 CLIP parameter
    count (151,277,313), argmax pooling == pooling at the known end position (first
    occurrence), trimming the padding leaves text features unchanged, CLIP == CustomTextCLIP
    outputs for renamed weights, CLIP loss == F.cross_entropy form, no-pool vision tower
    spelled out with F.layer_norm, family-dependent config defaults and rejections.
Exits non-zero on the first failure.
"""
import math
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.stateless import functional_call

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import make_golden as mg  # noqa: E402
from coca_reference import (CLIP, CoCa, CustomTextCLIP, LayerNorm, MultiheadAttention,  # noqa: E402
                            PatchEmbed, argmax_index, build_model, clip_losses,
                            clip_text_to_custom_name, coca_losses, gelu_erf, load_config,
                            model_losses, parse_config, read_params_tsv, text_cls_visible)
from safetensors_io import read_safetensors  # noqa: E402

SPEC = os.environ.get("COCA_SPEC_DIR", "/work/shared/spec")
RESULTS = []


def check(cond, msg):
    RESULTS.append((bool(cond), msg))
    print(("PASS " if cond else "FAIL ") + msg, flush=True)
    if not cond:
        sys.exit(1)


def micro_model(name, dtype=torch.float64):
    _, cfg_dict, cfg, model, weights, images, tokens = mg.build(name)
    model = model.to(dtype)
    return cfg, model, torch.from_numpy(images).to(dtype), torch.from_numpy(tokens)


# ----------------------------------------------------------------------------- 1
def check_gradients():
    torch.manual_seed(0)
    for name in ("micro", "micro_kv", "micro_nopool", "micro_clip"):
        cfg, model, img, txt = micro_model(name)
        pad = cfg.text.pad_id
        params = dict(model.named_parameters())

        def total_loss(overrides):
            out = functional_call(model, overrides, (img, txt))
            return model_losses(out, txt, pad, mg.CLIP_W, mg.CAP_W)["total"]

        if name == "micro_clip":
            # the tensors on the CLIP-specific paths (argmax pooling, top-level text tower,
            # pooler-free vision); every tensor is covered by the directional check below
            names = ["logit_scale", "positional_embedding", "text_projection",
                     "token_embedding.weight", "transformer.resblocks.1.attn.in_proj_bias",
                     "ln_final.weight", "ln_final.bias", "visual.class_embedding",
                     "visual.positional_embedding", "visual.proj", "visual.ln_post.weight",
                     "visual.ln_post.bias"]
        elif name == "micro_nopool":
            names = ["logit_scale", "text.cls_emb", "visual.class_embedding",
                     "visual.positional_embedding", "visual.proj", "visual.ln_post.weight",
                     "visual.ln_post.bias", "visual.transformer.resblocks.1.ln_2.bias",
                     "text_decoder.cross_attn.0.attn.in_proj_bias",
                     "text_decoder.cross_attn.1.ln_1_kv.weight",
                     "text_decoder.cross_attn.1.ln_1_kv.bias"]
        else:
            pool_w = (["visual.attn_pool.attn.in_proj_weight"] if model.visual.attn_pool.attn.packed
                      else ["visual.attn_pool.attn.q_proj_weight", "visual.attn_pool.attn.k_proj_weight",
                            "visual.attn_pool.attn.v_proj_weight"])
            names = (["logit_scale", "text.cls_emb", "text.positional_embedding",
                      "text.transformer.resblocks.0.attn.in_proj_weight",
                      "visual.attn_pool.query", "visual.attn_pool.attn.in_proj_bias", "visual.proj",
                      "visual.class_embedding", "visual.conv1.weight",
                      "text_decoder.cross_attn.0.attn.in_proj_weight",
                      "text_decoder.cross_attn.1.ln_1_kv.weight", "text_decoder.text_projection"]
                     + pool_w)
        for n in names:
            x = params[n].detach().clone().requires_grad_(True)
            ok = torch.autograd.gradcheck(lambda t, n=n: total_loss({n: t}), (x,),
                                          eps=1e-6, atol=1e-7, rtol=1e-5, raise_exception=False)
            check(ok, f"[{name}] gradcheck total loss wrt {n} {tuple(x.shape)}")

        # directional derivative of every parameter tensor (central difference, float64)
        model.zero_grad(set_to_none=True)
        loss = total_loss({})
        loss.backward()
        worst = 0.0
        for n, p in params.items():
            v = torch.randn_like(p)
            eps = 1e-5
            with torch.no_grad():
                fp = total_loss({n: p + eps * v}).item()
                fm = total_loss({n: p - eps * v}).item()
            fd = (fp - fm) / (2 * eps)
            an = (p.grad * v).sum().item()
            err = abs(fd - an) / max(abs(an), 1e-3)
            worst = max(worst, err)
            if err > 1e-6:
                check(False, f"[{name}] directional derivative {n}: fd {fd} autograd {an}")
        check(True, f"[{name}] directional derivative of all {len(params)} parameter tensors "
                    f"(worst rel err {worst:.1e})")


# ----------------------------------------------------------------------------- 2
def check_cls_mask():
    pad = 0
    text = torch.tensor([[48, 5, 6, 7, 8, 9, 49],
                         [48, 5, 49, 0, 0, 0, 0],
                         [48, 5, 6, 7, 8, 49, 0]], dtype=torch.int32)
    B, L = text.shape
    # explicit rule, element by element
    shifted = text_cls_visible(text, pad, False)
    correct = text_cls_visible(text, pad, True)
    ok_s = ok_c = True
    for b in range(B):
        for j in range(L + 1):
            exp_s = True if j == 0 else bool(text[b, j - 1] != pad)
            exp_c = True if j == L else bool(text[b, j] != pad)
            ok_s &= bool(shifted[b, j]) == exp_s
            ok_c &= bool(correct[b, j]) == exp_c
    check(ok_s, "correct_cls_mask=false: CLS sees key 0 always, key j>=1 iff text[j-1] != pad")
    check(ok_c, "correct_cls_mask=true: CLS sees key j<L iff text[j] != pad, and itself")
    check(not bool(shifted[1, L]) and not bool(shifted[2, L]) and bool(shifted[0, L]),
          "correct_cls_mask=false: CLS does not see itself when text[L-1] is pad")

    for flag in (False, True):
        cfg_dict = mg.micro_kv_config() if flag else dict(mg.MICRO)
        cfg = load_config(cfg_dict)
        assert cfg.text.correct_cls_mask == flag
        model = CoCa(cfg, dtype=torch.float32)
        mg.fill_golden_weights(model, 99)
        model = model.double()
        tt = model.text
        for blk in tt.transformer.resblocks:
            blk.attn.keep_probs = True
        with torch.no_grad():
            base = tt(text)
        vis_expected = text_cls_visible(text, pad, flag)
        causal = torch.ones(L + 1, L + 1, dtype=torch.bool).tril()
        ok = True
        for li, blk in enumerate(tt.transformer.resblocks):
            pr = blk.attn.last_probs  # [B, H, L+1, L+1]
            nz = pr > 0
            ok &= torch.equal(nz[:, :, :L, :], causal[:L].expand(B, pr.shape[1], L, L + 1))
            ok &= torch.equal(nz[:, :, L, :], vis_expected[:, None, :].expand(B, pr.shape[1], L + 1))
        check(ok, f"correct_cls_mask={str(flag).lower()}: attention probabilities are nonzero exactly "
                  f"on the visible keys (rows < L causal only, CLS row per rule), all layers/heads")

        # perturb what sits at pad positions (embedding row of pad_id; a non-constant
        # vector, since a constant shift would be removed by LayerNorm); real tokens unaffected
        delta = torch.linspace(-2.0, 3.0, cfg.text.width, dtype=torch.float64)
        saved = tt.token_embedding.weight[pad].detach().clone()
        with torch.no_grad():
            tt.token_embedding.weight[pad] += delta
            pert = tt(text)
            tt.token_embedding.weight[pad] = saved
        d = (pert["latent"] - base["latent"]).abs().amax(dim=1)
        dtok = [(pert["token_embs"][b, :n] - base["token_embs"][b, :n]).abs().max().item()
                for b, n in enumerate((7, 3, 6))]
        if flag:
            check(d.max().item() == 0.0,
                  "correct_cls_mask=true: text_features bit-identical when pad content changes")
        else:
            check(d[0].item() == 0.0 and d[1].item() > 1e-3 and d[2].item() > 1e-3,
                  "correct_cls_mask=false: pad content leaks into text_features of padded rows "
                  f"only (row diffs {[f'{x:.2e}' for x in d.tolist()]})")
        check(max(dtok) == 0.0, f"correct_cls_mask={str(flag).lower()}: token embeddings of real "
                                "positions independent of pad content (causal rows)")

    # token_embs (decoder input) independent of the flag; text_features depend on it
    cfg_f = load_config(dict(mg.MICRO))
    cfg_t = load_config(dict(mg.MICRO, text_cfg=dict(mg.MICRO["text_cfg"], correct_cls_mask=True)))
    mf, mt = CoCa(cfg_f), CoCa(cfg_t)
    mg.fill_golden_weights(mf, 7)
    mt.load_state_dict(mf.state_dict())
    mf, mt = mf.double(), mt.double()
    with torch.no_grad():
        of, ot = mf.text(text), mt.text(text)
    check(torch.equal(of["token_embs"], ot["token_embs"]),
          "token embeddings 0..L-1 identical for both correct_cls_mask values")
    d = (of["latent"] - ot["latent"]).abs().amax(dim=1)
    check(d[0].item() == 0.0 and d[1].item() > 0 and d[2].item() > 0,
          "CLS output differs between the two mask variants only for padded rows")


# ----------------------------------------------------------------------------- 3
def check_state_dicts():
    for cname in ("coca_tiny", "coca_ViT-B-32"):
        cfg = load_config(os.path.join(SPEC, "configs", cname + ".json"))
        model = CoCa(cfg, device="meta")
        got = [(n, tuple(t.shape)) for n, t in model.state_dict().items()]
        want = read_params_tsv(os.path.join(SPEC, "params", cname + ".tsv"))
        check(sorted(got) == sorted(want),
              f"{cname}: state_dict names+shapes == params tsv ({len(want)} tensors)")
        check(got == want, f"{cname}: state_dict order == params tsv order")
        nparam = sum(math.prod(s) for _, s in got)
        print(f"     {cname}: {nparam} parameters")
    cfg = load_config(os.path.join(SPEC, "configs", "coca_ViT-L-14.json"))
    model = CoCa(cfg, device="meta")
    sd = model.state_dict()
    check("visual.attn_pool.attn.k_proj_weight" in sd and tuple(sd["visual.attn_pool.attn.k_proj_weight"].shape)
          == (768, 1024) and tuple(sd["text.positional_embedding"].shape) == (77, 768),
          f"coca_ViT-L-14 builds ({len(sd)} tensors, q/k/v_proj pooler path)")


# ----------------------------------------------------------------------------- 4
def check_blocks():
    torch.manual_seed(1)
    x = torch.randn(4, 5, 24, dtype=torch.float64)
    ln = LayerNorm(24, dtype=torch.float64)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    ref = F.layer_norm(x, (24,), ln.weight, ln.bias, eps=1e-5)
    check(torch.allclose(ln(x), ref, rtol=1e-12, atol=1e-12), "LayerNorm == F.layer_norm(eps=1e-5)")
    check(torch.allclose(gelu_erf(x), F.gelu(x), rtol=1e-13, atol=1e-14), "GELU == F.gelu (erf)")

    pe = PatchEmbed(16, 8, dtype=torch.float64)
    with torch.no_grad():
        pe.weight.normal_()
    img = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    ref = F.conv2d(img, pe.weight, stride=8).flatten(2).transpose(1, 2)
    check(torch.allclose(pe(img), ref, rtol=1e-12, atol=1e-12),
          "patchify matmul == conv2d(stride p), row-major patch order")

    for d, kdim, heads in ((16, 16, 2), (16, 24, 2), (24, 24, 3)):
        mine = MultiheadAttention(d, heads, kdim=kdim, dtype=torch.float64)
        with torch.no_grad():
            for p in mine.parameters():
                p.normal_(0, 0.3)
        tm = nn.MultiheadAttention(d, heads, kdim=kdim, vdim=kdim, batch_first=True).double()
        tm.load_state_dict(mine.state_dict(), strict=True)  # same names and shapes
        q = torch.randn(3, 5, d, dtype=torch.float64)
        kv = torch.randn(3, 7, kdim, dtype=torch.float64)
        vis = torch.rand(3, 5, 7) > 0.4
        vis[:, :, 0] = True
        ref = tm(q, kv, kv, need_weights=False,
                 attn_mask=(~vis).repeat_interleave(heads, dim=0))[0]
        got = mine(q, kv, vis)
        check(torch.allclose(got, ref, rtol=1e-10, atol=1e-12),
              f"attention d={d} kdim={kdim} heads={heads} ({'packed' if mine.packed else 'q/k/v_proj'}) "
              "== nn.MultiheadAttention with our state_dict")

    cfg, model, img, txt = micro_model("micro")
    with torch.no_grad():
        out = model(img, txt)
        ls = coca_losses(out, txt, 0, 1.0, 2.0)
        s = model.logit_scale.exp()
        li = s * out["image_features"] @ out["text_features"].t()
        lab = torch.arange(3)
        con = 0.5 * (F.cross_entropy(li, lab) + F.cross_entropy(li.t(), lab))
        cap = F.cross_entropy(out["caption_logits"].permute(0, 2, 1), txt[:, 1:].long(), ignore_index=0)
    check(abs(con.item() - ls["contrastive"].item()) < 1e-12, "contrastive loss == F.cross_entropy form")
    check(abs(cap.item() - ls["caption"].item()) < 1e-12, "caption loss == F.cross_entropy(ignore_index=pad)")
    check(abs(ls["total"].item() - (con + 2 * cap).item()) < 1e-12, "total == 1*contrastive + 2*caption")


# ----------------------------------------------------------------------------- 5
def check_config():
    cfg = load_config(os.path.join(SPEC, "configs", "coca_ViT-B-32.json"))
    v, t, m = cfg.vision, cfg.text, cfg.multimodal
    check(v.head_width == 64 and v.heads == 12 and v.mlp_ratio == 4.0 and v.attn_pooler_queries == 256
          and t.mlp_ratio == 4.0 and t.pad_id == 0 and t.correct_cls_mask is False and m.mlp_ratio == 4.0,
          "defaults: head_width 64, mlp_ratio 4, attn_pooler_queries 256, pad_id 0, correct_cls_mask false")
    base = dict(mg.MICRO)
    for sec, key in (("vision_cfg", "patch_size"), ("text_cfg", "vocab_size"), ("multimodal_cfg", "layers")):
        bad = dict(base, **{sec: {k: v for k, v in base[sec].items() if k != key}})
        try:
            parse_config(bad)
            check(False, f"missing {sec}.{key} must fail")
        except ValueError as e:
            check(f"{sec}.{key}" in str(e), f"missing key error names it: {e}")
    try:
        parse_config({k: v for k, v in base.items() if k != "embed_dim"})
        check(False, "missing embed_dim must fail")
    except ValueError as e:
        check("embed_dim" in str(e), f"missing key error names it: {e}")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        parse_config(dict(base, text_cfg=dict(base["text_cfg"], foo=1), bar=2))
    msgs = [str(x.message) for x in w]
    check(any("text_cfg.foo" in s for s in msgs) and any("'bar'" in s for s in msgs),
          f"unknown keys warned: {msgs}")


# ----------------------------------------------------------------------------- 6
def check_goldens():
    for name in mg.CONFIGS:
        cfg = load_config(os.path.join(mg.GOLDEN, name + ".json"))
        check(cfg == load_config(mg.CONFIGS[name][0]), f"golden/{name}.json parses to the generator config")
        w = read_safetensors(os.path.join(mg.GOLDEN, name + "_weights.safetensors"))
        io = read_safetensors(os.path.join(mg.GOLDEN, name + "_io.safetensors"))
        model = build_model(cfg)
        check([(k, tuple(v.shape)) for k, v in w.items()] ==
              [(k, tuple(v.shape)) for k, v in model.state_dict().items()],
              f"golden/{name}_weights: names/shapes/order == model state_dict")
        mg.load_weights(model, w)
        out, losses, grads = mg.run_reference(model, io["images"], io["tokens"], torch.float64)
        fresh = mg.io_tensors(io["images"], io["tokens"], out, losses, grads)
        check(list(fresh.keys()) == list(io.keys()), f"golden/{name}_io: same tensor list")
        worst = 0.0
        for k, a in io.items():
            b = fresh[k]
            if a.dtype != b.dtype or a.shape != b.shape:
                check(False, f"{name} {k}: dtype/shape mismatch")
            if a.dtype == np.int32:
                worst_k = 0.0 if np.array_equal(a, b) else 1.0
            else:
                worst_k = float(np.max(np.abs(a.astype(np.float64) - b)) /
                                max(np.max(np.abs(b.astype(np.float64))), 1e-30))
            worst = max(worst, worst_k)
        check(worst <= 1e-6, f"golden/{name}_io reproduced from golden weights (max rel {worst:.1e})")
        tok = io["tokens"]
        V = cfg.text.vocab_size
        pads = (tok == 0).sum(1).tolist()
        check(all(tok[:, 0] == V - 2) and len(set(pads)) == 3 and 0 in pads and
              all(tok[b, tok.shape[1] - 1 - pads[b]] == V - 1 for b in range(3)),
              f"golden/{name} tokens: start first, end last real token, pad counts {pads}")
        if "text_pool_index" in io:
            L = tok.shape[1]
            check(io["text_pool_index"].tolist() == [L - 1 - n for n in pads],
                  f"golden/{name} text_pool_index == end-token positions")
        grads = [k for k in io if k.startswith("grad/")]
        check(grads == ["grad/" + k for k in w], f"golden/{name}_io: one grad/<name> per weight, same order")


# ----------------------------------------------------------------------------- 7
def clip_vit_b32_dict(custom_text=False):
    d = {"embed_dim": 512,
         "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
         "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8,
                      "layers": 12}}
    if custom_text:
        d["custom_text"] = True
    return d


def expected_clip_names(n_vis, n_txt, custom_text):
    blk = ["ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias",
           "attn.out_proj.weight", "attn.out_proj.bias", "ln_2.weight", "ln_2.bias",
           "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"]
    visual = (["visual.class_embedding", "visual.positional_embedding", "visual.proj",
               "visual.conv1.weight", "visual.ln_pre.weight", "visual.ln_pre.bias"]
              + [f"visual.transformer.resblocks.{i}.{b}" for i in range(n_vis) for b in blk]
              + ["visual.ln_post.weight", "visual.ln_post.bias"])
    tblocks = [f"transformer.resblocks.{i}.{b}" for i in range(n_txt) for b in blk]
    if not custom_text:
        return (["positional_embedding", "text_projection", "logit_scale"] + visual + tblocks
                + ["token_embedding.weight", "ln_final.weight", "ln_final.bias"])
    return (["logit_scale"] + visual
            + ["text.positional_embedding", "text.text_projection", "text.token_embedding.weight"]
            + ["text." + n for n in tblocks] + ["text.ln_final.weight", "text.ln_final.bias"])


def check_clip():
    # names / order / shapes
    for name, custom in (("micro_clip", False), ("micro_clip_custom", True)):
        cfg = load_config(mg.CONFIGS[name][0])
        model = build_model(cfg)
        check(isinstance(model, CustomTextCLIP if custom else CLIP) and not cfg.is_coca,
              f"{name}: builds {'CustomTextCLIP' if custom else 'CLIP'}")
        sd = model.state_dict()
        check(list(sd) == expected_clip_names(2, 2, custom),
              f"{name}: state_dict names and order ({len(sd)} tensors, OpenCLIP "
              f"{'CustomTextCLIP' if custom else 'CLIP'} order, no attn_mask buffer)")
        pre = "text." if custom else ""
        shapes = {pre + "positional_embedding": (7, 16), pre + "text_projection": (16, 12),
                  pre + "token_embedding.weight": (50, 16), "visual.proj": (16, 12),
                  "visual.ln_post.weight": (16,), "visual.positional_embedding": (5, 16),
                  "logit_scale": ()}
        check(all(tuple(sd[k].shape) == v for k, v in shapes.items()),
              f"{name}: shapes pos [L,w], text_projection [w,E], visual.proj [w,E], ln_post [w]")
    for custom in (False, True):
        cfg = load_config(clip_vit_b32_dict(custom))
        model = build_model(cfg, device="meta")
        sd = model.state_dict()
        n = sum(t.numel() for t in sd.values())
        check(n == 151277313 and list(sd) == expected_clip_names(12, 12, custom),
              f"OpenCLIP ViT-B-32 {'CustomTextCLIP' if custom else 'CLIP'}: {n:,} parameters "
              "(published 151,277,313), names/order as OpenCLIP")

    # argmax pooling
    t = torch.tensor([[48, 3, 49, 7, 49, 0, 0], [1, 2, 3, 4, 5, 6, 7], [5, 5, 5, 0, 0, 0, 0]])
    check(argmax_index(t).tolist() == [2, 6, 0], "argmax_index: first occurrence of the row maximum")
    cfg, model, img, txt = micro_model("micro_clip")
    with torch.no_grad():
        out = model(img, txt)
        ends = [int((txt[b] != 0).sum()) - 1 for b in range(txt.shape[0])]
        check(torch.equal(argmax_index(txt), torch.argmax(txt.long(), dim=1)) and
              argmax_index(txt).tolist() == ends, f"micro_clip: argmax == torch.argmax == end positions {ends}")
        x = model.ln_final(out["text_trunk"])
        at_end = torch.stack([x[b, e] for b, e in enumerate(ends)]) @ model.text_projection
        check(torch.equal(at_end, out["text_latent"]),
              "micro_clip: argmax pooling == ln_final(x)[b, end_b] @ text_projection (bit-identical)")
        # trimming the padding after the end token leaves the text features unchanged
        worst = 0.0
        for b, e in enumerate(ends):
            f = model.encode_text(txt[b:b + 1, :e + 1])["latent"]
            worst = max(worst, (f[0] - out["text_latent"][b]).abs().max().item())
        check(worst < 1e-12, f"micro_clip: text latent unchanged when the padding after the end "
                             f"token is trimmed (max diff {worst:.1e})")
        # pad content does not matter (causal mask; pads come after the pooled position)
        saved = model.token_embedding.weight[0].clone()
        model.token_embedding.weight[0] += torch.linspace(-2, 3, 16, dtype=torch.float64)
        pert = model(img, txt)["text_latent"]
        model.token_embedding.weight[0] = saved
        check(torch.equal(pert, out["text_latent"]), "micro_clip: pad embedding does not affect text features")
        # CLIP loss
        ls = clip_losses(out)
        li = model.logit_scale.exp() * out["image_features"] @ out["text_features"].t()
        lab = torch.arange(3)
        con = 0.5 * (F.cross_entropy(li, lab) + F.cross_entropy(li.t(), lab))
        check(abs(con.item() - ls["contrastive"].item()) < 1e-12 and ls["total"] is ls["contrastive"]
              and "caption" not in model_losses(out, txt),
              "CLIP loss == F.cross_entropy symmetric form; total == contrastive; no caption loss")

        # CLIP == CustomTextCLIP with the same (renamed) weights
        cfg_c, model_c, img_c, txt_c = micro_model("micro_clip_custom")
        sd, sdc = model.state_dict(), model_c.state_dict()
        check(all(torch.equal(sd[k], sdc[clip_text_to_custom_name(k)]) for k in sd) and
              torch.equal(img, img_c) and torch.equal(txt, txt_c),
              "micro_clip_custom: same weight values (renamed) and inputs as micro_clip")
        outc = model_c(img_c, txt_c)
        check(all(torch.equal(out[k], outc[k]) for k in out),
              "micro_clip_custom: all outputs bit-identical to micro_clip")

        # vision tower without attentional pooler, spelled out
        for name in ("micro_clip", "micro_nopool"):
            cfg, model, img, txt = micro_model(name)
            vt = model.visual
            check(vt.attn_pool is None and not any(".attn_pool." in k for k in model.state_dict()),
                  f"{name}: no attentional pooler tensors")
            o = vt(img)
            w = cfg.vision.width
            y = F.layer_norm(o["trunk"], (w,), vt.ln_post.weight, vt.ln_post.bias, eps=1e-5)
            ok = (torch.allclose(o["latent"], y[:, 0] @ vt.proj, rtol=1e-12, atol=1e-12) and
                  torch.allclose(o["embs"], y[:, 1:], rtol=1e-12, atol=1e-12) and
                  tuple(vt.proj.shape) == (w, cfg.embed_dim) and o["embs"].shape[1] == cfg.vision.grid ** 2)
            x = F.conv2d(img, vt.conv1.weight, stride=cfg.vision.patch_size).flatten(2).transpose(1, 2)
            x = torch.cat([vt.class_embedding.expand(img.shape[0], 1, w), x], 1) + vt.positional_embedding
            x = F.layer_norm(x, (w,), vt.ln_pre.weight, vt.ln_pre.bias, eps=1e-5)
            ok &= torch.allclose(vt.transformer(x), o["trunk"], rtol=1e-12, atol=1e-12)
            check(ok, f"{name}: vision = ln_post(trunk) over all tokens; latent = [:,0] @ proj [w,E]; "
                      "embs = [:,1:] (grid tokens)")
        out = model(img, txt)
        check(torch.equal(out["image_embs"], vt(img)["embs"]) and out["caption_logits"].shape == (3, 6, 50),
              "micro_nopool: decoder consumes the ln_post'd patch tokens (width 16), embed_dim 12")

    # config defaults and rejections
    c = load_config(mg.micro_clip_config())
    check(c.multimodal is None and c.vision.attentional_pool is False and c.text.embed_cls is False
          and c.custom_text is False,
          "CLIP config: no multimodal_cfg -> attentional_pool/embed_cls default false")
    c = load_config(dict(mg.MICRO, vision_cfg={k: v for k, v in mg.MICRO["vision_cfg"].items()
                                               if k != "attentional_pool"}))
    check(c.vision.attentional_pool is True and c.text.embed_cls is True,
          "CoCa config: attentional_pool/embed_cls still default true")
    for bad, why in ((dict(mg.micro_clip_config(), text_cfg=dict(mg.micro_clip_config()["text_cfg"], embed_cls=True)),
                      "embed_cls"),
                     (dict(mg.micro_nopool_config(), vision_cfg=dict(mg.micro_nopool_config()["vision_cfg"],
                                                                     width=24, head_width=8)),
                      "vision_cfg.width"),
                     (dict(mg.micro_nopool_config(), text_cfg=dict(mg.MICRO["text_cfg"], embed_cls=False)),
                      "embed_cls"),
                     (dict(mg.micro_clip_config(), custom_text=1), "custom_text")):
        try:
            parse_config(bad)
            check(False, f"config must be rejected ({why})")
        except ValueError as e:
            check(why in str(e), f"rejected: {e}")
    c = load_config(dict(mg.micro_clip_config(True), text_cfg=dict(mg.micro_clip_config()["text_cfg"],
                                                                   embed_cls=True)))
    m = build_model(c)
    check("text.cls_emb" in m.state_dict() and tuple(m.state_dict()["text.positional_embedding"].shape) == (8, 16),
          "CustomTextCLIP with embed_cls=true builds the CLS text tower")


def main():
    torch.set_num_threads(1)
    check_state_dicts()
    check_config()
    check_blocks()
    check_cls_mask()
    check_goldens()
    check_clip()
    check_gradients()
    print(f"\nALL {len(RESULTS)} CHECKS PASSED")


if __name__ == "__main__":
    main()
