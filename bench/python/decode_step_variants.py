"""Issue 6, goal 1: which formulation of a batch-1 decode step can reach the memory floor on this card.

Pure PyTorch (the same aten kernels our TorchScript layers call), Llama-3.1-8B shape, random bf16 weights, a 2,047-token
cache in a 4,096-slot buffer, one new token. Every variant is captured as a CUDA graph and its replays are timed with
CUDA events (median of --repeat); its logits are compared with a float32 reference of the same step. Also times
Hugging Face transformers (eager, bf16) on the same shape, so the ratio is measured in the same run.

    python3 bench/python/decode_step_variants.py --out $OUT/variants.json [--skip-transformers]
"""
import argparse, json, math, statistics, sys, time
import torch

p = argparse.ArgumentParser()
p.add_argument("--out", default="variants.json")
p.add_argument("--repeat", type=int, default=60)
p.add_argument("--context", type=int, default=2047)
p.add_argument("--skip-transformers", action="store_true")
p.add_argument("--profile", default="")
args = p.parse_args()

dev, dt = "cuda", torch.bfloat16
L, HID, NH, KVH, D, INTER, VOCAB = 32, 4096, 32, 8, 128, 14336, 128256
G = NH // KVH
CAP, EPS, THETA = 4096, 1e-5, 500000.0
LENGTH = args.context                    # cached tokens; the new token goes at LENGTH
KEYS = ((LENGTH + 1 + 1023) // 1024) * 1024
results = {"torch": torch.__version__, "card": torch.cuda.get_device_name(), "length": LENGTH, "keys": KEYS, "variants": {}}


def median_ms(fn, repeat):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record(); e.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times), min(times)


# ---- ceilings -------------------------------------------------------------------------------------------------------
a = torch.randn(1 << 30, dtype=dt, device=dev); b = torch.empty_like(a)
copy_ms, _ = median_ms(lambda: b.copy_(a), 20)
bw = 2 * a.numel() * 2 / (copy_ms / 1e3)
del a, b
results["copy_GBps"] = bw / 1e9
print(f"card {results['card']}, torch {torch.__version__}, copy {bw/1e9:.0f} GB/s", flush=True)

# ---- transformers eager baseline ------------------------------------------------------------------------------------
if not args.skip_transformers:
    try:
        import transformers
        from transformers import LlamaConfig, LlamaForCausalLM
        cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=HID, intermediate_size=INTER, num_hidden_layers=L,
                          num_attention_heads=NH, num_key_value_heads=KVH, max_position_embeddings=8192,
                          rope_theta=THETA, rms_norm_eps=EPS, tie_word_embeddings=False)
        for impl in ["eager", "sdpa"]:
            cfg._attn_implementation = impl
            torch.set_default_dtype(dt)
            with torch.device(dev):
                model = LlamaForCausalLM(cfg).eval()
            torch.set_default_dtype(torch.float32)
            ids = torch.randint(0, VOCAB, (1, LENGTH), device=dev)
            with torch.no_grad():
                out = model(ids, use_cache=True)
                cache = out.past_key_values
                tok = out.logits[:, -1:].argmax(-1)
                step_times = []
                for i in range(40):
                    torch.cuda.synchronize(); t0 = time.perf_counter()
                    out = model(tok, past_key_values=cache, use_cache=True)
                    tok = out.logits[:, -1:].argmax(-1)
                    tok.cpu()
                    step_times.append((time.perf_counter() - t0) * 1e3)
            ms = statistics.median(step_times[5:])
            results[f"transformers_{impl}_ms"] = ms
            results["transformers"] = transformers.__version__
            print(f"transformers {transformers.__version__} {impl}: {ms:.2f} ms per one-token forward (2k cache)", flush=True)
            del model, cache, out
            torch.cuda.empty_cache()
    except Exception as ex:  # the baseline is reported as missing, not invented
        print(f"transformers baseline failed: {ex!r}", flush=True)
        results["transformers_error"] = repr(ex)

# ---- weights (fused storage; separate projections are row views of it) -------------------------------------------
torch.manual_seed(0)
def w(*shape, std=0.02):
    return (torch.randn(*shape, device=dev, dtype=torch.float32) * std).to(dt)
wqkv = [w((NH + 2 * KVH) * D, HID) for _ in range(L)]
wo = [w(HID, NH * D) for _ in range(L)]
wgu = [w(2 * INTER, HID) for _ in range(L)]
wd = [w(HID, INTER) for _ in range(L)]
n1 = [(1 + 0.1 * torch.randn(HID, device=dev)).to(dt) for _ in range(L)]
n2 = [(1 + 0.1 * torch.randn(HID, device=dev)).to(dt) for _ in range(L)]
nf = (1 + 0.1 * torch.randn(HID, device=dev)).to(dt)
embed = w(VOCAB, HID, std=1.0)
head = w(VOCAB, HID)
cache = torch.randn(L, 2, 1, KVH, CAP, D, device=dev, dtype=dt)
inv = 1.0 / (THETA ** (torch.arange(0, D, 2, device=dev, dtype=torch.float32) / D))
ang = torch.outer(torch.arange(CAP, device=dev, dtype=torch.float32), inv)
ang = torch.cat([ang, ang], 1)
COS, SIN = ang.cos(), ang.sin()
SIN_SIGNED = torch.cat([-SIN[:, : D // 2], SIN[:, D // 2:]], 1)
weight_bytes = sum(t.numel() * 2 for lst in (wqkv, wo, wgu, wd) for t in lst) + head.numel() * 2 + HID * 2
kv_bytes = L * 2 * KVH * (LENGTH + 1) * D * 2
floor_ms = (weight_bytes + kv_bytes) / bw * 1e3
results["floor_ms"] = floor_ms
print(f"weights {weight_bytes/1e9:.2f} GB, kv {kv_bytes/1e9:.3f} GB, floor {floor_ms:.2f} ms", flush=True)

inp = torch.tensor([123, LENGTH], device=dev)     # static input: token, length
out_tok = torch.zeros(1, dtype=torch.long, device=dev)
out_logits = torch.zeros(VOCAB, dtype=torch.float32, device=dev)


def rms_hf(x, wt):
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + EPS)
    return wt * h.to(x.dtype)


def rms_fused(x, wt):
    return torch.rms_norm(x, [HID], wt, EPS)


def rot_cat(x, cos, sin):
    h = D // 2
    return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin


def rot_flip(x, cos, sin_signed):
    return torch.addcmul(x * cos, x.view(*x.shape[:-1], 2, D // 2).flip(-2).view(x.shape), sin_signed)


def make_step(rms="hf", fused=False, rot="cat", write="scatter", attn="sdpa", resid="add", ref=False):
    def step():
        tok, length = inp[0:1], inp[1:2]
        cos = COS.index_select(0, length).view(1, 1, 1, D)
        sin = (SIN_SIGNED if rot == "flip" else SIN).index_select(0, length).view(1, 1, 1, D)
        ct = torch.float32 if ref else dt
        if not ref:
            cos, sin = cos.to(dt), sin.to(dt)
        x = embed.index_select(0, tok).view(1, 1, HID).to(ct)
        need_mask = attn in ("sdpa", "mm_bf16", "mm_f32")
        if need_mask:
            beyond = torch.arange(KEYS, device=dev).gt(length).view(1, 1, 1, KEYS)
            mask = torch.zeros(1, 1, G, KEYS, device=dev, dtype=torch.float32 if attn == "mm_f32" or ref else dt).masked_fill(beyond, float("-inf"))
        if attn == "flash":
            cu_q = torch.tensor([0, 1], device=dev, dtype=torch.int32)
            cu_k = torch.tensor([0, KEYS], device=dev, dtype=torch.int32)
            used = (length + 1).to(torch.int32)
        norm = rms_fused if rms == "fused" else rms_hf
        for i in range(L):
            W = lambda t: t.float() if ref else t
            h = norm(x, W(n1[i]))
            if fused:
                qkv = torch.nn.functional.linear(h, W(wqkv[i])).view(1, 1, NH + 2 * KVH, D)
            else:
                q = torch.nn.functional.linear(h, W(wqkv[i][: NH * D]))
                k = torch.nn.functional.linear(h, W(wqkv[i][NH * D:(NH + KVH) * D]))
                v = torch.nn.functional.linear(h, W(wqkv[i][(NH + KVH) * D:]))
            if fused:
                if rot == "flip":
                    qk = rot_flip(qkv[:, :, : NH + KVH], cos, sin)
                else:
                    qk = rot_cat(qkv[:, :, : NH + KVH], cos, sin)
                q, k, v = qk[:, :, :NH], qk[:, :, NH:], qkv[:, :, NH + KVH:]
            else:
                q = q.view(1, 1, NH, D); k = k.view(1, 1, KVH, D); v = v.view(1, 1, KVH, D)
                rf = rot_flip if rot == "flip" else rot_cat
                q = rf(q, cos, sin); k = rf(k, cos, sin)
            cl = cache[i]                                   # [2, 1, KVH, CAP, D]
            if write == "scatter":
                idx = length.view(1, 1, 1, 1).expand(1, KVH, 1, D)
                cl[0].scatter_(2, idx, k.transpose(1, 2).to(dt))
                cl[1].scatter_(2, idx, v.transpose(1, 2).to(dt))
            else:
                kv = torch.stack([k.view(KVH, D), v.view(KVH, D)]).to(dt).view(2, 1, KVH, 1, D)
                cl.index_copy_(3, length, kv)
            Kc = cl[0, :, :, :KEYS]; Vc = cl[1, :, :, :KEYS]  # [1, KVH, KEYS, D]
            if ref:
                Kc, Vc = Kc.float(), Vc.float()
            grouped = q.reshape(1, KVH, G, D)
            if attn == "sdpa":
                o = torch.nn.functional.scaled_dot_product_attention(grouped, Kc, Vc, mask)
            elif attn == "mm_bf16":
                s = torch.matmul(grouped, Kc.transpose(2, 3)) * (D ** -0.5) + mask
                o = torch.matmul(torch.softmax(s.float(), -1).to(grouped.dtype), Vc)
            elif attn == "mm_f32":
                s = torch.bmm(grouped.view(KVH, G, D), Kc.view(KVH, KEYS, D).transpose(1, 2), out_dtype=torch.float32) if not ref else torch.bmm(grouped.view(KVH, G, D), Kc.view(KVH, KEYS, D).transpose(1, 2))
                pr = torch.softmax(s.view(1, KVH, G, KEYS) * (D ** -0.5) + mask, -1)
                o = torch.matmul(pr.to(grouped.dtype), Vc)
            elif attn == "flash":
                o = torch.ops.aten._flash_attention_forward(
                    q.view(1, NH, D), Kc[0].transpose(0, 1), Vc[0].transpose(0, 1), cu_q, cu_k, 1, KEYS, 0.0, False, False,
                    seqused_k=used)[0]
            elif attn == "skip":
                o = grouped
            o = o.reshape(1, 1, NH * D)
            if resid == "addmm":
                x = torch.addmm(x.view(1, HID), o.view(1, NH * D), W(wo[i]).t()).view(1, 1, HID)
            else:
                x = x + torch.nn.functional.linear(o, W(wo[i]))
            h = norm(x, W(n2[i]))
            if fused:
                gu = torch.nn.functional.linear(h, W(wgu[i]))
                m = torch.nn.functional.silu(gu[..., :INTER]) * gu[..., INTER:]
            else:
                m = torch.nn.functional.silu(torch.nn.functional.linear(h, W(wgu[i][:INTER]))) * torch.nn.functional.linear(h, W(wgu[i][INTER:]))
            if resid == "addmm":
                x = torch.addmm(x.view(1, HID), m.view(1, INTER), W(wd[i]).t()).view(1, 1, HID)
            else:
                x = x + torch.nn.functional.linear(m, W(wd[i]))
        x = norm(x, W(nf))
        logits = torch.nn.functional.linear(x, W(head)).view(-1)
        out_logits.copy_(logits.float())
        out_tok.copy_(logits.argmax(0).view(1))
    return step


def gemm_only():
    x = torch.randn(1, HID, device=dev, dtype=dt)
    mi = torch.randn(1, INTER, device=dev, dtype=dt)
    def step():
        for i in range(L):
            torch.nn.functional.linear(x, wqkv[i]); torch.nn.functional.linear(x, wo[i])
            torch.nn.functional.linear(x, wgu[i]); torch.nn.functional.linear(mi, wd[i])
        out_tok.copy_(torch.nn.functional.linear(x, head).argmax(-1))
    return step


def capture(fn):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.no_grad():
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g), torch.no_grad():
        fn()
    return g


saved = cache[:, :, :, :, LENGTH].clone()
with torch.no_grad():
    make_step(ref=True)()
ref_logits = out_logits.clone(); ref_tok = int(out_tok)
print(f"float32 reference token {ref_tok}", flush=True)

variants = {
    "gemm_only": dict(fn=gemm_only),
    "current (hf rms, separate proj, cat rotary, scatter, masked sdpa)": dict(),
    "+ grouped matmul bf16": dict(attn="mm_bf16"),
    "+ grouped matmul f32 scores": dict(attn="mm_f32"),
    "+ flash varlen seqused_k": dict(attn="flash"),
    "fused proj, sdpa": dict(fused=True),
    "fused proj, fused rms, sdpa": dict(fused=True, rms="fused"),
    "fused proj, fused rms, flip rotary, index_copy, sdpa": dict(fused=True, rms="fused", rot="flip", write="index_copy"),
    "all + addmm, sdpa": dict(fused=True, rms="fused", rot="flip", write="index_copy", resid="addmm"),
    "all + addmm, mm_f32": dict(fused=True, rms="fused", rot="flip", write="index_copy", resid="addmm", attn="mm_f32"),
    "all + addmm, flash": dict(fused=True, rms="fused", rot="flip", write="index_copy", resid="addmm", attn="flash"),
    "all + addmm, skip attention": dict(fused=True, rms="fused", rot="flip", write="index_copy", resid="addmm", attn="skip"),
    "hf rms, all else + flash": dict(fused=True, rot="flip", write="index_copy", resid="addmm", attn="flash"),
}
rows = []
for name, v in variants.items():
    try:
        fn = v["fn"]() if "fn" in v else make_step(**v)
        cache[:, :, :, :, LENGTH] = saved
        g = capture(fn)
        ms, mn = median_ms(g.replay, args.repeat)
        err = ((out_logits - ref_logits).norm() / ref_logits.norm()).item() if "fn" not in v else float("nan")
        same = int(out_tok) == ref_tok if "fn" not in v else None
        nk = None
        rows.append((name, ms, mn, err, same))
        results["variants"][name] = dict(median_ms=ms, min_ms=mn, rel_err=err, token_matches_f32=same)
        print(f"{name:70s} {ms:7.3f} ms (min {mn:.3f})  x{ms/floor_ms:.2f} floor  rel err {err:.2e}  token {'=' if same else ('-' if same is None else 'DIFFERS')}", flush=True)
        del g
    except Exception as ex:
        print(f"{name:70s} FAILED: {str(ex).splitlines()[0][:200]}", flush=True)
        results["variants"][name] = dict(error=repr(ex)[:500])

if args.profile:
    try:
        from torch.profiler import profile, ProfilerActivity
        fn = make_step(fused=True, rms="fused", rot="flip", write="index_copy", resid="addmm", attn="flash")
        with torch.no_grad():
            fn(); torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(3):
                    fn()
                torch.cuda.synchronize()
        with open(args.profile, "w") as f:
            f.write(prof.key_averages().table(sort_by="cuda_time_total", row_limit=40))
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        results["profile_kernels_per_step"] = len(kernels) / 3
        print(f"profiled: {len(kernels)/3:.0f} kernels per step", flush=True)
    except Exception as ex:
        print(f"profile failed: {ex!r}", flush=True)

with open(args.out, "w") as f:
    json.dump(results, f, indent=1)
