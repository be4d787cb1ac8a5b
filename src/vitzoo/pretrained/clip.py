"""Pretrained weights of the CLIP image towers: OpenAI's CLIP, open_clip's LAION / DataComp /
DFN / MetaCLIP trainings, TinyCLIP, and timm's ImageNet fine-tunes of them (timm 1.0.31's tags).

The Hub copies (``timm/<arch>.<tag>``) are in timm's layout, with CLIP's projection as the
head. OpenAI's four ViT releases are also read from their original TorchScript files
(``url_format="openai_clip"``). Weights trained with QuickGELU (OpenAI's, MetaCLIP's, DFN's
and the LAION-400M B/32) compute QuickGELU whichever architecture name they are loaded under
(timm loads them into the erf-GELU towers and notes that the ``*_quickgelu_*`` names give the
original results); the ImageNet fine-tunes were trained by timm with the exact GELU.
The reported accuracies are open_clip's zero-shot ImageNet-1k results
(``docs/openclip_results.csv``) for the weights whose open_clip tag is certain.
"""

from __future__ import annotations

from .entry import CLIP_MEAN, CLIP_STD, GOOGLE_MEAN, GOOGLE_STD, PretrainedEntry

CLIP_PAPER = ("Radford et al., Learning Transferable Visual Models From Natural Language "
              "Supervision (ICML 2021), arXiv:2103.00020")
OPEN_CLIP_PAPER = ("Cherti et al., Reproducible scaling laws for contrastive language-image "
                   "learning (CVPR 2023), arXiv:2212.07143")
TINYCLIP_PAPER = ("Wu et al., TinyCLIP: CLIP Distillation via Affinity Mimicking and Weight "
                  "Inheritance (ICCV 2023), arXiv:2309.12314")
OAI = (CLIP_MEAN, CLIP_STD)
INC = (GOOGLE_MEAN, GOOGLE_STD)
CENTER, SQUASH = "center", "squash"
APACHE, MIT, ASCL, NC, AMLR = "apache-2.0", "mit", "apple-ascl", "cc-by-nc-4.0", "apple-amlr"
_RGB = tuple[float, float, float]
_Tag = tuple[str, int, float, str, tuple[_RGB, _RGB], str, bool]
"""(tag, classes, crop_pct, crop_mode, (mean, std), license, trained with QuickGELU)"""

_OPENAI = "https://openaipublic.azureedge.net/clip/models/"
OPENAI_FILES: dict[str, str] = {  # the URL path is the file's sha256
    "vit_base_patch32_clip_224":
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "vit_base_patch16_clip_224":
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "vit_large_patch14_clip_224":
        "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    "vit_large_patch14_clip_336":
        "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
}
# open_clip's zero-shot ImageNet-1k top-1, by (architecture without _quickgelu, tag)
ZERO_SHOT: dict[tuple[str, str], float] = {
    ("vit_base_patch32_clip_224", "openai"): 63.32,
    ("vit_base_patch32_clip_224", "laion400m_e32"): 62.93,
    ("vit_base_patch32_clip_224", "datacompxl"): 69.17,
    ("vit_base_patch16_clip_224", "openai"): 68.34,
    ("vit_base_patch16_clip_224", "laion400m_e32"): 67.05,
    ("vit_base_patch16_clip_224", "laion2b"): 70.23,
    ("vit_base_patch16_clip_224", "datacompxl"): 73.49,
    ("vit_base_patch16_clip_224", "dfn2b"): 76.24,
    ("vit_base_patch16_plus_clip_240", "laion400m_e32"): 69.19,
    ("vit_large_patch14_clip_224", "openai"): 75.54,
    ("vit_large_patch14_clip_224", "laion400m_e32"): 72.77,
    ("vit_large_patch14_clip_224", "laion2b"): 75.25,
    ("vit_large_patch14_clip_224", "datacompxl"): 79.21,
    ("vit_large_patch14_clip_224", "dfn2b"): 81.41,
    ("vit_large_patch14_clip_336", "openai"): 76.56,
    ("vit_huge_patch14_clip_224", "laion2b"): 77.96,
    ("vit_huge_patch14_clip_224", "dfn5b"): 83.44,
    ("vit_huge_patch14_clip_378", "dfn5b"): 84.37,
    ("vit_gigantic_patch14_clip_224", "laion2b"): 80.09,
}

_TAGS: dict[str, tuple[_Tag, ...]] = {
    "vit_base_patch16_clip_224": (
        ("laion2b_ft_in12k_in1k", 1000, 0.95, CENTER, OAI, APACHE, False),
        ("datacompxl", 512, 1.0, CENTER, OAI, APACHE, False),
        ("dfn2b", 512, 1.0, CENTER, OAI, ASCL, False),
        ("laion2b", 512, 1.0, CENTER, OAI, APACHE, False),
        ("laion2b_ft_in1k", 1000, 1.0, CENTER, OAI, APACHE, False),
        ("laion2b_ft_in12k", 11821, 0.9, CENTER, OAI, APACHE, False),
        ("laion400m_e32", 512, 1.0, CENTER, OAI, MIT, False),
        ("metaclip_2pt5b", 512, 1.0, CENTER, OAI, NC, True),
        ("metaclip_400m", 512, 1.0, CENTER, OAI, NC, True),
        ("openai", 512, 0.9, CENTER, OAI, APACHE, True),
        ("openai_ft_in1k", 1000, 0.9, CENTER, OAI, APACHE, False),
        ("openai_ft_in12k", 11821, 0.9, CENTER, OAI, APACHE, False),
        ("openai_ft_in12k_in1k", 1000, 0.95, CENTER, OAI, APACHE, False),
    ),
    "vit_base_patch16_clip_384": (
        ("laion2b_ft_in12k_in1k", 1000, 1.0, SQUASH, OAI, APACHE, False),
        ("laion2b_ft_in1k", 1000, 1.0, SQUASH, OAI, APACHE, False),
        ("openai_ft_in1k", 1000, 1.0, SQUASH, OAI, APACHE, False),
        ("openai_ft_in12k_in1k", 1000, 0.95, SQUASH, OAI, APACHE, False),
    ),
    "vit_base_patch16_clip_quickgelu_224": (
        ("metaclip_2pt5b", 512, 1.0, CENTER, OAI, NC, True),
        ("metaclip_400m", 512, 1.0, CENTER, OAI, NC, True),
        ("openai", 512, 0.9, CENTER, OAI, APACHE, True),
    ),
    "vit_base_patch16_plus_clip_240": (
        ("laion400m_e32", 640, 1.0, CENTER, OAI, MIT, False),
    ),
    "vit_base_patch32_clip_224": (
        ("laion2b_ft_in12k_in1k", 1000, 0.9, CENTER, OAI, APACHE, False),
        ("datacompxl", 512, 1.0, CENTER, OAI, APACHE, False),
        ("laion2b", 512, 0.9, CENTER, OAI, APACHE, False),
        ("laion2b_ft_in1k", 1000, 0.9, CENTER, OAI, APACHE, False),
        ("laion400m_e32", 512, 0.9, CENTER, OAI, MIT, True),
        ("metaclip_2pt5b", 512, 1.0, CENTER, OAI, NC, True),
        ("metaclip_400m", 512, 1.0, CENTER, OAI, NC, True),
        ("openai", 512, 0.9, CENTER, OAI, APACHE, True),
        ("openai_ft_in1k", 1000, 0.9, CENTER, OAI, APACHE, False),
    ),
    "vit_base_patch32_clip_256": (
        ("datacompxl", 512, 1.0, CENTER, OAI, APACHE, False),
    ),
    "vit_base_patch32_clip_384": (
        ("laion2b_ft_in12k_in1k", 1000, 1.0, CENTER, OAI, APACHE, False),
        ("openai_ft_in12k_in1k", 1000, 0.95, SQUASH, OAI, APACHE, False),
    ),
    "vit_base_patch32_clip_448": (
        ("laion2b_ft_in12k_in1k", 1000, 1.0, CENTER, OAI, APACHE, False),
    ),
    "vit_base_patch32_clip_quickgelu_224": (
        ("laion400m_e32", 512, 0.9, CENTER, OAI, MIT, True),
        ("metaclip_2pt5b", 512, 1.0, CENTER, OAI, NC, True),
        ("metaclip_400m", 512, 1.0, CENTER, OAI, NC, True),
        ("openai", 512, 0.9, CENTER, OAI, APACHE, True),
    ),
    "vit_betwixt_patch32_clip_224": (
        ("tinyclip_laion400m", 512, 0.9, CENTER, OAI, MIT, False),
    ),
    "vit_giant_patch14_clip_224": (
        ("laion2b", 1024, 1.0, CENTER, OAI, APACHE, False),
    ),
    "vit_gigantic_patch14_clip_224": (
        ("laion2b", 1280, 1.0, CENTER, OAI, APACHE, False),
        ("metaclip2_worldwide", 1280, 1.0, CENTER, OAI, NC, False),
        ("metaclip_2pt5b", 1280, 1.0, CENTER, OAI, NC, True),
    ),
    "vit_gigantic_patch14_clip_378": (
        ("metaclip2_worldwide", 1280, 1.0, SQUASH, OAI, NC, False),
    ),
    "vit_gigantic_patch14_clip_quickgelu_224": (
        ("metaclip_2pt5b", 1280, 1.0, CENTER, OAI, NC, True),
    ),
    "vit_huge_patch14_clip_224": (
        ("laion2b_ft_in12k_in1k", 1000, 1.0, CENTER, OAI, APACHE, False),
        ("dfn5b", 1024, 1.0, CENTER, OAI, ASCL, True),
        ("laion2b", 1024, 1.0, CENTER, OAI, APACHE, False),
        ("laion2b_ft_in1k", 1000, 1.0, CENTER, OAI, APACHE, False),
        ("laion2b_ft_in12k", 11821, 1.0, CENTER, OAI, APACHE, False),
        ("metaclip2_worldwide", 1024, 1.0, CENTER, OAI, NC, True),
        ("metaclip_2pt5b", 1024, 1.0, CENTER, OAI, NC, True),
        ("metaclip_altogether", 1024, 1.0, CENTER, OAI, NC, False),
    ),
    "vit_huge_patch14_clip_336": (
        ("laion2b_ft_in12k_in1k", 1000, 1.0, SQUASH, OAI, APACHE, False),
    ),
    "vit_huge_patch14_clip_378": (
        ("dfn5b", 1024, 1.0, CENTER, OAI, ASCL, True),
        ("metaclip2_worldwide", 1024, 1.0, SQUASH, OAI, NC, False),
    ),
    "vit_huge_patch14_clip_quickgelu_224": (
        ("dfn5b", 1024, 1.0, CENTER, OAI, ASCL, True),
        ("metaclip2_worldwide", 1024, 1.0, CENTER, OAI, NC, True),
        ("metaclip_2pt5b", 1024, 1.0, CENTER, OAI, NC, True),
    ),
    "vit_huge_patch14_clip_quickgelu_378": (
        ("dfn5b", 1024, 1.0, CENTER, OAI, ASCL, True),
    ),
    "vit_large_patch14_clip_224": (
        ("laion2b_ft_in12k_in1k", 1000, 1.0, CENTER, INC, APACHE, False),
        ("apple_mclip2_dfndr2b", 768, 1.0, CENTER, OAI, AMLR, False),
        ("datacompxl", 768, 1.0, CENTER, OAI, APACHE, False),
        ("dfn2b", 768, 1.0, CENTER, OAI, ASCL, True),
        ("dfn2b_s39b", 768, 1.0, CENTER, OAI, ASCL, False),
        ("laion2b", 768, 1.0, CENTER, INC, APACHE, False),
        ("laion2b_ft_in1k", 1000, 1.0, CENTER, INC, APACHE, False),
        ("laion2b_ft_in12k", 11821, 1.0, CENTER, INC, APACHE, False),
        ("laion400m_e32", 768, 1.0, CENTER, OAI, MIT, False),
        ("metaclip_2pt5b", 768, 1.0, CENTER, OAI, NC, True),
        ("metaclip_400m", 768, 1.0, CENTER, OAI, NC, True),
        ("openai", 768, 1.0, CENTER, OAI, APACHE, True),
        ("openai_ft_in1k", 1000, 1.0, CENTER, OAI, APACHE, False),
        ("openai_ft_in12k", 11821, 1.0, CENTER, OAI, APACHE, False),
        ("openai_ft_in12k_in1k", 1000, 1.0, CENTER, OAI, APACHE, False),
    ),
    "vit_large_patch14_clip_336": (
        ("laion2b_ft_in12k_in1k", 1000, 1.0, SQUASH, INC, APACHE, False),
        ("laion2b_ft_in1k", 1000, 1.0, SQUASH, INC, APACHE, False),
        ("openai", 768, 1.0, CENTER, OAI, APACHE, True),
        ("openai_ft_in12k_in1k", 1000, 1.0, SQUASH, OAI, APACHE, False),
    ),
    "vit_large_patch14_clip_quickgelu_224": (
        ("dfn2b", 768, 1.0, CENTER, OAI, ASCL, True),
        ("metaclip_2pt5b", 768, 1.0, CENTER, OAI, NC, True),
        ("metaclip_400m", 768, 1.0, CENTER, OAI, NC, True),
        ("openai", 768, 1.0, CENTER, OAI, APACHE, True),
    ),
    "vit_large_patch14_clip_quickgelu_336": (
        ("openai", 768, 1.0, CENTER, OAI, APACHE, True),
    ),
    "vit_medium_patch16_clip_224": (
        ("tinyclip_yfcc15m", 512, 0.9, CENTER, OAI, MIT, False),
    ),
    "vit_medium_patch32_clip_224": (
        ("tinyclip_laion400m", 512, 0.9, CENTER, OAI, MIT, False),
    ),
    "vit_xsmall_patch16_clip_224": (
        ("tinyclip_yfcc15m", 512, 0.9, CENTER, OAI, MIT, False),
    ),
}


def _paper(arch: str, tag: str) -> str:
    if tag.startswith("tinyclip"):
        return TINYCLIP_PAPER
    return CLIP_PAPER if tag.startswith("openai") else OPEN_CLIP_PAPER


def _entry(arch: str, tag: str, classes: int, crop_pct: float, crop_mode: str,
           stats: tuple[_RGB, _RGB], license: str,
           quick_gelu: bool) -> PretrainedEntry:
    plain = arch.replace("_quickgelu", "")  # the QuickGELU towers share the plain repos
    openai = OPENAI_FILES.get(plain) if tag == "openai" else None
    top1 = ZERO_SHOT.get((plain, tag))
    return PretrainedEntry(
        arch, tag, classes, int(arch.rsplit("_", 1)[1]), "pytorch",
        hf_hub_id=f"timm/{plain}.{tag}", url=_OPENAI + openai if openai else None,
        url_format="openai_clip" if openai else None,
        sha256=openai.split("/")[0] if openai else None, mean=stats[0], std=stats[1],
        crop_pct=crop_pct, crop_mode=crop_mode, license=license, paper=_paper(arch, tag),
        top1=top1, top1_protocol="zero-shot" if top1 is not None else "",
        config={"act_layer": "quick_gelu"} if quick_gelu else {},
        notes="Trained with QuickGELU, which these weights compute." if quick_gelu else "")


ENTRIES: tuple[PretrainedEntry, ...] = tuple(
    _entry(arch, *tag) for arch, tags in _TAGS.items() for tag in tags)
