"""Ikomia HUB: published as ikomia-cli publishes (its own code, offline: info, zip, demo workflow), the packaged
folders complete, installed alone in a fresh home and passing their HUB tests; metadata agrees with the READMEs;
the installed plugins work alone and side by side."""
import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from resnext_core import __version__
from resnext_core.common import checkpoint, models
from resnext_core.common.preprocess import Preprocessing
from resnext_tools.digits import write_digit_grids, write_digits_dataset  # noqa: E402

from conftest import ROOT, TORCH_HOME, run_python
from helpers import INFER, TRAIN, cache_random_weights, installer, printed_result, textured_image
from test_video import write_clip

PLUGINS = (INFER, TRAIN)

# Packaging, installing alone, publishing and the manuals' code: whole plugins each time.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """`make package`'s step, into a temporary dist/."""
    dist = tmp_path_factory.mktemp("dist")
    completed = subprocess.run([sys.executable, "-m", "resnext_tools.plugins", "--dest", str(dist), "--zip"],
                               cwd=ROOT, capture_output=True, text=True, env=os.environ)
    assert completed.returncode == 0, completed.stderr
    return dist


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Files the README examples and HUB tests read: photo.jpg, photos/, clip.mp4, my_dataset/, my_test_set/,
    my_multilabel/ (grids of digits and their labels.csv), my_model/best.pth."""
    folder = tmp_path_factory.mktemp("workspace")
    Image.fromarray(load_sample_image("china.jpg")).save(folder / "photo.jpg")  # a real photo, shipped in scikit-learn
    digits = folder / "digits"
    write_digits_dataset(str(digits))
    for split, count in (("train", 4), ("val", 2)):
        for name in ("3", "8"):
            target = folder / "my_dataset" / split / name
            target.mkdir(parents=True)
            for path in sorted((digits / "train" / name).iterdir())[:count]:
                shutil.copy(path, target)
    for name in ("3", "8"):  # a test set of the same classes, from images the training never sees
        (folder / "my_test_set" / name).mkdir(parents=True)
        for path in sorted((digits / "heldout" / name).iterdir())[:3]:
            shutil.copy(path, folder / "my_test_set" / name)
    write_digit_grids(str(folder / "my_multilabel"), {"train": 60, "val": 20, "heldout": 5})
    (folder / "photos").mkdir()
    for index in range(3):
        Image.fromarray(textured_image(120 + 20 * index, 160, seed=index)).save(folder / "photos" / f"{index}.jpg")
    write_clip(folder / "clip.mp4", frames=6)
    model = models.build_model("resnext50", num_classes=3)
    checkpoint.save_checkpoint(str(folder / "my_model" / "best.pth"), "resnext50", model.state_dict(),
                               ["cat", "dog", "bird"], Preprocessing(64, 73))
    for name in models.MODEL_NAMES:
        cache_random_weights(name)
    cache_random_weights("resnext50", "IMAGENET1K_V1")
    return folder


def test_package_folders_are_complete(packaged):
    for name in PLUGINS:
        folder = packaged / name
        for required in ("requirements.txt", "icons/icon.png", "LICENSE", "README.md", f"{name}_test.py",
                         f"{name}.py", f"{name}_process.py", f"{name}_widget.py", "resnext_core/__init__.py"):
            assert (folder / required).is_file(), f"{name}/{required}"
        assert not list(folder.rglob("__pycache__"))
        with zipfile.ZipFile(packaged / f"{name}.zip") as archive:
            names = archive.namelist()
        assert f"{name}/{name}.py" in names and f"{name}/resnext_core/common/models.py" in names
        assert not [n for n in names if "__pycache__" in n]


def test_install_replaces_a_development_link(tmp_path):
    """`make install` after `make develop`: the link gives way to a copy, and the checkout it pointed to stays."""
    checkout = os.path.join(ROOT, INFER)
    before = sorted(os.listdir(checkout))
    installer.link_plugin(INFER, str(tmp_path))
    assert os.path.islink(tmp_path / INFER)
    installer.install_plugin(INFER, str(tmp_path))
    assert not os.path.islink(tmp_path / INFER) and (tmp_path / INFER / "resnext_core" / "__init__.py").is_file()
    assert sorted(os.listdir(checkout)) == before


# Ikomia ships OpenCV itself, and STUDIO its Qt: a plugin must not pull other copies of them.
PROVIDED_BY_IKOMIA = {"ikomia", "cv2", "PyQt6"}


def _distribution(requirement: str) -> str:
    name = re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules(folder, name: str) -> set:
    """Top-level names of the modules imported, at module level or lazily, by the code a plugin can run:
    its entry files and, through relative imports, the vendored modules they reach."""
    queue = [folder / f"{name}{suffix}.py" for suffix in ("", "_process", "_widget", "_test")] + [folder / "__init__.py"]
    seen, modules = set(), set()
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                queue += [p for p in _relative_targets(path, node) if p.is_file()]
    return modules


def _relative_targets(path, node) -> list:
    """The files `from .x.y import z` may load: x/__init__.py, x/y.py or x/y/__init__.py, and x/y/z.py."""
    base = path.parent
    for _ in range(node.level - 1):
        base = base.parent
    target = base.joinpath(*(node.module or "").split("."))
    files = [target.with_suffix(".py"), target / "__init__.py"] + [target / f"{a.name}.py" for a in node.names]
    return files + [parent / "__init__.py" for parent in target.parents if base in (parent, *parent.parents)]


@pytest.mark.parametrize("name", PLUGINS)
def test_requirements_cover_every_import(packaged, name):
    """HUB installs a plugin's requirements.txt beside ikomia: every module the folder imports must come
    from one of them (onnxruntime once went missing: HUB users silently lost the fast engine)."""
    folder = packaged / name
    lines = (folder / "requirements.txt").read_text().splitlines()
    available = {_distribution(line) for line in lines if line.strip() and not line.startswith("#")}
    available |= {_distribution(r) for r in importlib.metadata.requires("ikomia") if "extra ==" not in r}
    own = {"resnext_core", "resnext_ikomia", name}
    third_party = _imported_modules(folder, name) - set(sys.stdlib_module_names) - PROVIDED_BY_IKOMIA - own
    distributions = importlib.metadata.packages_distributions()
    missing = sorted(module for module in third_party
                     if not any(_distribution(d) in available for d in distributions.get(module, [module])))
    assert not missing, f"{name}/requirements.txt lacks what provides: {', '.join(missing)}"


HUB_CHECK = r"""
import os, sys
from ikomia.dataprocess.registry import ik_registry
from ikomia.dataprocess.workflow import Workflow
data_dict = {"images": {"detection": {"coco": sys.argv[1]}},
             "datasets": {"classification": {"dataset_classification": sys.argv[2]}}}
for name in sys.argv[3:]:
    Workflow().add_task(name=name)
    task = ik_registry.create_algorithm(name, public_hub=False, private_hub=False)
    hub_test = __import__(name + "." + name + "_test", fromlist=["test"])
    outcome = hub_test.test(task, data_dict)
    outcomes = list(outcome) if not isinstance(outcome, tuple) else [outcome]
    for params, status in outcomes:
        print("STATUS", name, status if status == "OK" else status.replace("\n", " | "))
    module = sys.modules[name + ".resnext_core"]
    assert module.__file__.startswith(os.environ["HOME"]), module.__file__  # its own vendored copy
    if name == "infer_torchvision_resnext":
        assert len(task.get_whole_image_results()) == 1000  # the last HUB case ran the ImageNet weights
print("LOADED", sorted(m for m in sys.modules if m.endswith("resnext_core")))
"""


@pytest.mark.parametrize("names", [[INFER], [TRAIN], [INFER, TRAIN]], ids=["infer-alone", "train-alone", "both"])
def test_packaged_plugins_install_alone_and_pass_their_hub_tests(packaged, workspace, tmp_path, names):
    """Each packaged folder in a fresh home, alone or beside its sibling, the checkout off sys.path: HUB's test
    passes, and each plugin runs its own copy of resnext_core."""
    home = tmp_path / "home"
    plugins = home / "Ikomia" / "Plugins" / "Python"
    plugins.mkdir(parents=True)
    for name in names:
        shutil.copytree(packaged / name, plugins / name)
    command_args = [str(workspace / "photo.jpg"), str(workspace / "my_dataset"), *names]
    completed = subprocess.run([sys.executable, "-c", HUB_CHECK, *command_args], capture_output=True, text=True,
                               cwd=str(tmp_path), timeout=900,
                               env=dict(os.environ, HOME=str(home), TORCH_HOME=TORCH_HOME))
    statuses = [line for line in completed.stdout.splitlines() if line.startswith("STATUS")]
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    expected = {INFER: 3, TRAIN: 1}
    assert len(statuses) == sum(expected[n] for n in names)
    assert all(line.endswith(" OK") for line in statuses), statuses
    assert f"LOADED {sorted(name + '.resnext_core' for name in names)}" in completed.stdout


def code_blocks(readme: str, language: str) -> list:
    return re.findall(rf"```{language}\n(.*?)```", open(readme, encoding="utf-8").read(), flags=re.S)


COMMAND = "python -m resnext_core."  # the bash lines of the manual that run here as they are


@pytest.mark.parametrize("readme", ["README.md", f"{INFER}/README.md", f"{TRAIN}/README.md"])
def test_readme_code_blocks_run(workspace, readme):
    """The python blocks in order in one interpreter, like a reader pasting them into one session; then the bash
    blocks made only of the project's commands, each line as a reader runs it in a shell."""
    blocks = code_blocks(os.path.join(ROOT, readme), "python")
    assert blocks
    completed = run_python("\n".join(blocks), cwd=str(workspace), timeout=900, env_extra={"MPLBACKEND": "Agg"})
    assert completed.returncode == 0, f"{readme}:\n{completed.stdout[-2000:]}\n{completed.stderr[-3000:]}"
    commands = [line for block in code_blocks(os.path.join(ROOT, readme), "bash")
                if all(line.startswith(COMMAND) for line in block.strip().splitlines())
                for line in block.strip().splitlines()]
    for command in commands:
        ran = subprocess.run(sys.executable + command[len("python"):], shell=True, cwd=str(workspace), capture_output=True,
                             text=True, timeout=900, env=dict(os.environ, MPLBACKEND="Agg"))
        assert ran.returncode == 0, f"{readme}: {command}\n{ran.stdout[-2000:]}\n{ran.stderr[-3000:]}"
    if readme == "README.md":
        assert len(commands) == 3, "the predict and evaluate examples ran"
        assert (workspace / "evaluation" / "evaluation.json").is_file() and (workspace / "predictions.jsonl").is_file()


def readme_table(readme: str) -> dict:
    rows = re.findall(r"^\| (\w+) \| (.+?) \|$", open(readme, encoding="utf-8").read(), flags=re.M)
    return dict(rows)


INFO_CHECK = r"""
import json, sys
from ikomia.dataprocess.workflow import Workflow
out = {}
for name in ("infer_torchvision_resnext", "train_torchvision_resnext"):
    Workflow().add_task(name=name)
    factory = getattr(sys.modules[name + "." + name + "_process"], [a for a in dir(sys.modules[name + "." + name + "_process"]) if a.endswith("Factory")][0])()
    info = factory.info
    fields = ["name", "version", "license", "min_ikomia_version", "max_ikomia_version", "min_python_version",
              "max_python_version", "keywords", "authors", "article", "article_url", "journal", "year",
              "documentation_link", "original_repository", "repository", "icon_path", "algo_tasks", "short_description",
              "description"]
    out[name] = {f: getattr(info, f) for f in fields}
    out[name]["algo_type"] = str(info.algo_type)
    out[name]["os"] = str(info.os)
    hw = info.hardware_config
    out[name]["hardware"] = [hw.min_cpu, hw.min_ram, hw.gpu_required, hw.min_vram]
print("INFO" + json.dumps(out))
"""


def test_metadata_complete_and_consistent_with_readmes():
    import json

    completed = run_python(INFO_CHECK, cwd="/")
    line = [l for l in completed.stdout.splitlines() if l.startswith("INFO")]
    assert completed.returncode == 0 and line, completed.stderr[-3000:]
    info = json.loads(line[0][4:])
    infer, train = info[INFER], info[TRAIN]
    shared = ["version", "license", "min_ikomia_version", "max_ikomia_version", "min_python_version",
              "max_python_version", "authors", "article", "article_url", "journal", "year", "documentation_link",
              "original_repository", "algo_tasks"]
    assert {k: infer[k] for k in shared} == {k: train[k] for k in shared}
    for name, fields in info.items():
        assert all(str(value).strip() for value in fields.values()), name
        assert fields["version"] == __version__
        table = readme_table(os.path.join(ROOT, name, "README.md"))
        assert table["version"] == fields["version"]
        assert table["license"] == fields["license"]
        assert table["ikomia"] == f">={fields['min_ikomia_version']},<{fields['max_ikomia_version']}"
        assert table["python"] == f">={fields['min_python_version']},<{fields['max_python_version']}"
        min_cpu, min_ram, gpu_required, min_vram = fields["hardware"]
        assert table["hardware"] == (f"{min_cpu} CPU cores, {min_ram} GB RAM; "
                                     f"GPU {'required' if gpu_required else 'optional'} ({min_vram} GB VRAM)")
        assert str(fields["year"]) in table["paper"] and fields["article"] in table["paper"]
        assert table["repository"] == fields["repository"] and table["os"] == "Linux" and fields["os"].endswith("LINUX")
        assert "resnext" in fields["keywords"] and fields["algo_tasks"] == "CLASSIFICATION"
    assert infer["algo_type"].endswith("INFER") and train["algo_type"].endswith("TRAIN")
    top = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert f"({INFER}/README.md)" in top and f"({TRAIN}/README.md)" in top


CLIENT = os.path.join(ROOT, ".ikcli")
# What a plugin needs, and nothing a run leaves behind: weights, engines' caches, run folders, bytecode.
NOT_SHIPPED = re.compile(r"(__pycache__|\.pyc$|\.pth$|\.pt$|\.onnx$|\.npy$|\.bin$|\.xml$|mlruns|tensorboard|runs/|\.tmp-)")


def _client_env(home, **extra) -> dict:
    """ikomia-cli first on the path (its own folder: its rich<13 never meets .venv's nncf), an Ikomia home."""
    if not os.path.isfile(os.path.join(CLIENT, "ikcli", "__init__.py")):
        pytest.fail(f"ikomia-cli is not installed in {CLIENT}: make install puts it there")
    return {**os.environ, "PYTHONPATH": CLIENT, "HOME": str(home), "TORCH_HOME": TORCH_HOME, **extra}


@pytest.mark.parametrize("name", PLUGINS)
def test_published_as_ikomia_cli_publishes(packaged, workspace, tmp_path, name):
    """ikomia-cli's own Algo(name).info, Package and demo workflow on the installed plugin: no empty field it sends,
    a zip of only what the plugin needs, which installs alone in a fresh home; there the demo workflow (INFER) is
    loaded from its JSON and run on a photo."""
    home = tmp_path / "home"
    shutil.copytree(packaged / name, home / "Ikomia" / "Plugins" / "Python" / name)
    out = tmp_path / "published"
    completed = subprocess.run([sys.executable, "-m", "resnext_tools.publish", "check", name, "--out", str(out)],
                               cwd=str(tmp_path), capture_output=True, text=True, timeout=600, env=_client_env(home))
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    info = json.load(open(out / f"{name}_info.json"))
    empty = [key for key, value in info.items() if value in ("", None, [], {})]
    empty += [f"paper.{key}" for key, value in info["paper"].items() if value in ("", None, 0)]
    assert not empty, f"ikomia-cli would send these empty: {empty}"
    assert info["description"] == (packaged / name / "README.md").read_text(encoding="utf-8")
    assert info["repository"] == f"https://github.com/Ikomia-hub/{name}" and info["os"] == ["LINUX"]
    assert info["language"] == "PYTHON" and info["algo_task"] == ["CLASSIFICATION"] and "resnext" in info["keywords"]
    assert info["algo_type"] == {INFER: "INFER", TRAIN: "TRAIN"}[name]
    with Image.open(info["icon"]) as icon:
        assert icon.format == "PNG" and min(icon.size) >= 32
    with zipfile.ZipFile(out / f"{name}.zip") as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "fresh" / "Ikomia" / "Plugins" / "Python" / name)
    assert not [n for n in names if NOT_SHIPPED.search(n)], "the zip ships only the plugin"
    assert {f"{name}.py", f"{name}_process.py", f"{name}_widget.py", f"{name}_test.py", "requirements.txt", "LICENSE",
            "README.md", "icons/icon.png", "resnext_core/__init__.py", "resnext_ikomia/metadata.py"} <= set(names)
    if name != INFER:
        assert not (out / f"{name}_demo_workflow.json").exists(), "ikomia-cli makes demo workflows for INFER only"
        return
    run = RUN_DEMO_WORKFLOW % (str(out / f"{name}_demo_workflow.json"), str(workspace / "photo.jpg"))
    completed = subprocess.run([sys.executable, "-c", run], cwd=str(tmp_path), capture_output=True, text=True,
                               timeout=600, env=dict(os.environ, HOME=str(tmp_path / "fresh"), TORCH_HOME=TORCH_HOME))
    loaded_from, results = printed_result(completed)
    assert loaded_from.startswith(str(tmp_path / "fresh")) and len(results) == 1000


RUN_DEMO_WORKFLOW = r"""
import json, sys
from ikomia.dataprocess.workflow import Workflow
wf = Workflow()
wf.load(%r)
wf.run_on(path=%r)
task = wf.get_task(wf.get_task_ids()[-1])
print("RESULT" + json.dumps([sys.modules[task.name + ".resnext_core"].__file__, task.get_whole_image_results()]))
"""


def test_int8_builds_beside_the_clients_rich(tmp_path):
    """ikomia-cli pins rich<13, nncf asks for rich>=13.5.2: in the client's environment int8 (NNCF) still builds."""
    from helpers import small_checkpoint

    small_checkpoint(tmp_path / "m.pth")
    (tmp_path / "calibration").mkdir()
    for index in range(4):
        Image.fromarray(textured_image(70, 70, seed=index)).save(tmp_path / "calibration" / f"{index}.png")
    code = (f"import importlib.metadata, rich, numpy as np\nfrom resnext_core import load_classifier\n"
            f"c = load_classifier(model_weight_file={str(tmp_path / 'm.pth')!r}, precision='int8', device='cpu', "
            f"quantization_folder={str(tmp_path / 'calibration')!r})\n"
            f"print('RESULT', importlib.metadata.version('rich'), rich.__file__, c.runner.engine, "
            f"tuple(c.predict([np.zeros((64, 64, 3), np.uint8)]).shape))")
    completed = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                               timeout=600, env=_client_env(tmp_path / "home", TORCH_HOME=str(tmp_path / "torch")))
    assert completed.returncode == 0, completed.stderr[-3000:]
    version, location, engine, shape = completed.stdout.split("RESULT", 1)[1].split(maxsplit=3)
    assert version.startswith("12.") and location.startswith(CLIENT), "the client's rich, not .venv's"
    assert engine == "openvino" and shape.strip() == "(1, 3)"
