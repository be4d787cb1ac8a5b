"""Pretrained weights of the SigLIP and SigLIP 2 image towers (google-research/big_vision),
trained in JAX (timm 1.0.31's tags; PaliGemma's towers as the ``pali*`` tags of the ``*_gap_*``
architectures).

The Hub copies (``timm/<arch>.<tag>``) are in timm's layout. The original two-tower ``.npz``
files (``params/img/...`` is the image tower; the text tower, temperature and bias are not
read) are listed where the file of a tag is certain. They compute with JAX's numerics (tanh
GELU) whichever source they come from, and are preprocessed as timm's cfg says (bicubic,
crop_pct 0.9, pixels to [-1, 1]); big_vision's own demo squashes with bilinear resizing. The
reported accuracies are zero-shot ImageNet-1k: open_clip's evaluation for SigLIP, the SigLIP 2
README for SigLIP 2.
"""

from __future__ import annotations

from .entry import GOOGLE_MEAN, GOOGLE_STD, PretrainedEntry

SIGLIP_PAPER = ("Zhai et al., Sigmoid Loss for Language Image Pre-Training (ICCV 2023), "
                "arXiv:2303.15343")
SIGLIP2_PAPER = ("Tschannen et al., SigLIP 2: Multilingual Vision-Language Encoders with "
                 "Improved Semantic Understanding, Localization, and Dense Features (2025), "
                 "arXiv:2502.14786")
PALIGEMMA_PAPER = ("Beyer et al., PaliGemma: A versatile 3B VLM for transfer (2024), "
                   "arXiv:2407.07726")
CENTER, SQUASH = "center", "squash"
_BV = "https://storage.googleapis.com/big_vision/"
ORIGINAL_FILES: dict[tuple[str, str], str] = {
    ("vit_base_patch16_siglip_224", "webli"): "siglip/webli_en_b16_224_63724782.npz",
    ("vit_base_patch16_siglip_256", "webli"): "siglip/webli_en_b16_256_60500360.npz",
    ("vit_base_patch16_siglip_384", "webli"): "siglip/webli_en_b16_384_68578854.npz",
    ("vit_base_patch16_siglip_512", "webli"): "siglip/webli_en_b16_512_68580893.npz",
    ("vit_large_patch16_siglip_256", "webli"): "siglip/webli_en_l16_256_60552751.npz",
    ("vit_large_patch16_siglip_384", "webli"): "siglip/webli_en_l16_384_63634585.npz",
    ("vit_so400m_patch14_siglip_224", "webli"): "siglip/webli_en_so400m_224_57633886.npz",
    ("vit_so400m_patch14_siglip_384", "webli"): "siglip/webli_en_so400m_384_58765454.npz",
    ("vit_base_patch16_siglip_256", "webli_i18n"): "siglip/webli_i18n_b16_256_66117334.npz",
    ("vit_so400m_patch16_siglip_256", "webli_i18n"):
        "siglip/webli_i18n_so400m_16_256_78061115.npz",
    **{(f"vit_base_patch16_siglip_{i}", "v2_webli"): f"siglip2/siglip2_b16_{i}.npz"
       for i in (224, 256, 384, 512)},
    ("vit_base_patch32_siglip_256", "v2_webli"): "siglip2/siglip2_b32_256.npz",
    **{(f"vit_large_patch16_siglip_{i}", "v2_webli"): f"siglip2/siglip2_l16_{i}.npz"
       for i in (256, 384, 512)},
    ("vit_so400m_patch14_siglip_224", "v2_webli"): "siglip2/siglip2_so400m14_224.npz",
    **{(f"vit_so400m_patch16_siglip_{i}", "v2_webli"): f"siglip2/siglip2_so400m16_{i}.npz"
       for i in (256, 384, 512)},
    **{(f"vit_giantopt_patch16_siglip_{i}", "v2_webli"): f"siglip2/siglip2_g-opt16_{i}.npz"
       for i in (256, 384)},
}
# zero-shot ImageNet-1k top-1, by (architecture, tag); the *_gap_* towers are not evaluated
ZERO_SHOT: dict[tuple[str, str], float] = {
    ("vit_base_patch16_siglip_224", "webli"): 76.04,
    ("vit_base_patch16_siglip_256", "webli"): 76.53,
    ("vit_base_patch16_siglip_384", "webli"): 78.49,
    ("vit_base_patch16_siglip_512", "webli"): 79.14,
    ("vit_base_patch16_siglip_256", "webli_i18n"): 75.13,
    ("vit_large_patch16_siglip_256", "webli"): 80.45,
    ("vit_large_patch16_siglip_384", "webli"): 82.07,
    ("vit_so400m_patch14_siglip_224", "webli"): 82.03,
    ("vit_so400m_patch14_siglip_384", "webli"): 83.08,
    ("vit_base_patch16_siglip_224", "v2_webli"): 78.2,
    ("vit_base_patch16_siglip_256", "v2_webli"): 79.1,
    ("vit_base_patch16_siglip_384", "v2_webli"): 80.6,
    ("vit_base_patch16_siglip_512", "v2_webli"): 81.2,
    ("vit_base_patch32_siglip_256", "v2_webli"): 74.0,
    ("vit_large_patch16_siglip_256", "v2_webli"): 82.5,
    ("vit_large_patch16_siglip_384", "v2_webli"): 83.1,
    ("vit_large_patch16_siglip_512", "v2_webli"): 83.5,
    ("vit_so400m_patch14_siglip_224", "v2_webli"): 83.2,
    ("vit_so400m_patch16_siglip_256", "v2_webli"): 83.4,
    ("vit_so400m_patch16_siglip_384", "v2_webli"): 84.1,
    ("vit_so400m_patch16_siglip_512", "v2_webli"): 84.3,
    ("vit_giantopt_patch16_siglip_256", "v2_webli"): 84.5,
    ("vit_giantopt_patch16_siglip_384", "v2_webli"): 85.0,
}

_TAGS: dict[str, tuple[tuple[str, int, float, str], ...]] = {
    "vit_base_patch16_siglip_224": (("v2_webli", 0, 0.9, CENTER), ("webli", 0, 0.9, CENTER),),
    "vit_base_patch16_siglip_256": (
        ("v2_webli", 0, 0.9, CENTER), ("webli", 0, 0.9, CENTER), ("webli_i18n", 0, 0.9, CENTER),
    ),
    "vit_base_patch16_siglip_384": (("v2_webli", 0, 0.9, CENTER), ("webli", 0, 0.9, CENTER),),
    "vit_base_patch16_siglip_512": (("v2_webli", 0, 0.9, CENTER), ("webli", 0, 0.9, CENTER),),
    "vit_base_patch16_siglip_gap_224": (("v2_webli", 0, 0.9, CENTER), ("webli", 0, 0.9, CENTER),),
    "vit_base_patch16_siglip_gap_256": (
        ("v2_webli", 0, 0.9, CENTER), ("webli", 0, 0.9, CENTER), ("webli_i18n", 0, 0.9, CENTER),
    ),
    "vit_base_patch16_siglip_gap_384": (("v2_webli", 0, 0.9, CENTER), ("webli", 0, 0.9, CENTER),),
    "vit_base_patch16_siglip_gap_512": (("v2_webli", 0, 0.9, CENTER), ("webli", 0, 0.9, CENTER),),
    "vit_base_patch32_siglip_256": (("v2_webli", 0, 0.9, CENTER),),
    "vit_base_patch32_siglip_gap_256": (("v2_webli", 0, 0.9, CENTER),),
    "vit_giantopt_patch16_siglip_256": (("v2_webli", 0, 0.9, CENTER),),
    "vit_giantopt_patch16_siglip_384": (("v2_webli", 0, 0.9, CENTER),),
    "vit_giantopt_patch16_siglip_gap_256": (("v2_webli", 0, 0.9, CENTER),),
    "vit_giantopt_patch16_siglip_gap_384": (("v2_webli", 0, 0.9, CENTER),),
    "vit_large_patch16_siglip_256": (("v2_webli", 0, 0.9, CENTER), ("webli", 0, 0.9, CENTER),),
    "vit_large_patch16_siglip_384": (("v2_webli", 0, 0.9, CENTER), ("webli", 0, 0.9, CENTER),),
    "vit_large_patch16_siglip_512": (("v2_webli", 0, 0.9, CENTER),),
    "vit_large_patch16_siglip_gap_256": (("v2_webli", 0, 0.9, CENTER), ("webli", 0, 0.9, CENTER),),
    "vit_large_patch16_siglip_gap_384": (("v2_webli", 0, 0.9, CENTER), ("webli", 0, 0.9, CENTER),),
    "vit_large_patch16_siglip_gap_512": (("v2_webli", 0, 0.9, CENTER),),
    "vit_so400m_patch14_siglip_224": (("v2_webli", 0, 0.9, CENTER), ("webli", 0, 0.9, CENTER),),
    "vit_so400m_patch14_siglip_378": (
        ("v2_webli", 0, 0.9, CENTER), ("webli", 0, 0.9, CENTER),
        ("webli_ft_in1k", 1000, 1.0, SQUASH),
    ),
    "vit_so400m_patch14_siglip_384": (("webli", 0, 0.9, CENTER),),
    "vit_so400m_patch14_siglip_gap_224": (
        ("v2_webli", 0, 0.9, CENTER), ("pali2_3b_pt", 0, 0.9, CENTER),
        ("pali2_10b_pt", 0, 0.9, CENTER), ("pali_mix", 0, 0.9, CENTER),
        ("pali_pt", 0, 0.9, CENTER), ("webli", 0, 0.9, CENTER),
    ),
    "vit_so400m_patch14_siglip_gap_378": (
        ("v2_webli", 0, 0.9, CENTER), ("webli", 0, 1.0, CENTER),
        ("webli_ft_in1k", 1000, 1.0, SQUASH),
    ),
    "vit_so400m_patch14_siglip_gap_384": (("webli", 0, 1.0, CENTER),),
    "vit_so400m_patch14_siglip_gap_448": (
        ("pali_mix", 0, 1.0, CENTER), ("pali2_3b_docci", 0, 1.0, CENTER),
        ("pali2_3b_pt", 0, 1.0, CENTER), ("pali2_10b_docci", 0, 1.0, CENTER),
        ("pali2_10b_pt", 0, 1.0, CENTER), ("pali_ocrvqa", 0, 1.0, CENTER),
        ("pali_pt", 0, 1.0, CENTER), ("pali_refcoco_seg", 0, 1.0, CENTER),
    ),
    "vit_so400m_patch14_siglip_gap_896": (
        ("pali_pt", 0, 1.0, CENTER), ("pali2_3b_pt", 0, 1.0, CENTER),
        ("pali2_10b_pt", 0, 1.0, CENTER), ("pali_ocrvqa", 0, 1.0, CENTER),
        ("pali_refcoco_seg", 0, 1.0, CENTER),
    ),
    "vit_so400m_patch16_siglip_256": (
        ("v2_webli", 0, 0.9, CENTER), ("webli_i18n", 0, 0.9, CENTER),
    ),
    "vit_so400m_patch16_siglip_384": (("v2_webli", 0, 0.9, CENTER),),
    "vit_so400m_patch16_siglip_512": (("v2_webli", 0, 0.9, CENTER),),
    "vit_so400m_patch16_siglip_gap_256": (
        ("v2_webli", 0, 0.9, CENTER), ("webli_i18n", 0, 0.9, CENTER),
    ),
    "vit_so400m_patch16_siglip_gap_384": (("v2_webli", 0, 0.9, CENTER),),
    "vit_so400m_patch16_siglip_gap_512": (("v2_webli", 0, 0.9, CENTER),),
}


def _paper(tag: str) -> str:
    if tag.startswith("pali"):
        return PALIGEMMA_PAPER
    return SIGLIP2_PAPER if tag.startswith("v2") else SIGLIP_PAPER


def _entry(arch: str, tag: str, classes: int, crop_pct: float, crop_mode: str
           ) -> PretrainedEntry:
    file = ORIGINAL_FILES.get((arch, tag))
    top1 = ZERO_SHOT.get((arch, tag))
    return PretrainedEntry(
        arch, tag, classes, int(arch.rsplit("_", 1)[1]), "jax", hf_hub_id=f"timm/{arch}.{tag}",
        url=_BV + file if file else None, url_format="jax_npz" if file else None,
        mean=GOOGLE_MEAN, std=GOOGLE_STD, crop_pct=crop_pct, crop_mode=crop_mode,
        paper=_paper(tag), top1=top1, top1_protocol="zero-shot" if top1 is not None else "",
        notes="Fine-tuned on ImageNet-1k." if classes == 1000 else "")


ENTRIES: tuple[PretrainedEntry, ...] = tuple(
    _entry(arch, *tag) for arch, tags in _TAGS.items() for tag in tags)
