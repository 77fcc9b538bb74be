"""Small datasets shared by the converter tests (bundled with scikit-learn, no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris, load_wine


@pytest.fixture(scope="session")
def iris() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return X, y


@pytest.fixture(scope="session")
def wine() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_wine(return_X_y=True)
    return X, y


@pytest.fixture(scope="session")
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_diabetes(return_X_y=True)
    return X, y


# -- the conversion matrix's models, trained once per session --------------------------

def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Run the converter tests last: they load TensorFlow and torch into the test process
    (about 1 GiB resident), which would inflate the resident-memory checks of tests that run
    a fleet in-process after them (tests/integration/simulator/test_fleet_scale.py)."""
    here = Path(__file__).resolve().parent
    mine = [item for item in items if here in Path(str(item.path)).resolve().parents]
    others = [item for item in items if item not in mine]
    items[:] = others + mine


def require_env(name: str) -> None:
    """Skip (fail under CI) when a converter side environment is not built."""
    import os

    from converters import envs

    if envs.find_python(name) is None:
        message = (f"the {name} environment is not built: python -m converters.envs setup "
                   f"{name} (scripts/test builds it)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """8x8 digits scaled to [0, 1], as float32 rows of 64."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


@pytest.fixture(scope="session")
def keras_models(digits: tuple[np.ndarray, np.ndarray]) -> dict[str, object]:
    """A Keras MLP on flat rows and a small CNN on 8x8x1 images, a few epochs each."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras = pytest.importorskip("keras")
    X, y = digits
    keras.utils.set_random_seed(0)
    mlp = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                            keras.layers.Dense(10, activation="softmax")])
    cnn = keras.Sequential([keras.Input((8, 8, 1)),
                            keras.layers.Conv2D(8, 3, activation="relu"),
                            keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
                            keras.layers.Dense(10, activation="softmax")])
    for model, inputs in ((mlp, X), (cnn, X.reshape(-1, 8, 8, 1))):
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(inputs, y, epochs=8, batch_size=64, verbose=0)
    return {"mlp": mlp, "cnn": cnn}


@pytest.fixture(scope="session")
def torch_models(digits: tuple[np.ndarray, np.ndarray]) -> dict[str, object]:
    """A PyTorch MLP (logits) and a CNN on 1x8x8 images, trained briefly with full batches."""
    torch = pytest.importorskip("torch")
    X, y = digits
    torch.manual_seed(0)

    class CNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8 * 4 * 4, 10)

        def forward(self, x: object) -> object:
            x = torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
            return self.fc(x.flatten(1))

    mlp = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    cnn = CNN()
    targets = torch.from_numpy(y)
    for model, inputs in ((mlp, X), (cnn, X.reshape(-1, 1, 8, 8))):
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        batch = torch.from_numpy(inputs)
        for _ in range(40):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(batch), targets).backward()
            optimizer.step()
        model.eval()
    return {"mlp": mlp, "cnn": cnn}
