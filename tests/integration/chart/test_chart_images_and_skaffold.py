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
    for p in [
        *REPO.glob("libs/*/pyproject.toml"),
        *REPO.glob("services/*/pyproject.toml"),
        REPO / "operator/pyproject.toml",
    ]
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
    every = {src for parts in copies for src in parts[:-1] if not src.startswith("--")}
    for src in every:
        assert (REPO / src).exists(), f"{dockerfile}: COPY source {src} does not exist"
        assert not dockerignored(src), f"{dockerfile}: COPY source {src} is excluded by .dockerignore"
    sources = {src for src in every if (REPO / src).is_dir()}
    for src in sources:
        assert (REPO / src / "pyproject.toml").exists(), f"{dockerfile}: {src} is not a package"
    files = every - sources
    assert files <= {"constraints.txt", "scripts/image_requirements.py"} | {f"{d}/pyproject.toml" for d in sources}
    needed, _ = local_closure(package_dir)
    assert needed <= sources, f"{image} lacks packages {sorted(needed - sources)}"
    runs = " ".join(args for op, args in ins if op == "RUN")
    for src in sources:
        assert f"/src/{src}" in runs, f"{image} copies {src} but never installs it"


def _expand(ref: str, args: dict[str, str]) -> str:
    """Docker's ARG substitution in FROM: ${X}, and ${X:+word} (word only when X is set)."""
    ref = re.sub(
        r"\$\{(\w+):\+([^{}]*(?:\$\{\w+\})?[^{}]*)\}", lambda m: m.group(2) if args.get(m.group(1)) else "", ref
    )
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), ref)


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """The instructions of each stage (a FROM starts one)."""
    out: list[list[tuple[str, str]]] = []
    for op, rest in instructions(dockerfile):
        if op == "FROM":
            out.append([])
        if out:
            out[-1].append((op, rest))
    return out


COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|cc|make|build-essential|python3-dev|libc6-dev|cmake)\b")


@pytest.mark.parametrize("image", IMAGES)
def test_final_image_installs_no_compiler_or_headers(image):
    dockerfile, _ = IMAGES[image]
    final = stages(REPO / dockerfile)[-1]
    for op, rest in final:
        if op == "RUN" and "apt-get install" in rest:
            assert not COMPILERS.search(rest), f"{dockerfile}: the runtime stage installs a compiler: {rest}"
    assert any(op == "COPY" and rest.startswith("--from=build") for op, rest in final)


@pytest.mark.parametrize("image", IMAGES)
def test_dependencies_install_in_a_layer_before_the_sources_pinned_by_constraints(image):
    dockerfile, package_dir = IMAGES[image]
    build = stages(REPO / dockerfile)[0]
    first_source = next(i for i, (op, rest) in enumerate(build) if op == "COPY" and (REPO / rest.split()[0]).is_dir())
    before = build[:first_source]
    copied = [rest.split()[0] for op, rest in before if op == "COPY"]
    assert copied and all(
        c.endswith("pyproject.toml") or c in ("constraints.txt", "scripts/image_requirements.py") for c in copied
    ), copied
    assert f"{package_dir}/pyproject.toml" in copied
    deps = " ".join(rest for op, rest in before if op == "RUN")
    assert "image_requirements.py" in deps and "pip install -c" in deps, "the dependency layer is not constrained"
    after = " ".join(rest for op, rest in build[first_source:] if op == "RUN")
    assert "pip install --no-deps" in after, "installing the sources must not resolve dependencies again"


@pytest.mark.parametrize("image", IMAGES)
def test_base_images_can_be_pinned_by_digest(image):
    dockerfile, _ = IMAGES[image]
    ins = instructions(REPO / dockerfile)
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for op, a in ins if op == "ARG" and "=" in a}
    digest_arg = next(k for k in args if k.endswith("_DIGEST"))
    assert args[digest_arg] == '""'
    digest = "sha256:" + "a" * 64
    for f in (a for op, a in ins if op == "FROM"):
        ref = f.split()[0]
        assert "@" not in _expand(ref, {**args, digest_arg: ""}), "no digest unless asked"
        assert _expand(ref, {**args, digest_arg: digest}).endswith("@" + digest)


@pytest.mark.parametrize("image", IMAGES)
def test_image_requirements_are_exactly_the_third_party_dependencies(image):
    import subprocess
    import sys

    dockerfile, package_dir = IMAGES[image]
    runs = " ".join(a for op, a in instructions(REPO / dockerfile) if op == "RUN")
    call = re.search(r"image_requirements\.py ((?:[^\s>]+\s+)+)>", runs).group(1).split()
    extras = {"services/asr": ("serve",), "services/llm": ("vllm", "transformers"), "operator": ("s3",)}[package_dir]
    dirs = [REPO / c.strip('"').replace("${LLM_EXTRAS}", ",".join(extras)).removeprefix("/src/") for c in call]
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "image_requirements.py"), *map(str, dirs)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names = {
        re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0].lower().replace("_", "-") for line in proc.stdout.splitlines()
    }
    _, third_party = local_closure(package_dir, extras)
    assert names == {n.replace("_", "-") for n in third_party}


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
        ref = _expand(ref, args)
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


def _apply_patches(cfg: dict, patches: list[dict]) -> dict:
    """skaffold's JSON patches (RFC 6902 `add`, the only op the profiles use) on a copy of cfg."""
    import copy

    out = copy.deepcopy(cfg)
    for patch in patches:
        assert patch["op"] == "add", patch
        *parents, leaf = [p.replace("~1", "/").replace("~0", "~") for p in patch["path"].split("/")[1:]]
        node = out
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[leaf] = patch["value"]
    return out


def _profile(cfg: dict, name: str) -> dict:
    return next(p for p in cfg["profiles"] if p["name"] == name)


def test_skaffold_is_on_the_current_schema_with_cpu_and_gpu_profiles_that_patch():
    cfg = yaml.safe_load((REPO / "skaffold.yaml").read_text(encoding="utf-8"))
    assert cfg["apiVersion"] == "skaffold/v4beta13"
    assert {p["name"] for p in cfg["profiles"]} >= {"cpu", "gpu", "monitoring"}
    for profile in cfg["profiles"]:
        assert set(profile) == {"name", "patches"}, f"profile {profile['name']} copies instead of patching"


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_skaffold_profiles_render_the_chart_they_promise(helm, name):
    from chart_render import helm_template

    cfg = yaml.safe_load((REPO / "skaffold.yaml").read_text(encoding="utf-8"))
    patched = _apply_patches(cfg, _profile(cfg, name)["patches"])
    release = patched["deploy"]["helm"]["releases"][0]
    proc = helm_template(helm, release["setValues"])
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    for svc in ("omoai-asr", "omoai-llm"):
        pod = deployments[svc]["spec"]["template"]["spec"]
        has_gpu = "nvidia.com/gpu" in str(pod)
        assert has_gpu == (name == "gpu"), (name, svc)
    if name == "cpu":
        assert patched["build"]["artifacts"][1]["docker"]["buildArgs"] == {"LLM_EXTRAS": "transformers"}


def test_skaffold_monitoring_profile_labels_objects_for_kube_prometheus_stack(helm):
    from chart_render import helm_template

    cfg = yaml.safe_load((REPO / "skaffold.yaml").read_text(encoding="utf-8"))
    patched = _apply_patches(cfg, _profile(cfg, "cpu")["patches"] + _profile(cfg, "monitoring")["patches"])
    proc = helm_template(helm, patched["deploy"]["helm"]["releases"][0]["setValues"])
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    monitoring = [d for d in docs if d["kind"] in ("ServiceMonitor", "PodMonitor", "PrometheusRule")]
    assert len(monitoring) == 4
    assert all(d["metadata"]["labels"]["release"] == "kube-prometheus-stack" for d in monitoring)
