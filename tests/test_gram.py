import threading

import numpy as np
import pytest
import torch

from rmtlib import InputError
from rmtlib.spectral.gram import gram, gram_eigenvalues, share_work


def _matrices(rng: np.random.Generator) -> list[torch.Tensor]:
    shapes = [(40, 90), (90, 40), (64, 64), (17, 300), (300, 17), (50, 120)]
    return [torch.from_numpy(rng.standard_normal(shape)).to(torch.float32) for shape in shapes]


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_eigenvalues_equal_squared_singular_values(rng, workers):
    matrices = _matrices(rng)
    values = gram_eigenvalues(matrices, [f"m{i}" for i in range(len(matrices))], host_workers=workers)
    for matrix, eig in zip(matrices, values):
        sv = np.linalg.svd(matrix.numpy().astype(np.float64), compute_uv=False)  # independent: an SVD
        assert eig.dtype == np.float64 and eig.shape == (min(matrix.shape),)
        np.testing.assert_allclose(np.sort(eig)[::-1], sv**2, rtol=1e-10, atol=1e-10 * sv[0] ** 2)
        assert np.all(np.diff(eig) >= 0)  # ascending, as documented


def test_torch_threads_are_restored_and_inputs_untouched(rng):
    matrices = _matrices(rng)
    copies = [m.clone() for m in matrices]
    before = torch.get_num_threads()
    gram_eigenvalues(matrices, ["a", "b", "c", "d", "e", "f"], host_workers=3)
    assert torch.get_num_threads() == before
    assert all(torch.equal(m, c) and m.dtype == torch.float32 for m, c in zip(matrices, copies))


def test_gram_is_the_smaller_one():
    w = torch.arange(12.0).reshape(3, 4)
    assert torch.equal(gram(w), w @ w.T) and torch.equal(gram(w.T), w @ w.T)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_matrix_is_named_first_in_model_order(rng, bad):
    matrices = _matrices(rng)
    matrices[2][3, 4] = bad
    matrices[4][0, 0] = bad
    with pytest.raises(InputError, match="layer third: .*NaN or Inf"):
        gram_eigenvalues(matrices, ["first", "second", "third", "fourth", "fifth", "sixth"], host_workers=2)


def test_bad_arguments_are_refused(rng):
    matrices = _matrices(rng)
    with pytest.raises(ValueError, match="6 matrices but 1 names"):
        gram_eigenvalues(matrices, ["only"])
    with pytest.raises(InputError, match="host_workers"):
        gram_eigenvalues(matrices, list("abcdef"), host_workers=-1)
    with pytest.raises(InputError, match="device"):
        gram_eigenvalues(matrices, list("abcdef"), device="nonsense")


def test_shared_queue_runs_every_task_once_in_order():
    # the pool waits until the main thread has taken a task: both do work, none is done twice
    done: list[tuple[str, int]] = []
    lock = threading.Lock()
    main_started = threading.Event()

    def main_task(i: int) -> np.ndarray:
        main_started.set()
        with lock:
            done.append(("main", i))
        return np.array([float(i)])

    def pool_task(i: int, state: dict) -> np.ndarray:
        assert main_started.wait(10)
        with lock:
            done.append(("pool", i))
        return np.array([float(i)])

    results = share_work(40, main_task, pool_task, workers=3)
    assert [float(r[0]) for r in results] == list(range(40))
    assert sorted(i for _, i in done) == list(range(40))
    assert {who for who, _ in done} == {"main", "pool"}


def test_shared_queue_stops_and_reraises_the_first_error():
    ran: list[int] = []

    def main_task(i: int) -> np.ndarray:
        ran.append(i)
        if i == 3:
            raise InputError("layer three failed")
        return np.zeros(1)

    def pool_task(i: int, state: dict) -> np.ndarray:
        ran.append(i)
        if i == 3:
            raise InputError("layer three failed")
        return np.zeros(1)

    with pytest.raises(InputError, match="layer three"):
        share_work(1000, main_task, pool_task, workers=2)
    assert len(ran) < 1000  # nothing more was handed out after the failure


def test_zero_pool_workers_leave_all_to_the_main_thread():
    who: list[str] = []
    results = share_work(
        5,
        lambda i: (who.append("main"), np.array([i]))[1],
        lambda i, s: (who.append("pool"), np.array([i]))[1],
        workers=0,
    )
    assert who == ["main"] * 5 and [int(r[0]) for r in results] == list(range(5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("workers", [0, 4])
def test_gpu_and_host_share_gives_the_cpu_values(rng, workers):
    matrices = _matrices(rng) * 4
    cpu = gram_eigenvalues(matrices, [str(i) for i in range(len(matrices))], host_workers=1)
    gpu = gram_eigenvalues(matrices, [str(i) for i in range(len(matrices))], device="cuda", host_workers=workers)
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * abs(a).max())
