"""Session-wide test settings."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests use tiny tensors: one thread is faster and immune to a busy second core."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def notes():
    """napari notifications shown during the test."""
    from napari.utils.notifications import notification_manager

    got = []
    notification_manager.notification_ready.connect(got.append)
    yield got
    notification_manager.notification_ready.disconnect(got.append)


@pytest.fixture(scope="session")
def napari_plugins():
    """npe2 discovers the installed plugins once per session, as napari does at start-up
    (a second discovery would register the plugin's commands twice)."""
    from napari.plugins import _initialize_plugins

    _initialize_plugins()
