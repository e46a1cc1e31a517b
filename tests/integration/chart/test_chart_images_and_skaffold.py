"""The container images and skaffold.yaml, checked without a Docker engine: each Dockerfile's
COPY sources exist and survive .dockerignore, each image installs exactly the local packages its
deployable needs (the operator never torch), runs as a numeric non-root user, and pins its base
images; skaffold builds the three images from those Dockerfiles and deploys the chart."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from chart_render import CHART, REPO

pytestmark = pytest.mark.timeout(60)

IMAGES = {
    "omoai-asr": ("services/asr/Dockerfile", "services/asr"),
    "omoai-llm": ("services/llm/Dockerfile", "services/llm"),
    "omoai-operator": ("operator/Dockerfile", "operator"),
}
PACKAGE_DIRS = {
    tomllib.loads(p.read_text(encoding="utf-8"))["project"]["name"]: p.parent.relative_to(REPO).as_posix()
    for p in [*REPO.glob("libs/*/pyproject.toml"), *REPO.glob("services/*/pyproject.toml"), REPO / "operator/pyproject.toml"]
    if p.exists()
}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        out.append((op.upper(), rest.strip()))
    return out


def dockerignored(path: str) -> bool:
    ignored = False
    for raw in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.replace("**/", "")) for p in prefixes)
        if hit:
            ignored = not negate
    return ignored


def local_closure(package_dir: str, extras: tuple[str, ...] = ()) -> tuple[set[str], set[str]]:
    """The local package dirs a deployable needs, and every third-party requirement name."""
    dirs, third_party = set(), set()
    todo = [(package_dir, extras)]
    while todo:
        d, ex = todo.pop()
        if d in dirs:
            continue
        dirs.add(d)
        project = tomllib.loads((REPO / d / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        reqs = list(project.get("dependencies", []))
        for e in ex:
            reqs += project.get("optional-dependencies", {}).get(e, [])
        for req in reqs:
            name = re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower()
            if name in PACKAGE_DIRS:
                todo.append((PACKAGE_DIRS[name], ()))
            else:
                third_party.add(name)
    return dirs, third_party


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_copies_existing_unignored_sources_of_every_needed_package(image):
    dockerfile, package_dir = IMAGES[image]
    ins = instructions(REPO / dockerfile)
    copies = [args.split() for op, args in ins if op == "COPY" and not args.startswith("--from")]
    assert copies
    sources = {src for parts in copies for src in parts[:-1] if not src.startswith("--")}
    for src in sources:
        assert (REPO / src).exists(), f"{dockerfile}: COPY source {src} does not exist"
        assert not dockerignored(src), f"{dockerfile}: COPY source {src} is excluded by .dockerignore"
        assert (REPO / src / "pyproject.toml").exists(), f"{dockerfile}: {src} is not a package"
    needed, _ = local_closure(package_dir)
    assert needed <= sources, f"{image} lacks packages {sorted(needed - sources)}"
    runs = " ".join(args for op, args in ins if op == "RUN")
    for src in sources:
        assert f"/src/{src}" in runs, f"{image} copies {src} but never installs it"


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_is_multi_stage_non_root_and_pinned(image):
    dockerfile, _ = IMAGES[image]
    ins = instructions(REPO / dockerfile)
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for op, a in ins if op == "ARG" and "=" in a}
    froms = [a for op, a in ins if op == "FROM"]
    assert len(froms) >= 2, "multi-stage: build tools stay out of the runtime image"
    assert any(" AS " in f.upper() for f in froms)
    for f in froms:
        ref = f.split()[0]
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), ref)
        assert ":" in ref and not ref.endswith(":latest"), f"{dockerfile}: base image {ref} is not pinned"
    users = [a for op, a in ins if op == "USER"]
    assert users, f"{dockerfile}: no USER (runs as root)"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root USER lets Kubernetes verify runAsNonRoot"
    assert [op for op, _ in ins].index("USER") > max(i for i, (op, _) in enumerate(ins) if op == "FROM")
    assert any(op in ("ENTRYPOINT", "CMD") for op, _ in ins)
    text = (REPO / dockerfile).read_text(encoding="utf-8")
    assert ":latest" not in text


def test_operator_image_and_package_never_pull_torch():
    ins = instructions(REPO / "operator/Dockerfile")
    # The build asserts it: `! python -c "import torch"` fails the build if torch got in.
    runs = " ".join(a for op, a in ins if op == "RUN")
    assert '! python -c "import torch"' in runs
    code = " ".join(a for _, a in ins).replace('! python -c "import torch"', "")
    assert "libs/gpu" not in code and "torch" not in code and "cuda" not in code.lower()
    dirs, third_party = local_closure("operator", ("s3",))
    assert "libs/gpu" not in dirs
    assert not {"torch", "vllm", "transformers"} & third_party


def test_gpu_images_use_a_cuda_base_and_bring_what_they_need():
    asr = (REPO / "services/asr/Dockerfile").read_text(encoding="utf-8")
    llm = (REPO / "services/llm/Dockerfile").read_text(encoding="utf-8")
    assert "nvidia/cuda:" in asr and "nvidia/cuda:" in llm
    assert "ffmpeg" in asr, "the ASR service decodes any audio with ffmpeg"
    assert "services/asr[serve]" in asr
    assert "vllm" in llm.split("ARG LLM_EXTRAS=")[1].splitlines()[0]


def test_skaffold_builds_the_three_images_and_deploys_the_chart():
    cfg = yaml.safe_load((REPO / "skaffold.yaml").read_text(encoding="utf-8"))
    assert re.fullmatch(r"skaffold/v4beta\d+", cfg["apiVersion"])
    assert cfg["kind"] == "Config"
    artifacts = {a["image"]: a for a in cfg["build"]["artifacts"]}
    assert artifacts.keys() == IMAGES.keys()
    for image, (dockerfile, _) in IMAGES.items():
        a = artifacts[image]
        assert (REPO / a["context"]).is_dir()
        assert (REPO / a["context"] / a["docker"]["dockerfile"]).resolve() == (REPO / dockerfile).resolve()
    releases = cfg["deploy"]["helm"]["releases"]
    assert len(releases) == 1
    assert (REPO / releases[0]["chartPath"]).resolve() == CHART
    templates = releases[0]["setValueTemplates"]
    for image in IMAGES:
        component = image.removeprefix("omoai-")
        var = image.replace("-", "_")
        assert templates[f"{component}.image.repository"] == f"{{{{.IMAGE_REPO_{var}}}}}"
        assert templates[f"{component}.image.tag"] == f"{{{{.IMAGE_TAG_{var}}}}}"


def test_skaffold_cpu_profile_renders_a_chart_without_gpus(helm):
    from chart_render import helm_template

    cfg = yaml.safe_load((REPO / "skaffold.yaml").read_text(encoding="utf-8"))
    profile = next(p for p in cfg["profiles"] if p["name"] == "cpu")
    release = profile["deploy"]["helm"]["releases"][0]
    proc = helm_template(helm, release["setValues"])
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    for d in docs:
        if d["kind"] == "Deployment":
            pod = d["spec"]["template"]["spec"]
            assert "nvidia.com/gpu" not in str(pod), d["metadata"]["name"]
    monitoring = next(p for p in cfg["profiles"] if p["name"] == "monitoring")
    paths = [patch["path"] for patch in monitoring["patches"]]
    assert all(p.startswith("/deploy/helm/releases/0/setValues/metrics.") for p in paths)
