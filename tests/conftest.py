"""Shared fixtures: synthetic VGG checkpoints in torchvision's key layout and a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from nst_lessons.vgg import VGG, VGG19, RandomWeightsWarning, load_vgg19


def synthetic_state_dict(seed: int = 0, arch: str = "vgg19") -> dict[str, torch.Tensor]:
    """Random tensors with every key and shape of torchvision's ``arch`` state dict (classifier too)."""
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in VGG(arch).state_dict().items()}
    state["classifier.0.weight"] = torch.randn(64, 32, generator=g)  # smaller than the real 4096x25088
    state["classifier.0.bias"] = torch.randn(64, generator=g)
    return state


def save_checkpoint(state: dict[str, torch.Tensor], folder: Path, stem: str = "vgg19") -> Path:
    """Save ``state`` as ``<stem>-<sha256 prefix>.pth``, torchvision's naming."""
    tmp = folder / "checkpoint.tmp"
    torch.save(state, tmp)
    prefix = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    path = folder / f"{stem}-{prefix}.pth"
    tmp.rename(path)
    return path


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread: on two cores shared with other jobs, a second one mostly waits for its turn
    (measured here: a 32-px evaluation took 40 ms with one thread and 1 s with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def random_model() -> VGG19:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return load_vgg19("random", device="cpu")


class _Server:
    """A static file server on 127.0.0.1 over a folder, counting requests per path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
                super().__init__(*args, directory=str(server.root), **kwargs)

            def do_GET(self) -> None:  # noqa: N802
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[_Server]:
    root = tmp_path / "served"
    root.mkdir()
    server = _Server(root)
    yield server
    server.close()
