"""Shared fixtures: a tiny random LLM and a small learnable corpus, made once per test session."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

from emoscale.tiny import demo
from emoscale.tiny.lm import make_tiny

# The corpus writers of tests/data serve tests in every folder.
sys.path.insert(0, str(Path(__file__).parent / "data"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download
warnings.filterwarnings(
    "ignore", message=".*MatMul8bitLt.*"
)  # bitsandbytes on CPU warns per matmul


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory):
    """train/dev/test CSVs (480/96/96) of the demo's three-way sentiment task."""
    return demo.write_corpus(tmp_path_factory.mktemp("demo_corpus"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    texts = demo.tokenizer_texts()
    # 0.2: adapters on a frozen random model need a frozen lm_head that separates tokens.
    folder = tmp_path_factory.mktemp("tiny_llama")
    return make_tiny(folder, texts, arch="llama", vocab_size=600, initializer_range=0.2)


@pytest.fixture
def run_overrides(tiny_llama, demo_corpus, tmp_path):
    """The demo's config on the session's tiny model and corpus, writing into tmp_path/run."""
    return demo.overrides(demo_corpus, tiny_llama) + [f"output_dir={tmp_path / 'run'}"]


# --- speech + text fusion (models/speech_text.py) ---------------------------------------------


@pytest.fixture
def one_torch_thread():
    """Tiny models on shared CPUs run several times faster on one thread than on contended ones."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_wavlm(tmp_path_factory):
    from emoscale.tiny.encoders import make_tiny_speech_encoder

    return make_tiny_speech_encoder(tmp_path_factory.mktemp("tiny_wavlm"), arch="wavlm")


@pytest.fixture(scope="session")
def tiny_hubert(tmp_path_factory):
    from emoscale.tiny.encoders import make_tiny_speech_encoder

    return make_tiny_speech_encoder(tmp_path_factory.mktemp("tiny_hubert"), arch="hubert")


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory):
    from emoscale.tiny import demo_fusion
    from emoscale.tiny.encoders import make_tiny_text_encoder

    return make_tiny_text_encoder(
        tmp_path_factory.mktemp("tiny_roberta"), demo_fusion.corpus_texts() * 4, vocab_size=300
    )


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory):
    """demo_fusion's corpus (160/48/48 clips of 0.4-0.8 s): the label needs the tone and the text."""
    from emoscale.tiny import demo_fusion

    return demo_fusion.write_corpus(tmp_path_factory.mktemp("tone_corpus"))


@pytest.fixture
def fusion_overrides(tone_corpus, tiny_wavlm, tiny_roberta, tmp_path, tmp_path_factory):
    """The fusion demo's config on the session's tiny encoders, writing into tmp_path/run."""
    from emoscale.tiny import demo_fusion

    cache = tmp_path_factory.getbasetemp() / "text_feature_cache"  # shared: features are constants
    return demo_fusion.overrides(tone_corpus, tiny_wavlm, tiny_roberta) + [
        f"output_dir={tmp_path / 'run'}",
        f"fusion.text_cache_dir={cache}",
    ]


# --- a real SLURM on this machine (tests/slurm_cluster.py) -------------------------------------


def _slurm(nodes: int):
    from slurm_cluster import SlurmCluster, install

    try:
        seconds = install()  # CI's fresh machine: apt-get update + install, once
    except RuntimeError as error:  # not root and not installed: say so rather than fail
        pytest.skip(str(error))
    cluster = SlurmCluster(nodes).start()
    print(
        f"SLURM ({nodes} node(s)): installed in {seconds:.1f} s, started in {cluster.started_seconds:.1f} s"
    )
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)  # sbatch, squeue, scontrol (also emoscale's)
    try:
        yield cluster
    finally:
        cluster.stop()  # never leave daemons running
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved


@pytest.fixture(scope="module")
def slurm_one_node():
    """This machine as a one-node SLURM cluster (both cores), running until the module ends."""
    yield from _slurm(1)


@pytest.fixture(scope="module")
def slurm_two_nodes():
    """Two SLURM nodes on this machine (n1, n2 on 127.0.0.1, one core each): one slurmd each."""
    yield from _slurm(2)
